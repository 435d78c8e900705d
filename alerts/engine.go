package alerts

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"iotdash/devices"
)

// States of an alert instance.
const (
	StatePending  = "pending"  // the condition holds, not yet for the rule's For
	StateFiring   = "firing"   // notified
	StateResolved = "resolved" // cleared after firing; kept as history
)

// Subject is what an alert is about, as its notifications, its episodes
// and the pages name it.
type Subject struct {
	Rule     string `json:"rule"`
	Name     string `json:"name"`
	Device   string `json:"device"`
	Metric   string `json:"metric"`
	Severity string `json:"severity"`
	Summary  string `json:"summary"`
}

// Instance is one rule's alert for one device (and metric).
type Instance struct {
	Key string `json:"key"`
	Subject
	Runbook string `json:"runbook,omitempty"`
	State   string `json:"state"`
	// Value is the latest value (for rises and falls the change within
	// the window, for nodata the seconds without data); Peak the
	// furthest into the condition it went.
	Value float64 `json:"value"`
	Peak  float64 `json:"peak"`
	// Since is when the condition began (pending), FiredAt and
	// ResolvedAt when it fired and cleared (Unix ms, 0 if not).
	Since      int64  `json:"since"`
	FiredAt    int64  `json:"fired_at,omitempty"`
	ResolvedAt int64  `json:"resolved_at,omitempty"`
	AckedBy    string `json:"acked_by,omitempty"`
	AckComment string `json:"ack_comment,omitempty"`
	// SilencedUntil mutes the instance's notifications (Unix ms).
	SilencedUntil int64 `json:"silenced_until,omitempty"`
}

// Fleet is what the engine reads of the devices: their kind, location and
// limits, to pick them with selectors; and, when a nodata rule starts,
// when each was last heard from.
type Fleet interface {
	Get(id string) (devices.Device, bool)
	List() []devices.Device
}

// target is what a rule picks a device by, cached per device.
type target struct {
	id, kind, location string
	limits             map[string][2]float64
	at                 time.Time
}

// Config is what an Engine is built from.
type Config struct {
	Store  Store
	Fleet  Fleet
	Notify *Notifier // nil: none
	// Changed, if not nil, is called after alerts changed and were saved
	// (to send Summary to the pages).
	Changed func()
	Logger  *slog.Logger
	// MaxHistory is how many episodes (an alert's firing to its
	// clearing) are kept, the oldest dropped first; DefaultMaxHistory if 0.
	MaxHistory int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Registerer, if not nil, gets iotdash_alerts_firing.
	Registerer prometheus.Registerer
}

// Engine evaluates the rules on every reading it observes.
type Engine struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	rules    map[string]*Rule
	byMetric map[string][]*Rule // metric → its rules; OpLimits rules under ""
	anyData  []*Rule            // nodata rules on every metric
	inst     map[instKey]*Instance
	targets  map[string]target
	// silent is when each device a nodata rule watches was last heard
	// from, and windows what rises and falls rules measure a change over.
	silent  map[instKey]silence
	windows map[instKey]*window
	history map[string]Episode // by ID
	dirty   []change           // what to save (and notify), in order
	wake    chan struct{}
}

// change is an instance to save, delete, or save and notify; silence
// says its acknowledgement or silence changed.
type change struct {
	in      Instance
	deleted bool
	notify  bool
	silence bool
}

// New returns an Engine with the rules and instances the store holds.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxHistory <= 0 {
		cfg.MaxHistory = DefaultMaxHistory
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, rules: map[string]*Rule{}, inst: map[instKey]*Instance{},
		targets: map[string]target{}, silent: map[instKey]silence{}, windows: map[instKey]*window{}, history: map[string]Episode{}, wake: make(chan struct{}, 1)}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	docs, err := cfg.Store.List(ctx, "alert-rule")
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		var r Rule
		if json.Unmarshal(d, &r) == nil && r.Validate() == nil {
			e.rules[r.ID] = &r
		}
	}
	if _, ok := e.rules[LimitsRuleID]; !ok {
		e.rules[LimitsRuleID] = &Rule{ID: LimitsRuleID, Name: "Outside the declared limits", Op: OpLimits, Severity: "warning"}
	}
	if docs, err = cfg.Store.List(ctx, "alert"); err != nil {
		return nil, err
	}
	for _, d := range docs {
		var in Instance
		if json.Unmarshal(d, &in) == nil && in.Key != "" {
			e.inst[instKey{in.Rule, in.Device, in.Metric}] = &in
		}
	}
	if err := e.loadHistory(ctx); err != nil {
		return nil, err
	}
	e.index()
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "iotdash_alerts_firing", Help: "Alerts firing now."},
			func() float64 { return float64(e.Firing()) }))
	}
	for _, r := range e.rules {
		e.watch(r)
	}
	return e, nil
}

