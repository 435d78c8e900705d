package simulator

import (
	"encoding/json"
	"math"
	"testing"

	"iotdash/internal/testenv"
)

// TestPayloadIsJSON writes a sample whose metric name is a hostile string:
// the payload must be JSON that encoding/json reads back to the same name.
func TestPayloadIsJSON(t *testing.T) {
	for _, name := range testenv.HostileStrings {
		if name == "" || name == "ts" {
			continue
		}
		s := Sample{Time: 1764000000123, Metrics: []Metric{{Name: name}, {Name: "gone"}}, Values: []float64{21.5, math.NaN()}}
		b := s.AppendJSON(nil)
		var back map[string]float64
		if err := json.Unmarshal(b, &back); err != nil || len(back) != 2 || back[name] != 21.5 || back["ts"] != 1764000000123 {
			t.Errorf("payload of metric %q: %s reads back as %v, %v", name, b, back, err)
		}
	}
}

// BenchmarkPayload writes a four-metric payload by hand, as every
// simulated device does each second, and with encoding/json from a map.
func BenchmarkPayload(b *testing.B) {
	s := Sample{Time: 1764000000123, Metrics: []Metric{{Name: "temperature"}, {Name: "humidity"}, {Name: "pressure"}, {Name: "battery"}}, Values: []float64{21.5, 40.2, 1013.2, 3.71}}
	b.Run("AppendJSON", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = s.AppendJSON(buf[:0])
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			m := map[string]float64{"ts": float64(s.Time)}
			for i, mt := range s.Metrics {
				if !math.IsNaN(s.Values[i]) {
					m[mt.Name] = s.Values[i]
				}
			}
			q, _ := json.Marshal(m)
			buf = append(buf[:0], q...)
		}
	})
}
