package devices

import (
	"context"
	"log/slog"
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
	// Since is when the device's status last changed (Unix ms), 0 if never.
	Since int64 `json:"since"`
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

// Matches reports whether text (ignoring case) is part of what
// SearchText holds: the one rule of the fleet's text filter, for the pages
// (which hand SearchText to their script) and the API alike. Empty text
// matches every device.
func (d Device) Matches(text string) bool { return TextMatches(d.SearchText(), text) }

// TextMatches is the text filter's rule over a SearchText: text within
// one of its lines.
func TextMatches(search, text string) bool {
	return text == "" || !strings.Contains(text, "\n") && strings.Contains(search, strings.ToLower(text))
}

// SearchText is what the fleet's text filter looks in, in lower case, one
// line each: the device's id, name, kind and location, and its metrics'
// names and labels.
func (d Device) SearchText() string {
	parts := []string{d.ID, d.Name(), d.Meta.Kind, d.Meta.Location}
	for _, m := range d.Metrics() {
		parts = append(parts, m)
		if l := d.Meta.Label(m); l != m {
			parts = append(parts, l)
		}
	}
	return strings.ToLower(strings.Join(parts, "\n"))
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

// DefaultStaleAfter is how long an online device may be silent before it
// is stale while its usual interval is not known (it has sent one message).
const DefaultStaleAfter = 5 * time.Minute

// minInterval keeps a burst of messages from making a device look stale at
// once after it.
const minInterval = 1000

type device struct {
	meta     Meta
	reported Status // what the device said on its status topic
	status   Status // what is shown: reported, or stale
	since    int64  // when status last changed
	lastSeen int64
	lastMsg  int64 // arrival of the previous message, for the interval
	interval int64 // smoothed gap between messages, ms
	latest   []latest
	ranges   map[string]Event // out-of-range episodes going on, by metric
	dirty    bool             // in Fleet.dirty
}

// latest is the latest value of one metric of a device. A device keeps
// them in a slice in the order its last message named them (Seen puts
// them so), which is the order its next message names them in: the i-th
// reading of a message is looked for at i first, so that its readings are
// matched without hashing their names.
type latest struct {
	metric string
	Value
}

// find returns the index of metric in d.latest, looking at hint first,
// or -1.
func (d *device) find(metric string, hint int) int {
	if hint < len(d.latest) && d.latest[hint].metric == metric {
		return hint
	}
	for i := range d.latest {
		if d.latest[i].metric == metric {
			return i
		}
	}
	return -1
}

// knows reports whether d has a latest value of every metric of rs.
func (d *device) knows(rs []Reading) bool {
	for i := range rs {
		if d.find(rs[i].Metric, i) < 0 {
			return false
		}
	}
	return true
}

// Defaults for Limits left zero.
const (
	DefaultMaxDevices = 10_000
	DefaultMaxMetrics = 64
	// DefaultMaxNewSeries lets 10,000 devices of 2 metrics (iotsim's load
	// mode) join a fresh iotdash within a minute, and 10,000 of 4 (its
	// simulated kinds) within two; the registry remembers them across
	// restarts, so only a fresh data directory sees them as new. A
	// hostile device needs half an hour to fill the fleet's 640,000
	// series (10,000 devices of 64 metrics) instead of a second.
	DefaultMaxNewSeries = 20_000
)

// Limits bound what the fleet takes in from devices, so that a hostile or
// broken device cannot grow it (and the stores behind it) without end.
// Devices and metrics already known are never dropped to meet them: a
// limit only refuses what is new. Zero values take the defaults.
type Limits struct {
	// Devices is the most devices the fleet knows (default 10,000).
	Devices int
	// Metrics is the most metrics one device may have (default 64).
	Metrics int
	// NewSeriesPerMinute is how many new series (a device's metric seen
	// for the first time) the fleet takes in a minute, a burst of up to a
	// minute's worth at once (default 20,000).
	NewSeriesPerMinute int
}

func (l Limits) withDefaults() Limits {
	if l.Devices <= 0 {
		l.Devices = DefaultMaxDevices
	}
	if l.Metrics <= 0 {
		l.Metrics = DefaultMaxMetrics
	}
	if l.NewSeriesPerMinute <= 0 {
		l.NewSeriesPerMinute = DefaultMaxNewSeries
	}
	return l
}

// Admission is what Admit refused of one message.
type Admission struct {
	// TooManyDevices is true when the device is new and the fleet already
	// has Limits.Devices: nothing of the message is taken.
	TooManyDevices bool
	// TooManyMetrics counts readings refused because they are of a metric
	// new to a device that has Limits.Metrics already.
	TooManyMetrics int
	// TooManyNewSeries counts readings refused because they are of a new
	// series and the fleet has taken Limits.NewSeriesPerMinute this minute.
	TooManyNewSeries int
}

// Fleet is the live state of every device seen: metadata, presence, last
// seen and latest values. It is safe for concurrent use.
type Fleet struct {
	mu         sync.RWMutex
	devices    map[string]*device
	dirty      []string // devices changed since the last Save
	onChange   func(id string, s Status)
	now        func() time.Time
	staleAfter time.Duration

	limits     Limits
	seriesLeft float64   // new series that may still come now
	seriesAt   time.Time // when seriesLeft was last topped up
	// pending holds, by device, the metrics Admit let in that Seen has not
	// recorded yet, and the devices it let in that are not in devices yet,
	// so that they count against the limits meanwhile without being shown.
	pending    map[string]map[string]struct{}
	newPending int // devices in pending and not in devices

	events        map[eventKey]Event // to be saved (SaveEvents)
	eventsDropped uint64
}

// NewFleet returns an empty fleet. onChange, if not nil, is called with each
// change of a device's shown status; it must not block, and is never called
// with the fleet's lock held.
func NewFleet(onChange func(id string, s Status)) *Fleet {
	f := &Fleet{devices: map[string]*device{}, onChange: onChange, now: time.Now, staleAfter: DefaultStaleAfter,
		pending: map[string]map[string]struct{}{}, events: map[eventKey]Event{}}
	f.SetLimits(Limits{})
	return f
}

// SetLimits sets what the fleet takes in (see Limits). Call it before the
// fleet is used.
func (f *Fleet) SetLimits(l Limits) {
	f.limits = l.withDefaults()
	f.seriesLeft = float64(f.limits.NewSeriesPerMinute)
	f.seriesAt = time.Time{}
}

// Admit decides whether a message of device id with readings rs may be
// taken, before it is stored: the one place that says whether a device or
// a metric is new and whether the fleet has room for it. It keeps, in
// place, the readings it admits and returns them with what it refused.
// What it admits counts against the limits from then on, but is shown
// (Get, List) only once Seen, SetMeta or SetPresence records it. A new
// device is admitted with a message that names it without readings (its
// meta or status: call Admit with none), or with at least one reading
// admitted: a device whose every reading is refused takes no place.
func (f *Fleet) Admit(id string, rs []Reading) ([]Reading, Admission) {
	f.mu.RLock()
	d := f.devices[id]
	known := d != nil && d.knows(rs)
	f.mu.RUnlock()
	if known {
		return rs, Admission{}
	}

	var a Admission
	f.mu.Lock()
	defer f.mu.Unlock()
	d = f.devices[id]
	p, admitted := f.pending[id]
	newDevice := d == nil && !admitted
	if newDevice {
		if len(f.devices)+f.newPending >= f.limits.Devices {
			return rs[:0], Admission{TooManyDevices: true}
		}
		p = map[string]struct{}{}
	}
	metrics := len(p)
	if d != nil {
		metrics += len(d.latest)
	}
	f.topUp()
	kept := rs[:0]
	for _, r := range rs {
		_, pending := p[r.Metric]
		seen := d != nil && d.find(r.Metric, 0) >= 0
		switch {
		case seen || pending:
		case metrics >= f.limits.Metrics:
			a.TooManyMetrics++
			continue
		case f.seriesLeft < 1:
			a.TooManyNewSeries++
			continue
		default:
			f.seriesLeft--
			if p == nil {
				p = map[string]struct{}{}
				f.pending[id] = p
			}
			p[r.Metric] = struct{}{}
			metrics++
		}
		kept = append(kept, r)
	}
	if newDevice && (len(kept) > 0 || len(rs) == 0) {
		f.pending[id] = p
		f.newPending++
	}
	return kept, a
}

// topUp adds the new series a minute's rate gives since the last top-up,
// up to a minute's worth; f.mu held.
func (f *Fleet) topUp() {
	now := f.now()
	perMinute := float64(f.limits.NewSeriesPerMinute)
	if !f.seriesAt.IsZero() {
		f.seriesLeft = min(perMinute, f.seriesLeft+now.Sub(f.seriesAt).Minutes()*perMinute)
	}
	f.seriesAt = now
}

// SetStaleAfter sets how long an online device whose usual interval is not
// known may be silent before it is stale (DefaultStaleAfter if d <= 0).
// Call it before the fleet is used.
func (f *Fleet) SetStaleAfter(d time.Duration) {
	if d <= 0 {
		d = DefaultStaleAfter
	}
	f.staleAfter = d
}

// get returns device id, creating it, and marks it changed; f.mu held.
func (f *Fleet) get(id string) *device {
	d := f.devices[id]
	if d == nil {
		d = &device{reported: StatusUnknown, status: StatusUnknown}
		f.devices[id] = d
		if _, ok := f.pending[id]; ok {
			f.newPending--
		}
	}
	f.changed(id, d)
	return d
}

// changed marks device id, d, as changed since the last Save; f.mu held.
func (f *Fleet) changed(id string, d *device) {
	if !d.dirty {
		d.dirty = true
		f.dirty = append(f.dirty, id)
	}
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

// setStatus records d's shown status from now, ends the presence episode
// of the status before and begins one of s, and returns the change, if
// any; f.mu held.
func (f *Fleet) setStatus(d *device, id string, s Status, now int64, cs []change) []change {
	if d.status == s {
		return cs
	}
	if d.status != StatusUnknown {
		f.event(Event{Device: id, Kind: EventPresence, Status: d.status, From: d.since, To: max(now, d.since)})
	}
	if s != StatusUnknown {
		f.event(Event{Device: id, Kind: EventPresence, Status: s, From: now})
	}
	d.status, d.since = s, now
	return append(cs, change{id, s})
}

// Seen records the readings of one message from one device, which arrived now.
// A device that sends readings is online, whatever it said before.
func (f *Fleet) Seen(id string, rs []Reading) {
	f.SeenAll([]Message{{Device: id, Readings: rs}})
}

// Message is the readings of one message from one device.
type Message struct {
	Device   string
	Readings []Reading
}

// SeenAll records messages that arrived now, in their order, as Seen of
// each would: ingest hands it every message of one commit, so that the
// fleet's lock is taken and its clock read once a commit rather than once
// a message.
func (f *Fleet) SeenAll(ms []Message) {
	if len(ms) == 0 {
		return
	}
	now := f.now().UnixMilli()
	var cs []change
	f.mu.Lock()
	for _, m := range ms {
		cs = f.seen(m.Device, m.Readings, now, cs)
	}
	f.mu.Unlock()
	f.notify(cs)
}

// seen records the readings of one message of device id, which arrived
// at now, and returns cs with the change of status it made, if any; f.mu
// held.
func (f *Fleet) seen(id string, rs []Reading, now int64, cs []change) []change {
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
	for k, r := range rs {
		at := d.find(r.Metric, k)
		fresh := at < 0
		if fresh {
			at = len(d.latest)
			d.latest = append(d.latest, latest{metric: r.Metric})
		}
		if at != k && k < len(d.latest) {
			d.latest[at], d.latest[k] = d.latest[k], d.latest[at]
			at = k
		}
		// A later reading with the same time does not replace the first,
		// as in the embedded store (first write wins).
		if fresh || r.Time > d.latest[at].T {
			d.latest[at].Value = Value{T: r.Time, V: r.Value}
			f.checkRange(id, d, r.Metric, r.Time, r.Value)
		}
	}
	if p, ok := f.pending[id]; ok {
		for _, r := range rs {
			delete(p, r.Metric)
		}
		if len(p) == 0 {
			delete(f.pending, id)
		}
	}
	d.reported = StatusOnline
	return f.setStatus(d, id, StatusOnline, now, cs)
}

// SetMeta records what a device says about itself.
func (f *Fleet) SetMeta(id string, m Meta) {
	f.mu.Lock()
	d := f.get(id)
	d.meta = m
	// Limits declared, changed or taken back begin or end episodes.
	for _, l := range d.latest {
		f.checkRange(id, d, l.metric, l.T, l.V)
	}
	f.mu.Unlock()
}

// SetPresence records what a device (or its Last Will) says on its status topic.
func (f *Fleet) SetPresence(id string, s Status) {
	f.mu.Lock()
	d := f.get(id)
	d.reported = s
	now := f.now().UnixMilli()
	if s == StatusOnline && d.lastSeen == 0 {
		d.lastSeen = now
	}
	cs := f.setStatus(d, id, s, now, nil)
	f.mu.Unlock()
	f.notify(cs)
}

// CheckStale marks online devices that have been silent for longer than
// StaleAfter of their usual intervals as stale, or, while a device's
// interval is not known, for longer than the fleet's stale-after time.
func (f *Fleet) CheckStale() {
	now := f.now().UnixMilli()
	var cs []change
	f.mu.Lock()
	for id, d := range f.devices {
		if d.status == StatusOnline && now-d.lastSeen > f.silence(d) {
			cs = f.setStatus(d, id, StatusStale, now, cs)
			f.changed(id, d)
		}
	}
	f.mu.Unlock()
	f.notify(cs)
}

// silence is how long d may be silent before it is stale, in ms.
func (f *Fleet) silence(d *device) int64 {
	if d.meta.Interval > 0 {
		return StaleAfter * max(int64(d.meta.Interval*1000), minInterval)
	}
	if d.interval > 0 {
		return StaleAfter * max(d.interval, minInterval)
	}
	return f.staleAfter.Milliseconds()
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
	out := Device{ID: id, Meta: d.meta, Status: d.status, Since: d.since, LastSeen: d.lastSeen, Interval: d.interval, Latest: make(map[string]Value, len(d.latest))}
	for _, l := range d.latest {
		out.Latest[l.metric] = l.Value
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

// Counts returns how many devices have each status.
func (f *Fleet) Counts() map[Status]int {
	out := make(map[Status]int, len(Statuses))
	for _, s := range Statuses {
		out[s] = 0
	}
	f.mu.RLock()
	for _, d := range f.devices {
		out[d.status]++
	}
	f.mu.RUnlock()
	return out
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

// Registry keeps the fleet across restarts: every device's meta, status and
// since when, last seen, interval and latest values. *sqlite.Registry
// satisfies it.
type Registry interface {
	// Load returns every device saved.
	Load(ctx context.Context) ([]Device, error)
	// Save saves ds, replacing what was saved of the same ids.
	Save(ctx context.Context, ds []Device) error
}

// Restore puts the devices of an earlier run back in the fleet, as a
// restart finds them: a device that was offline stays offline since then;
// one that was stale stays stale since then; one that was online is online
// from its last reading and goes stale by the usual rule if it stays
// silent (at once, if its silence is already too long); one whose status
// was never known stays unknown.
// Devices already in the fleet are left as they are.
func (f *Fleet) Restore(ds []Device) {
	f.mu.Lock()
	for _, s := range ds {
		if !ValidName(s.ID) || f.devices[s.ID] != nil {
			continue
		}
		d := &device{meta: s.Meta, reported: s.Status, status: s.Status, since: s.Since,
			lastSeen: s.LastSeen, lastMsg: s.LastSeen, interval: s.Interval, latest: make([]latest, 0, len(s.Latest))}
		switch s.Status {
		case StatusStale:
			d.reported = StatusOnline
		case StatusOnline, StatusOffline:
		default:
			d.reported, d.status = StatusUnknown, StatusUnknown
		}
		for m, v := range s.Latest {
			d.latest = append(d.latest, latest{m, v})
		}
		f.devices[s.ID] = d
		if _, ok := f.pending[s.ID]; ok {
			f.newPending--
		}
	}
	f.mu.Unlock()
	f.CheckStale()
}

// Save saves the devices changed since the last Save to r. What it could
// not save is tried again at the next Save.
func (f *Fleet) Save(ctx context.Context, r Registry) error {
	f.mu.Lock()
	ids := f.dirty
	f.dirty = nil
	ds := make([]Device, 0, len(ids))
	for _, id := range ids {
		d := f.devices[id]
		d.dirty = false
		ds = append(ds, d.snapshot(id))
	}
	f.mu.Unlock()
	if len(ds) == 0 {
		return nil
	}
	if err := r.Save(ctx, ds); err != nil {
		f.mu.Lock()
		for _, id := range ids {
			f.changed(id, f.devices[id])
		}
		f.mu.Unlock()
		return err
	}
	return nil
}

// Keep saves the fleet's changes to r, and its events to l if not nil,
// every interval until ctx ends, and once more then, so that a clean stop
// loses nothing and a crash loses at most the last interval's last-seen
// times, latest values and events (the readings themselves are in the
// store).
func (f *Fleet) Keep(ctx context.Context, r Registry, l EventLog, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := f.save(sctx, r, l); err != nil {
				log.Error("saving the fleet at shutdown", "error", err)
			}
			return
		case <-t.C:
			// One line when saving starts to fail and one when it works
			// again, not one a second.
			switch err := f.save(ctx, r, l); {
			case err != nil && !failing:
				failing = true
				log.Warn("saving the fleet failed; retrying every interval", "every", every, "error", err)
			case err == nil && failing:
				failing = false
				log.Info("saving the fleet works again")
			}
		}
	}
}
