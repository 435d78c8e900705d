package sqlite_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"iotdash/devices"
	"iotdash/store"
	"iotdash/store/sqlite"
)

// metrics are the series the write path's tests write, all of device "d".
var metrics = []string{"a", "b", "c"}

// batchOf returns the readings of seconds from to to of every metric.
func batchOf(from, to int64) []devices.Reading {
	var rs []devices.Reading
	for sec := from; sec < to; sec++ {
		for i, m := range metrics {
			rs = append(rs, devices.Reading{Device: "d", Metric: m, Time: t0 + sec*1000, Value: value(i, sec)})
		}
	}
	return rs
}

// held checks that s holds, of each metric, the readings of seconds 0 to
// n-1 and of at most extra seconds after, each once, and returns how many
// seconds it holds.
func held(t *testing.T, s *sqlite.Store, n, extra int64, when string) int64 {
	t.Helper()
	ctx := context.Background()
	var got int64 = -1
	for i, m := range metrics {
		q := store.Query{Device: "d", Metric: m, From: t0, To: t0 + 1e9}
		ps, err := s.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for j, p := range ps {
			if p.T != t0+int64(j)*1000 || p.V != value(i, int64(j)) {
				t.Fatalf("%s: %s's reading %d is %+v, want second %d", when, m, j, p, j)
			}
		}
		if k := int64(len(ps)); k < n || k > n+extra {
			t.Fatalf("%s: %s holds %d seconds, want %d acknowledged and at most %d more", when, m, k, n, extra)
		}
		q.Step, q.Agg = 1e9, store.AggCount
		counts, err := s.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(counts) != 1 || counts[0].V != float64(len(ps)) {
			t.Fatalf("%s: %s counts %v readings, want %d: some are held twice", when, m, counts, len(ps))
		}
		if got >= 0 && got != int64(len(ps)) {
			// A group commit is all or nothing.
			t.Fatalf("%s: %s holds %d seconds, the metric before it %d", when, m, len(ps), got)
		}
		got = int64(len(ps))
	}
	return got
}

