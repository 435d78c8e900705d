package ingest

import (
	"strings"
	"testing"
	"time"
)

// TestBrokerDropsWarning: the broker's first figure (drops from before
// iotdash connected) raises no warning; a rise does, counting from before
// it; the warning stays while drops go on and clears a quiet minute after
// the last one; a figure that goes down (a restarted broker) is no rise.
func TestBrokerDropsWarning(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	var d brokerDrops
	for _, step := range []struct {
		at      time.Duration
		figure  string
		changed bool
		want    string // a part of the notice; "" for none
	}{
		{0, "500", false, ""},
		{10 * time.Second, "500", false, ""},
		{20 * time.Second, "530", true, "dropped 30 messages since 10:00:20"},
		{30 * time.Second, "560", true, "dropped 60 messages since 10:00:20"},
		{40 * time.Second, "not a number", false, ""},
		{60 * time.Second, "560", false, ""},
		{91 * time.Second, "560", true, ""},
		{100 * time.Second, "3", false, ""},
		{110 * time.Second, "13", true, "dropped 10 messages since 10:01:50"},
	} {
		notice, changed := d.report([]byte(step.figure), t0.Add(step.at))
		if changed != step.changed || (step.want == "") != (notice == "") || !strings.Contains(notice, step.want) {
			t.Errorf("at +%v figure %s: got %q, changed %v; want %q, changed %v", step.at, step.figure, notice, changed, step.want, step.changed)
		}
	}
}

// TestNoticesEachClearOnTheirOwn: the broker's absence and its drops are
// one notice while both hold; clearing one leaves the other.
func TestNoticesEachClearOnTheirOwn(t *testing.T) {
	var got []string
	in := &Ingester{cfg: Config{Notice: func(s string) { got = append(got, s) }}}
	in.notice(&in.notices.drops, "Dropping.")
	in.notice(&in.notices.broker, "Gone.")
	in.notice(&in.notices.broker, "Gone.") // no change: not told again
	in.notice(&in.notices.drops, "")
	in.notice(&in.notices.broker, "")
	want := []string{"Dropping.", "Gone. Dropping.", "Gone.", ""}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("notices %q, want %q", got, want)
	}
}

// TestBrokerGoneKeepsTheFirstTime: with several connections each one lost
// says the broker is gone; the warning keeps the time of the first.
func TestBrokerGoneKeepsTheFirstTime(t *testing.T) {
	var got []string
	// Not run: its connections are never up.
	in := New(Config{Broker: "tcp://127.0.0.1:1", Connections: 2, Notice: func(s string) { got = append(got, s) }})
	first := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	in.brokerGone(first)
	in.brokerGone(first.Add(time.Minute))
	if len(got) != 1 || !strings.Contains(got[0], "since 03:04:05 UTC") {
		t.Errorf("notices %q, want one, since 03:04:05", got)
	}
}
