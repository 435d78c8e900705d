package devices

import (
	"context"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time for the fleet's staleness.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newTestFleet() (*Fleet, *clock, *[]string) {
	var mu sync.Mutex
	var changes []string
	f := NewFleet(func(id string, s Status) {
		mu.Lock()
		changes = append(changes, id+"="+string(s))
		mu.Unlock()
	})
	c := &clock{t: time.UnixMilli(1764000000000)}
	f.now = c.now
	return f, c, &changes
}

func TestFleetPresenceAndStaleness(t *testing.T) {
	f, c, changes := newTestFleet()
	f.SetMeta("dev-1", Meta{Name: "Boiler", Units: map[string]string{"temperature": "°C"}})
	f.SetPresence("dev-1", StatusOnline)
	for range 5 {
		c.advance(2 * time.Second)
		f.Seen("dev-1", []Reading{{Device: "dev-1", Metric: "temperature", Time: c.t.UnixMilli(), Value: 21}})
	}
	f.CheckStale()
	if d, _ := f.Get("dev-1"); d.Status != StatusOnline || d.Interval != 2000 {
		t.Fatalf("after regular readings: %+v, want online with a 2s interval", d)
	}
	c.advance(5 * time.Second) // less than 3 intervals
	f.CheckStale()
	if d, _ := f.Get("dev-1"); d.Status != StatusOnline {
		t.Fatalf("silent for 2.5 intervals: %s, want online", d.Status)
	}
	c.advance(2 * time.Second) // now more than 3 intervals
	f.CheckStale()
	if d, _ := f.Get("dev-1"); d.Status != StatusStale {
		t.Fatalf("silent for 3.5 intervals: %s, want stale", d.Status)
	}
	f.Seen("dev-1", []Reading{{Device: "dev-1", Metric: "temperature", Time: c.t.UnixMilli(), Value: 22}})
	f.SetPresence("dev-1", StatusOffline)
	want := "dev-1=online,dev-1=stale,dev-1=online,dev-1=offline"
	if got := strings.Join(*changes, ","); got != want {
		t.Errorf("status changes = %s, want %s", got, want)
	}
	d, ok := f.Get("dev-1")
	if !ok || d.Name() != "Boiler" || d.Latest["temperature"].V != 22 || d.Metrics()[0] != "temperature" {
		t.Errorf("device = %+v", d)
	}
}

func TestFleetLatestKeepsNewest(t *testing.T) {
	f, _, _ := newTestFleet()
	f.Seen("d", []Reading{{Device: "d", Metric: "m", Time: 200, Value: 2}})
	f.Seen("d", []Reading{{Device: "d", Metric: "m", Time: 100, Value: 1}}) // late
	if d, _ := f.Get("d"); d.Latest["m"] != (Value{T: 200, V: 2}) {
		t.Errorf("latest = %+v, want the reading at 200", d.Latest["m"])
	}
	if got := f.List(); len(got) != 1 || got[0].ID != "d" {
		t.Errorf("List = %+v", got)
	}
	if _, ok := f.Get("other"); ok {
		t.Errorf("Get of an unknown device succeeded")
	}
}

func TestValidation(t *testing.T) {
	for s, want := range map[string]bool{"a": true, "dev-1.a_B": true, strings.Repeat("x", 64): true,
		"": false, strings.Repeat("x", 65): false, "a b": false, "a/b": false, "a+": false, "é": false} {
		if ValidName(s) != want {
			t.Errorf("ValidName(%q) = %v, want %v", s, !want, want)
		}
	}
	if _, err := ParseMeta([]byte(`{"limits":{"t":[30,5]}}`)); ErrorKind(err) != EInvalid {
		t.Errorf("limits with low > high: %v, want invalid", err)
	}
	if _, err := ParseStatus([]byte("maybe")); ErrorKind(err) != EInvalid {
		t.Errorf("status maybe: %v, want invalid", err)
	}
}

// TestStaleWithoutAnInterval: a device heard once, whose interval is not
// known, goes stale after the fleet's stale-after time.
func TestStaleWithoutAnInterval(t *testing.T) {
	f, c, _ := newTestFleet()
	f.SetStaleAfter(time.Minute)
	f.Seen("once-01", []Reading{{Device: "once-01", Metric: "t", Time: c.t.UnixMilli(), Value: 1}})
	c.advance(59 * time.Second)
	f.CheckStale()
	if d, _ := f.Get("once-01"); d.Status != StatusOnline {
		t.Fatalf("silent for 59s: %s, want online", d.Status)
	}
	c.advance(2 * time.Second)
	f.CheckStale()
	if d, _ := f.Get("once-01"); d.Status != StatusStale || d.Since != c.t.UnixMilli() {
		t.Fatalf("silent for 61s: %s since %d, want stale since %d", d.Status, d.Since, c.t.UnixMilli())
	}
}

// memRegistry is a Registry in memory.
type memRegistry struct{ saved map[string]Device }