// TestKillDuringFlush kills a child process with SIGKILL while it appends
// with frequent flushes and compactions beside them, at a later moment each
// round, and checks after each kill that every acknowledged reading is
// there, once, and nothing else but the group being appended.
func TestKillDuringFlush(t *testing.T) {
	if path := os.Getenv("IOTDASH_SQLITE_FLUSH_CHILD"); path != "" {
		from, _ := strconv.ParseInt(os.Getenv("IOTDASH_SQLITE_FROM"), 10, 64)
		after, _ := strconv.Atoi(os.Getenv("IOTDASH_SQLITE_KILL_AFTER_MS"))
		s, err := sqlite.OpenWith(path, sqlite.Options{FlushInterval: 5 * time.Millisecond, HeadReadings: 500, Interval: 20 * time.Millisecond})
		if err != nil {
			os.Exit(3)
		}
		time.AfterFunc(time.Duration(after)*time.Millisecond, func() { syscall.Kill(os.Getpid(), syscall.SIGKILL) })
		for sec := from; ; sec += 20 {
			if err := s.Append(context.Background(), batchOf(sec, sec+20)); err != nil {
				os.Exit(4)
			}
			fmt.Println(sec + 20) // acknowledged
		}
	}
	path := filepath.Join(t.TempDir(), "iotdash.db")
	var n int64
	for _, ms := range []int{20, 50, 100, 200, 300, 500} {
		out := runKilled(t, "TestKillDuringFlush", "IOTDASH_SQLITE_FLUSH_CHILD="+path, "IOTDASH_SQLITE_FROM="+strconv.FormatInt(n, 10), "IOTDASH_SQLITE_KILL_AFTER_MS="+strconv.Itoa(ms))
		acked := n
		for sc := bufio.NewScanner(bytes.NewReader(out)); sc.Scan(); {
			if v, err := strconv.ParseInt(sc.Text(), 10, 64); err == nil {
				acked = v
			}
		}
		s, err := sqlite.OpenWith(path, sqlite.Options{Interval: -1, FlushInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		// Replayed from the log, then flushed: the same either way.
		when := fmt.Sprintf("killed %d ms into appending", ms)
		got := held(t, s, acked, 20, when)
		if err := s.Compact(context.Background()); err != nil {
			t.Fatal(err)
		}
		held(t, s, got, 0, when+", flushed and compacted")
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d seconds acknowledged, %d held; tables %v", when, acked, got, tableRows(t, path))
		n = got
	}
	if n == 0 {
		t.Fatal("no child acknowledged anything: the test proves nothing")
	}
}

// TestReplaysLogAfterCrash kills a child that has appended without a
// flush: the readings are only in the log, which the next Open replays.
func TestReplaysLogAfterCrash(t *testing.T) {
	if path := os.Getenv("IOTDASH_SQLITE_REPLAY_CHILD"); path != "" {
		s, err := sqlite.OpenWith(path, sqlite.Options{FlushInterval: -1, Interval: -1})
		if err != nil {
			os.Exit(3)
		}
		for sec := int64(0); sec < 3600; sec += 100 {
			if err := s.Append(context.Background(), batchOf(sec, sec+100)); err != nil {
				os.Exit(4)
			}
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	path := filepath.Join(t.TempDir(), "iotdash.db")
	runKilled(t, "TestReplaysLogAfterCrash", "IOTDASH_SQLITE_REPLAY_CHILD="+path)
	if got := tableRows(t, path); got["chunks"] != 0 || got["readings"] != 0 {
		t.Fatalf("the child's file holds %v, want nothing: its readings should be only in the log", got)
	}
	for round := range 2 {
		s, err := sqlite.OpenWith(path, sqlite.Options{FlushInterval: -1, Interval: -1})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := s.Unflushed(), 3*3600*(1-round); got != want {
			t.Errorf("round %d: %d readings replayed into memory, want %d", round, got, want)
		}
		held(t, s, 3600, 0, fmt.Sprintf("opened after the crash, round %d", round))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got := tableRows(t, path); got["chunks"] != 3 {
		t.Errorf("after Close the file holds %v, want the hour of each of 3 series as a chunk", got)
	}
}

// TestReadYourWrite reads each group back as soon as Append returns, while
// the flusher moves the head into the file as often as it can: each reading
// is seen, and counted once, whenever its flush commits.
func TestReadYourWrite(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.OpenWith(filepath.Join(t.TempDir(), "iotdash.db"), sqlite.Options{FlushInterval: time.Millisecond, HeadReadings: 50, Interval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() { // queries beside, to race the flushes
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Devices(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	for sec := int64(0); sec < 600; sec += 5 {
		if err := s.Append(ctx, batchOf(sec, sec+5)); err != nil {
			t.Fatal(err)
		}
		held(t, s, sec+5, 0, fmt.Sprintf("after appending second %d", sec+4))
		ds, err := s.Devices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != 1 || ds[0].LastSeen != t0+(sec+4)*1000 || len(ds[0].Latest) != len(metrics) {
			t.Fatalf("after appending second %d, Devices = %+v", sec+4, ds)
		}
		var n int
		err = s.Readings(ctx, store.Query{Device: "d", Metric: "b", From: t0, To: t0 + 1e9}, func(ps []store.Point) error {
			n += len(ps)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != int(sec+5) {
			t.Fatalf("after appending second %d, Readings gives %d, want %d", sec+4, n, sec+5)
		}
	}
}

// TestHeadBounded appends far more than the head holds, with the flusher
// off: Append flushes itself, and the readings in memory never pass twice
// HeadReadings and a group.
func TestHeadBounded(t *testing.T) {
	ctx := context.Background()
	const limit = 1000
	s, err := sqlite.OpenWith(filepath.Join(t.TempDir(), "iotdash.db"), sqlite.Options{FlushInterval: -1, HeadReadings: limit, Interval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	most := 0
	for sec := int64(0); sec < 10000; sec += 50 {
		if err := s.Append(ctx, batchOf(sec, sec+50)); err != nil {
			t.Fatal(err)
		}
		most = max(most, s.Unflushed())
	}
	if bound := 2*limit + 150; most > bound || most < limit {
		t.Errorf("at most %d readings in memory, want between %d and %d", most, limit, bound)
	}
	held(t, s, 10000, 0, "after 30,000 readings")
}

// TestAppendAfterClose fails as the store's file being gone does.
func TestAppendAfterClose(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "iotdash.db"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(context.Background(), batchOf(0, 1)); devices.ErrorKind(err) != devices.EUnavailable {
		t.Errorf("Append after Close = %v, want %s", err, devices.EUnavailable)
	}
}
