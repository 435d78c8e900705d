// Package sqlite is the embedded history store iotdash uses when no InfluxDB
// is configured: one SQLite file (pure Go, modernc.org/sqlite) holding every
// reading, with a log beside it, written in group commits and queried raw or
// downsampled.
//
// A group commit goes into the log (a store/journal, one fsync) and into
// the head, in memory; a flusher moves the head into the file every few
// seconds as compressed chunks, a row per series and hour (head.go). A
// background compactor turns each series' closed hours into one compressed
// block (codec.go) beside the hour's summary and its minutes' summaries,
// and applies retention: raw readings are dropped after Options.Retention,
// summaries after Options.RollupRetention, in small steps, the space given
// back (compact.go). Queries read the head, then rows, chunks and blocks in
// one snapshot, and summaries wherever a step covers whole hours or
// minutes. Rows are what a file of an earlier format holds, and are read
// and compacted as ever.
//
// It is for a single iotdash process on one machine. It is not a shared
// database: one Store owns its file, and the series cache it keeps in memory
// assumes no other process writes to it.
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"iotdash/devices"
	"iotdash/store"
	"iotdash/store/journal"
)

// schema is applied on every Open; it only creates what is missing.
//
// Readings are keyed by series and time in a table WITHOUT ROWID, so a
// series' readings lie together in time order and a query is one range scan
// of the primary key. Device and metric names are stored once, in series.
// minutes summarised the rows of readings per minute in the first format;
// its rows in such a file are deleted as their hours are compacted.
//
// The flusher writes the head as chunks, a row per series, hour and
// flush (gen), encoded as blocks are, and records in flushed (one row) the
// last flush's generation and the place in the log it reached (head.go).
// Files of earlier formats hold rows in readings, which Append no longer
// writes.
//
// The compactor moves the chunks and rows of each closed hour (h, its
// start in Unix ms) into a block, whose hour is summarised in hours and its
// minutes in hour_minutes (encoded as in codec.go): the readings of a
// series are those of readings, chunks and blocks, each in one of them
// only. A reading that arrives late into a compacted hour is a chunk until
// the compactor merges it into the block. A file of the first format
// (series, readings, minutes) gains the new tables on Open and is
// compacted like any other.
const schema = `
CREATE TABLE IF NOT EXISTS series (
	id     INTEGER PRIMARY KEY,
	device TEXT NOT NULL,
	metric TEXT NOT NULL,
	UNIQUE (device, metric)
);
CREATE TABLE IF NOT EXISTS readings (
	series INTEGER NOT NULL,
	t      INTEGER NOT NULL,
	v      REAL NOT NULL,
	PRIMARY KEY (series, t)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS minutes (
	series  INTEGER NOT NULL,
	m       INTEGER NOT NULL,
	n       INTEGER NOT NULL,
	total   REAL NOT NULL,
	lo      REAL NOT NULL,
	hi      REAL NOT NULL,
	first_t INTEGER NOT NULL,
	first_v REAL NOT NULL,
	last_t  INTEGER NOT NULL,
	last_v  REAL NOT NULL,
	PRIMARY KEY (series, m)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
	series INTEGER NOT NULL,
	h      INTEGER NOT NULL,
	n      INTEGER NOT NULL,
	data   BLOB NOT NULL,
	PRIMARY KEY (series, h)
);
CREATE TABLE IF NOT EXISTS hours (
	series  INTEGER NOT NULL,
	h       INTEGER NOT NULL,
	n       INTEGER NOT NULL,
	total   REAL NOT NULL,
	lo      REAL NOT NULL,
	hi      REAL NOT NULL,
	first_t INTEGER NOT NULL,
	first_v REAL NOT NULL,
	last_t  INTEGER NOT NULL,
	last_v  REAL NOT NULL,
	PRIMARY KEY (series, h)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hour_minutes (
	series INTEGER NOT NULL,
	h      INTEGER NOT NULL,
	data   BLOB NOT NULL,
	PRIMARY KEY (series, h)
);
CREATE TABLE IF NOT EXISTS chunks (
	series INTEGER NOT NULL,
	h      INTEGER NOT NULL,
	gen    INTEGER NOT NULL,
	last_t INTEGER NOT NULL,
	last_v REAL NOT NULL,
	data   BLOB NOT NULL,
	PRIMARY KEY (series, h, gen)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flushed (
	one     INTEGER PRIMARY KEY CHECK (one = 1),
	gen     INTEGER NOT NULL,
	segment INTEGER NOT NULL,
	offset  INTEGER NOT NULL
);
`

