package journal_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"iotdash/devices"
	"iotdash/internal/testenv"
	"iotdash/store/journal"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// recorder is a Writer that keeps what it is given, and fails while down.
type recorder struct {
	down  atomic.Bool
	calls atomic.Int64
	// bad, if set, says which batches are bad data.
	bad func([]devices.Reading) bool

	mu  sync.Mutex
	got []devices.Reading
}

func (r *recorder) Append(ctx context.Context, rs []devices.Reading) error {
	r.calls.Add(1)
	if r.down.Load() {
		return devices.Errorf(devices.EUnavailable, "the store is down")
	}
	if r.bad != nil && r.bad(rs) {
		return devices.Errorf(devices.EInvalid, "bad data")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, rs...)
	return nil
}

func (r *recorder) readings() []devices.Reading {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func open(t testing.TB, path string, opts journal.Options) *journal.Journal {
	t.Helper()
	j, err := journal.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// readings returns n readings whose values count up from first.
func readings(first, n int) []devices.Reading {
	rs := make([]devices.Reading, n)
	for i := range rs {
		v := first + i
		rs[i] = devices.Reading{Device: fmt.Sprintf("dev-%d", v%3), Metric: "m", Time: 1767225600000 + int64(v), Value: float64(v)}
	}
	return rs
}

// drain runs j.Drain into w until the test ends.
func drain(t *testing.T, j *journal.Journal, w journal.Writer, batch int) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- j.Drain(ctx, w, batch) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Drain: %v", err)
		}
	})
}

func sameReadings(t *testing.T, got, want []devices.Reading) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d readings, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("reading %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestDrainKeepsOrder(t *testing.T) {
	j := open(t, filepath.Join(t.TempDir(), "j.db"), journal.Options{})
	var w recorder
	drain(t, j, &w, 7)
	ctx := context.Background()
	var want []devices.Reading
	for _, n := range []int{1, 5, 20, 3, 100, 1, 13} {
		rs := readings(len(want), n)
		if err := j.Append(ctx, rs); err != nil {
			t.Fatal(err)
		}
		want = append(want, rs...)
	}
	testenv.WaitFor(t, 20*time.Second, "the journal to drain", func() bool { return j.Stats().Written == int64(len(want)) })
	sameReadings(t, w.readings(), want)
	if s := j.Stats(); s.Backlog != 0 || s.Failures != 0 || !s.Healthy {
		t.Errorf("stats: %+v", s)
	}
	// Drain wrote at most 7 per call.
	if calls := w.calls.Load(); calls < int64(len(want)+6)/7 {
		t.Errorf("%d writes for %d readings in batches of 7", calls, len(want))
	}
}

func TestFailingPeriodLosesAndRepeatsNothing(t *testing.T) {
	j := open(t, filepath.Join(t.TempDir(), "j.db"), journal.Options{})
	var w recorder
	drain(t, j, &w, 10)
	ctx := context.Background()
	var want []devices.Reading
	appendN := func(n int) {
		rs := readings(len(want), n)
		if err := j.Append(ctx, rs); err != nil {
			t.Fatal(err)
		}
		want = append(want, rs...)
	}
	appendN(25)
	testenv.WaitFor(t, 20*time.Second, "the first readings", func() bool { return j.Stats().Written == 25 })

	w.down.Store(true)
	appendN(4)
	testenv.WaitFor(t, 20*time.Second, "failing writes", func() bool { return j.Stats().Failures >= 3 })
	if s := j.Stats(); s.Healthy || !strings.Contains(s.LastError, "down") || s.Backlog != 4 {
		t.Errorf("while down: %+v, want unhealthy, the error, 4 waiting", s)
	}
	for range 5 {
		appendN(7) // keeps accepting while the store is down
	}

	w.down.Store(false)
	testenv.WaitFor(t, 20*time.Second, "the backlog to drain", func() bool { return j.Stats().Backlog == 0 })
	sameReadings(t, w.readings(), want)
	s := j.Stats()
	if !s.Healthy || s.Written != int64(len(want)) || !strings.Contains(s.LastError, "down") {
		t.Errorf("after: %+v, want healthy, all written, the last error kept", s)
	}
}

func TestSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	ctx := context.Background()
	j, err := journal.Open(path, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := readings(0, 50)
	for i := 0; i < len(want); i += 10 {
		if err := j.Append(ctx, want[i:i+10]); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the journal is not where asked: %v", err)
	}

	j = open(t, path, journal.Options{})
	if got := j.Stats().Backlog; got != 50 {
		t.Errorf("backlog after reopening: got %d, want 50", got)
	}
	var w recorder
	if err := j.Flush(ctx, &w); err != nil {
		t.Fatal(err)
	}
	sameReadings(t, w.readings(), want)
	// Appends after a drain follow on, in order.
	more := readings(50, 3)
	if err := j.Append(ctx, more); err != nil {
		t.Fatal(err)
	}
	if err := j.Flush(ctx, &w); err != nil {
		t.Fatal(err)
	}
	sameReadings(t, w.readings(), append(want, more...))
}

