package devices

import (
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
