package push

import (
	"sync"

	"iotdash/devices"
)

// latestTable is the newest reading of every series, shared by all the
// conflated subscriptions of a hub: Publish writes each reading into it once,
// whatever the number of overviews open, and a conflated client's writer
// reads from it what changed since its last frame. Without it every
// overview kept its own map of series, and a reading cost a map update per
// overview (half of the server's CPU at 10,000 readings/s and 200
// overviews, measured with the profile of `make bench-live`).
//
// Each change of a series takes the next sequence number and is logged, by
// slot, in a ring. A client remembers the sequence number up to which it
// has taken; the entries after it whose slot was not changed again later
// are what it has not seen. A client so far behind that the ring has
// wrapped past it looks at every slot instead.
type latestTable struct {
	mu    sync.Mutex
	index map[series]int32
	slots []slot
	ring  []int32 // ring[seq % len(ring)]: the slot changed at seq
	seq   uint64  // changes so far; the last was seq
	reset uint64  // the seq at the last reset: a cursor before it rescans
	max   int     // series held before it starts again: maxSeries
}

type slot struct {
	r   devices.Reading
	seq uint64 // of its last change
}

// maxSeries bounds the table: past it, it starts again empty (a fleet that
// churns through more series than that would otherwise make it grow
// without end). Each series costs about 100 bytes.
const maxSeries = 1 << 20

// ringSize is how many changes a conflated client may fall behind before
// it looks at every slot: 4 frames a second at 250,000 changes a second.
const ringSize = 1 << 16

func newLatestTable() *latestTable {
	return &latestTable{index: map[series]int32{}, ring: make([]int32, ringSize), max: maxSeries}
}

// put records rs; a reading older than its series' newest is ignored.
func (t *latestTable) put(rs []devices.Reading) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range rs {
		r := &rs[i]
		k := series{r.Device, r.Metric}
		n, ok := t.index[k]
		if !ok {
			if len(t.slots) >= t.max {
				clear(t.index)
				t.slots = t.slots[:0]
				t.reset = t.seq + 1
			}
			n = int32(len(t.slots))
			t.index[k] = n
			t.slots = append(t.slots, slot{})
		} else if r.Time < t.slots[n].r.Time {
			continue
		}
		t.seq++
		t.slots[n] = slot{r: *r, seq: t.seq}
		t.ring[t.seq%ringSize] = n
	}
}

// now returns the sequence number of the last change: a client that
// subscribes takes only what changes after it.
func (t *latestTable) now() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seq
}

// since appends to dst the newest reading of each series that changed after
// cursor and that want takes, at most limit of them, and returns them with
// the cursor to pass next time and whether limit cut them short.
func (t *latestTable) since(cursor uint64, want func(string) bool, limit int, dst []devices.Reading) ([]devices.Reading, uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cursor >= t.seq {
		return dst, cursor, false
	}
	if cursor < t.reset || t.seq-cursor >= ringSize {
		// The ring no longer holds every change since cursor: every slot
		// changed after it, in no particular order, all of them at once.
		for _, s := range t.slots {
			if s.seq > cursor && want(s.r.Device) {
				dst = append(dst, s.r)
			}
		}
		return dst, t.seq, false
	}
	for seq := cursor + 1; seq <= t.seq; seq++ {
		s := &t.slots[t.ring[seq%ringSize]]
		if s.seq != seq || !want(s.r.Device) {
			continue // changed again later, or not this client's
		}
		if len(dst) == limit {
			return dst, seq - 1, true
		}
		dst = append(dst, s.r)
	}
	return dst, t.seq, false
}