func (e *Engine) index() {
	e.byMetric = map[string][]*Rule{}
	e.anyData = nil
	for _, r := range e.rules {
		if r.Disabled {
			continue
		}
		m := r.Metric
		switch {
		case r.Op == OpLimits:
			m = ""
		case r.Op == OpNoData && m == "":
			e.anyData = append(e.anyData, r)
			continue
		}
		e.byMetric[m] = append(e.byMetric[m], r)
	}
}

// watch starts the clocks of a nodata rule (a switched-on one) for every
// device of the fleet it picks, from when each last sent the metric (or
// anything), or from now if it never did; e.mu held (or not yet shared).
func (e *Engine) watch(r *Rule) {
	e.forget(r.ID)
	if r.Op != OpNoData || r.Disabled {
		return
	}
	now := e.cfg.Now()
	for _, d := range e.cfg.Fleet.List() {
		if !r.picks(e.target(d.ID, now)) {
			continue
		}
		last := now.UnixMilli()
		if _, sent := d.Latest[r.Metric]; (sent || r.Metric == "") && d.LastSeen > 0 {
			last = d.LastSeen
		}
		e.silent[instKey{r.ID, d.ID, r.Metric}] = silence{last: last, offline: d.Status == devices.StatusOffline}
	}
}

// forget drops what rule id measured of each device; e.mu held.
func (e *Engine) forget(id string) {
	for key := range e.silent {
		if key.rule == id {
			delete(e.silent, key)
		}
	}
	for key := range e.windows {
		if key.rule == id {
			delete(e.windows, key)
		}
	}
}

// silence is when a device was last heard from (Unix ms) and whether it
// says it is offline.
type silence struct {
	last    int64
	offline bool
}

// window keeps the least and greatest value of a series over a rule's
// window, in slots of a 32nd of it each: bounded, and exact to a slot.
type window struct {
	slots [windowSlots]struct {
		n      int64 // the slot's number since the epoch, plus one (0: empty)
		lo, hi float64
	}
}

const windowSlots = 32

// add records v at now (Unix ms) and returns the least and greatest value
// within width (ms) of it.
func (w *window) add(now, width int64, v float64) (lo, hi float64) {
	step := max(width/windowSlots, 1)
	n := now/step + 1
	s := &w.slots[n%windowSlots]
	if s.n != n {
		s.n, s.lo, s.hi = n, v, v
	} else {
		s.lo, s.hi = min(s.lo, v), max(s.hi, v)
	}
	lo, hi = v, v
	for _, s := range w.slots {
		if s.n > n-windowSlots {
			lo, hi = min(lo, s.lo), max(hi, s.hi)
		}
	}
	return lo, hi
}

// target returns what rules pick device id by, re-read from the fleet at
// most every ten seconds (meta changes seldom).
func (e *Engine) target(id string, now time.Time) target {
	t, ok := e.targets[id]
	if ok && now.Sub(t.at) < 10*time.Second {
		return t
	}
	t = target{id: id, at: now}
	if d, ok := e.cfg.Fleet.Get(id); ok {
		t.kind, t.location, t.limits = d.Meta.Kind, d.Meta.Location, d.Meta.Limits
	}
	if len(e.targets) > 100_000 {
		clear(e.targets)
	}
	e.targets[id] = t
	return t
}

