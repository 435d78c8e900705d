package influx

import (
	"testing"

	"iotdash/devices"
)

func TestAppendLines(t *testing.T) {
	rs := []devices.Reading{
		{Device: "th-1", Metric: "temperature", Time: 1767225600000, Value: 21.5},
		{Device: "th-1", Metric: "humidity", Time: 1767225600000, Value: 40},
		{Device: "th-2", Metric: "temperature", Time: 1767225600000, Value: -0.25},
		{Device: "th-1", Metric: "temperature", Time: 1767225601000, Value: 1e21},
	}
	for _, c := range []struct {
		points int
		want   string
		took   int
	}{
		{10, "telemetry,device=th-1 temperature=21.5,humidity=40 1767225600000\n" +
			"telemetry,device=th-2 temperature=-0.25 1767225600000\n" +
			"telemetry,device=th-1 temperature=1e+21 1767225601000\n", 4},
		{1, "telemetry,device=th-1 temperature=21.5,humidity=40 1767225600000\n", 2},
	} {
		got, took := appendLines(nil, rs, c.points)
		if string(got) != c.want || took != c.took {
			t.Errorf("appendLines(%d points) = %q, %d; want %q, %d", c.points, got, took, c.want, c.took)
		}
	}
}

// BenchmarkAppendLines encodes a group of 1000 messages of 2 readings:
// no allocation once the buffer has grown.
func BenchmarkAppendLines(b *testing.B) {
	rs := make([]devices.Reading, 0, 2000)
	for i := range 1000 {
		d := "dev-" + string(rune('a'+i%26))
		rs = append(rs, devices.Reading{Device: d, Metric: "temperature", Time: 1767225600000 + int64(i), Value: 21.5},
			devices.Reading{Device: d, Metric: "humidity", Time: 1767225600000 + int64(i), Value: 40.1})
	}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = appendLines(buf[:0], rs, 5000)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rs)), "ns/reading")
}
