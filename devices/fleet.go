package devices

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// Value is the latest value of one metric: when (Unix ms) and what.
type Value struct {
	T int64   `json:"t"`
	V float64 `json:"v"`
}

// Device is what the fleet knows of one device at one moment.
type Device struct {
	ID     string `json:"id"`
	Meta   Meta   `json:"meta"`
	Status Status `json:"status"`
	// LastSeen is when a reading of the device last arrived (Unix ms), 0 if never.
	LastSeen int64 `json:"last_seen"`
	// Interval is the device's usual time between messages in ms, 0 until known.
	Interval int64 `json:"interval_ms"`
	// Latest maps each metric to its latest value.
	Latest map[string]Value `json:"latest"`
}

// Name returns the device's display name: its meta name, else its id.
func (d Device) Name() string {
	if d.Meta.Name != "" {
		return d.Meta.Name
	}
	return d.ID
}

// Metrics returns the device's metric names in order.
func (d Device) Metrics() []string {
	ms := make([]string, 0, len(d.Latest))
	for m := range d.Latest {
		ms = append(ms, m)
	}
	slices.Sort(ms)
	return ms
}

// StaleAfter is how many usual intervals of silence make an online device stale.
const StaleAfter = 3

// minInterval keeps a burst of messages from making a device look stale at
// once after it.
const minInterval = 1000

type device struct {
	meta     Meta
	reported Status // what the device said on its status topic
	status   Status // what is shown: reported, or stale
	lastSeen int64
	lastMsg  int64 // arrival of the previous message, for the interval
	interval int64 // smoothed gap between messages, ms
	latest   map[string]Value
}

// Fleet is the live state of every device seen: metadata, presence, last
// seen and latest values. It is safe for concurrent use.
type Fleet struct {
	mu       sync.RWMutex
	devices  map[string]*device
	onChange func(id string, s Status)
	now      func() time.Time
}

// NewFleet returns an empty fleet. onChange, if not nil, is called with each
// change of a device's shown status; it must not block, and is never called
// with the fleet's lock held.
func NewFleet(onChange func(id string, s Status)) *Fleet {
	return &Fleet{devices: map[string]*device{}, onChange: onChange, now: time.Now}
}

func (f *Fleet) get(id string) *device {
	d := f.devices[id]
	if d == nil {
		d = &device{reported: StatusUnknown, status: StatusUnknown, latest: map[string]Value{}}
		f.devices[id] = d
	}
	return d
}

type change struct {
	id string
	s  Status
}

func (f *Fleet) notify(cs []change) {
	if f.onChange == nil {
		return
	}
	for _, c := range cs {
		f.onChange(c.id, c.s)
	}
}

// setStatus records d's shown status and returns the change, if any.
func (d *device) setStatus(id string, s Status, cs []change) []change {
	if d.status == s {
		return cs
	}
	d.status = s
	return append(cs, change{id, s})
}

// Seen records the readings of one message from one device, which arrived now.
// A device that sends readings is online, whatever it said before.
func (f *Fleet) Seen(id string, rs []Reading) {
	now := f.now().UnixMilli()
	f.mu.Lock()
	d := f.get(id)
	if d.lastMsg > 0 {
		gap := now - d.lastMsg
		if d.interval == 0 {
			d.interval = gap
		} else {
			d.interval = (d.interval*7 + gap) / 8
		}
	}
	d.lastMsg, d.lastSeen = now, now
	for _, r := range rs {
		if v, ok := d.latest[r.Metric]; !ok || r.Time >= v.T {
			d.latest[r.Metric] = Value{T: r.Time, V: r.Value}
		}
	}
	d.reported = StatusOnline
	cs := d.setStatus(id, StatusOnline, nil)
	f.mu.Unlock()
	f.notify(cs)
}

// SetMeta records what a device says about itself.
func (f *Fleet) SetMeta(id string, m Meta) {
	f.mu.Lock()
	f.get(id).meta = m
	f.mu.Unlock()
}

// SetPresence records what a device (or its Last Will) says on its status topic.
func (f *Fleet) SetPresence(id string, s Status) {
	f.mu.Lock()
	d := f.get(id)
	d.reported = s
	if s == StatusOnline && d.lastSeen == 0 {
		d.lastSeen = f.now().UnixMilli()
	}
	cs := d.setStatus(id, s, nil)
	f.mu.Unlock()
	f.notify(cs)
}

// CheckStale marks online devices that have been silent for longer than
// StaleAfter of their usual intervals as stale.
func (f *Fleet) CheckStale() {
	now := f.now().UnixMilli()
	var cs []change
	f.mu.Lock()
	for id, d := range f.devices {
		if d.status == StatusOnline && d.interval > 0 && now-d.lastSeen > StaleAfter*max(d.interval, minInterval) {
			cs = d.setStatus(id, StatusStale, cs)
		}
	}
	f.mu.Unlock()
	f.notify(cs)
}

// Run checks for stale devices every interval until ctx ends.
func (f *Fleet) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.CheckStale()
		}
	}
}

func (d *device) snapshot(id string) Device {
	out := Device{ID: id, Meta: d.meta, Status: d.status, LastSeen: d.lastSeen, Interval: d.interval, Latest: make(map[string]Value, len(d.latest))}
	for k, v := range d.latest {
		out.Latest[k] = v
	}
	return out
}

// Get returns the device with id, and whether it is known.
func (f *Fleet) Get(id string) (Device, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	d, ok := f.devices[id]
	if !ok {
		return Device{}, false
	}
	return d.snapshot(id), true
}

// List returns every known device, ordered by id.
func (f *Fleet) List() []Device {
	f.mu.RLock()
	out := make([]Device, 0, len(f.devices))
	for id, d := range f.devices {
		out = append(out, d.snapshot(id))
	}
	f.mu.RUnlock()
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
	return out
}