// Observe evaluates every rule on readings just stored. It takes the
// engine's lock for the batch and does no I/O: what changed is saved and
// notified by Run.
func (e *Engine) Observe(rs []devices.Reading) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.cfg.Now()
	limits := e.byMetric[""]
	changed := false
	for _, r := range rs {
		rules := e.byMetric[r.Metric]
		if len(rules) == 0 && len(limits) == 0 && len(e.anyData) == 0 {
			continue
		}
		t := e.target(r.Device, now)
		for _, rule := range rules {
			if !rule.picks(t) {
				continue
			}
			v := r.Value
			switch rule.Op {
			case OpNoData:
				changed = e.heard(rule, r.Device, now) || changed
				continue
			case OpRises, OpFalls:
				key := instKey{rule.ID, r.Device, r.Metric}
				w := e.windows[key]
				if w == nil {
					w = &window{}
					e.windows[key] = w
				}
				lo, hi := w.add(now.UnixMilli(), time.Duration(rule.Window).Milliseconds(), v)
				if v = v - lo; rule.Op == OpFalls {
					v = hi - r.Value
				}
			}
			changed = e.step(rule, r.Device, r.Metric, v, [2]float64{}, now) || changed
		}
		if lim, ok := t.limits[r.Metric]; ok {
			for _, rule := range limits {
				changed = e.step(rule, r.Device, r.Metric, r.Value, lim, now) || changed
			}
		}
		for _, rule := range e.anyData {
			if rule.picks(t) {
				changed = e.heard(rule, r.Device, now) || changed
			}
		}
	}
	if changed {
		e.signal()
	}
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// instKey finds an instance: its rule, device and metric. Its Key is the
// three joined by colons, which none holds, so a key fits one path
// segment of the API.
type instKey struct{ rule, device, metric string }

func (k instKey) String() string { return k.rule + ":" + k.device + ":" + k.metric }

func parseKey(key string) instKey {
	var k instKey
	k.rule, key, _ = strings.Cut(key, ":")
	k.device, k.metric, _ = strings.Cut(key, ":")
	return k
}

// step moves rule's instance for device and metric through its states on
// a value v (a reading's, or for rises and falls its change); it reports
// whether anything is to be saved.
func (e *Engine) step(rule *Rule, device, metric string, v float64, limits [2]float64, now time.Time) bool {
	key := instKey{rule.ID, device, metric}
	in := e.inst[key]
	ms := now.UnixMilli()
	active := in != nil && (in.State == StatePending || in.State == StateFiring)
	if active {
		in.Value = v
		if rule.worse(v, in.Peak, limits) {
			in.Peak = v
		}
	}
	switch {
	case !active && rule.breached(v, limits):
		in = rule.instance(key, rule.describe(metric, limits), v, ms)
		e.inst[key] = in
		if rule.For == 0 {
			e.fire(in, ms)
		}
		return true
	case !active:
		return false
	case in.State == StatePending && !rule.breached(v, limits):
		delete(e.inst, key) // never fired: nothing to keep
		e.dirty = append(e.dirty, change{in: *in, deleted: true})
		return true
	case in.State == StatePending:
		if now.Sub(time.UnixMilli(in.Since)) >= time.Duration(rule.For) {
			e.fire(in, ms)
			return true
		}
		return false
	case rule.cleared(v, limits):
		e.resolve(in, ms)
		return true
	default:
		return false
	}
}

// instance is a new, pending alert of rule for key, its condition met
// since (Unix ms) with value v.
func (r *Rule) instance(key instKey, summary string, v float64, since int64) *Instance {
	return &Instance{Key: key.String(), Subject: Subject{Rule: r.ID, Name: r.Name, Device: key.device, Metric: key.metric,
		Severity: r.Severity, Summary: summary}, Runbook: r.Runbook, State: StatePending, Value: v, Peak: v, Since: since}
}

func (e *Engine) resolve(in *Instance, ms int64) {
	in.State, in.ResolvedAt = StateResolved, ms
	e.dirty = append(e.dirty, change{in: *in, notify: true})
}

// heard restarts a nodata rule's clock for device, whose reading just
// arrived, and resolves its alert; it reports whether anything is to be
// saved.
func (e *Engine) heard(rule *Rule, device string, now time.Time) bool {
	key := instKey{rule.ID, device, rule.Metric}
	ms := now.UnixMilli()
	s := e.silent[key]
	e.silent[key] = silence{last: ms}
	in := e.inst[key]
	if in == nil || in.State != StateFiring {
		return false
	}
	if s.last > 0 {
		in.Value = float64(ms-s.last) / 1000
		in.Peak = max(in.Peak, in.Value)
	}
	e.resolve(in, ms)
	return true
}

