package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"iotdash/devices"
	"iotdash/store"
	"iotdash/store/journal"
)

// The write path. Append makes a group durable in the store's log (a
// journal beside the file, one record and one fsync a group) and adds its
// readings to the head, in memory; no SQLite work is on that path. A
// flusher moves the head into the file every Options.FlushInterval, or
// sooner once it holds Options.HeadReadings, as one transaction of chunks:
// per series and hour, the head's readings in codec.go's encoding, a row
// each. The same transaction records the flush's generation and the place
// in the log the head ended at, so that after a crash the log is replayed
// from there into the head and nothing is written twice; the log before it
// is then forgotten. The compactor merges chunks into their hour's block as
// it does rows.
//
// While a head is being flushed a new one takes the appends. Each head has
// the generation it is written in; a query reads the heads, then the file,
// and keeps a head's readings only if the file's generation (read in the
// same snapshot as its readings) is older than the head's: so every reading
// is counted once, whenever the flush commits.
//
// A reading whose series and time are already stored is left out (the
// first value wins): a head knows its own readings, and a reading no later
// than the latest its series has in the file or in a flushing head (rare:
// a redelivery, or a late reading) is looked up there.

// head is readings in memory, per series in time order, times unique.
type head struct {
	gen    int64
	series map[seriesKey]*headSeries
	n      int
	pos    journal.Position // set when it is flushed: where the log ended
}

// headSeries is a series' readings in a head. A series may have none (an
// Append that failed made it).
type headSeries struct {
	pts []store.Point
	// latest is the series' latest time in the file or the flushing head
	// when the head took its first reading, which stays true while the
	// head takes appends; known is false if there was none.
	latest int64
	known  bool
}

func newHead(gen int64) *head { return &head{gen: gen, series: map[seriesKey]*headSeries{}} }

// add adds p unless the series has a reading at p.T, and says whether it
// did.
func (hs *headSeries) add(p store.Point) bool {
	ps := hs.pts
	if n := len(ps); n == 0 || ps[n-1].T < p.T {
		hs.pts = append(ps, p)
		return true
	}
	i, found := slices.BinarySearchFunc(ps, p.T, byTime)
	if found {
		return false
	}
	hs.pts = slices.Insert(ps, i, p)
	return true
}

func (h *head) has(k seriesKey, t int64) bool {
	hs := h.series[k]
	if hs == nil {
		return false
	}
	_, found := slices.BinarySearchFunc(hs.pts, t, byTime)
	return found
}

// in returns the readings of series k with from <= t < to, appended to dst.
func (h *head) in(dst []store.Point, k seriesKey, from, to int64) []store.Point {
	hs := h.series[k]
	if hs == nil {
		return dst
	}
	i, _ := slices.BinarySearchFunc(hs.pts, from, byTime)
	j, _ := slices.BinarySearchFunc(hs.pts, to, byTime)
	return append(dst, hs.pts[i:j]...)
}

func byTime(p store.Point, t int64) int { return cmp.Compare(p.T, t) }

// seriesOf returns series k in the active head, added if it is not there.
// Under hmu, or before the store is shared.
func (s *Store) seriesOf(k seriesKey) *headSeries {
	hs := s.active.series[k]
	if hs == nil {
		hs = &headSeries{}
		hs.latest, hs.known = s.latest[k]
		s.active.series[k] = hs
	}
	return hs
}

// headView is what a query reads of the heads: their readings of one series
// in its range, each with its head's generation.
type headView struct {
	gens [2]int64
	pts  [2][]store.Point
}

// view copies the heads' readings of series k with from <= t < to.
func (s *Store) view(k seriesKey, from, to int64) headView {
	var v headView
	s.hmu.RLock()
	defer s.hmu.RUnlock()
	for i, h := range []*head{s.flushing, s.active} {
		if h != nil {
			v.gens[i], v.pts[i] = h.gen, h.in(nil, k, from, to)
		}
	}
	return v
}

