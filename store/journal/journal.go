// Package journal is a durable first-in, first-out queue of readings on
// disk, in front of a store that may be down (InfluxDB). The ingest
// pipeline appends each group-committed batch and acknowledges the MQTT
// messages only once Append has returned; Drain then moves the readings, in
// order, to the store, and deletes them once the store has them. Readings
// so acknowledged survive a store outage and a crash of iotdash.
//
// A reading is delivered at least once: after a crash between a write and
// the delete that follows it, the same batch is written again, which
// InfluxDB takes as an overwrite of the same values.
//
// It uses SQLite (modernc.org/sqlite, WAL, synchronous=FULL) as its file
// format. It is not a store of history: nothing here can be queried, and
// what has been drained is gone.
package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"iotdash/devices"
)

// Writer is where a journal drains to; *influx.Store is one.
type Writer interface {
	// Append stores rs durably or returns an error. An error of kind
	// devices.EInvalid says the data itself is bad, so that writing it
	// again cannot help; any other error is retried.
	Append(ctx context.Context, rs []devices.Reading) error
}

// Options tune a journal.
type Options struct {
	// MaxReadings bounds the readings waiting in the journal; 0 means no
	// bound. A full journal refuses appends (see Journal.Append).
	MaxReadings int64
	// Logger receives what the journal has to say (readings set aside as
	// bad data); nil says nothing.
	Logger *slog.Logger
	// Registerer, if not nil, gets the journal's metrics
	// (iotdash_journal_*).
	Registerer prometheus.Registerer
}

// Stats are a journal's counters since Open, for status pages and metrics.
type Stats struct {
	Backlog  int64 // readings waiting to be written
	Written  int64 // readings drained into the Writer
	Failures int64 // Writer.Append calls that failed
	Full     int64 // appends refused because the journal was full
	// Rejected counts readings the Writer refused as bad data
	// (devices.EInvalid): they are set aside in the journal's rejected
	// table, so that one bad reading cannot hold up all that follow.
	Rejected  int64
	LastError string // the last write error, kept after recovery
	Healthy   bool   // false while writes are failing
}

// Backoff bounds between retries of a failed write.
const (
	MinBackoff = 100 * time.Millisecond
	MaxBackoff = 5 * time.Second
)

// gather is how long Drain lets appends accumulate after it has written all
// there was, so that under a steady load it writes a batch of many groups
// about ten times a second rather than each group on its own: a write to the
// store and the delete that follows it cost about the same for one group as
// for hundreds. It delays history queries on the store by as much; the live
// push does not wait for the store.
const gather = 100 * time.Millisecond

// idleWait is how long Drain sleeps on an empty journal without being
// told of an append: a safety net, as Append always tells it.
const idleWait = 2 * time.Second

// flushBatch is the batch size Flush uses.
const flushBatch = 5000

// Journal is a durable FIFO of readings. Its methods are safe for
// concurrent use.
type Journal struct {
	db     *sql.DB
	max    int64
	notify chan struct{} // signalled after each append
	log    *slog.Logger

	mu     sync.Mutex        // serialises writes to the database
	insert map[int]*sql.Stmt // INSERTs of 1..insertRows rows, by row count
	args   []any             // Append's reused argument list

	drainMu sync.Mutex // one batch in flight at a time, in order
	// singly counts readings still to be written one at a time, after a
	// batch of them was refused as bad data, to find the bad ones.
	singly int

	statMu sync.Mutex
	stats  Stats
}

// Open opens the journal at path, creating it if need be, and counts the
// readings it still holds.
func Open(path string, opts Options) (*Journal, error) {
	if opts.MaxReadings < 0 {
		return nil, devices.Errorf(devices.EInvalid, "journal: MaxReadings must not be negative")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, devices.Errorf(devices.EInvalid, "journal: path %q must not contain ? or #", path)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	// One connection: SQLite writes one at a time anyway, and so no
	// statement ever waits on another connection's lock.
	db.SetMaxOpenConns(1)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	j := &Journal{db: db, max: opts.MaxReadings, notify: make(chan struct{}, 1), log: log.With("component", "journal")}
	if err := j.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	if opts.Registerer != nil {
		registerMetrics(opts.Registerer, j)
	}
	return j, nil
}

func (j *Journal) init() error {
	ctx := context.Background()
	var mode string
	if err := j.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal_mode is %s, not wal", mode)
	}
	// seq orders the queue; without AUTOINCREMENT SQLite gives each new row
	// one more than the largest there, which keeps the order.
	_, err := j.db.ExecContext(ctx, `
CREATE TABLE IF NOT EXISTS readings (
	seq    INTEGER PRIMARY KEY,
	device TEXT NOT NULL,
	metric TEXT NOT NULL,
	t      INTEGER NOT NULL,
	v      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
	id     INTEGER PRIMARY KEY,
	device TEXT NOT NULL,
	metric TEXT NOT NULL,
	t      INTEGER NOT NULL,
	v      REAL NOT NULL,
	error  TEXT NOT NULL,
	at     INTEGER NOT NULL
);`)
	if err != nil {
		return err
	}
	j.insert = map[int]*sql.Stmt{}
	var n int64
	if err := j.db.QueryRowContext(ctx, "SELECT count(*) FROM readings").Scan(&n); err != nil {
		return err
	}
	j.stats = Stats{Backlog: n, Healthy: true}
	return nil
}