// Presence records what a device says of itself on its status topic (the
// fleet's onChange): a device that nodata rules watch and that they have
// not heard from yet is watched from now, and its alerts say it is
// offline.
func (e *Engine) Presence(id string, s devices.Status) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.cfg.Now()
	var t target
	for _, rule := range e.rules {
		if rule.Op != OpNoData || rule.Disabled {
			continue
		}
		if t.id == "" {
			t = e.target(id, now)
		}
		if !rule.picks(t) {
			continue
		}
		key := instKey{rule.ID, id, rule.Metric}
		sl, ok := e.silent[key]
		if !ok {
			sl.last = now.UnixMilli()
		}
		sl.offline = s == devices.StatusOffline
		e.silent[key] = sl
	}
}

func (e *Engine) fire(in *Instance, ms int64) {
	in.State, in.FiredAt = StateFiring, ms
	in.AckedBy, in.AckComment, in.ResolvedAt = "", "", 0
	e.dirty = append(e.dirty, change{in: *in, notify: true})
}

// tick fires the pending instances whose For has passed without a reading
// to carry them, and the nodata rules of devices silent for their For.
func (e *Engine) tick() {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.cfg.Now()
	fired := e.silences(now)
	for _, in := range e.inst {
		if in.State != StatePending {
			continue
		}
		rule := e.rules[in.Rule]
		if rule == nil || rule.Disabled {
			continue
		}
		if now.Sub(time.UnixMilli(in.Since)) >= time.Duration(rule.For) {
			e.fire(in, now.UnixMilli())
			fired = true
		}
	}
	if fired {
		e.signal()
	}
}

// silences fires the alerts of devices a nodata rule has not heard from
// for its For; it reports whether any fired. e.mu held.
func (e *Engine) silences(now time.Time) bool {
	ms := now.UnixMilli()
	fired := false
	for key, s := range e.silent {
		rule := e.rules[key.rule]
		if rule == nil || rule.Disabled || rule.Op != OpNoData {
			delete(e.silent, key)
			continue
		}
		quiet := float64(ms-s.last) / 1000
		in := e.inst[key]
		if in != nil && in.State == StateFiring {
			in.Value, in.Peak = quiet, max(in.Peak, quiet)
			continue
		}
		if ms-s.last < time.Duration(rule.For).Milliseconds() || !rule.picks(e.target(key.device, now)) {
			continue
		}
		summary := rule.describe(key.metric, [2]float64{})
		if s.offline {
			summary += " (offline)"
		}
		in = rule.instance(key, summary, quiet, s.last)
		e.inst[key] = in
		e.fire(in, ms)
		fired = true
	}
	return fired
}

// Run saves what changed and hands firing and resolving to the notifier,
// and fires pending instances on time, until ctx ends; what changed by
// then is saved before it returns.
func (e *Engine) Run(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	// Saving is not cut short by ctx: a change half saved would be
	// notified twice or not at all.
	save := context.WithoutCancel(ctx)
	for {
		select {
		case <-ctx.Done():
			e.flush(save)
			return
		case <-tick.C:
			e.tick()
		case <-e.wake:
		}
		e.flush(save)
	}
}

// flush saves changed instances, each before its notification is queued,
// so that a restart neither forgets a firing alert nor notifies it twice.
// A change the store does not take is kept, with those after it, for the
// next flush.
func (e *Engine) flush(ctx context.Context) {
	e.mu.Lock()
	batch := e.dirty
	e.dirty = nil
	e.mu.Unlock()
	for i, c := range batch {
		if err := e.save(ctx, c); err != nil {
			e.log.Error("saving an alert; trying again", "alert", c.in.Key, "error", err)
			e.mu.Lock()
			e.dirty = append(batch[i:len(batch):len(batch)], e.dirty...)
			e.mu.Unlock()
			batch = batch[:i]
			break
		}
	}
	if len(batch) > 0 && e.cfg.Changed != nil {
		e.cfg.Changed()
	}
}