// unflushed returns the readings of v that the file did not hold at
// generation gen, in time order.
func (v headView) unflushed(gen int64) []store.Point {
	var out []store.Point
	for i := range v.pts {
		if v.gens[i] > gen && len(v.pts[i]) > 0 {
			out = mergePoints(make([]store.Point, 0, len(out)+len(v.pts[i])), out, v.pts[i])
		}
	}
	return out
}

// flushedGen reads the generation of the last flush in tx: the first read
// of a transaction, it fixes the snapshot the rest is read in.
func flushedGen(ctx context.Context, tx *sql.Tx) (int64, error) {
	var gen int64
	err := tx.QueryRowContext(ctx, `SELECT gen FROM flushed`).Scan(&gen)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return gen, err
}

// fresh returns the readings of rs that are not stored yet and each one's
// series in the active head (in s.refs), looking up in the flushing head
// and in the file those no later than their series' latest there. Under
// appendMu, so that no head is flushed meanwhile.
func (s *Store) fresh(ctx context.Context, rs []devices.Reading) ([]devices.Reading, error) {
	refs := s.refs[:0]
	var look []int // readings to look up in the file
	var dups []bool
	dup := func(i int) {
		if dups == nil {
			dups = make([]bool, len(rs))
		}
		dups[i] = true
	}
	s.hmu.Lock()
	for i, r := range rs {
		k := seriesKey{r.Device, r.Metric}
		hs := s.seriesOf(k)
		refs = append(refs, hs)
		switch {
		case !hs.known || r.Time > hs.latest:
		case s.flushing != nil && s.flushing.has(k, r.Time):
			dup(i)
		default:
			look = append(look, i)
		}
	}
	s.hmu.Unlock()
	s.refs = refs

	var known map[hourKey][]store.Point
	for _, i := range look {
		r := rs[i]
		s.smu.RLock()
		id, ok := s.series[seriesKey{r.Device, r.Metric}]
		s.smu.RUnlock()
		if !ok {
			continue
		}
		hk := hourKey{id, store.FloorTo(r.Time, hour)}
		ps, ok := known[hk]
		if !ok {
			var err error
			if ps, err = s.hourPoints(ctx, hk); err != nil {
				return nil, err
			}
			if known == nil {
				known = map[hourKey][]store.Point{}
			}
			known[hk] = ps
		}
		if _, found := slices.BinarySearchFunc(ps, r.Time, byTime); found {
			dup(i)
		}
	}
	if dups == nil {
		return rs, nil
	}
	var out []devices.Reading
	s.refs = refs[:0]
	for i, r := range rs {
		if !dups[i] {
			out = append(out, r)
			s.refs = append(s.refs, refs[i])
		}
	}
	return out, nil
}

// hourPoints returns every reading the file holds of series k.series in
// hour k.h, as rows, chunks or in its block, in time order: what a query
// reads of it.
func (s *Store) hourPoints(ctx context.Context, k hourKey) ([]store.Point, error) {
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, unavailable("read", err)
	}
	defer tx.Rollback()
	return s.filePoints(ctx, tx, k.series, k.h, k.h+hour, -1)
}

// full says whether the head holds more than the flusher should have let
// it: then Append flushes before it adds more, which bounds the memory.
func (s *Store) full() bool {
	s.hmu.RLock()
	defer s.hmu.RUnlock()
	return s.active.n >= 2*s.opts.HeadReadings
}

