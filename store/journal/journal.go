// Package journal is a durable first-in, first-out queue of readings on
// disk, in front of a store that may be down (InfluxDB). The ingest
// pipeline appends each group-committed batch and acknowledges the MQTT
// messages only once Append has returned; Drain then moves the readings, in
// order, to the store, and forgets them once the store has them. Readings
// so acknowledged survive a store outage and a crash of iotdash.
//
// A reading is delivered at least once: after a crash between a write and
// the checkpoint that follows it, the same readings are written again,
// which InfluxDB takes as an overwrite of the same values.
//
// It is a log made for the job (see segment.go for the format): a directory
// of append-only segment files of checksummed records, one record and one
// fsync per Append, segments deleted whole once the store has every reading
// in them, a checkpoint of how far the store has confirmed, and a torn tail
// found and cut when it is opened. A journal of an earlier iotdash (a SQLite
// file at the same path) is moved into it when opened. It is not a store of
// history: nothing here can be queried, and what has been drained is gone.
//
// The embedded store (store/sqlite) keeps its write-ahead log in a journal
// too: it keeps its own place (Position, End) beside what it has written,
// Replays the rest after a restart, and Forgets what is behind it, in place
// of Drain.
package journal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	// SegmentBytes is the size past which appends go to a new segment file
	// (default 16 MiB): segments are deleted whole once drained.
	SegmentBytes int64
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
	// file (RejectedFile), so that one bad reading cannot hold up all that
	// follow.
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

// RejectedFile is the file in the journal's directory where readings the
// store refused as bad data are kept, one JSON object a line.
const RejectedFile = "rejected.jsonl"

// Journal is a durable FIFO of readings. Its methods are safe for
// concurrent use.
type Journal struct {
	dir    string
	max    int64
	segMax int64
	notify chan struct{} // signalled after each append
	log    *slog.Logger

	mu     sync.Mutex // serialises appends and the log's end
	head   *os.File   // the segment appends go to
	end    position   // where the next record goes (skip is 0)
	rec    []byte     // Append's reused record
	closed bool

	drainMu sync.Mutex // one batch in flight at a time, in order
	done    position   // how far the store has confirmed
	rbuf    []byte     // the drain's reused record buffer
	batch   []devices.Reading
	dec     decoder
	readers map[uint64]*os.File // segments open for the drain
	// singly counts readings still to be written one at a time, after a
	// batch of them was refused as bad data, to find the bad ones.
	singly int

	statMu sync.Mutex
	stats  Stats
}