// Summary is what fires, as the pages take it: the count, and for each
// device with a firing alert the highest severity and the rules' names.
func (e *Engine) Summary() json.RawMessage {
	type device struct {
		Severity string   `json:"severity"`
		Names    []string `json:"names"`
	}
	out := struct {
		Firing  int                `json:"firing"`
		Acked   int                `json:"acked"`
		Devices map[string]*device `json:"devices"`
	}{Devices: map[string]*device{}}
	rank := func(s string) int { return slices.Index(Severities, s) }
	for _, in := range e.Alerts(StateFiring) {
		out.Firing++
		if in.AckedBy != "" {
			out.Acked++
		}
		d := out.Devices[in.Device]
		if d == nil {
			d = &device{Severity: in.Severity}
			out.Devices[in.Device] = d
		}
		if rank(in.Severity) > rank(d.Severity) {
			d.Severity = in.Severity
		}
		d.Names = append(d.Names, in.Name)
	}
	b, _ := json.Marshal(out)
	return b
}

func (e *Engine) save(ctx context.Context, c change) error {
	in := c.in
	if c.deleted {
		return e.cfg.Store.Delete(ctx, "alert", in.Key)
	}
	b, _ := json.Marshal(in)
	if err := e.cfg.Store.Put(ctx, "alert", in.Key, b); err != nil {
		return err
	}
	if in.FiredAt != 0 {
		if err := e.record(ctx, in); err != nil {
			return err
		}
	}
	if e.cfg.Notify == nil {
		return nil
	}
	// Before the notification: syncing again is harmless, a second
	// notification is not (a failure below retries the whole change).
	if c.silence || (c.notify && in.State == StateResolved && (in.AckedBy != "" || in.SilencedUntil > 0)) {
		if err := e.cfg.Notify.SyncSilence(ctx, in); err != nil {
			return err
		}
	}
	if !c.notify || in.SilencedUntil > e.cfg.Now().UnixMilli() {
		return nil
	}
	webhook := ""
	e.mu.Lock()
	if rule := e.rules[in.Rule]; rule != nil {
		webhook = rule.Webhook
	}
	e.mu.Unlock()
	return e.cfg.Notify.Enqueue(ctx, in, webhook)
}

// Alerts lists the instances in state (every one for ""), firing first,
// then newest.
func (e *Engine) Alerts(state string) []Instance {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Instance
	for _, in := range e.inst {
		if state == "" || in.State == state {
			out = append(out, *in)
		}
	}
	order := map[string]int{StateFiring: 0, StatePending: 1, StateResolved: 2}
	slices.SortFunc(out, func(a, b Instance) int {
		return cmp.Or(cmp.Compare(order[a.State], order[b.State]), cmp.Compare(max(b.FiredAt, b.Since), max(a.FiredAt, a.Since)), strings.Compare(a.Key, b.Key))
	})
	return out
}

// Firing counts the firing instances.
func (e *Engine) Firing() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, in := range e.inst {
		if in.State == StateFiring {
			n++
		}
	}
	return n
}

// Acknowledge marks a firing instance as seen by someone: it is not
// notified again until it resolves.
func (e *Engine) Acknowledge(key, by, comment string) (Instance, error) {
	return e.change(key, func(in *Instance) error {
		if in.State != StateFiring {
			return devices.Errorf(devices.EInvalid, "only a firing alert is acknowledged; this one is %s", in.State)
		}
		in.AckedBy, in.AckComment = by, truncate(comment, 500)
		return nil
	})
}

// Unacknowledge withdraws an alert's acknowledgement, and its silence: it
// is notified again when it next fires or resolves.
func (e *Engine) Unacknowledge(key string) (Instance, error) {
	return e.change(key, func(in *Instance) error {
		if in.AckedBy == "" && in.SilencedUntil == 0 {
			return devices.Errorf(devices.EInvalid, "this alert is neither acknowledged nor silenced")
		}
		in.AckedBy, in.AckComment, in.SilencedUntil = "", "", 0
		return nil
	})
}