// Flush moves the readings in memory into the file now, as the flusher
// does every FlushInterval. A failure of the file gives EUnavailable; the
// readings stay in memory and in the log, and the next flush writes them.
func (s *Store) Flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if s.flushing == nil {
		// Take the head and the log's end together: every reading of the
		// log before that end is in the head.
		s.appendMu.Lock()
		s.hmu.Lock()
		if s.active.n > 0 {
			h := s.active
			h.pos = s.log.End()
			s.flushing, s.active = h, newHead(h.gen+1)
			for k, hs := range h.series {
				if n := len(hs.pts); n > 0 && (!hs.known || hs.pts[n-1].T > hs.latest) {
					s.latest[k] = hs.pts[n-1].T
				}
			}
		}
		s.hmu.Unlock()
		s.appendMu.Unlock()
	}
	h := s.flushing // nil, or one a failed flush left
	if h == nil {
		return nil
	}
	if err := s.writeHead(ctx, h); err != nil {
		return err
	}
	s.hmu.Lock()
	s.flushing = nil
	s.hmu.Unlock()
	if err := s.log.Forget(h.pos); err != nil {
		return unavailable("log", err)
	}
	return nil
}

// chunkRows is the most chunks one INSERT writes: a statement a chunk
// cost more than encoding it.
const chunkRows = 64

// insertChunks adds n chunks.
func insertChunks(n int) string {
	return "INSERT INTO chunks (series, h, gen, last_t, last_v, data) VALUES (?, ?, ?, ?, ?, ?)" + strings.Repeat(", (?, ?, ?, ?, ?, ?)", n-1)
}

// chunk is one series' readings of one hour in a head, encoded.
type chunk struct {
	k    seriesKey
	h    int64
	last store.Point
	data []byte
}

