package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"iotdash/devices"
	"iotdash/store"
	"iotdash/store/sqlite"
	"iotdash/store/storetest"
)

const t0 = int64(1767225600000) // 2026-01-01T00:00:00Z

// value is a plausible sensor value for series i at time ms, kept to two
// decimals as a sensor reports it: round(20 + i + 2·sin(2π·day) + noise,
// 2), the noise uniform in ±0.2 (a hash of i and ms, so repeatable).
func value(i int, ms int64) float64 {
	x := float64(ms) / 86400e3 * 2 * math.Pi
	h := uint64(ms)*0x9E3779B97F4A7C15 ^ uint64(i)*0xBF58476D1CE4E5B9
	h ^= h >> 31
	h *= 0x94D049BB133111EB
	h ^= h >> 29
	noise := (float64(h>>11)/(1<<53) - 0.5) * 0.4
	return math.Round((20+float64(i)+2*math.Sin(x)+noise)*100) / 100
}

// BenchmarkAppend measures group commits of batch readings from 20 devices
// reporting once a second, each commit fsynced, and the flushes of the
// readings into the file (the last one after the loop, in the CPU time).
func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{20, 500, 5000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			// Without compaction, which TestBigLoad measures beside ingest.
			s, err := sqlite.OpenWith(filepath.Join(b.TempDir(), "iotdash.db"), sqlite.Options{Interval: -1})
			if err != nil {
				b.Fatal(err)
			}
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
			if err := s.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "readings/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(n), "cpu-µs/reading")
		})
	}
}

// TestBigLoad loads 17 series at 1 Hz for 7 days (10,281,600 readings) in
// commits of 500, the store's clock following the readings so that its
// compactor works as it would live, and reports the ingest rate, the
// file's bytes per reading once every closed hour is compacted (and how
// they divide between tables), and the time of 7-day downsamples of one
// series. It takes minutes, so it runs only with IOTDASH_BENCH_BIG=1;
// IOTDASH_BENCH_DIR keeps the file, and a later run finds it loaded and
// only queries:
//
//	IOTDASH_BENCH_BIG=1 go test -run TestBigLoad -v -timeout 30m ./store/sqlite
func TestBigLoad(t *testing.T) {
	if os.Getenv("IOTDASH_BENCH_BIG") != "1" {
		t.Skip("set IOTDASH_BENCH_BIG=1 to load 10 million readings (minutes)")
	}
	const (
		nSeries = 17
		days    = 7
		n1      = days * 86400 // readings per series
	)
	q := store.Query{Device: "dev-00", Metric: "temperature", From: t0, To: t0 + n1*1000}
	s, path := bigStore(t, "iotdash.db", nSeries, days, 500, q)
	defer s.Close()
	reportSize(t, path, nSeries*n1)
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
		timeQuery(t, s, q, "7 days")
	}
}

// TestYearLoad loads a year of one series at 1 Hz (31,536,000 readings)
// like TestBigLoad, in commits of 5,000, and reports the time of a year and of its last 7 days
// to 1,000 points. It runs only with IOTDASH_BENCH_YEAR=1:
//
//	IOTDASH_BENCH_YEAR=1 go test -run TestYearLoad -v -timeout 60m ./store/sqlite
func TestYearLoad(t *testing.T) {
	if os.Getenv("IOTDASH_BENCH_YEAR") != "1" {
		t.Skip("set IOTDASH_BENCH_YEAR=1 to load a year of one series at 1 Hz (many minutes)")
	}
	const days = 365
	year := store.Query{Device: "dev-00", Metric: "temperature", From: t0, To: t0 + days*86400000}
	s, path := bigStore(t, "year.db", 1, days, 5000, year)
	defer s.Close()
	reportSize(t, path, days*86400)
	week := year
	week.From = year.To - 7*86400000
	for _, c := range []struct {
		q    store.Query
		what string
		step int64
		agg  store.Agg
	}{
		{year, "a year", (year.To - year.From) / 1000, store.AggMean}, // exactly 1,000 points
		{year, "a year", (year.To - year.From) / 1000, store.AggMinMax},
		{year, "a year", 12 * 3600000, store.AggMean}, // the nice step of step=auto: 730 points
		{week, "7 days", (week.To - week.From) / 1000, store.AggMean},
		{week, "7 days", 600000, store.AggMean},
	} {
		c.q.Step, c.q.Agg = c.step, c.agg
		timeQuery(t, s, c.q, c.what)
	}
}

