package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"iotdash/store"
)

// The retention iotdash runs with unless told otherwise.
const (
	DefaultRetention       = 30 * 24 * time.Hour
	DefaultRollupRetention = 730 * 24 * time.Hour
)

// Options are the store's policy for what it keeps, and how often it
// compacts and applies it. The zero value keeps everything for ever and
// compacts every ten seconds.
type Options struct {
	// Retention is how long raw readings are kept; 0 keeps them for ever.
	// A query of older times reads the summaries (see Store.Query).
	Retention time.Duration
	// RollupRetention is how long the hour and minute summaries are kept;
	// 0 keeps them for ever. It is at least Retention: a summary outlives
	// its readings.
	RollupRetention time.Duration
	// CompactAfter is how long after its end an hour is compacted (default
	// 5 minutes); readings that arrive later are merged into it later.
	CompactAfter time.Duration
	// Interval is how often compaction and retention run in the
	// background (default 10 s); negative, never (call Compact).
	Interval time.Duration
	// FlushInterval is how often the readings in memory are written into
	// the file (default 10 s); negative, only when HeadReadings fill up,
	// on Flush, Compact and Close. They are durable before that, in the
	// store's log.
	FlushInterval time.Duration
	// HeadReadings is how many readings in memory start a flush before
	// its time (default 100,000). Appends wait for a flush once twice as
	// many are waiting, so that the memory held is bounded by about four
	// times as many (two heads, one being written).
	HeadReadings int
	// Now is the clock retention and compaction go by (default time.Now).
	Now func() time.Time
	// Logger takes the background maintenance's failures (default: none).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.CompactAfter <= 0 {
		o.CompactAfter = 5 * time.Minute
	}
	if o.Interval == 0 {
		o.Interval = 10 * time.Second
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = 10 * time.Second
	}
	if o.HeadReadings <= 0 {
		o.HeadReadings = 100_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Retention > 0 && o.RollupRetention > 0 {
		o.RollupRetention = max(o.RollupRetention, o.Retention)
	}
	if o.Retention == 0 {
		o.RollupRetention = 0
	}
	return o
}

// Steps of maintenance: each is one short transaction under the write
// lock, so that ingest waits for at most one of them.
const (
	sweepRows   = 64  // blocks or summaries deleted per step
	vacuumPages = 256 // pages given back to the file system per step
)

// start runs the background maintenance, at once and then every
// Interval, until Close.
func (s *Store) start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stop, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		if s.opts.FlushInterval > 0 {
			var wg sync.WaitGroup
			wg.Go(func() { s.flusher(ctx) })
			defer wg.Wait()
		}
		if s.opts.Interval < 0 {
			return
		}
		t := time.NewTicker(s.opts.Interval)
		defer t.Stop()
		f := failures{log: s.opts.Logger, what: "maintenance"}
		for first := true; ; first = false {
			if !first {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
			f.report(ctx, s.compact(ctx))
		}
	}()
}

// failures logs one line when a background task starts failing and one
// when it recovers, rather than one per attempt.
type failures struct {
	log     *slog.Logger
	what    string
	failing bool
}

func (f *failures) report(ctx context.Context, err error) {
	switch {
	case err != nil && ctx.Err() == nil && !f.failing:
		f.log.Error("history store "+f.what+" failed; retrying", "error", err)
		f.failing = true
	case err == nil && f.failing:
		f.log.Info("history store " + f.what + " recovered")
		f.failing = false
	}
}

// Compact flushes the readings in memory into the file and does now what
// the background maintenance does: it compacts every hour that ended
// CompactAfter ago or more and has rows or chunks, merging them into its
// block; drops readings and summaries past retention; and gives the freed
// pages back to the file system. It works in small steps, each a
// transaction of its own, so that a crash at any point loses nothing and
// duplicates nothing, and ingest goes on between them. A failure of the
// file gives EUnavailable.
func (s *Store) Compact(ctx context.Context) error {
	if err := s.Flush(ctx); err != nil {
		return err
	}
	return s.compact(ctx)
}

