package api

import (
	"encoding/json"
	"testing"

	"iotdash/internal/testenv"
	"iotdash/store"
)

// TestAnswerIsJSON writes answers whose device and metric are hostile
// strings (which ParseQuery never lets through): each must be JSON that
// encoding/json reads back to the same strings.
func TestAnswerIsJSON(t *testing.T) {
	pts := []store.Point{{T: 1767225600000, V: 21.5, Max: 22}}
	for _, s := range testenv.HostileStrings {
		req := Request{Devices: []string{s}, Metrics: []string{s}, From: 1767225600000, To: 1767225660000, Step: 60000, Agg: store.AggMinMax}
		var one struct {
			Device, Metric string
			Agg            string
			Points         [][]float64
		}
		b := appendAnswer(nil, req, [][]store.Point{pts})
		if err := json.Unmarshal(b, &one); err != nil || one.Device != s || one.Metric != s || one.Agg != "minmax" || len(one.Points) != 1 {
			t.Errorf("answer for %q: %s reads back as %+v, %v", s, b, one, err)
		}
		req.Devices = []string{s, "pump-1"}
		var many struct {
			Series []struct{ Device, Metric string }
		}
		b = appendAnswer(nil, req, [][]store.Point{pts, pts})
		if err := json.Unmarshal(b, &many); err != nil || len(many.Series) != 2 || many.Series[0].Device != s || many.Series[0].Metric != s {
			t.Errorf("answer for %q and pump-1: %s reads back as %+v, %v", s, b, many, err)
		}
	}
}

// BenchmarkAnswer writes an answer of 1,000 points by hand, as Query does,
// and with encoding/json from the [t, v] pairs it would need.
func BenchmarkAnswer(b *testing.B) {
	req := Request{Devices: []string{"pump-1"}, Metrics: []string{"temperature"}, From: 1767225600000, To: 1767225600000 + 1000*60000, Step: 60000, Agg: store.AggMean}
	pts := make([]store.Point, 1000)
	for i := range pts {
		pts[i] = store.Point{T: req.From + int64(i)*60000, V: 20 + float64(i%97)/7}
	}
	b.Run("appendAnswer", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = appendAnswer(buf[:0], req, [][]store.Point{pts})
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			pairs := make([][2]float64, len(pts))
			for i, p := range pts {
				pairs[i] = [2]float64{float64(p.T), p.V}
			}
			q, _ := json.Marshal(struct {
				Device string       `json:"device"`
				Metric string       `json:"metric"`
				From   int64        `json:"from"`
				To     int64        `json:"to"`
				StepMS int64        `json:"step_ms"`
				Agg    store.Agg    `json:"agg"`
				Points [][2]float64 `json:"points"`
			}{req.Devices[0], req.Metrics[0], req.From, req.To, req.Step, req.Agg, pairs})
			buf = append(buf[:0], q...)
		}
	})
}