// Close closes the journal's file. Stop Drain and Flush first.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, st := range j.insert {
		st.Close()
	}
	return j.db.Close()
}

// Append stores rs durably, in one transaction, before it returns: once it
// returns nil the readings survive a crash, and the caller may acknowledge
// the messages they came in.
//
// When the journal already holds MaxReadings it stores none of rs and
// returns a devices.EUnavailable error "journal full": the caller must then
// not acknowledge the MQTT messages, so that the broker keeps them and
// delivers them again later. (A batch is taken whole while there is any
// room, so the journal may exceed MaxReadings by less than one batch.)
// Errors: EInvalid when a reading is invalid (none is stored);
// EUnavailable when full; EInternal when the disk fails.
func (j *Journal) Append(ctx context.Context, rs []devices.Reading) error {
	if len(rs) == 0 {
		return nil
	}
	for _, r := range rs {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.statMu.Lock()
	backlog := j.stats.Backlog
	full := j.max > 0 && backlog >= j.max
	if full {
		j.stats.Full++
	}
	j.statMu.Unlock()
	if full {
		return devices.Errorf(devices.EUnavailable, "journal full: %d readings wait for the store", backlog)
	}
	if err := j.appendTx(ctx, rs); err != nil {
		return devices.Wrap(err, devices.EInternal, "journal: cannot store readings")
	}
	j.statMu.Lock()
	j.stats.Backlog += int64(len(rs))
	j.statMu.Unlock()
	select {
	case j.notify <- struct{}{}:
	default:
	}
	return nil
}

// insertRows is the most rows one INSERT statement adds: one statement per
// group of readings rather than one per reading is most of what an append
// costs in CPU.
const insertRows = 128

func (j *Journal) appendTx(ctx context.Context, rs []devices.Reading) error {
	// Statements are prepared before the transaction takes the one
	// connection, and kept: a group's size repeats.
	for _, n := range []int{min(len(rs), insertRows), len(rs) % insertRows} {
		if _, ok := j.insert[n]; ok || n == 0 {
			continue
		}
		q := "INSERT INTO readings (device, metric, t, v) VALUES (?, ?, ?, ?)" + strings.Repeat(", (?, ?, ?, ?)", n-1)
		st, err := j.db.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		j.insert[n] = st
	}
	tx, err := j.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for len(rs) > 0 {
		n := min(len(rs), insertRows)
		args := j.args[:0]
		for _, r := range rs[:n] {
			args = append(args, r.Device, r.Metric, r.Time, r.Value)
		}
		j.args = args
		if _, err := tx.StmtContext(ctx, j.insert[n]).ExecContext(ctx, args...); err != nil {
			return err
		}
		rs = rs[n:]
	}
	clear(j.args) // holds no strings until the next append
	return tx.Commit()
}

// Stats returns the journal's counters.
func (j *Journal) Stats() Stats {
	j.statMu.Lock()
	defer j.statMu.Unlock()
	return j.stats
}

// Drain writes the journal's readings to w, oldest first, up to batch
// readings per w.Append, deleting each batch once written, until ctx ends;
// it then returns nil. On an empty journal it waits for Append to wake it
// (with a timer of a few seconds as a safety net); once it has written all
// there was, it lets appends gather for a moment (see gather). A failed write
// is retried, the same batch, after a backoff that doubles from MinBackoff
// to MaxBackoff; Stats reports the failures. When w refuses a batch as bad
// data (devices.EInvalid), its readings are written again one by one, and
// those refused again are set aside in the rejected table and counted in
// Stats.Rejected, so that they do not hold up the rest.
func (j *Journal) Drain(ctx context.Context, w Writer, batch int) error {
	if batch <= 0 {
		batch = flushBatch
	}
	backoff := time.Duration(0)
	idle := time.NewTimer(idleWait)
	defer idle.Stop()
	for ctx.Err() == nil {
		moved, short, err := j.drainBatch(ctx, w, batch)
		wait := time.Duration(0)
		switch {
		case err != nil:
			backoff = min(max(2*backoff, MinBackoff), MaxBackoff)
			wait = backoff
		case !moved:
			backoff = 0
			wait = idleWait
		case short:
			backoff = 0
			wait = gather
		default:
			backoff = 0
			continue
		}
		// An append ends an idle wait, not a backoff or a gathering.
		var wake <-chan struct{}
		if err == nil && !moved {
			wake = j.notify
		}
		idle.Reset(wait)
		select {
		case <-ctx.Done():
		case <-idle.C:
		case <-wake:
		}
	}
	return nil
}

// Flush writes everything the journal holds to w now, as Drain does, and
// returns nil once the journal is empty, or an EUnavailable error if ctx
// ends first. It is for shutdown.
func (j *Journal) Flush(ctx context.Context, w Writer) error {
	backoff := time.Duration(0)
	for {
		moved, _, err := j.drainBatch(ctx, w, flushBatch)
		switch {
		case err == nil && !moved:
			return nil
		case err == nil:
			backoff = 0
			continue
		}
		backoff = min(max(2*backoff, MinBackoff), MaxBackoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return devices.Wrap(errors.Join(err, ctx.Err()), devices.EUnavailable, "journal: %d readings not written", j.Stats().Backlog)
		case <-t.C:
		}
	}
}

// drainBatch writes the oldest readings, up to batch of them, to w and
// deletes them. It reports whether it made progress (false with a nil
// error means the journal is empty) and whether it took fewer than batch,
// all there were.
func (j *Journal) drainBatch(ctx context.Context, w Writer, batch int) (moved, short bool, err error) {
	j.drainMu.Lock()
	defer j.drainMu.Unlock()
	if j.singly > 0 {
		batch = 1
	}
	first, last, rs, err := j.oldest(ctx, batch)
	if err != nil || len(rs) == 0 {
		if err != nil && ctx.Err() == nil {
			j.failed(err)
		}
		return false, false, err
	}
	werr := w.Append(ctx, rs)
	if werr != nil && ctx.Err() != nil {
		return false, false, werr // shutting down: not the store's failure
	}
	bad := werr != nil && devices.ErrorKind(werr) == devices.EInvalid
	if werr != nil && !bad {
		j.failed(werr)
		return false, false, werr
	}
	if bad && len(rs) > 1 {
		// Which of them is bad? Write them one by one, setting aside only
		// those refused.
		j.singly = len(rs)
		return true, false, nil
	}
	if err := j.remove(first, last, werr); err != nil {
		j.failed(err)
		return false, false, err
	}
	j.singly = max(j.singly-len(rs), 0)
	j.statMu.Lock()
	j.stats.Backlog -= int64(len(rs))
	if bad {
		j.stats.Rejected += int64(len(rs))
		j.stats.LastError = werr.Error()
	} else {
		j.stats.Written += int64(len(rs))
		j.stats.Healthy = true
	}
	j.statMu.Unlock()
	if bad {
		j.log.Error("the store refused a reading as bad data; it is set aside in the rejected table",
			"device", rs[0].Device, "metric", rs[0].Metric, "time", rs[0].Time, "error", werr)
	}
	return true, len(rs) < batch, nil
}

func (j *Journal) failed(err error) {
	j.statMu.Lock()
	defer j.statMu.Unlock()
	j.stats.Failures++
	j.stats.LastError = err.Error()
	j.stats.Healthy = false
}

// oldest reads the oldest readings, up to n, and their first and last seq.
func (j *Journal) oldest(ctx context.Context, n int) (first, last int64, rs []devices.Reading, err error) {
	rows, err := j.db.QueryContext(ctx, "SELECT seq, device, metric, t, v FROM readings ORDER BY seq LIMIT ?", n)
	if err != nil {
		return 0, 0, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var r devices.Reading
		if err := rows.Scan(&last, &r.Device, &r.Metric, &r.Time, &r.Value); err != nil {
			return 0, 0, nil, err
		}
		if len(rs) == 0 {
			first = last
		}
		rs = append(rs, r)
	}
	return first, last, rs, rows.Err()
}

// remove deletes the readings first..last from the queue, keeping them in
// the rejected table if rejected is not nil. It runs to the end even when
// the drain's context has ended, as the write it follows has happened.
func (j *Journal) remove(first, last int64, rejected error) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	ctx := context.Background()
	tx, err := j.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if rejected != nil {
		_, err := tx.ExecContext(ctx, `INSERT INTO rejected (device, metric, t, v, error, at)
			SELECT device, metric, t, v, ?, ? FROM readings WHERE seq BETWEEN ? AND ? ORDER BY seq`,
			rejected.Error(), time.Now().UnixMilli(), first, last)
		if err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM readings WHERE seq BETWEEN ? AND ?", first, last); err != nil {
		return err
	}
	return tx.Commit()
}
