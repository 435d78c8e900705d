package boards

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"iotdash/devices"
)

// Store keeps documents by kind and key, as auth.Store does; sqlite.Docs
// satisfies both. Get of a missing document returns a devices.ENotFound
// error; every method may return devices.EUnavailable.
type Store interface {
	Get(ctx context.Context, kind, key string) ([]byte, error)
	Put(ctx context.Context, kind, key string, doc []byte) error
	Delete(ctx context.Context, kind, key string) error
	List(ctx context.Context, kind string) ([][]byte, error)
}

// The kinds of document: the boards as they are now, and each board's
// earlier versions under a kind of its own, so that listing them reads
// only that board's.
const (
	kindBoard    = "board"
	kindVersions = "board-versions/"
)

// versionKey orders a board's versions as numbers.
func versionKey(v int) string { return fmt.Sprintf("%010d", v) }

// Boards keeps boards in a Store, every save keeping the version it
// replaces. It is safe for concurrent use within one instance.
type Boards struct {
	store    Store
	limits   Limits
	metrics  *Metrics
	log      *slog.Logger
	logLimit *rate.Limiter // a flood of refused boards is logged a few lines a second
	now      func() time.Time
	// mu keeps a save's read of the current version and its writes
	// together. Several instances sharing one store would need the store
	// to do this (a version check on Put).
	mu sync.Mutex
}

// Options are how Boards are bounded and what they report to.
type Options struct {
	Limits  Limits       // zero fields: the defaults
	Metrics *Metrics     // counts the boards refused; nil: not counted
	Logger  *slog.Logger // the boards refused, a few a second; nil: not logged
}

// New returns the boards kept in s.
func New(s Store, o Options) *Boards {
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Boards{store: s, limits: o.Limits.orDefault(), metrics: o.Metrics, log: o.Logger,
		logLimit: rate.NewLimiter(rate.Every(time.Second), 5), now: time.Now}
}

// refused counts and logs err, a board refused as invalid or past a
// limit, and returns it.
func (bs *Boards) refused(err error, who string) error {
	if devices.ErrorKind(err) != devices.EInvalid {
		return err
	}
	reason := RefusedInvalid
	if errors.Is(err, ErrLimit) {
		reason = RefusedLimit
	}
	bs.metrics.Refused.WithLabelValues(reason).Inc()
	if bs.logLimit.Allow() {
		bs.log.Info("board refused", "reason", reason, "by", who, "error", devices.ErrorMessage(err))
	}
	return err
}

// Decode reads a board's JSON as Decode does, within bs's limits,
// counting what it refuses.
func (bs *Boards) Decode(r io.Reader, who string) (Board, error) {
	b, err := Decode(r, bs.limits)
	return b, bs.refused(err, who)
}

// Limits are the bounds boards are held to.
func (bs *Boards) Limits() Limits { return bs.limits }

// Version is one saved version of a board, as the list of versions shows it.
type Version struct {
	Version int       `json:"version"`
	Title   string    `json:"title"`
	Panels  int       `json:"panels"`
	Saved   time.Time `json:"saved"`
	SavedBy string    `json:"saved_by,omitempty"`
}

