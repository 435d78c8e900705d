package sqlite_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"iotdash/devices"
	"iotdash/store"
	"iotdash/store/storetest"
)

const t0 = int64(1767225600000) // 2026-01-01T00:00:00Z

// value is a plausible sensor value for series i at time ms: a daily wave
// with noise, kept to two decimals as a sensor would report it.
func value(i int, ms int64) float64 {
	x := float64(ms) / 86400e3 * 2 * math.Pi
	noise := float64((ms*2654435761+int64(i)*97)%1000) / 1000
	return math.Round((20+float64(i)+5*math.Sin(x)+noise)*100) / 100
}

// BenchmarkAppend measures group commits of batch readings from 20 devices
// reporting once a second, each commit fsynced.
func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 20, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := open(b, filepath.Join(b.TempDir(), "iotdash.db"))
			defer s.Close()
			ctx := context.Background()
			rs := make([]devices.Reading, batch)
			n := 0
			b.ResetTimer()
			cpu0 := cpuTime()
			for b.Loop() {
				for j := range rs {
					dev := n % 20
					rs[j] = devices.Reading{Device: fmt.Sprintf("dev-%02d", dev), Metric: "temperature", Time: t0 + int64(n/20)*1000, Value: value(dev, int64(n))}
					n++
				}
				if err := s.Append(ctx, rs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "readings/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(n), "cpu-µs/reading")
		})
	}
}

// TestBigLoad loads 17 series at 1 Hz for 7 days (10,281,600 readings) in
// commits of 500 and reports the file's bytes per reading, the ingest rate
// and the time of 7-day downsamples of one series. It takes minutes, so it
// runs only with IOTDASH_BENCH_BIG=1; IOTDASH_BENCH_DIR keeps the file, and
// a later run finds it loaded and only queries.
func TestBigLoad(t *testing.T) {
	if os.Getenv("IOTDASH_BENCH_BIG") != "1" {
		t.Skip("set IOTDASH_BENCH_BIG=1 to load 10 million readings (minutes)")
	}
	const (
		nSeries = 17
		days    = 7
		batch   = 500
		n1      = days * 86400 // readings per series
	)
	dir := os.Getenv("IOTDASH_BENCH_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "iotdash.db")
	ctx := context.Background()
	s := open(t, path)
	defer s.Close()
	q := store.Query{Device: "dev-00", Metric: "temperature", From: t0, To: t0 + n1*1000}
	if got, err := s.Query(ctx, store.Query{Device: q.Device, Metric: q.Metric, From: q.From, To: q.To, Step: q.To - q.From, Agg: store.AggCount}); err != nil || len(got) == 0 || got[0].V != n1 {
		start := time.Now()
		rs := make([]devices.Reading, 0, batch)
		total := 0
		for sec := range int64(n1) {
			for i := range nSeries {
				ms := t0 + sec*1000
				rs = append(rs, devices.Reading{Device: fmt.Sprintf("dev-%02d", i), Metric: "temperature", Time: ms, Value: value(i, ms)})
				if len(rs) == batch {
					if err := s.Append(ctx, rs); err != nil {
						t.Fatal(err)
					}
					total += len(rs)
					rs = rs[:0]
				}
			}
		}
		if err := s.Append(ctx, rs); err != nil {
			t.Fatal(err)
		}
		total += len(rs)
		el := time.Since(start)
		t.Logf("ingest: %d readings in %v: %.0f readings/s", total, el.Round(time.Millisecond), float64(total)/el.Seconds())
		s.Close()
		s = open(t, path) // checkpoints the WAL into the file
	}
	size := int64(0)
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(path + suffix); err == nil {
			size += fi.Size()
		}
	}
	t.Logf("disk: %d bytes, %.1f bytes/reading", size, float64(size)/(nSeries*n1))
	for _, c := range []struct {
		step int64
		agg  store.Agg
	}{
		{604800, store.AggMean}, // exactly 1,000 points
		{600000, store.AggMean}, // 10 minutes: 1,008 points
		{600000, store.AggMax},
		{600000, store.AggFirst},
		{0, ""}, // every reading
	} {
		q.Step, q.Agg = c.step, c.agg
		var times []time.Duration
		var points int
		for range 5 {
			start := time.Now()
			got, err := s.Query(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			times = append(times, time.Since(start))
			points = len(got)
		}
		slices.Sort(times)
		t.Logf("query 7 days step=%dms agg=%s: %d points, median of 5 %v", c.step, c.agg, points, times[2].Round(time.Millisecond/10))
	}
}

// BenchmarkQueries downsamples a week (a day without IOTDASH_BENCH_BIG=1)
// of 1 Hz readings of one metric and reads all of it; see
// storetest.Benchmark.
func BenchmarkQueries(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "iotdash.db"))
	defer s.Close()
	storetest.Benchmark(b, s)
}

// cpuTime is the process's CPU time so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