// bigStore opens the file name in IOTDASH_BENCH_DIR (or a temporary
// directory) and, unless it holds q's series in full already, loads
// nSeries series at 1 Hz for days days into it in commits of batch, with
// the store's clock at the latest reading. It then compacts what is left
// and reopens the file, which checkpoints the WAL.
func bigStore(t *testing.T, name string, nSeries int, days int64, batch int, q store.Query) (*sqlite.Store, string) {
	dir := os.Getenv("IOTDASH_BENCH_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, name)
	ctx := context.Background()
	var clock atomic.Int64
	clock.Store(t0)
	opts := sqlite.Options{Now: func() time.Time { return time.UnixMilli(clock.Load()) }, Interval: time.Second}
	s, err := sqlite.OpenWith(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	n1 := days * 86400
	count := q
	count.Step, count.Agg = q.To-q.From, store.AggCount
	if got, err := s.Query(ctx, count); err == nil {
		n := 0.0
		for _, p := range got {
			n += p.V
		}
		if n == float64(n1) {
			return s, path
		}
	}
	start := time.Now()
	cpu0 := cpuTime()
	rs := make([]devices.Reading, 0, batch)
	total := 0
	for sec := range n1 {
		ms := t0 + sec*1000
		for i := range nSeries {
			rs = append(rs, devices.Reading{Device: fmt.Sprintf("dev-%02d", i), Metric: "temperature", Time: ms, Value: value(i, ms)})
			if len(rs) == batch {
				if err := s.Append(ctx, rs); err != nil {
					t.Fatal(err)
				}
				total += len(rs)
				rs = rs[:0]
				clock.Store(ms)
			}
		}
	}
	if err := s.Append(ctx, rs); err != nil {
		t.Fatal(err)
	}
	total += len(rs)
	el := time.Since(start)
	cpu1 := cpuTime()
	t.Logf("ingest with compaction beside it: %d readings in %v: %.0f readings/s, %.2f µs CPU a reading; %d of %d series-hours compacted meanwhile",
		total, el.Round(time.Millisecond), float64(total)/el.Seconds(), float64((cpu1-cpu0).Microseconds())/float64(total), tableRows(t, path)["blocks"], int64(nSeries)*n1/3600)
	clock.Store(t0 + n1*1000 + 3600000)
	start = time.Now()
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("the rest compacted after in %v, %.2f µs CPU a reading loaded", time.Since(start).Round(time.Millisecond), float64((cpuTime()-cpu1).Microseconds())/float64(total))
	s.Close()
	if s, err = sqlite.OpenWith(path, opts); err != nil {
		t.Fatal(err)
	}
	return s, path
}

// reportSize logs the bytes a reading of the file at path, and how they
// divide between its tables and indexes.
func reportSize(t *testing.T, path string, readings int64) {
	size := int64(0)
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(path + suffix); err == nil {
			size += fi.Size()
		}
	}
	t.Logf("disk: %d bytes, %.2f bytes/reading", size, float64(size)/float64(readings))
	db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC`)
	if err != nil {
		t.Logf("no per-table sizes: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		t.Logf("  %-40s %12d bytes  %.3f bytes/reading", name, n, float64(n)/float64(readings))
	}
}

// timeQuery logs the least and the median time of 9 runs of q, and the
// CPU time they took on average: on a machine shared with other work the
// CPU time is nearer what q costs than the time it waits to run.
func timeQuery(t *testing.T, s *sqlite.Store, q store.Query, what string) {
	ctx := context.Background()
	var times []time.Duration
	var points int
	cpu0 := cpuTime()
	for range 9 {
		start := time.Now()
		got, err := s.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, time.Since(start))
		points = len(got)
	}
	cpu := (cpuTime() - cpu0) / 9
	slices.Sort(times)
	t.Logf("query %s step=%dms agg=%s: %d points, CPU %v a query; least %v, median of 9 %v", what, q.Step, q.Agg, points, cpu.Round(time.Millisecond/10), times[0].Round(time.Millisecond/10), times[4].Round(time.Millisecond/10))
}

// BenchmarkQueries downsamples a week (a day without IOTDASH_BENCH_BIG=1)
// of 1 Hz readings of one metric, compacted, and reads all of it; see
// storetest.Benchmark.
func BenchmarkQueries(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "iotdash.db"))
	defer s.Close()
	storetest.Benchmark(b, compacting{s})
}

// cpuTime is the process's CPU time so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