// compact is Compact without the flush: the background maintenance, beside
// the flusher.
//
// A pass looks at every series when the cutoffs have moved since the last
// pass (once an hour: they are whole hours), and after a pass that failed
// or none. Otherwise the last pass left no rows or chunks before the
// compaction cutoff and nothing before the retention cutoffs, and only a
// flush since can have added some: late readings, into an hour already
// over. Then it looks at those series alone, so that a quiet pass costs
// nothing per series (the flusher records them, see lateHours).
func (s *Store) compact(ctx context.Context) error {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	now := s.opts.Now().UnixMilli()
	c := cutoffs{compact: store.FloorTo(now-s.opts.CompactAfter.Milliseconds(), hour), raw: math.MinInt64, rollup: math.MinInt64}
	if r := s.opts.Retention; r > 0 {
		c.raw = store.FloorTo(now-r.Milliseconds(), hour)
	}
	if r := s.opts.RollupRetention; r > 0 {
		c.rollup = store.FloorTo(now-r.Milliseconds(), hour)
	}
	s.lateMu.Lock()
	late := s.late
	s.late = map[int64]int64{}
	all := s.passed == nil || *s.passed != c
	s.passed = nil // set again once this pass has succeeded
	s.lateMu.Unlock()

	var ids []int64
	if all {
		s.smu.RLock()
		ids = make([]int64, 0, len(s.series))
		for _, id := range s.series {
			ids = append(ids, id)
		}
		s.smu.RUnlock()
	} else {
		for id, h := range late {
			if h < c.compact {
				ids = append(ids, id)
			}
		}
	}

	freed := false
	for _, id := range ids {
		// An hour compacted before raw retention's cutoff (readings never
		// compacted, of a file of the first format or a late backfill)
		// leaves a block and summaries for the sweep.
		low := false
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			h, more, err := s.compactHour(ctx, id, c.compact, c.raw)
			if err != nil {
				return unavailable("compact", err)
			}
			freed = freed || more
			low = low || (more && h < c.raw)
			if !more {
				break
			}
		}
		if !all && !low {
			continue
		}
		for _, d := range []struct {
			table  string
			cutoff int64
		}{{"blocks", c.raw}, {"hours", c.rollup}, {"hour_minutes", c.rollup}} {
			if d.cutoff == math.MinInt64 {
				continue
			}
			for {
				if err := ctx.Err(); err != nil {
					return err
				}
				n, err := s.sweep(ctx, d.table, id, d.cutoff)
				if err != nil {
					return unavailable("retention", err)
				}
				freed = freed || n > 0
				if n < sweepRows {
					break
				}
			}
		}
	}
	if freed {
		if err := s.vacuum(ctx); err != nil {
			return err
		}
	}
	s.lateMu.Lock()
	s.passed = &c
	s.lateMu.Unlock()
	return nil
}

// cutoffs are a maintenance pass's: hours before compact are compacted,
// blocks before raw and summaries before rollup dropped (math.MinInt64:
// none).
type cutoffs struct{ compact, raw, rollup int64 }

// lateHours records, for the next maintenance pass, the earliest hour of
// the chunks a flush wrote for each series.
func (s *Store) lateHours(first map[int64]int64) {
	s.lateMu.Lock()
	defer s.lateMu.Unlock()
	for id, h := range first {
		if old, ok := s.late[id]; !ok || h < old {
			s.late[id] = h
		}
	}
}

