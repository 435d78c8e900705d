package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"iotdash/devices"
	"iotdash/store"
	"iotdash/store/sqlite"
)

// crashOptions are what the crash test's child and parent open the store
// with: raw readings kept 4 hours at 8:00, so that of the six hours written
// the first four are compacted and then swept, the last two compacted.
func crashOptions() sqlite.Options {
	return sqlite.Options{Retention: 4 * time.Hour, RollupRetention: 48 * time.Hour, Interval: -1, Now: func() time.Time { return time.UnixMilli(t0 + 8*3600000) }}
}

// runKilled runs this test binary's test name with env added, and returns
// its output once SIGKILL has ended it; anything else ending it fails t.
func runKilled(t *testing.T, name string, env ...string) []byte {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child: got %v, want killed by SIGKILL; output:\n%s", err, out)
	}
	return out
}

// TestKillDuringCompaction kills a child process with SIGKILL while it
// compacts and sweeps, at a later moment each round, and checks after each
// kill that nothing kept was lost or counted twice: the two hours within
// retention hold every reading once, as rows or in blocks, and each of the
// four older hours counts its 3,600 readings once, whether its readings
// are rows, in a block or swept to its summaries.
func TestKillDuringCompaction(t *testing.T) {
	if path := os.Getenv("IOTDASH_SQLITE_COMPACT_CHILD"); path != "" {
		after, _ := strconv.Atoi(os.Getenv("IOTDASH_SQLITE_KILL_AFTER_MS"))
		s, err := sqlite.OpenWith(path, crashOptions())
		if err != nil {
			os.Exit(3)
		}
		time.AfterFunc(time.Duration(after)*time.Millisecond, func() { syscall.Kill(os.Getpid(), syscall.SIGKILL) })
		s.Compact(context.Background())
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "iotdash.db")
	s := open(t, path)
	const series = 3
	for i := range series {
		var rs []devices.Reading
		for sec := range int64(6 * 3600) {
			rs = append(rs, devices.Reading{Device: "d", Metric: fmt.Sprint("m", i), Time: t0 + sec*1000, Value: value(i, sec)})
		}
		if err := s.Append(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	check := func(when string) {
		t.Helper()
		s, err := sqlite.OpenWith(path, crashOptions())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for i := range series {
			m := fmt.Sprint("m", i)
			got, err := s.Query(ctx, store.Query{Device: "d", Metric: m, From: t0 + 4*3600000, To: t0 + 6*3600000})
			if err != nil {
				t.Fatal(err)
			}
			ok := len(got) == 2*3600
			for j := 0; ok && j < len(got); j++ {
				sec := int64(4*3600 + j)
				ok = got[j].T == t0+sec*1000 && got[j].V == value(i, sec)
			}
			if !ok {
				t.Fatalf("%s: %s holds %d readings in its last two hours, not the 7,200 written", when, m, len(got))
			}
			counts, err := s.Query(ctx, store.Query{Device: "d", Metric: m, From: t0, To: t0 + 6*3600000, Step: 3600000, Agg: store.AggCount})
			if err != nil {
				t.Fatal(err)
			}
			if len(counts) != 6 {
				t.Fatalf("%s: %s has %d hours, want 6", when, m, len(counts))
			}
			for _, c := range counts {
				if c.V != 3600 {
					t.Fatalf("%s: %s counts %v readings in the hour at %d, want 3600", when, m, c.V, (c.T-t0)/3600000)
				}
			}
		}
	}
	for _, ms := range []int{0, 10, 30, 60, 100, 200, 400, 800} {
		runKilled(t, "TestKillDuringCompaction", "IOTDASH_SQLITE_COMPACT_CHILD="+path, "IOTDASH_SQLITE_KILL_AFTER_MS="+strconv.Itoa(ms))
		check(fmt.Sprintf("killed %d ms into compaction", ms))
		t.Logf("killed %d ms into compaction: %v", ms, tableRows(t, path))
	}
	s, err := sqlite.OpenWith(path, crashOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	check("after a whole compaction")
	if got := tableRows(t, path); got["readings"] != 0 || got["chunks"] != 0 || got["blocks"] != 2*series || got["hours"] != 6*series {
		t.Errorf("after a whole compaction the tables hold %v, want no rows, %d blocks and %d hours", got, 2*series, 6*series)
	}
}

// firstFormat is the schema of the store's first format, before blocks.
const firstFormat = `
CREATE TABLE series (id INTEGER PRIMARY KEY, device TEXT NOT NULL, metric TEXT NOT NULL, UNIQUE (device, metric));
CREATE TABLE readings (series INTEGER NOT NULL, t INTEGER NOT NULL, v REAL NOT NULL, PRIMARY KEY (series, t)) WITHOUT ROWID;
CREATE TABLE minutes (series INTEGER NOT NULL, m INTEGER NOT NULL, n INTEGER NOT NULL, total REAL NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL,
	first_t INTEGER NOT NULL, first_v REAL NOT NULL, last_t INTEGER NOT NULL, last_v REAL NOT NULL, PRIMARY KEY (series, m)) WITHOUT ROWID;
`

// TestOpensFirstFormat opens a file written in the first format (rows and
// minute summaries only), answers from it as it is, and compacts it in
// place with the same answers.
func TestOpensFirstFormat(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "iotdash.db")
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(firstFormat + `INSERT INTO series (id, device, metric) VALUES (1, 'boiler-1', 'temperature');`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	const n = 3 * 3600
	var want []store.Point
	for sec := range int64(n) {
		p := store.Point{T: t0 + sec*1000, V: value(0, sec)}
		want = append(want, p)
		if _, err := tx.Exec(`INSERT INTO readings (series, t, v) VALUES (1, ?, ?)`, p.T, p.V); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.Exec(`INSERT INTO minutes SELECT series, t - t % 60000 AS m, count(*), sum(v), min(v), max(v), min(t), 0, max(t), 0 FROM readings GROUP BY series, m`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`UPDATE minutes SET first_v = (SELECT v FROM readings WHERE series = minutes.series AND t = first_t), last_v = (SELECT v FROM readings WHERE series = minutes.series AND t = last_t)`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := sqlite.OpenWith(path, sqlite.Options{Interval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	queries := []store.Query{
		{From: t0, To: t0 + n*1000},
		{From: t0, To: t0 + n*1000, Step: 600000, Agg: store.AggSum},
		{From: t0 + 1500, To: t0 + n*1000 - 7000, Step: 1000 * 1000, Agg: store.AggMinMax},
		{From: t0, To: t0 + n*1000, Step: 3600000, Agg: store.AggLast},
	}
	answers := func(when string) {
		t.Helper()
		for _, q := range queries {
			q.Device, q.Metric = "boiler-1", "temperature"
			got, err := s.Query(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			var in []store.Point
			for _, p := range want {
				if p.T >= q.From && p.T < q.To {
					in = append(in, p)
				}
			}
			if q.Step > 0 {
				in = downsample(in, q)
			}
			if !nearPoints(got, in) {
				t.Errorf("%s: %+v gives %d points, not those of the readings (%d)", when, q, len(got), len(in))
			}
		}
	}
	answers("as it is")
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	answers("compacted")
	if got := tableRows(t, path); got["readings"] != 0 || got["blocks"] != 3 {
		t.Errorf("compacted, the tables hold %v, want no rows and 3 blocks", got)
	}
}