const (
	minute = 60000 // ms
	hour   = 60 * minute
)

type seriesKey struct{ device, metric string }

type hourKey struct{ series, h int64 }

// Store is the embedded store. Its methods are safe for concurrent use;
// Appends are serialised, Queries run beside them.
type Store struct {
	w *sql.DB // the one writing connection
	r *sql.DB // reading connections

	mu     sync.Mutex // serialises writes and Ping on w
	insSer *sql.Stmt
	// INSERTs of several chunks, by count (see writeHead); under mu.
	insChunks map[int]*sql.Stmt

	// The write path (head.go). Lock order: flushMu, appendMu, mu or
	// hmu, smu.
	log      *journal.Journal
	flushMu  sync.Mutex // one flush at a time
	appendMu sync.Mutex // an Append's log record and head go together
	hmu      sync.RWMutex
	active   *head // takes the appends
	flushing *head // being written into the file, or nil
	// latest is, per series, its latest time in the file or in the
	// flushing head: a reading after it is not stored yet.
	latest map[seriesKey]int64
	kick   chan struct{} // tells the flusher the head is full
	refs   []*headSeries // each reading's series in Append, under appendMu

	smu    sync.RWMutex
	series map[seriesKey]int64 // every series in the file

	// The background maintenance (compact.go). compactMu makes its
	// passes one at a time; lateMu guards passed, the cutoffs of the last
	// pass if it succeeded, and late, per series the earliest hour of the
	// chunks flushed since the last pass began.
	compactMu sync.Mutex
	lateMu    sync.Mutex
	passed    *cutoffs
	late      map[int64]int64

	raw        *sql.Stmt
	page       *sql.Stmt
	blocksIn   *sql.Stmt
	hoursIn    *sql.Stmt
	minutesOf  *sql.Stmt
	blocksOf   *sql.Stmt
	devicesNow *sql.Stmt

	opts Options
	stop context.CancelFunc // ends the background maintenance
	done chan struct{}      // closed when it has ended
}

// Open opens the store in the file at path with the default Options: raw
// readings kept for ever.
func Open(path string) (*Store, error) { return OpenWith(path, Options{}) }

