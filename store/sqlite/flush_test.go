package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"iotdash/devices"
	"iotdash/store/sqlite"
)

// BenchmarkFlush measures the flusher's CPU a reading when each of 2,000
// series (1,000 devices, 2 metrics) has per readings in the head: the
// chunk a series and hour it writes costs more than its readings do.
func BenchmarkFlush(b *testing.B) {
	for _, per := range []int{10, 50, 200} {
		b.Run(fmt.Sprint("per=", per), func(b *testing.B) {
			s, err := sqlite.OpenWith(filepath.Join(b.TempDir(), "iotdash.db"), sqlite.Options{Interval: -1, FlushInterval: -1, HeadReadings: 10_000_000})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			sec := int64(0)
			var cpu, n int64
			for b.Loop() {
				var rs []devices.Reading
				for j := 0; j < per; j++ {
					for d := 0; d < 1000; d++ {
						for _, m := range []string{"temperature", "humidity"} {
							rs = append(rs, devices.Reading{Device: fmt.Sprintf("device-%04d", d), Metric: m, Time: t0 + sec*1000, Value: value(d, sec)})
						}
					}
					sec++
				}
				if err := s.Append(ctx, rs); err != nil {
					b.Fatal(err)
				}
				c0 := cpuTime()
				if err := s.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				cpu += int64(cpuTime() - c0)
				n += int64(len(rs))
			}
			b.ReportMetric(float64(cpu)/1000/float64(n), "flush-cpu-µs/reading")
		})
	}
}
