package journal_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"iotdash/devices"
	"iotdash/store/journal"
)

// segmentFile returns the journal's only segment file.
func segmentFile(t *testing.T, dir string) string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments in %s: %v, %v; want one", dir, segs, err)
	}
	return segs[0]
}

// copyDir copies the files of src into a new directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// A crash in the middle of an append leaves its record cut anywhere, or
// garbled: opened again, the journal holds every reading of the appends
// that returned, cuts the rest, and takes appends after them.
func TestTornTailIsCut(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "j")
	opts := journal.Options{SegmentBytes: 4096}
	j, err := journal.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, last := readings(0, 6), readings(6, 4)
	for _, rs := range [][]devices.Reading{first, last} {
		if err := j.Append(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	seg := segmentFile(t, dir)
	full, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	// A record is its 8-byte header (its payload's length first) and its
	// payload; the segment was made full of zeros.
	whole := 8 + int(binary.LittleEndian.Uint32(full))
	end := whole + 8 + int(binary.LittleEndian.Uint32(full[whole:]))
	check := func(t *testing.T, d string, want []devices.Reading) {
		t.Helper()
		j, err := journal.Open(d, opts)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer j.Close()
		if got := j.Stats().Backlog; got != int64(len(want)) {
			t.Fatalf("backlog %d, want %d", got, len(want))
		}
		more := readings(100, 2)
		if err := j.Append(ctx, more); err != nil {
			t.Fatal(err)
		}
		var w recorder
		if err := j.Flush(ctx, &w); err != nil {
			t.Fatal(err)
		}
		sameReadings(t, w.readings(), append(want, more...))
	}
	damaged := func(b []byte) string {
		d := copyDir(t, dir)
		if err := os.WriteFile(filepath.Join(d, filepath.Base(seg)), b, 0o600); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// The file cut at every byte of the last record; or its record written
	// up to every byte, zeros after (the segment as it was made).
	for size := whole; size < end; size++ {
		check(t, damaged(full[:size]), first)
		check(t, damaged(append(slices.Clone(full[:size]), make([]byte, len(full)-size)...)), first)
	}
	// Whole but for one flipped byte, in its payload or its header.
	for _, at := range []int{end - 3, whole + 1, whole + 5} {
		b := slices.Clone(full)
		b[at] ^= 0x40
		check(t, damaged(b), first)
	}
	check(t, copyDir(t, dir), append(first, last...))
}

// A journal of an earlier iotdash, a SQLite file at the same path with
// readings waiting, is moved into the new one when it is opened: nothing
// is lost on upgrade.
func TestEarlierSQLiteJournalIsMoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	// The earlier journal's schema, as it wrote it.
	if _, err := db.Exec(`CREATE TABLE readings (seq INTEGER PRIMARY KEY, device TEXT NOT NULL, metric TEXT NOT NULL, t INTEGER NOT NULL, v REAL NOT NULL);
CREATE TABLE rejected (id INTEGER PRIMARY KEY, device TEXT NOT NULL, metric TEXT NOT NULL, t INTEGER NOT NULL, v REAL NOT NULL, error TEXT NOT NULL, at INTEGER NOT NULL);
INSERT INTO rejected (device, metric, t, v, error, at) VALUES ('dev-9', 'm', 1, 2, 'field type conflict', 3);`); err != nil {
		t.Fatal(err)
	}
	want := readings(0, 12_345)
	tx, _ := db.Begin()
	for _, r := range want {
		if _, err := tx.Exec("INSERT INTO readings (device, metric, t, v) VALUES (?, ?, ?, ?)", r.Device, r.Metric, r.Time, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	j := open(t, path, journal.Options{MaxReadings: 100})
	if got := j.Stats().Backlog; got != int64(len(want)) {
		t.Errorf("backlog after the move: %d, want %d", got, len(want))
	}
	var w recorder
	if err := j.Flush(context.Background(), &w); err != nil {
		t.Fatal(err)
	}
	sameReadings(t, w.readings(), want)
	b, err := os.ReadFile(filepath.Join(path, journal.RejectedFile))
	if err != nil || !strings.Contains(string(b), "field type conflict") || !strings.Contains(string(b), "dev-9") {
		t.Errorf("rejected file: %q, %v; want the earlier journal's rejected reading", b, err)
	}
	if left, _ := filepath.Glob(path + ".*"); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// crashWriterEnv makes the test binary a writer that appends to the journal
// at its value and prints the number of each append that returned.
const crashWriterEnv = "IOTDASH_JOURNAL_CRASH_WRITER"

func init() {
	dir := os.Getenv(crashWriterEnv)
	if dir == "" {
		return
	}
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	start := int(j.Stats().Backlog)
	for i := start; ; i += 10 {
		if err := j.Append(context.Background(), readings(i, 10)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(i + 10)
	}
}

// Killed with SIGKILL at random points while it appends as fast as it can,
// a journal keeps every reading whose append returned, in order, each once.
func TestKillDuringAppends(t *testing.T) {
	if testing.Short() {
		t.Skip("starts writer processes")
	}
	dir := filepath.Join(t.TempDir(), "j")
	acked := 0
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run", "^$")
		cmd.Env = append(os.Environ(), crashWriterEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let it write a random number of appends, then kill it.
		sc := bufio.NewScanner(out)
		stopAt := 20 + rand.IntN(400)
		for n := 0; sc.Scan(); n++ {
			if v, err := strconv.Atoi(sc.Text()); err == nil {
				acked = v
			}
			if n == stopAt {
				cmd.Process.Kill()
				break
			}
		}
		for sc.Scan() { // what it printed before it died
			if v, err := strconv.Atoi(sc.Text()); err == nil {
				acked = v
			}
		}
		cmd.Wait()
		j, err := journal.Open(dir, journal.Options{})
		if err != nil {
			t.Fatalf("round %d: Open after kill -9: %v", round, err)
		}
		got := j.Stats().Backlog
		j.Close()
		// What it holds is every append that returned, and perhaps the one
		// in flight (synced, but not yet said).
		if got < int64(acked) || got > int64(acked)+10 {
			t.Fatalf("round %d: %d readings after kill -9, want %d (or 10 more)", round, got, acked)
		}
		acked = int(got)
	}
	j := open(t, dir, journal.Options{})
	var w recorder
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := j.Flush(ctx, &w); err != nil {
		t.Fatal(err)
	}
	sameReadings(t, w.readings(), readings(0, acked))
}

// Segments are deleted whole once drained, and a journal reopened half
// drained gives the rest, each reading once.
func TestSegmentsAreDeletedOnceDrained(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "j")
	opts := journal.Options{SegmentBytes: 1000}
	j, err := journal.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := readings(0, 2000)
	for i := 0; i < len(want); i += 50 {
		if err := j.Append(ctx, want[i:i+50]); err != nil {
			t.Fatal(err)
		}
	}
	segs := func() int {
		m, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
		return len(m)
	}
	before := segs()
	if before < 10 {
		t.Fatalf("%d segments for %d readings in segments of 1000 bytes", before, len(want))
	}
	// Drain 1,234 of them (a part of a record), then stop.
	var w recorder
	ctx2, cancel := context.WithCancel(ctx)
	go func() {
		for len(w.readings()) < 1232 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	j.Drain(ctx2, &limited{recorder: &w, left: 1232}, 7)
	j.Close()
	if got := len(w.readings()); got != 1232 {
		t.Fatalf("drained %d, want 1232", got)
	}
	if after := segs(); after >= before {
		t.Errorf("%d segments after draining most, %d before", after, before)
	}
	j = open(t, dir, opts)
	if got := j.Stats().Backlog; got != int64(len(want)-1232) {
		t.Errorf("backlog after reopening: %d, want %d", got, len(want)-1232)
	}
	if err := j.Flush(ctx, &w); err != nil {
		t.Fatal(err)
	}
	sameReadings(t, w.readings(), want)
	if n := segs(); n != 1 {
		t.Errorf("%d segments once empty, want 1 (the one appends go to)", n)
	}
}

// limited is a recorder that takes left readings and then is down.
type limited struct {
	*recorder
	left int
}

func (l *limited) Append(ctx context.Context, rs []devices.Reading) error {
	if len(rs) > l.left {
		return devices.Errorf(devices.EUnavailable, "down")
	}
	l.left -= len(rs)
	return l.recorder.Append(ctx, rs)
}