// OpenWith opens the store in the file at path, creating the file and its
// directory when they do not exist, and starts its background maintenance
// (see Options). A path holding '?' gives EInvalid; a directory that cannot
// be made gives EUnavailable.
func OpenWith(path string, o Options) (*Store, error) {
	if strings.ContainsRune(path, '?') {
		return nil, devices.Errorf(devices.EInvalid, "store path %q must not hold a '?'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, devices.Wrap(err, devices.EUnavailable, "the store's directory cannot be made")
	}
	// WAL lets queries read while a commit is written; synchronous=FULL
	// fsyncs the WAL on every commit, so a reading Append has returned
	// survives a power cut, not just a crash.
	v := url.Values{}
	v.Add("_pragma", "busy_timeout(10000)")
	// A new file gives the pages that retention frees back to the file
	// system, a few at a time (compact.go); an older file reuses them.
	v.Add("_pragma", "auto_vacuum(INCREMENTAL)")
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "synchronous(FULL)")
	// Without a limit the WAL file keeps the size of its largest burst.
	v.Add("_pragma", "journal_size_limit(67108864)")
	// A statement of several rows in a transaction keeps a journal to undo
	// just itself; in memory rather than in a temporary file, it costs no
	// system calls. (It has no part in durability.)
	v.Add("_pragma", "temp_store(MEMORY)")
	w, err := sql.Open("sqlite", path+"?"+v.Encode()+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	s := &Store{w: w, series: map[seriesKey]int64{}, late: map[int64]int64{}, latest: map[seriesKey]int64{}, insChunks: map[int]*sql.Stmt{}, kick: make(chan struct{}, 1), opts: o.withDefaults()}
	if err := s.init(); err != nil {
		w.Close()
		return nil, err
	}
	if err := s.openLog(path); err != nil {
		w.Close()
		return nil, devices.Wrap(err, devices.EUnavailable, "the store's log cannot be opened")
	}
	v.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", path+"?"+v.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	s.r = r
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{
		{&s.raw, `SELECT t, v FROM readings WHERE series = ? AND t >= ? AND t < ? ORDER BY t`},
		{&s.page, `SELECT t, v FROM readings WHERE series = ? AND t >= ? AND t < ? ORDER BY t LIMIT ?`},
		{&s.blocksIn, `SELECT data FROM blocks WHERE series = ? AND h >= ? AND h < ? ORDER BY h`},
		{&s.hoursIn, `SELECT h, n, total, lo, hi, first_t, first_v, last_t, last_v FROM hours WHERE series = ? AND h >= ? AND h < ? ORDER BY h`},
		// The minute summaries and the blocks of the hours in a JSON array.
		{&s.minutesOf, `SELECT m.h, m.data FROM json_each(?2) AS j CROSS JOIN hour_minutes AS m ON m.series = ?1 AND m.h = j.value`},
		{&s.blocksOf, `SELECT b.h, b.data FROM json_each(?2) AS j CROSS JOIN blocks AS b ON b.series = ?1 AND b.h = j.value`},
		// Each series' latest reading, as a row or in its latest hour's
		// summary; Devices keeps the later of the two.
		{&s.devicesNow, `SELECT s.device, s.metric, r.t, r.v FROM series AS s
JOIN readings AS r ON r.series = s.id AND r.t = (SELECT max(t) FROM readings WHERE series = s.id)
UNION ALL
SELECT s.device, s.metric, h.last_t, h.last_v FROM series AS s
JOIN hours AS h ON h.series = s.id AND h.h = (SELECT max(h) FROM hours WHERE series = s.id)
UNION ALL
SELECT s.device, s.metric, c.last_t, c.last_v FROM series AS s
JOIN chunks AS c ON c.series = s.id AND c.h = (SELECT max(h) FROM chunks WHERE series = s.id)`},
	} {
		if *p.st, err = r.Prepare(p.q); err != nil {
			s.Close()
			return nil, fmt.Errorf("sqlite: prepare: %w", err)
		}
	}
	s.start()
	return s, nil
}

func (s *Store) init() error {
	ctx := context.Background()
	if _, err := s.w.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("sqlite: schema: %w", err)
	}
	if err := s.loadSeries(ctx); err != nil {
		return fmt.Errorf("sqlite: series: %w", err)
	}
	if err := s.loadLatest(ctx); err != nil {
		return fmt.Errorf("sqlite: latest: %w", err)
	}
	var err error
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{
		{&s.insSer, `INSERT INTO series (device, metric) VALUES (?, ?) RETURNING id`},
	} {
		if *p.st, err = s.w.Prepare(p.q); err != nil {
			return fmt.Errorf("sqlite: prepare: %w", err)
		}
	}
	return nil
}

func (s *Store) loadSeries(ctx context.Context) error {
	rows, err := s.w.QueryContext(ctx, `SELECT id, device, metric FROM series`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var k seriesKey
		if err := rows.Scan(&id, &k.device, &k.metric); err != nil {
			return err
		}
		s.series[k] = id
	}
	return rows.Err()
}

