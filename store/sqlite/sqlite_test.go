package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"iotdash/devices"
	"iotdash/store"
	"iotdash/store/sqlite"
	"iotdash/store/storetest"
)

var _ storetest.Store = (*sqlite.Store)(nil)

func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.FirstWriteWins, func(t *testing.T) storetest.Store {
		s := open(t, filepath.Join(t.TempDir(), "iotdash.db"))
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	})
}

// compacting is the store with every Append followed by a compaction, so
// that the suite's every query reads compressed hours and every later
// Append lands in them.
type compacting struct{ *sqlite.Store }

func (c compacting) Append(ctx context.Context, rs []devices.Reading) error {
	if err := c.Store.Append(ctx, rs); err != nil {
		return err
	}
	return c.Compact(ctx)
}

// TestConformanceCompacted runs the suite against compressed hours: the
// suite's readings are from 2026-01-01, hours long closed.
func TestConformanceCompacted(t *testing.T) {
	storetest.Run(t, storetest.FirstWriteWins, func(t *testing.T) storetest.Store {
		s, err := sqlite.OpenWith(filepath.Join(t.TempDir(), "iotdash.db"), sqlite.Options{Interval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return compacting{s}
	})
}

// sample is what the durability tests write and then expect to find.
var sample = []devices.Reading{
	{Device: "boiler-1", Metric: "temperature", Time: 1767225600000, Value: 61.5},
	{Device: "boiler-1", Metric: "temperature", Time: 1767225601000, Value: 62},
	{Device: "boiler-1", Metric: "pressure", Time: 1767225601000, Value: 1.2},
}

func checkSample(t *testing.T, s *sqlite.Store) {
	t.Helper()
	got, err := s.Query(context.Background(), store.Query{Device: "boiler-1", Metric: "temperature", From: 1767225600000, To: 1767225602000})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Point{{T: 1767225600000, V: 61.5}, {T: 1767225601000, V: 62}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("after reopening got %v, want %v", got, want)
	}
	got, err = s.Query(context.Background(), store.Query{Device: "boiler-1", Metric: "pressure", From: 1767225600000, To: 1767225602000, Step: 60000, Agg: store.AggCount})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].V != 1 {
		t.Errorf("after reopening pressure count = %v, want one point of 1", got)
	}
}

func TestOpenCreatesDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "iotdash.db")
	s := open(t, path)
	defer s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Open did not create the file: %v", err)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func TestReopenAfterClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "iotdash.db")
	s := open(t, path)
	if err := s.Append(context.Background(), sample); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	defer s.Close()
	checkSample(t, s)
	// Series known from the file take new readings.
	if err := s.Append(context.Background(), []devices.Reading{{Device: "boiler-1", Metric: "pressure", Time: 1767225601500, Value: 1.3}}); err != nil {
		t.Fatal(err)
	}
}

// TestSurvivesKill appends in a child process that then kills itself with
// SIGKILL, never closing the store, and finds the readings afterwards.
func TestSurvivesKill(t *testing.T) {
	if path := os.Getenv("IOTDASH_SQLITE_KILL_CHILD"); path != "" {
		s, err := sqlite.Open(path)
		if err != nil {
			os.Exit(3)
		}
		if err := s.Append(context.Background(), sample); err != nil {
			os.Exit(4)
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	path := filepath.Join(t.TempDir(), "iotdash.db")
	runKilled(t, "TestSurvivesKill", "IOTDASH_SQLITE_KILL_CHILD="+path)
	s := open(t, path)
	defer s.Close()
	checkSample(t, s)
}

func TestPingClosed(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "iotdash.db"))
	s.Close()
	if err := s.Ping(context.Background()); devices.ErrorKind(err) != devices.EUnavailable {
		t.Errorf("Ping on a closed store = %v, want an %s error", err, devices.EUnavailable)
	}
}

// TestQueryWhileAppending reads while one goroutine commits, as the history
// API does beside ingest; run it with -race.
func TestQueryWhileAppending(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "iotdash.db"))
	defer s.Close()
	ctx := context.Background()
	const batches, per = 50, 20
	done := make(chan error, 1)
	go func() {
		for b := range batches {
			rs := make([]devices.Reading, per)
			for i := range rs {
				rs[i] = devices.Reading{Device: "pump", Metric: "flow", Time: 1767225600000 + int64(b*per+i)*1000, Value: float64(i)}
			}
			if err := s.Append(ctx, rs); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	q := store.Query{Device: "pump", Metric: "flow", From: 1767225600000, To: 1767225600000 + batches*per*1000, Step: 60000, Agg: store.AggCount}
	last := 0.0
	for finished := false; !finished; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished = true
		default:
		}
		got, err := s.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		n := 0.0
		for _, p := range got {
			n += p.V
		}
		if n < last || int(n)%per != 0 {
			t.Fatalf("count went from %v to %v: a query saw part of a commit or lost one", last, n)
		}
		last = n
	}
	if last != batches*per {
		t.Errorf("final count %v, want %d", last, batches*per)
	}
}