// Open opens the journal at path, a directory it creates if need be, cuts
// a torn record at its end (what a crash in the middle of an append
// leaves), and counts the readings it still holds. A SQLite journal file
// of an earlier iotdash at path is moved into the new journal first, its
// readings in order.
func Open(path string, opts Options) (*Journal, error) {
	if opts.MaxReadings < 0 || opts.SegmentBytes < 0 {
		return nil, devices.Errorf(devices.EInvalid, "journal: MaxReadings and SegmentBytes must not be negative")
	}
	if opts.SegmentBytes == 0 {
		opts.SegmentBytes = segmentSize
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	j := &Journal{dir: path, max: opts.MaxReadings, segMax: opts.SegmentBytes, notify: make(chan struct{}, 1), log: log.With("component", "journal"),
		readers: map[uint64]*os.File{}}
	old, err := setAsideSQLite(path)
	if err != nil {
		return nil, devices.Wrap(err, devices.EInternal, "journal: cannot move the earlier journal at %s aside", path)
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, devices.Wrap(err, devices.EInternal, "journal: cannot create %s", path)
	}
	if err := j.recover(); err != nil {
		j.Close()
		return nil, devices.Wrap(err, devices.EInternal, "journal: cannot open %s", path)
	}
	if old != "" {
		if err := j.migrate(old); err != nil {
			j.Close()
			return nil, devices.Wrap(err, devices.EInternal, "journal: cannot move the readings of the earlier journal %s", old)
		}
	}
	if opts.Registerer != nil {
		registerMetrics(opts.Registerer, j)
	}
	return j, nil
}

// recover finds the confirmed position and the end of the log, checking
// every record in between (and counting their readings), and cuts the last
// segment after its last whole record.
func (j *Journal) recover() error {
	segs, err := segments(j.dir)
	if err != nil {
		return err
	}
	start, ok := readCheckpoint(j.dir)
	if len(segs) == 0 {
		segs = []uint64{max(start.seg, 1)}
	}
	if !ok || start.seg < segs[0] || start.seg > segs[len(segs)-1] {
		start = position{seg: segs[0]}
	}
	// Segments before the confirmed one are leftovers of a crash between
	// the checkpoint and their removal.
	for _, seg := range segs {
		if seg < start.seg {
			os.Remove(segmentName(j.dir, seg))
		}
	}
	var backlog int64
	var buf []byte
	for _, seg := range segs {
		if seg < start.seg {
			continue
		}
		last := seg == segs[len(segs)-1]
		f, err := os.OpenFile(segmentName(j.dir, seg), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		if fi, err := f.Stat(); err == nil && fi.Size() == 0 && last {
			if err := preallocate(f, j.segMax); err != nil {
				f.Close()
				return err
			}
		}
		off := int64(0)
		if seg == start.seg {
			off = start.off
		}
		for {
			var payload []byte
			next := off
			payload, next, buf, err = readRecord(f, off, buf)
			if err == nil {
				var n int64
				if n, err = readingCount(payload); err == nil {
					if seg == start.seg && off == start.off {
						n = max(n-start.skip, 0)
					}
					backlog += n
					off = next
					continue
				}
			}
			if err == io.EOF {
				break
			}
			if !last || !(errors.Is(err, errTorn) || errors.Is(err, errCodec)) {
				f.Close()
				return fmt.Errorf("segment %s is damaged at offset %d (%w): move it away to start without it", segmentName(j.dir, seg), off, err)
			}
			// A torn tail: the append it held never returned, so no
			// message of it was acknowledged. Cut it, and zero the rest
			// of the segment as it was made.
			size := int64(0)
			if fi, err := f.Stat(); err == nil {
				size = fi.Size()
			}
			j.log.Warn("cutting a torn record at the end of the journal (an append a crash interrupted)",
				"segment", f.Name(), "offset", off, "size", size)
			err := f.Truncate(off)
			if err == nil {
				err = f.Truncate(max(size, off))
			}
			if err != nil {
				f.Close()
				return err
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return err
			}
			break
		}
		if last {
			j.head = f
			j.end = position{seg: seg, off: off}
		} else {
			f.Close()
		}
	}
	if err := syncDir(j.dir); err != nil {
		return err
	}
	if start.seg == j.end.seg && start.off > j.end.off {
		start = j.end // a checkpoint past a cut tail
	}
	j.done = start
	j.stats = Stats{Backlog: backlog, Healthy: true}
	return nil
}

// Close closes the journal's files. Stop Drain and Flush first.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.drainMu.Lock()
	defer j.drainMu.Unlock()
	var err error
	if j.head != nil && !j.closed {
		err = j.head.Close()
	}
	j.closed = true
	for seg, f := range j.readers {
		f.Close()
		delete(j.readers, seg)
	}
	return err
}

// Append stores rs durably, in one record and one fsync, before it
// returns: once it returns nil the readings survive a crash, and the
// caller may acknowledge the messages they came in.
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
	if err := j.write(rs); err != nil {
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

// write appends rs as one record to the head segment, starting a new one
// first if it is full, and syncs it. On failure it cuts what it may have
// written, so that the next append does not follow a torn record.
func (j *Journal) write(rs []devices.Reading) error {
	if j.closed {
		return errors.New("journal closed")
	}
	if j.end.off >= j.segMax {
		if err := j.roll(); err != nil {
			return err
		}
	}
	j.rec = appendReadings(append(j.rec[:0], make([]byte, headerSize)...), rs)
	frame(j.rec)
	_, err := j.head.WriteAt(j.rec, j.end.off)
	if err == nil {
		err = datasync(j.head)
	}
	if err != nil {
		// Zero what may have been written, so that no torn record
		// follows the last whole one.
		j.head.WriteAt(make([]byte, len(j.rec)), j.end.off)
		return err
	}
	j.end.off += int64(len(j.rec))
	if cap(j.rec) > 1<<20 {
		j.rec = nil // one huge batch need not hold its memory for ever
	}
	return nil
}

// roll starts the next segment; the current one is complete and synced.
func (j *Journal) roll() error {
	next := j.end.seg + 1
	f, err := os.OpenFile(segmentName(j.dir, next), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = preallocate(f, j.segMax)
	if err == nil {
		err = syncDir(j.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	j.head.Close()
	j.head = f
	j.end = position{seg: next}
	return nil
}

// Stats returns the journal's counters.
func (j *Journal) Stats() Stats {
	j.statMu.Lock()
	defer j.statMu.Unlock()
	return j.stats
}

// Drain writes the journal's readings to w, oldest first, up to batch
// readings per w.Append, forgetting each batch once written, until ctx
// ends; it then returns nil. On an empty journal it waits for Append to
// wake it (with a timer of a few seconds as a safety net); once it has
// written all there was, it lets appends gather for a moment (see gather).
// A failed write is retried, the same batch, after a backoff that doubles
// from MinBackoff to MaxBackoff; Stats reports the failures. When w refuses
// a batch as bad data (devices.EInvalid), its readings are written again
// one by one, and those refused again are set aside in RejectedFile and
// counted in Stats.Rejected, so that they do not hold up the rest. w must
// not keep the slice it is given.
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
// moves the checkpoint past them. It reports whether it made progress
// (false with a nil error means the journal is empty) and whether it took
// fewer than batch, all there were.
func (j *Journal) drainBatch(ctx context.Context, w Writer, batch int) (moved, short bool, err error) {
	j.drainMu.Lock()
	defer j.drainMu.Unlock()
	if j.singly > 0 {
		batch = 1
	}
	rs, next, err := j.oldest(batch)
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
	if bad {
		if err := j.setAside(rs, werr); err != nil {
			j.failed(err)
			return false, false, err
		}
	}
	if err := j.confirm(next); err != nil {
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
		j.log.Error("the store refused a reading as bad data; it is set aside in the journal's rejected file",
			"device", rs[0].Device, "metric", rs[0].Metric, "time", rs[0].Time, "file", filepath.Join(j.dir, RejectedFile), "error", werr)
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

// oldest reads the oldest readings not yet confirmed, up to n, into the
// drain's reused slice, and returns where the readings after them start.
func (j *Journal) oldest(n int) ([]devices.Reading, position, error) {
	j.mu.Lock()
	end := j.end
	j.mu.Unlock()
	rs := j.batch[:0]
	p := j.done
	for len(rs) < n {
		payload, at, next, err := j.record(p, end)
		p = at
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, p, err
		}
		var took int64
		rs, took, err = j.dec.decode(rs, payload, p.skip, int64(n-len(rs)))
		if err != nil {
			return nil, p, fmt.Errorf("reading %s at %d: %w", segmentName(j.dir, p.seg), p.off, err)
		}
		count, _ := readingCount(payload)
		if p.skip+took < count {
			p.skip += took
		} else {
			p = position{seg: p.seg, off: next}
		}
	}
	j.batch = rs
	return rs, p, nil
}

// record reads the record at p, or, where p is the end of a complete
// segment (one before end's), the first record of the next. It returns the
// record, where it was read (p, or the next segment's start, with skip
// kept only in the first case) and the offset after it; io.EOF once p is
// not before end.
func (j *Journal) record(p, end position) (payload []byte, at position, next int64, err error) {
	for p.before(end) {
		f, err := j.reader(p.seg)
		if err != nil {
			return nil, p, 0, err
		}
		payload, next, buf, err := readRecord(f, p.off, j.rbuf)
		j.rbuf = buf
		if err == io.EOF && p.seg < end.seg {
			// The end of a complete segment: go on in the next one.
			p = position{seg: p.seg + 1}
			continue
		}
		if err != nil {
			return nil, p, 0, fmt.Errorf("reading %s at %d: %w", f.Name(), p.off, err)
		}
		return payload, p, next, nil
	}
	return nil, p, 0, io.EOF
}

// reader returns segment seg open for reading.
func (j *Journal) reader(seg uint64) (*os.File, error) {
	if f := j.readers[seg]; f != nil {
		return f, nil
	}
	f, err := os.Open(segmentName(j.dir, seg))
	if err != nil {
		return nil, err
	}
	j.readers[seg] = f
	return f, nil
}

// confirm records that the store has every reading before p: it writes the
// checkpoint and deletes the segments wholly before p. The checkpoint is
// not synced: if a crash loses it, the readings since the last one that
// reached the disk are written again, which the store takes as an
// overwrite.
func (j *Journal) confirm(p position) error {
	if err := os.WriteFile(filepath.Join(j.dir, checkpointName), encodeCheckpoint(p), 0o600); err != nil {
		return err
	}
	old := j.done
	j.done = p
	for seg := old.seg; seg < p.seg; seg++ {
		if f := j.readers[seg]; f != nil {
			f.Close()
			delete(j.readers, seg)
		}
		if err := os.Remove(segmentName(j.dir, seg)); err != nil && !os.IsNotExist(err) {
			j.log.Warn("removing a drained journal segment", "error", err)
		}
	}
	return nil
}

// rejected is a line of RejectedFile.
type rejected struct {
	devices.Reading
	Error string `json:"error"`
	At    int64  `json:"at"` // Unix ms
}

// setAside keeps readings the store refused in RejectedFile, synced.
func (j *Journal) setAside(rs []devices.Reading, why error) error {
	f, err := os.OpenFile(filepath.Join(j.dir, RejectedFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	now := time.Now().UnixMilli()
	for _, r := range rs {
		if err := enc.Encode(rejected{Reading: r, Error: why.Error(), At: now}); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Position is a place between two records of a journal, as End returns
// it. A reader that keeps its own place (the embedded store, which holds
// what it has read in memory and writes it elsewhere) stores a Position
// beside what it wrote, Replays from it after a restart and Forgets what
// is before it, in place of Drain.
type Position struct {
	Segment uint64
	Offset  int64
}

// Before says whether p is earlier in the journal than q.
func (p Position) Before(q Position) bool {
	return position{seg: p.Segment, off: p.Offset}.before(position{seg: q.Segment, off: q.Offset})
}

// End returns where the next record will go: every reading Append has
// stored is before it.
func (j *Journal) End() Position {
	j.mu.Lock()
	defer j.mu.Unlock()
	return Position{Segment: j.end.seg, Offset: j.end.off}
}

// Replay calls fn with the readings of each record from p (or from the
// first record the journal still holds, if that is later) to its end, in
// order, and stops at fn's first error, which it returns. fn must not
// keep the slice. A record that does not read gives an error.
func (j *Journal) Replay(p Position, fn func([]devices.Reading) error) error {
	j.drainMu.Lock()
	defer j.drainMu.Unlock()
	end := j.End()
	at := position{seg: p.Segment, off: p.Offset}
	if at.before(j.done) {
		at = j.done
	}
	for {
		payload, read, next, err := j.record(at, position{seg: end.Segment, off: end.Offset})
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		at = read
		rs, _, err := j.dec.decode(j.batch[:0], payload, at.skip, math.MaxInt64)
		j.batch = rs
		if err != nil {
			return fmt.Errorf("journal: reading %s at %d: %w", segmentName(j.dir, at.seg), at.off, err)
		}
		if err := fn(rs); err != nil {
			return err
		}
		at = position{seg: at.seg, off: next}
	}
}

// Forget drops the records before p: the checkpoint moves to p and the
// segments wholly before it are deleted. Stats.Backlog does not count
// them down: it is Drain's count.
func (j *Journal) Forget(p Position) error {
	j.drainMu.Lock()
	defer j.drainMu.Unlock()
	at := position{seg: p.Segment, off: p.Offset}
	if !j.done.before(at) {
		return nil
	}
	if err := j.confirm(at); err != nil {
		return devices.Wrap(err, devices.EInternal, "journal: cannot forget what is stored")
	}
	return nil
}
