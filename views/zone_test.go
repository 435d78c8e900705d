package views

import (
	"net/url"
	"testing"
	"time"
)

// TestTimesInThePlantZone: every time is shown in the plant's zone with its
// offset, across daylight-saving changes, and a custom range typed without
// a zone is read in it.
func TestTimesInThePlantZone(t *testing.T) {
	berlin, err := LoadZone("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	newYork, _ := LoadZone("America/New_York")
	utc := func(s string) int64 { tt, _ := time.Parse(time.RFC3339, s); return tt.UnixMilli() }
	for _, c := range []struct {
		at   string
		loc  *time.Location
		want string
	}{
		{"2026-03-29T00:59:59Z", berlin, "2026-03-29 01:59:59 +01:00"}, // the last second of winter time
		{"2026-03-29T01:00:00Z", berlin, "2026-03-29 03:00:00 +02:00"}, // 02:00 does not happen
		{"2026-10-25T00:30:00Z", berlin, "2026-10-25 02:30:00 +02:00"}, // 02:30 happens twice
		{"2026-10-25T01:30:00Z", berlin, "2026-10-25 02:30:00 +01:00"},
		{"2026-11-01T06:00:00Z", newYork, "2026-11-01 01:00:00 -05:00"},
		{"2026-07-01T12:00:00Z", time.UTC, "2026-07-01 12:00:00 UTC"},
	} {
		if got := formatAt(utc(c.at), c.loc); got != c.want {
			t.Errorf("formatAt(%s, %v) = %q, want %q", c.at, c.loc, got, c.want)
		}
	}

	for _, c := range []struct {
		from, to         string
		wantFrom, wantTo string
	}{
		// A 23-hour day: midnight to midnight across the spring change.
		{"2026-03-29T00:00", "2026-03-30T00:00", "2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"},
		// A 25-hour day in autumn.
		{"2026-10-25T00:00:00", "2026-10-26T00:00:00", "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z"},
		// With a zone given, that zone.
		{"2026-07-01T10:00:00Z", "2026-07-01T12:00:00%2B02:00", "2026-07-01T10:00:00Z", "2026-07-01T10:00:00Z"},
	} {
		now := time.Date(2026, 11, 28, 12, 0, 0, 0, berlin)
		v, _ := url.ParseQuery("range=custom&from=" + c.from + "&to=" + c.to)
		r := ParseRange(v.Get, now)
		if c.wantFrom == c.wantTo {
			if r.Problem == "" {
				t.Errorf("%s..%s: no problem said for an empty range", c.from, c.to)
			}
			continue
		}
		if r.Name != "custom" || r.From != utc(c.wantFrom) || r.To != utc(c.wantTo) {
			t.Errorf("%s..%s in Berlin = %v..%v, want %s..%s", c.from, c.to, time.UnixMilli(r.From).UTC(), time.UnixMilli(r.To).UTC(), c.wantFrom, c.wantTo)
		}
		if got := r.inputValue(r.From); got != c.from+map[bool]string{true: ":00", false: ""}[len(c.from) == 16] {
			t.Errorf("the From input shows %q, want %q", got, c.from)
		}
	}
}
