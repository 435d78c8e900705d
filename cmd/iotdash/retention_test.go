package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"iotdash/devices"
	"iotdash/internal/testenv"
	"iotdash/store/sqlite"
)

// TestRetentionEndToEnd starts iotdash with -retention 1h on a store that
// holds readings of a day ago and of three hours ago besides recent ones:
// within a minute the old raw readings are gone from the history API and
// from the file's size, the three-hour-old hour is still there in its
// summaries, and the recent readings are all there, untouched.
func TestRetentionEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "iotdash.db")
	now := time.Now().UnixMilli()
	const hour = int64(3600000)
	db, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 3))
	write := func(metric string, from, to int64) {
		t.Helper()
		var rs []devices.Reading
		for ms := from; ms < to; ms += 1000 {
			// Noise compresses badly: the file's size is mostly readings.
			rs = append(rs, devices.Reading{Device: "sensor-1", Metric: metric, Time: ms, Value: r.NormFloat64()})
		}
		if err := db.Append(context.Background(), rs); err != nil {
			t.Fatal(err)
		}
	}
	write("old", now-30*hour, now-24*hour)
	write("hours", now-3*hour, now-2*hour)
	recentFrom := now - 20*60000
	write("recent", recentFrom, now)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()

	in := startInProcess(t, "-data", dir, "-simulate", "0", "-retention", "1h", "-rollup-retention", "12h")
	points := func(metric string, from, to int64, step string) [][2]float64 {
		var a queryAnswer
		q := fmt.Sprintf("/api/v1/query?device=sensor-1&metric=%s&from=%d&to=%d&step=%s", metric, from, to, step)
		switch code := getJSON(t, in.URL, q, &a); {
		case code == 404 && metric == "old":
			// The fleet lists the stored devices once started: if the
			// sweep has already taken every reading and summary of old,
			// the metric is not known, and a 404 says it is gone.
		case code != 200:
			t.Fatalf("GET %s: %d", q, code)
		}
		return a.Points
	}
	testenv.WaitFor(t, time.Minute, "the old readings to leave the store and the file", func() bool {
		return len(points("old", now-31*hour, now-23*hour, "raw")) == 0 &&
			len(points("hours", now-4*hour, now-hour, "raw")) == 0 &&
			size() < before/3
	})
	t.Logf("file: %d bytes before, %d after", before, size())
	if got := points("old", now-31*hour, now-23*hour, "1h"); len(got) != 0 {
		t.Errorf("readings past -rollup-retention still summarised: %v", got)
	}
	if got := points("hours", now-4*hour, now-hour, "1h"); len(got) == 0 {
		t.Errorf("the hour past -retention has no summaries left")
	}
	if got := points("recent", recentFrom, now, "raw"); len(got) != 20*60 {
		t.Errorf("%d recent readings, want %d", len(got), 20*60)
	}
}
