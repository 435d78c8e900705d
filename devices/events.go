package devices

import (
	"context"
	"errors"
	"time"
)

// The kinds of Event.
const (
	// EventPresence is a span of one presence status: online, stale or
	// offline (unknown is not recorded).
	EventPresence = "presence"
	// EventRange is a span of one metric outside the limits its device's
	// meta declares.
	EventRange = "range"
)

// EventKinds are every kind of Event.
var EventKinds = []string{EventPresence, EventRange}

// Event is one episode of what happened to a device: a presence status it
// had, or one of its metrics outside its declared limits, from when to
// when. One episode is known by its Device, Kind, Status, Metric and From; while
// it lasts, To is 0, and a later Event of the same key ends it.
type Event struct {
	Device string `json:"device"`
	Kind   string `json:"kind"`
	// Status is the presence status of an EventPresence.
	Status Status `json:"status,omitempty"`
	// Metric is the metric of an EventRange.
	Metric string `json:"metric,omitempty"`
	// From and To are when the episode began and ended (Unix ms); To is 0
	// while it lasts. A range episode's times are its readings' times.
	From int64 `json:"from"`
	To   int64 `json:"to"`
	// Peak is, for an EventRange, the value furthest outside the limits,
	// and Low and High the limits it was outside of.
	Peak float64 `json:"peak,omitempty"`
	Low  float64 `json:"low,omitempty"`
	High float64 `json:"high,omitempty"`
}

// Ongoing reports whether the episode has not ended.
func (e Event) Ongoing() bool { return e.To == 0 }

// Duration is how long the episode lasted, or has lasted by now.
func (e Event) Duration(now time.Time) time.Duration {
	to := e.To
	if to == 0 {
		to = now.UnixMilli()
	}
	return time.Duration(max(0, to-e.From)) * time.Millisecond
}

// What says what happened in a few words: "offline", "temperature out of
// range".
func (e Event) What() string {
	if e.Kind == EventRange {
		return e.Metric + " out of range"
	}
	return string(e.Status)
}

type eventKey struct {
	device, kind, metric string
	status               Status
	from                 int64
}

func (e Event) key() eventKey { return eventKey{e.Device, e.Kind, e.Metric, e.Status, e.From} }

// EventQuery picks events: those of Device (all if ""), of Kind (all if
// ""), that overlap [From, To) (Unix ms; 0 leaves that side open), newest
// first, at most Limit of them.
type EventQuery struct {
	Device string
	Kind   string
	From   int64
	To     int64
	// Ongoing picks only the episodes that have not ended.
	Ongoing bool
	Limit   int
}

// Validate says what is wrong with q, or returns nil.
func (q EventQuery) Validate() error {
	switch {
	case q.Device != "" && !ValidName(q.Device):
		return Errorf(EInvalid, "device id %q is not 1 to 64 characters of [A-Za-z0-9._-]", q.Device)
	case q.Kind != "" && q.Kind != EventPresence && q.Kind != EventRange:
		return Errorf(EInvalid, "kind %q is not presence or range", q.Kind)
	case q.From != 0 && q.To != 0 && q.From >= q.To:
		return Errorf(EInvalid, "from must be before to")
	case q.Limit <= 0:
		return Errorf(EInvalid, "limit must be at least 1")
	}
	return nil
}

// EventLog keeps the fleet's events, which Fleet.SaveEvents hands it.
// *sqlite.Events satisfies it.
type EventLog interface {
	// Record saves es durably; an event of a key already saved (Device,
	// Kind, Status, Metric, From) replaces it. It returns EUnavailable when the
	// log cannot be written.
	Record(ctx context.Context, es []Event) error
}

// maxPendingEvents bounds the events the fleet holds between two saves
// (a save a second): more are dropped and counted (EventsDropped).
const maxPendingEvents = 100_000

// event queues e to be saved; f.mu held.
func (f *Fleet) event(e Event) {
	k := e.key()
	if _, ok := f.events[k]; !ok && len(f.events) >= maxPendingEvents {
		f.eventsDropped++
		return
	}
	f.events[k] = e
}

// EventsDropped is how many events were not saved because too many were
// waiting to be.
func (f *Fleet) EventsDropped() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.eventsDropped
}

// checkRange records the start, the peak or the end of an out-of-range
// episode of metric, whose newest reading is v at t; f.mu held.
func (f *Fleet) checkRange(id string, d *device, metric string, t int64, v float64) {
	if len(d.meta.Limits) == 0 && len(d.ranges) == 0 {
		return // the case of most devices, whose meta sets no limits
	}
	lim, ok := d.meta.Limits[metric]
	ep, open := d.ranges[metric]
	out := ok && (v < lim[0] || v > lim[1])
	switch {
	case out && !open:
		if d.ranges == nil {
			d.ranges = map[string]Event{}
		}
		ep = Event{Device: id, Kind: EventRange, Metric: metric, From: t, Peak: v, Low: lim[0], High: lim[1]}
	case out && distance(v, lim) > distance(ep.Peak, lim):
		ep.Peak = v
	case out:
		return
	case open:
		ep.To = max(t, ep.From)
		delete(d.ranges, metric)
		f.event(ep)
		return
	default:
		return
	}
	d.ranges[metric] = ep
	f.event(ep)
}

// distance is how far v is outside lim.
func distance(v float64, lim [2]float64) float64 {
	return max(lim[0]-v, v-lim[1], 0)
}

// RestoreEvents takes back the episodes an earlier run left open (from
// the event log): an out-of-range episode goes on until a reading in range
// ends it. Presence episodes need nothing: the registry's status and since
// are theirs.
func (f *Fleet) RestoreEvents(open []Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range open {
		d := f.devices[e.Device]
		if d == nil || e.Kind != EventRange || e.To != 0 {
			continue
		}
		if _, ok := d.ranges[e.Metric]; ok {
			continue
		}
		if d.ranges == nil {
			d.ranges = map[string]Event{}
		}
		d.ranges[e.Metric] = e
	}
}

// SaveEvents hands the events since the last SaveEvents to l. What it
// could not save is tried again at the next SaveEvents (unless newer
// events of the same episodes replaced it meanwhile).
func (f *Fleet) SaveEvents(ctx context.Context, l EventLog) error {
	f.mu.Lock()
	if len(f.events) == 0 {
		f.mu.Unlock()
		return nil
	}
	es := make([]Event, 0, len(f.events))
	for _, e := range f.events {
		es = append(es, e)
	}
	clear(f.events)
	f.mu.Unlock()
	err := l.Record(ctx, es)
	if err != nil {
		f.mu.Lock()
		for _, e := range es {
			if _, newer := f.events[e.key()]; !newer {
				f.event(e)
			}
		}
		f.mu.Unlock()
	}
	return err
}

// save saves the fleet's changes to r and its events to l (if not nil).
func (f *Fleet) save(ctx context.Context, r Registry, l EventLog) error {
	err := f.Save(ctx, r)
	if l != nil {
		err = errors.Join(err, f.SaveEvents(ctx, l))
	}
	return err
}