// compactHour merges the rows and chunks of series id in the earliest hour
// before cutoff that has any into that hour's block, and rewrites the
// hour's summaries, in one transaction; rows and chunks late into an hour
// whose readings retention has dropped (before rawCutoff) are deleted
// instead. It reports whether there was such an hour, and which.
func (s *Store) compactHour(ctx context.Context, id, cutoff, rawCutoff int64) (int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := int64(0), false
	var t int64
	err := s.w.QueryRowContext(ctx, `SELECT t FROM readings WHERE series = ? AND t < ? ORDER BY t LIMIT 1`, id, cutoff).Scan(&t)
	switch {
	case err == nil:
		h, ok = store.FloorTo(t, hour), true
	case !errors.Is(err, sql.ErrNoRows):
		return 0, false, err
	}
	err = s.w.QueryRowContext(ctx, `SELECT h FROM chunks WHERE series = ? AND h < ? ORDER BY h LIMIT 1`, id, cutoff).Scan(&t)
	switch {
	case err == nil && (!ok || t < h):
		h, ok = t, true
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		return 0, false, err
	}
	if !ok {
		return 0, false, nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, err
	}
	defer tx.Rollback()
	var ps []store.Point
	var data []byte
	err = tx.QueryRowContext(ctx, `SELECT data FROM blocks WHERE series = ? AND h = ?`, id, h).Scan(&data)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, false, err
	}
	if data == nil && h < rawCutoff {
		// Past retention: if the hour has summaries, its readings have
		// been dropped already, and these late ones go the same way.
		// (Readings never compacted, as in a file of the first format,
		// are compacted, the summaries kept, and the block swept.)
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM hours WHERE series = ? AND h = ?`, id, h).Scan(&one)
		if err == nil {
			if err := deleteRows(ctx, tx, id, h); err != nil {
				return 0, false, err
			}
			return h, true, tx.Commit()
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, false, err
		}
	}
	if data != nil {
		if ps, err = decodeBlock(nil, data); err != nil {
			return 0, false, err
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT t, v FROM readings WHERE series = ? AND t >= ? AND t < ? ORDER BY t`, id, h, h+hour)
	if err != nil {
		return 0, false, err
	}
	var fresh []store.Point
	for rows.Next() {
		var p store.Point
		if err := rows.Scan(&p.T, &p.V); err != nil {
			rows.Close()
			return 0, false, err
		}
		fresh = append(fresh, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, false, err
	}
	if fresh, err = chunkPoints(ctx, tx, fresh, id, h, h+hour); err != nil {
		return 0, false, err
	}
	slices.SortFunc(fresh, func(a, b store.Point) int { return cmp.Compare(a.T, b.T) })
	// The block's value wins over a row or chunk of the same time: it was
	// there first (Append leaves such readings out; this only makes sure).
	ps = mergePoints(make([]store.Point, 0, len(ps)+len(fresh)), ps, fresh)

	d := decimals(ps)
	ms := minuteSummaries(nil, ps)
	var sum bucket
	for _, m := range ms {
		sum.merge(m)
	}
	for _, st := range []struct {
		q    string
		args []any
	}{
		{`INSERT OR REPLACE INTO blocks (series, h, n, data) VALUES (?, ?, ?, ?)`, []any{id, h, len(ps), encodeBlock(nil, ps, d)}},
		{`INSERT OR REPLACE INTO hours (series, h, n, total, lo, hi, first_t, first_v, last_t, last_v) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			[]any{id, h, sum.n, sum.sum, sum.min, sum.max, sum.firstT, sum.first, sum.lastT, sum.last}},
		{`INSERT OR REPLACE INTO hour_minutes (series, h, data) VALUES (?, ?, ?)`, []any{id, h, encodeMinutes(nil, h, ms, minuteDecimals(ms, d))}},
	} {
		if _, err := tx.ExecContext(ctx, st.q, st.args...); err != nil {
			return 0, false, err
		}
	}
	if err := deleteRows(ctx, tx, id, h); err != nil {
		return 0, false, err
	}
	if err := tx.Commit(); err != nil {
		return 0, false, err
	}
	return h, true, nil
}

// deleteRows deletes the rows and chunks of series id in hour h and the
// rows' minutes.
func deleteRows(ctx context.Context, tx *sql.Tx, id, h int64) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM readings WHERE series = ? AND t >= ? AND t < ?`, id, h, h+hour); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM chunks WHERE series = ? AND h = ?`, id, h); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM minutes WHERE series = ? AND m >= ? AND m < ?`, id, h, h+hour)
	return err
}

// sweep deletes up to sweepRows rows of table (blocks, hours or
// hour_minutes) of series id whose hour starts before cutoff, and returns
// how many it deleted.
func (s *Store) sweep(ctx context.Context, table string, id, cutoff int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := s.w.ExecContext(ctx, `DELETE FROM `+table+` WHERE series = ?1 AND h IN (SELECT h FROM `+table+` WHERE series = ?1 AND h < ?2 ORDER BY h LIMIT ?3)`, id, cutoff, sweepRows)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// vacuum gives the file's free pages back to the file system, a few at a
// time, then checkpoints the WAL so that the file shrinks. A file made
// before incremental vacuum was the default has no such pages: its free
// pages are reused by later writes instead.
func (s *Store) vacuum(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var free int64
		err := func() error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if _, err := s.w.ExecContext(ctx, `PRAGMA incremental_vacuum(`+strconv.Itoa(vacuumPages)+`)`); err != nil {
				return err
			}
			return s.w.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free)
		}()
		if err != nil {
			return unavailable("vacuum", err)
		}
		if free == 0 || !s.autoVacuum(ctx) {
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var busy, frames, done int
	if err := s.w.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &done); err != nil {
		return unavailable("checkpoint", err)
	}
	return nil
}

// autoVacuum says whether the file gives free pages back (auto_vacuum is
// INCREMENTAL).
func (s *Store) autoVacuum(ctx context.Context) bool {
	var mode int
	err := s.w.QueryRowContext(ctx, `PRAGMA auto_vacuum`).Scan(&mode)
	return err == nil && mode == 2
}