// Close stops the background work, flushes the head into the file and
// closes it. Every Append that returned is already durable.
func (s *Store) Close() error {
	if s.stop != nil {
		s.stop()
		<-s.done
		s.stop = nil
	}
	var errs []error
	if s.log != nil {
		// An Append after this fails on the closed log.
		errs = append(errs, s.Flush(context.Background()), s.log.Close())
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	return errors.Join(errs...)
}

// Append stores rs durably before it returns: in the store's log, one
// record and one fsync, and in the head, where queries see them at once
// (see head.go; the flusher moves them into the file). A reading with the
// device, metric and time of one already stored, or of one before it in
// rs, is left out: the first value written wins, as in a ledger, so that a
// redelivery changes nothing and a device cannot rewrite its history. If
// any reading is invalid none is stored and the error is EInvalid; a
// failure of the log or the file gives EUnavailable.
func (s *Store) Append(ctx context.Context, rs []devices.Reading) error {
	for _, r := range rs {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	if len(rs) == 0 {
		return nil
	}
	if s.full() {
		// The flusher is behind: wait for it rather than grow.
		if err := s.Flush(ctx); err != nil {
			return err
		}
	}
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	rs, err := s.fresh(ctx, rs)
	if err != nil || len(rs) == 0 {
		return err
	}
	if err := s.log.Append(ctx, rs); err != nil {
		return unavailable("log", err)
	}
	s.hmu.Lock()
	for i, r := range rs {
		if s.refs[i].add(store.Point{T: r.Time, V: r.Value}) {
			s.active.n++
		}
	}
	n := s.active.n
	s.hmu.Unlock()
	clear(s.refs)
	if n >= s.opts.HeadReadings {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

func unavailable(what string, err error) error {
	return devices.Wrap(err, devices.EUnavailable, "history store: %s failed", what)
}

// Query answers q (see store.Query). An invalid q gives EInvalid; no
// readings give an empty, non-nil slice.
//
// Rows, chunks and blocks are read in one transaction, so that a compaction
// that moves rows into a block meanwhile is seen whole or not at all, and
// the heads as head.go says.
func (s *Store) Query(ctx context.Context, q store.Query) ([]store.Point, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	k := seriesKey{q.Device, q.Metric}
	hv := s.view(k, q.From, q.To)
	tx, id, heads, err := s.snapshot(ctx, k, hv)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	if q.Step == 0 {
		return s.rawPoints(ctx, tx, id, q.From, q.To, -1, heads)
	}
	acc := &accumulator{q: q, m: map[int64]*bucket{}}
	if id != 0 {
		if err := acc.addRows(tx.StmtContext(ctx, s.raw).QueryContext(ctx, id, q.From, q.To)); err != nil {
			return nil, err
		}
		if err := s.fromBlocks(ctx, tx, id, q, acc); err != nil {
			return nil, err
		}
		ps, err := chunkPoints(ctx, tx, nil, id, q.From, q.To)
		if err != nil {
			return nil, unavailable("query", err)
		}
		for _, p := range ps {
			acc.add(p.T, p.V)
		}
	}
	for _, p := range heads {
		acc.add(p.T, p.V)
	}
	return acc.points(), nil
}

// snapshot begins a read transaction and returns it with series k's id in
// the file (0 if it has none) and the readings of hv the file does not hold
// in that snapshot. hv must be taken before: see head.go.
func (s *Store) snapshot(ctx context.Context, k seriesKey, hv headView) (*sql.Tx, int64, []store.Point, error) {
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, nil, unavailable("query", err)
	}
	gen, err := flushedGen(ctx, tx)
	if err != nil {
		tx.Rollback()
		return nil, 0, nil, unavailable("query", err)
	}
	s.smu.RLock()
	id, ok := s.series[k]
	s.smu.RUnlock()
	if !ok {
		// Added by a flush that committed before the snapshot, perhaps
		// not yet in the cache.
		err := tx.QueryRowContext(ctx, `SELECT id FROM series WHERE device = ? AND metric = ?`, k.device, k.metric).Scan(&id)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			tx.Rollback()
			return nil, 0, nil, unavailable("query", err)
		}
	}
	return tx, id, hv.unflushed(gen), nil
}

// Readings calls fn with the readings of q's series with From <= t < To, in
// time order, at most store.ReadingsChunk at a time; q's Step and Agg are
// ignored. fn must not keep the slice: it is reused. An error from fn stops
// the scan and is returned. An invalid q gives EInvalid; a failure of the
// file, EUnavailable.
//
// Each chunk is read in a transaction of its own and no connection is held
// while fn runs, so a slow consumer never blocks the WAL's checkpoints nor
// other queries, and many series may be read side by side. The export is
// therefore not one snapshot: a reading appended while it runs appears if
// its time is after the chunk being read.
func (s *Store) Readings(ctx context.Context, q store.Query, fn func([]store.Point) error) error {
	q.Step, q.Agg = 0, ""
	if err := q.Validate(); err != nil {
		return err
	}
	k := seriesKey{q.Device, q.Metric}
	for from := q.From; ; {
		buf, err := s.readingsPage(ctx, k, from, q.To)
		if err != nil {
			return err
		}
		if len(buf) == 0 {
			return nil
		}
		full, next := len(buf) == store.ReadingsChunk, buf[len(buf)-1].T+1
		if err := fn(buf); err != nil {
			return err
		}
		if !full {
			return nil
		}
		from = next
	}
}

// readingsPage returns the first store.ReadingsChunk readings of series k
// from from to to, read in a transaction of its own.
func (s *Store) readingsPage(ctx context.Context, k seriesKey, from, to int64) ([]store.Point, error) {
	hv := s.view(k, from, to)
	tx, id, heads, err := s.snapshot(ctx, k, hv)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return s.rawPoints(ctx, tx, id, from, to, store.ReadingsChunk, heads)
}

// rawPoints returns the readings of series id (0: none in the file) with
// from <= t < to in time order, the first limit of them if limit >= 0: the
// rows and chunks merged with the blocks and with heads, the readings in
// memory the file does not hold.
func (s *Store) rawPoints(ctx context.Context, tx *sql.Tx, id, from, to int64, limit int, heads []store.Point) ([]store.Point, error) {
	var out []store.Point
	if id != 0 {
		var err error
		if out, err = s.filePoints(ctx, tx, id, from, to, limit); err != nil {
			return nil, err
		}
	}
	if len(heads) > 0 {
		out = mergePoints(make([]store.Point, 0, len(out)+len(heads)), out, heads)
	}
	if out == nil {
		out = []store.Point{}
	}
	if limit >= 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// filePoints is rawPoints of the file alone.
func (s *Store) filePoints(ctx context.Context, tx *sql.Tx, id, from, to int64, limit int) ([]store.Point, error) {
	var rowPts []store.Point
	rows, err := tx.StmtContext(ctx, s.page).QueryContext(ctx, id, from, to, limit)
	if err != nil {
		return nil, unavailable("query", err)
	}
	for rows.Next() {
		var p store.Point
		if err := rows.Scan(&p.T, &p.V); err != nil {
			rows.Close()
			return nil, unavailable("query", err)
		}
		rowPts = append(rowPts, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, unavailable("query", err)
	}

	var blockPts, buf []store.Point
	rows, err = tx.StmtContext(ctx, s.blocksIn).QueryContext(ctx, id, store.FloorTo(from, hour), to)
	if err != nil {
		return nil, unavailable("query", err)
	}
	for rows.Next() && (limit < 0 || len(blockPts) < limit) {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			rows.Close()
			return nil, unavailable("query", err)
		}
		if buf, err = decodeBlock(buf[:0], data); err != nil {
			rows.Close()
			return nil, unavailable("decode", err)
		}
		for _, p := range buf {
			if p.T >= from && p.T < to {
				blockPts = append(blockPts, p)
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, unavailable("query", err)
	}

	out := blockPts
	if len(rowPts) > 0 {
		out = mergePoints(make([]store.Point, 0, len(rowPts)+len(blockPts)), blockPts, rowPts)
	}
	// Chunks hold the latest hour or two: read them only as far as they
	// can be among the first limit.
	end := to
	if limit >= 0 && len(out) >= limit {
		end = out[limit-1].T + 1
	}
	chunkPts, err := chunkPoints(ctx, tx, nil, id, from, end)
	if err != nil {
		return nil, unavailable("query", err)
	}
	if len(chunkPts) > 0 {
		slices.SortFunc(chunkPts, func(a, b store.Point) int { return cmp.Compare(a.T, b.T) })
		out = mergePoints(make([]store.Point, 0, len(out)+len(chunkPts)), out, chunkPts)
	}
	return out, nil
}

// mergePoints appends to dst the points of a and b, each in time order, in
// time order; of two with the same time, a's is kept.
func mergePoints(dst, a, b []store.Point) []store.Point {
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0].T < b[0].T:
			dst, a = append(dst, a[0]), a[1:]
		case a[0].T > b[0].T:
			dst, b = append(dst, b[0]), b[1:]
		default:
			dst, a, b = append(dst, a[0]), a[1:], b[1:]
		}
	}
	dst = append(dst, a...)
	return append(dst, b...)
}

// whole says whether the span [start, start+width) lies inside q's range
// and inside one of its steps, so that its summary serves as it is.
func whole(q store.Query, start, width int64) bool {
	return start >= q.From && start+width <= q.To && q.BucketStart(start) == q.BucketStart(start+width-1)
}

// addRows adds the readings (t, v) of rows to acc.
func (acc *accumulator) addRows(rows *sql.Rows, err error) error {
	if err != nil {
		return unavailable("query", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t int64
		var v float64
		if err := rows.Scan(&t, &v); err != nil {
			return unavailable("query", err)
		}
		acc.add(t, v)
	}
	if err := rows.Err(); err != nil {
		return unavailable("query", err)
	}
	return nil
}

// jsonList is xs as a JSON array.
func jsonList(xs []int64) string {
	b := []byte{'['}
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, x, 10)
	}
	return string(append(b, ']'))
}

// exactSpan is the longest query whose steps are exact to the reading in
// compacted hours. A step boundary that falls inside a minute needs the
// minute's readings, from its hour's block: over a longer range, asked for
// at a thousand points or so, that would be a block decoded for every
// step, so there such a minute counts whole in the step it starts in, an
// error of at most a minute at each step's edge (a step is then 45 minutes
// or more). The minutes cut by From and To are exact whatever the span.
const exactSpan = 31 * 24 * hour

// fromBlocks adds to acc what the compacted hours hold of q: the summary
// of each hour that lies wholly in one step and in range; for the others,
// the summary of each such minute; and for the minutes left (cut by a step
// boundary or by From or To), the readings of their blocks, but for the
// minutes cut by a step boundary in a query longer than exactSpan. Where
// retention has dropped the block, a minute left counts whole in the step
// of its start when it starts in range. These are the two places an answer
// is approximate, by at most a minute at each step's edge.
func (s *Store) fromBlocks(ctx context.Context, tx *sql.Tx, id int64, q store.Query, acc *accumulator) error {
	rows, err := tx.StmtContext(ctx, s.hoursIn).QueryContext(ctx, id, store.FloorTo(q.From, hour), q.To)
	if err != nil {
		return unavailable("query", err)
	}
	var detail []int64 // hours to read minute by minute
	for rows.Next() {
		var m minuteSummary
		if err := rows.Scan(&m.m, &m.n, &m.sum, &m.min, &m.max, &m.firstT, &m.firstV, &m.lastT, &m.lastV); err != nil {
			rows.Close()
			return unavailable("query", err)
		}
		if whole(q, m.m, hour) {
			acc.merge(m.m, m)
		} else {
			detail = append(detail, m.m)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return unavailable("query", err)
	}
	if len(detail) == 0 {
		return nil
	}

	long := q.To-q.From > exactSpan
	rows, err = tx.StmtContext(ctx, s.minutesOf).QueryContext(ctx, id, jsonList(detail))
	if err != nil {
		return unavailable("query", err)
	}
	rest := map[int64][]minuteSummary{} // per hour, its minutes not whole
	var ms []minuteSummary
	for rows.Next() {
		var h int64
		var data []byte
		if err := rows.Scan(&h, &data); err != nil {
			rows.Close()
			return unavailable("query", err)
		}
		if ms, err = decodeMinutes(ms[:0], h, data); err != nil {
			rows.Close()
			return unavailable("decode", err)
		}
		for _, m := range ms {
			switch {
			case whole(q, m.m, minute):
				acc.merge(m.m, m)
			case long && m.m >= q.From && m.m+minute <= q.To:
				acc.merge(m.m, m) // cut by a step boundary: see exactSpan
			case m.m < q.To && m.m+minute > q.From:
				rest[h] = append(rest[h], m)
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return unavailable("query", err)
	}
	if len(rest) == 0 {
		return nil
	}

	hours := slices.Sorted(maps.Keys(rest))
	rows, err = tx.StmtContext(ctx, s.blocksOf).QueryContext(ctx, id, jsonList(hours))
	if err != nil {
		return unavailable("query", err)
	}
	var ps []store.Point
	for rows.Next() {
		var h int64
		var data []byte
		if err := rows.Scan(&h, &data); err != nil {
			rows.Close()
			return unavailable("query", err)
		}
		if ps, err = decodeBlock(ps[:0], data); err != nil {
			rows.Close()
			return unavailable("decode", err)
		}
		var need uint64 // the minutes of the hour left, by index
		for _, m := range rest[h] {
			need |= 1 << ((m.m - h) / minute)
		}
		for _, p := range ps {
			if p.T >= q.From && p.T < q.To && need&(1<<((p.T-h)/minute)) != 0 {
				acc.add(p.T, p.V)
			}
		}
		delete(rest, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return unavailable("query", err)
	}
	for _, ms := range rest { // raw readings dropped by retention
		for _, m := range ms {
			if m.m >= q.From {
				acc.merge(m.m, m)
			}
		}
	}
	return nil
}

// accumulator gathers a query's buckets, given readings and summaries in
// any order.
type accumulator struct {
	q    store.Query
	m    map[int64]*bucket
	last *bucket
}

func (a *accumulator) at(t int64) *bucket {
	start := a.q.BucketStart(t)
	if a.last != nil && a.last.start == start {
		return a.last
	}
	b := a.m[start]
	if b == nil {
		b = &bucket{start: start}
		a.m[start] = b
	}
	a.last = b
	return b
}

func (a *accumulator) add(t int64, v float64) {
	b := a.at(t)
	b.add(b.start, t, v)
}

// merge adds the summary m of readings from time t on, all in t's bucket.
func (a *accumulator) merge(t int64, m minuteSummary) { a.at(t).merge(m) }

// points is the buckets' points in time order.
func (a *accumulator) points() []store.Point {
	out := make([]store.Point, 0, len(a.m))
	for _, b := range a.m {
		out = append(out, b.point(a.q.Agg))
	}
	slices.SortFunc(out, func(a, b store.Point) int { return cmp.Compare(a.T, b.T) })
	return out
}

// minuteSummary summarises the readings of one minute, or of one hour.
type minuteSummary struct {
	m, n          int64
	sum, min, max float64
	firstT, lastT int64
	firstV, lastV float64
}

// bucket accumulates the readings of one step, given in any order.
type bucket struct {
	start         int64
	n             int64
	sum, min, max float64
	firstT, lastT int64
	first, last   float64
}

func (b *bucket) add(start, t int64, v float64) {
	b.merge(minuteSummary{n: 1, sum: v, min: v, max: v, firstT: t, firstV: v, lastT: t, lastV: v})
	b.start = start
}

func (b *bucket) merge(m minuteSummary) {
	if b.n == 0 {
		b.n, b.sum, b.min, b.max = m.n, m.sum, m.min, m.max
		b.firstT, b.first, b.lastT, b.last = m.firstT, m.firstV, m.lastT, m.lastV
		return
	}
	b.n += m.n
	b.sum += m.sum
	b.min = min(b.min, m.min)
	b.max = max(b.max, m.max)
	if m.firstT < b.firstT {
		b.firstT, b.first = m.firstT, m.firstV
	}
	if m.lastT > b.lastT {
		b.lastT, b.last = m.lastT, m.lastV
	}
}

// point is the bucket's point for aggregate a.
func (b *bucket) point(a store.Agg) store.Point {
	p := store.Point{T: b.start}
	switch a {
	case store.AggMean:
		p.V = b.sum / float64(b.n)
	case store.AggMin:
		p.V = b.min
	case store.AggMax:
		p.V = b.max
	case store.AggMinMax:
		p.V, p.Max = b.min, b.max
	case store.AggFirst:
		p.V = b.first
	case store.AggLast:
		p.V = b.last
	case store.AggCount:
		p.V = float64(b.n)
	default:
		p.V = b.sum
	}
	return p
}

// Ping reports whether the store can be read and written: it takes the
// write lock and reads the schema, without writing. A failure gives
// EUnavailable.
func (s *Store) Ping(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return unavailable("ping", err)
	}
	defer tx.Rollback()
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema`).Scan(&n); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Devices returns every device the store holds readings of, each with the
// latest reading of each of its metrics and, as its last seen time, the
// newest of them: so that a device known from history is listed even when
// nothing else remembers it. Its status is unknown.
func (s *Store) Devices(ctx context.Context) ([]devices.Device, error) {
	latest := map[seriesKey]devices.Value{}
	s.hmu.RLock()
	for _, h := range []*head{s.flushing, s.active} {
		if h == nil {
			continue
		}
		for k, hs := range h.series {
			if n := len(hs.pts); n > 0 {
				if old, ok := latest[k]; !ok || hs.pts[n-1].T > old.T {
					latest[k] = devices.Value{T: hs.pts[n-1].T, V: hs.pts[n-1].V}
				}
			}
		}
	}
	s.hmu.RUnlock()
	rows, err := s.devicesNow.QueryContext(ctx)
	if err != nil {
		return nil, unavailable("devices", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k seriesKey
		var v devices.Value
		if err := rows.Scan(&k.device, &k.metric, &v.T, &v.V); err != nil {
			return nil, unavailable("devices", err)
		}
		if old, ok := latest[k]; !ok || v.T > old.T {
			latest[k] = v
		}
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("devices", err)
	}
	byID := map[string]*devices.Device{}
	for k, v := range latest {
		d := byID[k.device]
		if d == nil {
			d = &devices.Device{ID: k.device, Status: devices.StatusUnknown, Latest: map[string]devices.Value{}}
			byID[k.device] = d
		}
		d.Latest[k.metric] = v
		d.LastSeen = max(d.LastSeen, v.T)
	}
	var out []devices.Device
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		out = append(out, *byID[id])
	}
	return out, nil
}