// TestBatchesMatchSingleReadings checks the multi-row writes against
// appends of one reading each: large batches (more readings and minutes
// than one statement takes), with repeated times in a batch and across
// batches, new values and redeliveries, must leave the same readings and
// the same answers to downsampling queries.
func TestBatchesMatchSingleReadings(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	batched, single := open(t, filepath.Join(dir, "batched.db")), open(t, filepath.Join(dir, "single.db"))
	defer batched.Close()
	defer single.Close()
	const t0 = int64(1767225600000)
	var batches [][]devices.Reading
	for b := range 3 {
		var rs []devices.Reading
		for i := range 700 {
			n := (i*7 + b*311) % 1500 // later batches repeat earlier times
			v := float64(n%97) + float64(b%2)*0.5*float64(i%3)
			rs = append(rs, devices.Reading{Device: fmt.Sprintf("dev-%d", n%10), Metric: fmt.Sprintf("m%d", n%3), Time: t0 + int64(n/60)*5000, Value: v})
		}
		batches = append(batches, rs)
	}
	for _, rs := range batches {
		if err := batched.Append(ctx, rs); err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if err := single.Append(ctx, []devices.Reading{r}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for d := range 10 {
		for m := range 3 {
			raw := store.Query{Device: fmt.Sprintf("dev-%d", d), Metric: fmt.Sprintf("m%d", m), From: t0 - 3600000, To: t0 + 3600000}
			want, err := single.Query(ctx, raw)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := batched.Query(ctx, raw); err != nil || len(want) == 0 || !slices.Equal(got, want) {
				t.Fatalf("%+v: batched gives %v (%v), single readings give %v", raw, got, err, want)
			}
			for _, q := range []store.Query{{Step: 60000, Agg: store.AggMinMax}, {Step: 60000, Agg: store.AggSum}, {Step: 600000, Agg: store.AggFirst}, {Step: 600000, Agg: store.AggLast}, {Step: 60000, Agg: store.AggCount}} {
				q.Device, q.Metric, q.From, q.To = raw.Device, raw.Metric, raw.From, raw.To
				want := downsample(want, q)
				for _, s := range []*sqlite.Store{batched, single} {
					got, err := s.Query(ctx, q)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(got, want) {
						t.Fatalf("%+v: got %v, the readings give %v", q, got, want)
					}
				}
			}
		}
	}
}

// downsample is q's answer computed from the raw points ps, in time order.
func downsample(ps []store.Point, q store.Query) []store.Point {
	var out []store.Point
	for _, p := range ps {
		start := p.T - p.T%q.Step
		if len(out) == 0 || out[len(out)-1].T != start {
			out = append(out, store.Point{T: start, V: p.V, Max: p.V})
			if q.Agg == store.AggCount {
				out[len(out)-1].V = 1
			}
			if q.Agg != store.AggMinMax {
				out[len(out)-1].Max = 0
			}
			continue
		}
		o := &out[len(out)-1]
		switch q.Agg {
		case store.AggMinMax:
			o.V, o.Max = min(o.V, p.V), max(o.Max, p.V)
		case store.AggSum:
			o.V += p.V
		case store.AggLast:
			o.V = p.V
		case store.AggCount:
			o.V++
		}
	}
	return out
}

// tableRows counts the rows of each table in the store's file, read beside
// the store as another process would.
func tableRows(t *testing.T, path string) map[string]int {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]int{}
	for _, table := range []string{"readings", "chunks", "minutes", "blocks", "hours", "hour_minutes"} {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[table] = n
	}
	return out
}

// TestCompactMovesHoursIntoBlocks compacts two closed hours and leaves the
// open one as a chunk; the answers stay the same.
func TestCompactMovesHoursIntoBlocks(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "iotdash.db")
	now := time.Date(2026, 1, 1, 2, 30, 0, 0, time.UTC)
	s, err := sqlite.OpenWith(path, sqlite.Options{Interval: -1, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var rs []devices.Reading
	for sec := range int64(2*3600 + 1800) {
		rs = append(rs, devices.Reading{Device: "d", Metric: "m", Time: t0 + sec*1000, Value: value(0, t0+sec*1000)})
	}
	if err := s.Append(ctx, rs); err != nil {
		t.Fatal(err)
	}
	queries := []store.Query{
		{Device: "d", Metric: "m", From: t0, To: t0 + 3*3600000},
		{Device: "d", Metric: "m", From: t0, To: t0 + 3*3600000, Step: 600000, Agg: store.AggMean},
		{Device: "d", Metric: "m", From: t0 + 1234, To: t0 + 3*3600000, Step: 3600000, Agg: store.AggMinMax},
	}
	var before [][]store.Point
	for _, q := range queries {
		got, err := s.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, got)
	}
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"readings": 0, "chunks": 1, "minutes": 0, "blocks": 2, "hours": 2, "hour_minutes": 2}
	if got := tableRows(t, path); !maps.Equal(got, want) {
		t.Errorf("after Compact the tables hold %v, want %v", got, want)
	}
	for i, q := range queries {
		got, err := s.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if !nearPoints(got, before[i]) {
			t.Errorf("%+v: after Compact %d points, before %d (or other values)", q, len(got), len(before[i]))
		}
	}
}

// nearPoints says whether a and b have the same times and values equal but
// for the rounding of sums.
func nearPoints(a, b []store.Point) bool {
	return slices.EqualFunc(a, b, func(p, q store.Point) bool {
		near := func(x, y float64) bool { return math.Abs(x-y) <= 1e-9*math.Max(1, math.Abs(y)) }
		return p.T == q.T && near(p.V, q.V) && near(p.Max, q.Max)
	})
}