func TestFullRefusesWhole(t *testing.T) {
	j := open(t, filepath.Join(t.TempDir(), "j.db"), journal.Options{MaxReadings: 10})
	ctx := context.Background()
	for _, n := range []int{6, 6} { // the second fits while there is room
		if err := j.Append(ctx, readings(0, n)); err != nil {
			t.Fatal(err)
		}
	}
	err := j.Append(ctx, readings(12, 1))
	if devices.ErrorKind(err) != devices.EUnavailable || !strings.Contains(err.Error(), "journal full") {
		t.Errorf("Append to a full journal = %v, want %s \"journal full\"", err, devices.EUnavailable)
	}
	if s := j.Stats(); s.Backlog != 12 || s.Full != 1 {
		t.Errorf("stats: %+v, want 12 waiting and 1 refusal", s)
	}
	var w recorder
	if err := j.Flush(ctx, &w); err != nil {
		t.Fatal(err)
	}
	if got := len(w.readings()); got != 12 {
		t.Errorf("flushed %d readings, want the 12 accepted", got)
	}
	if err := j.Append(ctx, readings(12, 1)); err != nil {
		t.Errorf("Append after draining: %v", err)
	}
}

func TestInvalidReadingStoresNothing(t *testing.T) {
	j := open(t, filepath.Join(t.TempDir(), "j.db"), journal.Options{})
	rs := readings(0, 3)
	rs[2].Metric = `") |> drop()`
	if err := j.Append(context.Background(), rs); devices.ErrorKind(err) != devices.EInvalid {
		t.Errorf("Append = %v, want %s", err, devices.EInvalid)
	}
	if got := j.Stats().Backlog; got != 0 {
		t.Errorf("backlog %d, want 0", got)
	}
}

func TestBadDataIsSetAside(t *testing.T) {
	j := open(t, filepath.Join(t.TempDir(), "j.db"), journal.Options{})
	w := recorder{bad: func(rs []devices.Reading) bool {
		return slices.ContainsFunc(rs, func(r devices.Reading) bool { return r.Metric == "poison" })
	}}
	ctx := context.Background()
	rs := readings(0, 9)
	rs[3].Metric = "poison"
	if err := j.Append(ctx, rs); err != nil {
		t.Fatal(err)
	}
	drain(t, j, &w, 5)
	testenv.WaitFor(t, 20*time.Second, "the journal to drain", func() bool { return j.Stats().Backlog == 0 })
	// Only the bad reading is set aside; the others arrive in order.
	sameReadings(t, w.readings(), slices.Delete(slices.Clone(rs), 3, 4))
	if s := j.Stats(); s.Rejected != 1 || s.Written != 8 || s.Failures != 0 || !s.Healthy || s.LastError != "bad data" {
		t.Errorf("stats: %+v, want 1 rejected, 8 written, no failures", s)
	}
}

func TestFlushGivesUpWhenContextEnds(t *testing.T) {
	j := open(t, filepath.Join(t.TempDir(), "j.db"), journal.Options{})
	if err := j.Append(context.Background(), readings(0, 5)); err != nil {
		t.Fatal(err)
	}
	var w recorder
	w.down.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		for deadline := time.Now().Add(20 * time.Second); j.Stats().Failures == 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	}()
	err := j.Flush(ctx, &w)
	if devices.ErrorKind(err) != devices.EUnavailable || !strings.Contains(err.Error(), "5 readings") {
		t.Errorf("Flush = %v, want %s saying 5 readings wait", err, devices.EUnavailable)
	}
}

// BenchmarkAppend measures durable commits of batches of 20 and 500
// readings.
func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{20, 500} {
		b.Run(fmt.Sprintf("readings=%d", batch), func(b *testing.B) {
			j := open(b, filepath.Join(b.TempDir(), "j.db"), journal.Options{})
			ctx := context.Background()
			rs := readings(0, batch)
			b.ResetTimer()
			cpu0 := cpuTime()
			for range b.N {
				if err := j.Append(ctx, rs); err != nil {
					b.Fatal(err)
				}
			}
			s := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N)/s, "commits/s")
			b.ReportMetric(float64(b.N*batch)/s, "readings/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N*batch), "cpu-µs/reading")
		})
	}
}

// cpuTime is the process's CPU time so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestReplayFromPosition keeps its own place in the journal, as the
// embedded store does: it Replays from a Position after a reopen, and
// Forget deletes the segments before it.
func TestReplayFromPosition(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "log")
	j := open(t, dir, journal.Options{SegmentBytes: 1 << 10})
	for i := 0; i < 100; i += 10 {
		if err := j.Append(ctx, readings(i, 10)); err != nil {
			t.Fatal(err)
		}
	}
	mark := j.End()
	if err := j.Append(ctx, readings(100, 50)); err != nil {
		t.Fatal(err)
	}
	if err := j.Forget(mark); err != nil {
		t.Fatal(err)
	}
	j.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	j = open(t, dir, journal.Options{SegmentBytes: 1 << 10})
	for _, tc := range []struct {
		from journal.Position
		want []devices.Reading
	}{
		{journal.Position{}, readings(100, 50)}, // what was forgotten is gone
		{mark, readings(100, 50)},
		{j.End(), nil},
	} {
		var got []devices.Reading
		if err := j.Replay(tc.from, func(rs []devices.Reading) error {
			got = append(got, rs...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Replay(%+v) gives %d readings, want %d", tc.from, len(got), len(tc.want))
		}
	}
	if len(segs) != 1 || mark.Segment != 2 || !mark.Before(j.End()) {
		t.Errorf("after Forget %d segments are left, mark %+v, end %+v; want one, the second, that the mark is in", len(segs), mark, j.End())
	}
}
