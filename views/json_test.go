package views

import (
	"encoding/json"
	"testing"

	"iotdash/internal/testenv"
	"iotdash/store"
)

// TestSpansAreJSON writes alert spans whose severity is a hostile string:
// chart.js must read back what the server meant.
func TestSpansAreJSON(t *testing.T) {
	for _, s := range testenv.HostileStrings {
		b := spansJSON([]AlertSpan{{Severity: s, From: 1, To: 2}})
		var back [][]any
		if err := json.Unmarshal([]byte(b), &back); err != nil || len(back) != 1 || len(back[0]) != 3 || back[0][2] != s {
			t.Errorf("spans of severity %q: %s reads back as %v, %v", s, b, back, err)
		}
	}
}

// BenchmarkSeriesAttrs writes a chart's 1,000 points into its data-points
// attribute by hand, as the page does, and with encoding/json from the
// flattened numbers it would need.
func BenchmarkSeriesAttrs(b *testing.B) {
	s := Series{Known: true, From: 1767225600000, To: 1767225600000 + 1000*60000, Step: 60000}
	for i := range 1000 {
		s.Points = append(s.Points, store.Point{T: s.From + int64(i)*60000, V: 20 + float64(i%97)/7})
	}
	b.Run("flatJSON", func(b *testing.B) {
		for b.Loop() {
			seriesAttrs(s)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			flat := make([]float64, 0, 2*len(s.Points))
			for i, p := range s.Points {
				dt := p.T
				if i > 0 {
					dt -= s.Points[i-1].T
				}
				flat = append(flat, float64(dt), p.V)
			}
			q, _ := json.Marshal(flat)
			_ = string(q)
		}
	})
}
