package storetest

import (
	"context"
	"fmt"
	"math"
	"os"
	"testing"

	"iotdash/devices"
	"iotdash/store"
)

// BenchDays is how many days of 1 Hz readings the benchmarks load: 7
// (604,800 readings) with IOTDASH_BENCH_BIG=1, else 1 so that a plain
// `go test -bench` stays quick.
func BenchDays() int64 {
	if os.Getenv("IOTDASH_BENCH_BIG") == "1" {
		return 7
	}
	return 1
}

// Week returns one metric of one device at 1 Hz for days days from
// 2026-01-01: a daily wave with noise, kept to two decimals as a sensor
// reports it, in time order; and the raw query of all of it.
func Week(days int64) ([]devices.Reading, store.Query) {
	n := days * 86400
	rs := make([]devices.Reading, n)
	for sec := range n {
		ms := base + sec*1000
		noise := float64(ms*2654435761%1000) / 1000
		v := math.Round((20+5*math.Sin(float64(ms)/86400e3*2*math.Pi)+noise)*100) / 100
		rs[sec] = devices.Reading{Device: "dev-00", Metric: "temperature", Time: ms, Value: v}
	}
	return rs, store.Query{Device: "dev-00", Metric: "temperature", From: base, To: base + n*1000}
}

// Benchmark loads BenchDays of Week into s and measures a backend's
// queries: 1,000 points of it with steps that cut minutes (exactly 1,000
// steps) and that do not (the 10 minutes step=auto picks for a week, 1,008
// points), and the rate of Readings over all of it.
func Benchmark(b *testing.B, s Store) {
	ctx := context.Background()
	rs, q := Week(BenchDays())
	for len(rs) > 0 {
		n := min(len(rs), 5000)
		if err := s.Append(ctx, rs[:n]); err != nil {
			b.Fatal(err)
		}
		rs = rs[n:]
	}
	days := BenchDays()
	for _, step := range []int64{(q.To - q.From) / 1000, 10 * minute} {
		for _, a := range []store.Agg{store.AggMean, store.AggMax, store.AggMinMax, store.AggLast} {
			b.Run(fmt.Sprintf("days=%d/step=%dms/agg=%s", days, step, a), func(b *testing.B) {
				q := q
				q.Step, q.Agg = step, a
				want := int((q.To - q.From + step - 1) / step)
				for b.Loop() {
					got, err := s.Query(ctx, q)
					if err != nil || len(got) != want {
						b.Fatalf("got %d points, want %d, %v", len(got), want, err)
					}
				}
			})
		}
	}
	b.Run(fmt.Sprintf("days=%d/readings", days), func(b *testing.B) {
		var n int
		for b.Loop() {
			n = 0
			err := s.Readings(ctx, q, func(ps []store.Point) error {
				n += len(ps)
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "readings/s")
	})
}