// List returns every board, by title. It returns EUnavailable when the
// store cannot be read.
func (bs *Boards) List(ctx context.Context) ([]Board, error) {
	out, err := bs.list(ctx, kindBoard)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Board) int {
		return cmp.Or(cmp.Compare(strings.ToLower(a.Title), strings.ToLower(b.Title)), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Get returns the board id. It returns ENotFound for a board that does
// not exist.
func (bs *Boards) Get(ctx context.Context, id string) (Board, error) {
	if !validID(id) {
		return Board{}, devices.Errorf(devices.ENotFound, "there is no board %q", id)
	}
	doc, err := bs.store.Get(ctx, kindBoard, id)
	if devices.ErrorKind(err) == devices.ENotFound {
		return Board{}, devices.Errorf(devices.ENotFound, "there is no board %q", id)
	}
	if err != nil {
		return Board{}, err
	}
	var b Board
	if err := json.Unmarshal(doc, &b); err != nil {
		return Board{}, devices.Wrap(err, devices.EInternal, "the board %q cannot be read", id)
	}
	return b, nil
}

// Create stores b as a new board saved by who, with a new id, as its
// version 1. It returns EInvalid for a board that fails Validate or one
// past the limit on boards.
func (bs *Boards) Create(ctx context.Context, b Board, who string) (Board, error) {
	if err := b.Validate(bs.limits); err != nil {
		return Board{}, bs.refused(err, who)
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	docs, err := bs.store.List(ctx, kindBoard)
	if err != nil {
		return Board{}, err
	}
	if len(docs) >= bs.limits.Boards {
		return Board{}, bs.refused(overLimit("there are already %d boards, the most kept; delete one first", len(docs)), who)
	}
	b.ID = newID()
	b.Version = 0
	return bs.put(ctx, b, who)
}

// Save replaces board id with b, saved by who, keeping the version it
// replaces. A b.Version other than 0 is the version the change was made
// to: if the board has been saved since, nothing is saved (two operators
// editing one board do not undo each other's work unseen). It returns
// ENotFound for a board that does not exist and EInvalid for one that
// fails Validate or was saved since (ErrConflict).
func (bs *Boards) Save(ctx context.Context, id string, b Board, who string) (Board, error) {
	if err := b.Validate(bs.limits); err != nil {
		return Board{}, bs.refused(err, who)
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if b.Version != 0 {
		cur, err := bs.Get(ctx, id)
		if err != nil {
			return Board{}, err
		}
		if cur.Version != b.Version {
			return Board{}, devices.Wrap(ErrConflict, devices.EInvalid, "the board was saved again (version %d, by %s) after version %d, which this change was made to; open it again and redo the change", cur.Version, cmp.Or(cur.SavedBy, "someone"), b.Version)
		}
	}
	return bs.replace(ctx, id, b, who)
}

// replace keeps the current board id as a version and stores b after it;
// bs.mu held.
func (bs *Boards) replace(ctx context.Context, id string, b Board, who string) (Board, error) {
	cur, err := bs.Get(ctx, id)
	if err != nil {
		return Board{}, err
	}
	doc, err := json.Marshal(cur)
	if err != nil {
		return Board{}, devices.Wrap(err, devices.EInternal, "the board cannot be written")
	}
	if err := bs.store.Put(ctx, kindVersions+id, versionKey(cur.Version), doc); err != nil {
		return Board{}, err
	}
	if err := bs.prune(ctx, id, cur.Version); err != nil {
		return Board{}, err
	}
	b.ID, b.Version = id, cur.Version
	return bs.put(ctx, b, who)
}

// put stores b as its next version; bs.mu held.
func (bs *Boards) put(ctx context.Context, b Board, who string) (Board, error) {
	b.Version++
	b.Saved = bs.now().UTC().Truncate(time.Millisecond)
	b.SavedBy = who
	if b.Panels == nil {
		b.Panels = []Panel{}
	}
	doc, err := json.Marshal(b)
	if err != nil {
		return Board{}, devices.Wrap(err, devices.EInternal, "the board cannot be written")
	}
	if err := bs.store.Put(ctx, kindBoard, b.ID, doc); err != nil {
		return Board{}, err
	}
	return b, nil
}

// prune drops the versions of board id older than the limit keeps, newest
// being the version just kept.
func (bs *Boards) prune(ctx context.Context, id string, newest int) error {
	old := newest - bs.limits.Versions
	if old < 1 {
		return nil
	}
	// One at a time: every save drops at most the one that fell out.
	return bs.store.Delete(ctx, kindVersions+id, versionKey(old))
}

// Versions lists the earlier versions of board id kept, newest first. It
// returns ENotFound for a board that does not exist.
func (bs *Boards) Versions(ctx context.Context, id string) ([]Version, error) {
	if _, err := bs.Get(ctx, id); err != nil {
		return nil, err
	}
	kept, err := bs.list(ctx, kindVersions+id)
	if err != nil {
		return nil, err
	}
	out := make([]Version, 0, len(kept))
	for _, b := range slices.Backward(kept) {
		out = append(out, Version{Version: b.Version, Title: b.Title, Panels: len(b.Panels), Saved: b.Saved, SavedBy: b.SavedBy})
	}
	return out, nil
}

// list reads every board stored under kind, in the order of their keys.
func (bs *Boards) list(ctx context.Context, kind string) ([]Board, error) {
	docs, err := bs.store.List(ctx, kind)
	if err != nil {
		return nil, err
	}
	out := make([]Board, 0, len(docs))
	for _, doc := range docs {
		var b Board
		if err := json.Unmarshal(doc, &b); err != nil {
			return nil, devices.Wrap(err, devices.EInternal, "a stored board cannot be read")
		}
		out = append(out, b)
	}
	return out, nil
}

// Restore saves version v of board id as its newest, by who, keeping the
// one it replaces as any save does. It returns ENotFound for a board or a
// version that does not exist.
func (bs *Boards) Restore(ctx context.Context, id string, v int, who string) (Board, error) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	doc, err := bs.store.Get(ctx, kindVersions+id, versionKey(v))
	if devices.ErrorKind(err) == devices.ENotFound {
		return Board{}, devices.Errorf(devices.ENotFound, "the board %q has no version %d kept", id, v)
	}
	if err != nil {
		return Board{}, err
	}
	var old Board
	if err := json.Unmarshal(doc, &old); err != nil {
		return Board{}, devices.Wrap(err, devices.EInternal, "version %d of the board %q cannot be read", v, id)
	}
	return bs.replace(ctx, id, old, who)
}

// Delete removes board id and its versions. It returns ENotFound for a
// board that does not exist.
func (bs *Boards) Delete(ctx context.Context, id string) error {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	cur, err := bs.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := bs.store.Delete(ctx, kindBoard, id); err != nil {
		return err
	}
	for v := max(1, cur.Version-bs.limits.Versions); v < cur.Version; v++ {
		if err := bs.store.Delete(ctx, kindVersions+id, versionKey(v)); err != nil {
			return err
		}
	}
	return nil
}

// Import stores the exported board read from r as a new board saved by
// who. It returns EInvalid for a document that is not a valid board.
func (bs *Boards) Import(ctx context.Context, r io.Reader, who string) (Board, error) {
	b, err := bs.Decode(r, who)
	if err != nil {
		return Board{}, err
	}
	return bs.Create(ctx, b, who)
}

// newID is a board's id: 12 characters of [a-z2-7], random.
func newID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var b [12]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[b[i]%32]
	}
	return string(b[:])
}

// validID reports whether id may be a board's id (as newID makes them,
// or a device-like name for boards made elsewhere).
func validID(id string) bool { return devices.ValidName(id) }
