package sqlite_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"iotdash/devices"
	"iotdash/store/sqlite"
)

// TestEvents: events are kept across a reopen of the state file, an
// episode's end replaces its start, a query picks by device, kind, time
// overlap and whether it still lasts, newest first, and each device keeps
// only its newest events.
func TestEvents(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fleet.db")
	ev, err := sqlite.OpenEvents(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	err = ev.Record(ctx, []devices.Event{
		{Device: "tank-01", Kind: devices.EventPresence, Status: devices.StatusOnline, From: 1000},
		{Device: "tank-01", Kind: devices.EventRange, Metric: "level", From: 1500, Peak: 99, Low: 0, High: 90},
		{Device: "pump-1", Kind: devices.EventPresence, Status: devices.StatusOffline, From: 500, To: 800},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The online episode ends; offline begins.
	err = ev.Record(ctx, []devices.Event{
		{Device: "tank-01", Kind: devices.EventPresence, Status: devices.StatusOnline, From: 1000, To: 2000},
		{Device: "tank-01", Kind: devices.EventPresence, Status: devices.StatusOffline, From: 2000},
	})
	if err != nil {
		t.Fatal(err)
	}
	ev.Close()
	if ev, err = sqlite.OpenEvents(path, 3); err != nil {
		t.Fatal(err)
	}
	defer ev.Close()

	whats := func(q devices.EventQuery) []string {
		t.Helper()
		q.Limit = max(q.Limit, 100)
		es, err := ev.Events(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range es {
			out = append(out, e.Device+" "+e.What())
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    devices.EventQuery
		want []string
	}{
		{"all, newest first", devices.EventQuery{}, []string{"tank-01 offline", "tank-01 level out of range", "tank-01 online", "pump-1 offline"}},
		{"one device", devices.EventQuery{Device: "pump-1"}, []string{"pump-1 offline"}},
		{"one kind", devices.EventQuery{Kind: devices.EventRange}, []string{"tank-01 level out of range"}},
		{"ongoing", devices.EventQuery{Ongoing: true}, []string{"tank-01 offline", "tank-01 level out of range"}},
		{"overlapping [900, 1200)", devices.EventQuery{From: 900, To: 1200}, []string{"tank-01 online"}},
		{"overlapping [2500, now)", devices.EventQuery{From: 2500}, []string{"tank-01 offline", "tank-01 level out of range"}},
	} {
		if got := whats(tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	es, _ := ev.Events(ctx, devices.EventQuery{Kind: devices.EventRange, Limit: 1})
	if len(es) != 1 || es[0].Peak != 99 || es[0].High != 90 || !es[0].Ongoing() {
		t.Errorf("range episode = %+v, want ongoing with peak 99 over 90", es)
	}
	if _, err := ev.Events(ctx, devices.EventQuery{Kind: "alarm", Limit: 1}); devices.ErrorKind(err) != devices.EInvalid {
		t.Errorf("kind alarm: %v, want %s", err, devices.EInvalid)
	}

	// A fourth event of tank-01 drops its oldest; pump-1 keeps its one.
	if err := ev.Record(ctx, []devices.Event{{Device: "tank-01", Kind: devices.EventPresence, Status: devices.StatusOnline, From: 3000}}); err != nil {
		t.Fatal(err)
	}
	want := []string{"tank-01 online", "tank-01 offline", "tank-01 level out of range", "pump-1 offline"}
	if got := whats(devices.EventQuery{}); !slices.Equal(got, want) {
		t.Errorf("after a fourth event of tank-01: %q, want %q", got, want)
	}
}
