package devices

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// memLog is an EventLog in memory, keyed as the real one is.
type memLog struct {
	saved map[eventKey]Event
	fail  bool
}

func (l *memLog) Record(_ context.Context, es []Event) error {
	if l.fail {
		return Errorf(EUnavailable, "log down")
	}
	for _, e := range es {
		l.saved[e.key()] = e
	}
	return nil
}

// lines gives the saved events in order, one "device kind what from-to"
// each, times in seconds after t0.
func (l *memLog) lines(t0 time.Time) string {
	var out []string
	for _, e := range l.saved {
		to := "…"
		if e.To != 0 {
			to = fmt.Sprint((e.To - t0.UnixMilli()) / 1000)
		}
		out = append(out, fmt.Sprintf("%s %s %d-%s", e.Device, e.What(), (e.From-t0.UnixMilli())/1000, to))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// TestEventsOfPresenceAndRange: a device's presence changes and its
// metric's time outside its limits become episodes, from when to when,
// each saved once however often it changed between two saves.
func TestEventsOfPresenceAndRange(t *testing.T) {
	f, c, _ := newTestFleet()
	t0 := c.t
	l := &memLog{saved: map[eventKey]Event{}}
	f.SetMeta("boiler-1", Meta{Limits: map[string][2]float64{"temperature": {5, 30}}})
	at := func(v float64) {
		f.Seen("boiler-1", []Reading{{Device: "boiler-1", Metric: "temperature", Time: c.t.UnixMilli(), Value: v}})
	}
	at(21) // 0 s: online
	c.advance(10 * time.Second)
	at(31) // 10 s: out of range
	c.advance(10 * time.Second)
	at(35) // 20 s: its peak
	if err := f.SaveEvents(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	c.advance(10 * time.Second)
	at(29) // 30 s: back in range
	c.advance(10 * time.Minute)
	f.CheckStale() // 630 s: stale
	c.advance(30 * time.Second)
	f.SetPresence("boiler-1", StatusOffline) // 660 s
	l.fail = true
	if err := f.SaveEvents(context.Background(), l); err == nil {
		t.Fatal("SaveEvents to a failing log: no error")
	}
	l.fail = false
	if err := f.SaveEvents(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"boiler-1 offline 660-…",
		"boiler-1 online 0-630",
		"boiler-1 stale 630-660",
		"boiler-1 temperature out of range 10-30",
	}, "\n")
	if got := l.lines(t0); got != want {
		t.Errorf("events:\n%s\nwant:\n%s", got, want)
	}
	for _, e := range l.saved {
		if e.Kind == EventRange && (e.Peak != 35 || e.Low != 5 || e.High != 30) {
			t.Errorf("range episode %+v: want peak 35 outside [5, 30]", e)
		}
	}
}

// TestRangeEpisodeOutlivesARestart: an episode left open by one run is
// ended by the next run's first reading in range; limits taken back end it
// too.
func TestRangeEpisodeOutlivesARestart(t *testing.T) {
	f, c, _ := newTestFleet()
	t0 := c.t
	lim := Meta{Limits: map[string][2]float64{"g": {0, 0.003}}}
	f.SetMeta("scale-1", lim)
	f.Seen("scale-1", []Reading{{Device: "scale-1", Metric: "g", Time: c.t.UnixMilli(), Value: 0.0046}})
	l := &memLog{saved: map[eventKey]Event{}}
	f.SaveEvents(context.Background(), l)
	var open []Event
	for _, e := range l.saved {
		if e.Ongoing() {
			open = append(open, e)
		}
	}

	g, c2, _ := newTestFleet()
	c2.t = c.t.Add(time.Minute)
	g.Restore(f.List())
	g.RestoreEvents(open)
	g.Seen("scale-1", []Reading{{Device: "scale-1", Metric: "g", Time: c2.t.UnixMilli(), Value: 0.001}})
	c2.advance(time.Minute)
	g.Seen("scale-1", []Reading{{Device: "scale-1", Metric: "g", Time: c2.t.UnixMilli(), Value: 5}})
	g.SetMeta("scale-1", Meta{})
	g.SaveEvents(context.Background(), l)
	want := strings.Join([]string{
		"scale-1 g out of range 0-60",
		"scale-1 g out of range 120-120",
		"scale-1 online 0-…",
	}, "\n")
	if got := l.lines(t0); got != want {
		t.Errorf("events:\n%s\nwant:\n%s", got, want)
	}
}

func TestEventQueryValidate(t *testing.T) {
	for _, tc := range []struct {
		q    EventQuery
		want string // part of the error, "" for none
	}{
		{EventQuery{Limit: 10}, ""},
		{EventQuery{Device: "tank-01", Kind: EventRange, From: 1, To: 2, Limit: 1}, ""},
		{EventQuery{Device: "a b", Limit: 1}, "device id"},
		{EventQuery{Kind: "alarm", Limit: 1}, "kind"},
		{EventQuery{From: 2, To: 2, Limit: 1}, "before"},
		{EventQuery{}, "limit"},
	} {
		err := tc.q.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.q, err, tc.want)
		}
	}
}
