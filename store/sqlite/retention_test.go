package sqlite_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"iotdash/devices"
	"iotdash/store"
	"iotdash/store/sqlite"
)

// TestRetention keeps raw readings an hour and summaries a day: readings
// three hours old leave their raw readings and keep their summaries,
// readings three days old leave altogether, recent ones stay, and the file
// gives the space back.
func TestRetention(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "iotdash.db")
	now := t0 + 10*86400000
	clock := func() time.Time { return time.UnixMilli(now) }
	// Written and compacted with everything kept, then opened again with
	// retention, as when -retention is set on an older store.
	s, err := sqlite.OpenWith(path, sqlite.Options{Interval: -1, Now: clock})
	if err != nil {
		t.Fatal(err)
	}

	r := rand.New(rand.NewPCG(1, 1))
	write := func(metric string, from, to int64) {
		t.Helper()
		var rs []devices.Reading
		for ms := from; ms < to; ms += 1000 {
			// Noise, which compresses badly, to give the file some size.
			rs = append(rs, devices.Reading{Device: "d", Metric: metric, Time: ms, Value: r.NormFloat64()})
		}
		if err := s.Append(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	hours := func(n int64) int64 { return n * 3600000 }
	write("old", now-3*86400000, now-3*86400000+hours(30)) // past both retentions
	write("hours", now-hours(3), now-hours(2))             // past raw retention
	write("recent", now-hours(1)+hours(1)/2, now)          // kept
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	before := fileSize(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = sqlite.OpenWith(path, sqlite.Options{Retention: time.Hour, RollupRetention: 24 * time.Hour, Interval: -1, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	// A reading late into an hour whose raw readings are gone goes too.
	if err := s.Append(ctx, []devices.Reading{{Device: "d", Metric: "hours", Time: now - hours(3) + 500, Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	after := fileSize(t, path)
	t.Logf("file: %d bytes before the sweep, %d after", before, after)
	if after > before/2 {
		t.Errorf("file is %d bytes after the sweep, %d before: want less than half", after, before)
	}

	count := func(metric string, from, to int64) (raw, summarised float64) {
		t.Helper()
		q := store.Query{Device: "d", Metric: metric, From: from, To: to}
		got, err := s.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		q.Step, q.Agg = to-from, store.AggCount
		sum, err := s.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(sum) == 1 {
			summarised = sum[0].V
		}
		return float64(len(got)), summarised
	}
	for _, c := range []struct {
		metric                  string
		from, to                int64
		wantRaw, wantSummarised float64
	}{
		{"old", now - 3*86400000, now, 0, 0},
		{"hours", now - hours(4), now, 0, 3600},
		{"recent", now - hours(1), now, 1800, 1800},
	} {
		raw, summarised := count(c.metric, c.from, c.to)
		if raw != c.wantRaw || summarised != c.wantSummarised {
			t.Errorf("%s: %v raw readings and a count of %v, want %v and %v", c.metric, raw, summarised, c.wantRaw, c.wantSummarised)
		}
	}
}

// fileSize is the size of the store's main file; its WAL is bounded apart.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestLateReadingsBetweenPasses: with the clock still, so that every pass
// after the first has the same cutoffs and looks only at the series a
// flush has given chunks to, late readings are still compacted into their
// hour, and a backfill older than raw retention keeps only its hour's
// summaries, or nothing at all past rollup retention.
func TestLateReadingsBetweenPasses(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "iotdash.db")
	now := t0 + 10*86400000 + 1800000 // half past an hour
	s, err := sqlite.OpenWith(path, sqlite.Options{Retention: 6 * time.Hour, RollupRetention: 24 * time.Hour,
		Interval: -1, Now: func() time.Time { return time.UnixMilli(now) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hours := func(n int64) int64 { return n * 3600000 }
	hourOf := func(ago int64) int64 { return store.FloorTo(now, 3600000) - hours(ago) }
	appendHour := func(metric string, h int64, step int64) {
		t.Helper()
		var rs []devices.Reading
		for ms := h; ms < h+hours(1); ms += step {
			rs = append(rs, devices.Reading{Device: "d", Metric: metric, Time: ms, Value: float64(ms%1000) / 10})
		}
		if err := s.Append(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	step := func(want map[string]int) {
		t.Helper()
		if err := s.Compact(ctx); err != nil {
			t.Fatal(err)
		}
		got := tableRows(t, path)
		for table, n := range want {
			if got[table] != n {
				t.Errorf("%s holds %d rows, want %d (all: %v)", table, got[table], n, got)
			}
		}
	}

	appendHour("m", hourOf(2), 10000) // 360 readings, 2 hours ago
	appendHour("other", hourOf(2), 10000)
	step(map[string]int{"chunks": 0, "blocks": 2, "hours": 2})

	// Late into the compacted hour of "m": merged into its block.
	if err := s.Append(ctx, []devices.Reading{{Device: "d", Metric: "m", Time: hourOf(2) + 5000, Value: 7}}); err != nil {
		t.Fatal(err)
	}
	step(map[string]int{"chunks": 0, "blocks": 2, "hours": 2})
	got, err := s.Query(ctx, store.Query{Device: "d", Metric: "m", From: hourOf(2), To: hourOf(2) + 10001})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[1] != (store.Point{T: hourOf(2) + 5000, V: 7}) {
		t.Errorf("the hour's first 10 s read %v, want the late reading between the two first", got)
	}

	// A backfill 10 hours ago, past raw retention: its summaries stay.
	appendHour("m", hourOf(10), 60000)
	step(map[string]int{"chunks": 0, "blocks": 2, "hours": 3, "hour_minutes": 3})
	got, err = s.Query(ctx, store.Query{Device: "d", Metric: "m", From: hourOf(10), To: hourOf(9), Step: hours(1), Agg: store.AggCount})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].V != 60 {
		t.Errorf("the backfilled hour counts %v, want one step of 60 readings", got)
	}

	// A backfill 30 hours ago, past both: nothing of it stays.
	appendHour("m", hourOf(30), 60000)
	step(map[string]int{"chunks": 0, "blocks": 2, "hours": 3, "hour_minutes": 3})
}
