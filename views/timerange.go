package views

import (
	"strconv"
	"strings"
	"time"

	"iotdash/store"
)

// Range is the span of time the device page's charts show.
type Range struct {
	// Name is one of the Ranges' names, or "custom".
	Name string
	// From and To are the span (Unix ms, From <= t < To). A range that is
	// not custom ends now and moves with the clock.
	From, To int64
	// Problem says why the range asked for in the URL could not be shown
	// ("" if it could): the page says so rather than silently showing
	// the default.
	Problem string
	// Loc is the zone its times are shown and typed in (UTC if nil).
	Loc *time.Location
}

func (r Range) loc() *time.Location {
	if r.Loc == nil {
		return time.UTC
	}
	return r.Loc
}

// Ranges are the range picker's choices besides custom: a name (as in
// ?range=), a label, and the span up to now.
var Ranges = []struct {
	Name, Label string
	Span        time.Duration
}{
	{"15m", "15 min", 15 * time.Minute},
	{"1h", "1 h", time.Hour},
	{"6h", "6 h", 6 * time.Hour},
	{"24h", "24 h", 24 * time.Hour},
	{"7d", "7 days", 7 * 24 * time.Hour},
}

// DefaultRange is the last 15 minutes up to now.
func DefaultRange(now time.Time) Range {
	return relativeRange(0, now)
}

func relativeRange(i int, now time.Time) Range {
	to := now.UnixMilli() + 1 // the reading of this very millisecond too
	return Range{Name: Ranges[i].Name, From: to - Ranges[i].Span.Milliseconds(), To: to, Loc: now.Location()}
}

// ParseRange reads the range from the device page's URL parameters:
// ?range=1h, or ?from=&to= as Unix ms, RFC 3339, or a date and time without
// a zone (2025-11-24T15:00, taken in now's zone, the plant's). Anything else
// is the default range, with a Problem that says what was wrong.
func ParseRange(get func(string) string, now time.Time) Range {
	names := make([]string, len(Ranges))
	for i, r := range Ranges {
		if get("range") == r.Name {
			return relativeRange(i, now)
		}
		names[i] = r.Name
	}
	fromS, toS := get("from"), get("to")
	from, okFrom := parseInstant(fromS, now.Location())
	to, okTo := parseInstant(toS, now.Location())
	if okFrom && okTo && from < to {
		return Range{Name: "custom", From: from, To: to, Loc: now.Location()}
	}
	r := DefaultRange(now)
	switch shown := " Showing " + r.Label() + " instead."; {
	case fromS == "" && toS == "" && get("range") == "":
	case fromS == "" && toS == "" && get("range") != "custom":
		r.Problem = "The range “" + get("range") + "” is not one of " + strings.Join(names, ", ") + "." + shown
	case !okFrom:
		r.Problem = "The start “" + fromS + "” is not a date and time." + shown
	case !okTo:
		r.Problem = "The end “" + toS + "” is not a date and time." + shown
	default:
		r.Problem = "The start " + formatAt(from, r.loc()) + " is not before the end " + formatAt(to, r.loc()) + "." + shown
	}
	return r
}

func parseInstant(s string, loc *time.Location) (int64, bool) {
	if s == "" {
		return 0, false
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, true
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixMilli(), true
	}
	// A wall-clock time in the plant's zone; in the hour an autumn DST
	// change repeats, the one time.Date picks (device.js picks the same).
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t.UnixMilli(), true
		}
	}
	return 0, false
}

// Custom reports whether the range is a fixed span rather than the last
// minutes or days up to now.
func (r Range) Custom() bool { return r.Name == "custom" }

// Label says the range in words: "the last 15 min", or the custom span.
func (r Range) Label() string {
	for _, rr := range Ranges {
		if rr.Name == r.Name {
			return "the last " + rr.Label
		}
	}
	return formatAt(r.From, r.loc()) + " to " + formatAt(r.To, r.loc())
}

// inputValue is an instant of r as a datetime-local input takes it, in the
// plant's zone.
func (r Range) inputValue(ms int64) string {
	return time.UnixMilli(ms).In(r.loc()).Format("2006-01-02T15:04:05")
}

// ZoneLabel names the zone the custom range is typed in.
func (r Range) ZoneLabel() string { return zoneName(r.loc()) }

// SetRange makes the page show r.
func (m *DeviceModel) SetRange(r Range) {
	m.Range = r
	for i := range m.Charts {
		m.Charts[i].Series = Series{From: r.From, To: r.To, Step: store.FitStep(r.To-r.From, chartWidth)}
	}
}

// SetKept says on the page that the store keeps raw readings for raw
// (0: for ever, and nothing is said) and that older ranges are drawn from
// minute and hour summaries. It says it of every range, not of the one
// shown: the page's script changes the range without asking the server.
func (m *DeviceModel) SetKept(raw time.Duration) {
	if raw > 0 {
		m.Kept = "Raw readings are kept " + spanWords(raw) + "; a range further back is drawn from minute and hour summaries."
	}
}

// spanWords says d in whole days, or else whole hours, or as Go writes it.
func spanWords(d time.Duration) string {
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{24 * time.Hour, "day"}, {time.Hour, "hour"}} {
		if n := d / u.d; d%u.d == 0 {
			if n == 1 {
				return "1 " + u.name
			}
			return strconv.FormatInt(int64(n), 10) + " " + u.name + "s"
		}
	}
	return d.String()
}