// writeHead writes h into the file as chunks, in one transaction with its
// generation and place in the log.
func (s *Store) writeHead(ctx context.Context, h *head) error {
	var chunks []chunk
	for k, hs := range h.series {
		for ps := hs.pts; len(ps) > 0; {
			hr := store.FloorTo(ps[0].T, hour)
			n, _ := slices.BinarySearchFunc(ps, hr+hour, byTime)
			part := ps[:n]
			ps = ps[n:]
			chunks = append(chunks, chunk{k: k, h: hr, last: part[n-1], data: encodeBlock(nil, part, decimals(part))})
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	// Prepared before the transaction, which holds the one connection.
	for _, n := range []int{min(len(chunks), chunkRows), len(chunks) % chunkRows} {
		if n == 0 {
			continue
		}
		if s.insChunks[n] == nil {
			st, err := s.w.PrepareContext(ctx, insertChunks(n))
			if err != nil {
				return unavailable("prepare", err)
			}
			s.insChunks[n] = st
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return unavailable("begin", err)
	}
	defer tx.Rollback()
	s.smu.RLock()
	ids := s.series
	s.smu.RUnlock()
	added := map[seriesKey]int64{}
	id := func(k seriesKey) (int64, error) {
		if id, ok := ids[k]; ok {
			return id, nil
		}
		if id, ok := added[k]; ok {
			return id, nil
		}
		var id int64
		err := tx.StmtContext(ctx, s.insSer).QueryRowContext(ctx, k.device, k.metric).Scan(&id)
		added[k] = id
		return id, err
	}
	args := make([]any, 0, 6*chunkRows)
	first := map[int64]int64{} // per series, its earliest chunk's hour
	for start := 0; start < len(chunks); start += chunkRows {
		part := chunks[start:min(start+chunkRows, len(chunks))]
		args = args[:0]
		for _, c := range part {
			sid, err := id(c.k)
			if err != nil {
				return unavailable("add series", err)
			}
			args = append(args, sid, c.h, h.gen, c.last.T, c.last.V, c.data)
			if old, ok := first[sid]; !ok || c.h < old {
				first[sid] = c.h
			}
		}
		if _, err := tx.StmtContext(ctx, s.insChunks[len(part)]).ExecContext(ctx, args...); err != nil {
			return unavailable("write", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO flushed (one, gen, segment, offset) VALUES (1, ?, ?, ?)`, h.gen, h.pos.Segment, h.pos.Offset); err != nil {
		return unavailable("write", err)
	}
	if err := tx.Commit(); err != nil {
		return unavailable("commit", err)
	}
	s.lateHours(first)
	if len(added) > 0 {
		s.smu.Lock()
		for k, id := range added {
			s.series[k] = id
		}
		s.smu.Unlock()
	}
	return nil
}

// openLog opens the log beside the file and replays into the head what
// the file does not hold yet.
func (s *Store) openLog(path string) error {
	ctx := context.Background()
	var gen int64
	var pos journal.Position
	err := s.w.QueryRowContext(ctx, `SELECT gen, segment, offset FROM flushed`).Scan(&gen, &pos.Segment, &pos.Offset)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: flushed: %w", err)
	}
	log, err := journal.Open(path+logSuffix, journal.Options{})
	if err != nil {
		return err
	}
	s.log = log
	s.active = newHead(gen + 1)
	if end := log.End(); end.Before(pos) {
		// The log is not the one the file was flushed with (it was moved
		// away): what it holds is all unflushed, and so is what comes.
		if _, err := s.w.ExecContext(ctx, `UPDATE flushed SET segment = 0, offset = 0`); err != nil {
			return fmt.Errorf("sqlite: flushed: %w", err)
		}
		pos = journal.Position{}
	}
	return log.Replay(pos, func(rs []devices.Reading) error {
		for _, r := range rs {
			if s.seriesOf(seriesKey{r.Device, r.Metric}).add(store.Point{T: r.Time, V: r.Value}) {
				s.active.n++
			}
		}
		return nil
	})
}

// logSuffix names the log's directory after the file's path.
const logSuffix = "-log"

// flusher flushes the head every FlushInterval, and when Append says it
// is full, until ctx ends.
func (s *Store) flusher(ctx context.Context) {
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	f := failures{log: s.opts.Logger, what: "flush"}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
		f.report(ctx, s.Flush(ctx))
	}
}

// loadLatest reads each series' latest time in the file.
func (s *Store) loadLatest(ctx context.Context) error {
	rows, err := s.w.QueryContext(ctx, `SELECT s.device, s.metric, max(
	coalesce((SELECT max(t) FROM readings WHERE series = s.id), -1 << 62),
	coalesce((SELECT last_t FROM hours WHERE series = s.id ORDER BY h DESC LIMIT 1), -1 << 62),
	coalesce((SELECT max(last_t) FROM chunks WHERE series = s.id), -1 << 62)) FROM series AS s`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k seriesKey
		var t int64
		if err := rows.Scan(&k.device, &k.metric, &t); err != nil {
			return err
		}
		s.latest[k] = t
	}
	return rows.Err()
}

// chunkPoints appends to dst the readings of series id's chunks of the
// hours from hour(from) to before to with from <= t < to, in the order of
// their chunks (each in time order, the chunks of an hour may overlap in
// time).
func chunkPoints(ctx context.Context, tx *sql.Tx, dst []store.Point, id, from, to int64) ([]store.Point, error) {
	rows, err := tx.QueryContext(ctx, `SELECT data FROM chunks WHERE series = ? AND h >= ? AND h < ?`, id, store.FloorTo(from, hour), to)
	if err != nil {
		return dst, err
	}
	defer rows.Close()
	var buf []store.Point
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return dst, err
		}
		if buf, err = decodeBlock(buf[:0], data); err != nil {
			return dst, err
		}
		i, _ := slices.BinarySearchFunc(buf, from, byTime)
		j, _ := slices.BinarySearchFunc(buf, to, byTime)
		dst = append(dst, buf[i:j]...)
	}
	return dst, rows.Err()
}

// Unflushed returns how many readings are in memory, not yet in the file
// (they are in the log): at most about four times Options.HeadReadings.
func (s *Store) Unflushed() int {
	s.hmu.RLock()
	defer s.hmu.RUnlock()
	n := s.active.n
	if s.flushing != nil {
		n += s.flushing.n
	}
	return n
}