// Silence mutes an instance's notifications for d.
func (e *Engine) Silence(key, by string, d time.Duration, comment string) (Instance, error) {
	if d <= 0 || d > 30*24*time.Hour {
		return Instance{}, devices.Errorf(devices.EInvalid, "a silence lasts more than 0 and at most 30 days")
	}
	return e.change(key, func(in *Instance) error {
		in.SilencedUntil = e.cfg.Now().Add(d).UnixMilli()
		in.AckedBy, in.AckComment = by, truncate(comment, 500)
		return nil
	})
}

func (e *Engine) change(key string, f func(*Instance) error) (Instance, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	in := e.inst[parseKey(key)]
	if in == nil {
		return Instance{}, devices.Errorf(devices.ENotFound, "there is no alert %s", key)
	}
	if err := f(in); err != nil {
		return Instance{}, err
	}
	e.dirty = append(e.dirty, change{in: *in, silence: true}) // saved, not notified
	e.signal()
	return *in, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Rules lists every rule, by id.
func (e *Engine) Rules() []Rule {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Rule, 0, len(e.rules))
	for _, r := range e.rules {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Rule) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Rule returns the rule id.
func (e *Engine) Rule(id string) (Rule, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.rules[id]
	if r == nil {
		return Rule{}, devices.Errorf(devices.ENotFound, "there is no alert rule %s", id)
	}
	return *r, nil
}

// PutRule validates r and saves it: a new rule when its ID is "" (one is
// given), else in place of the rule with its ID. The alerts of a rule that
// is switched off resolve.
func (e *Engine) PutRule(ctx context.Context, r Rule) (Rule, error) {
	if r.ID == LimitsRuleID {
		// Only switched on or off; what it checks is each device's own.
		lim := Rule{ID: LimitsRuleID, Name: "Outside the declared limits", Op: OpLimits, Severity: r.Severity, Runbook: r.Runbook, Webhook: r.Webhook, Disabled: r.Disabled, For: r.For}
		r = lim
	}
	if err := r.Validate(); err != nil {
		return Rule{}, err
	}
	e.mu.Lock()
	if r.ID == "" {
		if len(e.rules) >= maxRules {
			e.mu.Unlock()
			return Rule{}, devices.Errorf(devices.EInvalid, "rule: there are %d rules already, the most there may be", maxRules)
		}
		r.ID = newID()
	} else if !devices.ValidName(r.ID) {
		e.mu.Unlock()
		return Rule{}, devices.Errorf(devices.EInvalid, "rule: id %q is not 1 to 64 characters of A-Z a-z 0-9 . _ -", r.ID)
	}
	e.mu.Unlock()
	b, _ := json.Marshal(r)
	if err := e.cfg.Store.Put(ctx, "alert-rule", r.ID, b); err != nil {
		return Rule{}, err
	}
	e.mu.Lock()
	old := e.rules[r.ID]
	e.rules[r.ID] = &r
	e.index()
	e.watch(&r)
	if r.Disabled || (old != nil && (old.Op != r.Op || old.Metric != r.Metric)) {
		e.retire(r.ID)
	}
	e.mu.Unlock()
	return r, nil
}

// DeleteRule removes a rule; its alerts resolve. The limits rule is only
// switched off.
func (e *Engine) DeleteRule(ctx context.Context, id string) error {
	if id == LimitsRuleID {
		return devices.Errorf(devices.EInvalid, "the limits rule is switched off (disabled), not removed")
	}
	if _, err := e.Rule(id); err != nil {
		return err
	}
	if err := e.cfg.Store.Delete(ctx, "alert-rule", id); err != nil {
		return err
	}
	e.mu.Lock()
	delete(e.rules, id)
	e.index()
	e.retire(id)
	e.forget(id)
	e.mu.Unlock()
	return nil
}

// retire resolves the active alerts of rule id (which no longer watches).
func (e *Engine) retire(id string) {
	ms := e.cfg.Now().UnixMilli()
	for key, in := range e.inst {
		if in.Rule != id {
			continue
		}
		switch in.State {
		case StatePending:
			delete(e.inst, key)
			e.dirty = append(e.dirty, change{in: *in, deleted: true})
		case StateFiring:
			e.resolve(in, ms)
		}
	}
	e.signal()
}

func newID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "r-" + hex.EncodeToString(b)
}