func (r *memRegistry) Load(context.Context) ([]Device, error) {
	var out []Device
	for _, d := range r.saved {
		out = append(out, d)
	}
	return out, nil
}

func (r *memRegistry) Save(_ context.Context, ds []Device) error {
	for _, d := range ds {
		r.saved[d.ID] = d
	}
	return nil
}

// TestRestore: what a fleet saves, a fleet of the next run restores: an
// offline device stays offline since then, an online one whose silence is
// already too long is stale, a recent one online, and one never heard of
// stays unknown. Save writes only what changed.
func TestRestore(t *testing.T) {
	f, c, _ := newTestFleet()
	f.SetMeta("tank-01", Meta{Name: "Tank 1"})
	f.Seen("tank-01", []Reading{{Device: "tank-01", Metric: "level", Time: c.t.UnixMilli(), Value: 40240.648}})
	f.SetPresence("tank-01", StatusOffline)
	offSince := c.t.UnixMilli()
	f.Seen("old-01", []Reading{{Device: "old-01", Metric: "t", Time: c.t.UnixMilli(), Value: 1}})
	f.SetMeta("meta-only", Meta{Name: "Never spoke"})
	c.advance(10 * time.Minute)
	f.Seen("new-01", []Reading{{Device: "new-01", Metric: "t", Time: c.t.UnixMilli(), Value: 2}})

	r := &memRegistry{saved: map[string]Device{}}
	if err := f.Save(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if len(r.saved) != 4 {
		t.Fatalf("saved %d devices, want 4", len(r.saved))
	}
	r.saved = map[string]Device{}
	f.Save(context.Background(), r)
	if len(r.saved) != 0 {
		t.Errorf("a second Save with no change saved %d devices", len(r.saved))
	}
	f.Seen("new-01", []Reading{{Device: "new-01", Metric: "t", Time: c.t.UnixMilli() + 1, Value: 3}})
	f.Save(context.Background(), r)
	if len(r.saved) != 1 || r.saved["new-01"].Latest["t"].V != 3 {
		t.Errorf("after one change Save saved %v, want new-01 alone", r.saved)
	}

	all, _ := (&memRegistry{saved: map[string]Device{}}).Load(context.Background())
	all = append(all, f.List()...)
	g, c2, changes := newTestFleet()
	c2.t = c.t.Add(time.Second)
	g.Restore(all)
	for id, want := range map[string]Status{"tank-01": StatusOffline, "old-01": StatusStale, "new-01": StatusOnline, "meta-only": StatusUnknown} {
		if d, ok := g.Get(id); !ok || d.Status != want {
			t.Errorf("restored %s: %+v, want %s", id, d, want)
		}
	}
	if d, _ := g.Get("tank-01"); d.Since != offSince || d.Name() != "Tank 1" || d.Latest["level"].V != 40240.648 {
		t.Errorf("restored tank-01 = %+v, want offline since %d with its meta and level", d, offSince)
	}
	if got := strings.Join(*changes, ","); got != "old-01=stale" {
		t.Errorf("status changes on restore = %s, want old-01=stale only", got)
	}
}

// TestStaleByDeclaredInterval: a device that declares its interval in its
// meta goes stale after 3 of them, whatever its messages suggest.
func TestStaleByDeclaredInterval(t *testing.T) {
	f, c, _ := newTestFleet()
	f.SetMeta("slow-1", Meta{Interval: 60})
	f.Seen("slow-1", []Reading{{Device: "slow-1", Metric: "t", Time: c.t.UnixMilli(), Value: 1}})
	c.advance(time.Second)
	f.Seen("slow-1", []Reading{{Device: "slow-1", Metric: "t", Time: c.t.UnixMilli(), Value: 1}})
	c.advance(2 * time.Minute) // 120 learnt intervals, 2 declared ones
	f.CheckStale()
	if d, _ := f.Get("slow-1"); d.Status != StatusOnline {
		t.Fatalf("silent for 2 declared intervals: %s, want online", d.Status)
	}
	c.advance(61 * time.Second)
	f.CheckStale()
	if d, _ := f.Get("slow-1"); d.Status != StatusStale {
		t.Fatalf("silent for 3 declared intervals: %s, want stale", d.Status)
	}
}

// readings gives one reading of each metric of device id at time t.
func readings(id string, t int64, metrics ...string) []Reading {
	rs := make([]Reading, len(metrics))
	for i, m := range metrics {
		rs[i] = Reading{Device: id, Metric: m, Time: t, Value: float64(i)}
	}
	return rs
}

func metricsOf(rs []Reading) string {
	ms := make([]string, len(rs))
	for i, r := range rs {
		ms[i] = r.Metric
	}
	return strings.Join(ms, ",")
}

// TestAdmitLimits: past its limits the fleet refuses new devices, new
// metrics of a device and new series beyond the rate, and keeps taking
// everything it already knows.
func TestAdmitLimits(t *testing.T) {
	f, c, _ := newTestFleet()
	f.SetLimits(Limits{Devices: 3, Metrics: 3, NewSeriesPerMinute: 5})
	now := c.t.UnixMilli()

	kept, a := f.Admit("a", readings("a", now, "m1", "m2", "m3", "m4"))
	if got, want := metricsOf(kept), "m1,m2,m3"; got != want || a.TooManyMetrics != 1 {
		t.Errorf("a's first message: kept %s, %+v; want %s and one metric too many", got, a, want)
	}
	f.Seen("a", kept)
	kept, a = f.Admit("b", readings("b", now, "m1", "m2", "m3"))
	if got, want := metricsOf(kept), "m1,m2"; got != want || a.TooManyNewSeries != 1 {
		t.Errorf("b's first message: kept %s, %+v; want %s and one series over the rate", got, a, want)
	}
	// A new device whose every reading is refused takes no place.
	if kept, a = f.Admit("x", readings("x", now, "m1")); len(kept) != 0 || a.TooManyNewSeries != 1 || a.TooManyDevices {
		t.Errorf("a new device over the rate: kept %s, %+v; want its one reading refused for the rate", metricsOf(kept), a)
	}
	// A device named without readings (its status) is admitted, but
	// shown only once its status is recorded; admitted, it counts.
	if _, a = f.Admit("c", nil); a != (Admission{}) {
		t.Errorf("a third device's status: %+v, want it admitted", a)
	}
	if _, ok := f.Get("c"); ok {
		t.Error("the admitted device is shown before anything of it is recorded")
	}
	if _, a = f.Admit("d", nil); !a.TooManyDevices {
		t.Errorf("a fourth device: %+v, want refused (3 devices at most)", a)
	}
	// Known series pass whatever the rate; new ones wait for it.
	kept, a = f.Admit("a", readings("a", now+1, "m3", "m1"))
	if got := metricsOf(kept); got != "m3,m1" || a != (Admission{}) {
		t.Errorf("a's known metrics: kept %s, %+v; want both, nothing refused", got, a)
	}
	c.advance(12 * time.Second) // a fifth of a minute: one more new series
	kept, a = f.Admit("b", readings("b", now+2, "m3", "m1"))
	if got := metricsOf(kept); got != "m3,m1" || a != (Admission{}) {
		t.Errorf("b after 12 s: kept %s, %+v; want m3 (new) and m1", got, a)
	}
	kept, a = f.Admit("b", readings("b", now+3, "m4"))
	if len(kept) != 0 || a.TooManyMetrics != 1 {
		t.Errorf("b's fourth metric: kept %s, %+v; want refused as one metric too many", metricsOf(kept), a)
	}
}

// TestFirstWriteWinsInLatest: a second reading with the time of the latest
// one does not replace it, as the embedded store keeps the first.
func TestFirstWriteWinsInLatest(t *testing.T) {
	f, c, _ := newTestFleet()
	now := c.t.UnixMilli()
	f.Seen("a", []Reading{{Device: "a", Metric: "m", Time: now, Value: 1}})
	f.Seen("a", []Reading{{Device: "a", Metric: "m", Time: now, Value: 2}})
	if d, _ := f.Get("a"); d.Latest["m"].V != 1 {
		t.Errorf("latest = %v, want the first value, 1", d.Latest["m"])
	}
}

// TestLatestWhateverTheOrder: a device's latest values are right whatever
// order and subset of its metrics its messages name, late readings
// included, before and after a restart.
func TestLatestWhateverTheOrder(t *testing.T) {
	f, _, _ := newTestFleet()
	want := map[string]Value{}
	metrics := []string{"a", "b", "c", "d", "e"}
	rnd := rand.New(rand.NewPCG(1, 2))
	check := func(f *Fleet, step int) {
		t.Helper()
		d, _ := f.Get("dev")
		if !maps.Equal(d.Latest, want) {
			t.Fatalf("step %d: latest = %v, want %v", step, d.Latest, want)
		}
	}
	for step := range 2000 {
		if step == 1000 {
			g, _, _ := newTestFleet()
			g.Restore(f.List())
			f = g
			check(f, step)
		}
		var rs []Reading
		for _, i := range rnd.Perm(len(metrics))[:1+rnd.IntN(len(metrics))] {
			r := Reading{Device: "dev", Metric: metrics[i], Time: int64(MinTime + rnd.IntN(50)), Value: float64(step)}
			rs = append(rs, r)
			if v, ok := want[r.Metric]; !ok || r.Time > v.T {
				want[r.Metric] = Value{T: r.Time, V: r.Value}
			}
		}
		f.Seen("dev", rs)
		check(f, step)
		if rs, _ := f.Admit("dev", rs); len(rs) == 0 {
			t.Fatalf("step %d: readings of known metrics refused", step)
		}
	}
}
