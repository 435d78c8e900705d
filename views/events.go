package views

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"iotdash/devices"
)

// EventLog is what the pages read of what happened in the fleet: presence
// and out-of-range episodes. *sqlite.Events satisfies it.
type EventLog interface {
	// Events returns the events q picks, newest first; EInvalid for a q
	// it cannot answer, EUnavailable when the log cannot be read.
	Events(ctx context.Context, q devices.EventQuery) ([]devices.Event, error)
}

// Bounds on what an event page reads.
const (
	// maxEventRows is the most events the event log page lists; its CSV
	// (the API) goes further.
	maxEventRows = 500
	// maxStripEvents is the most presence episodes a device page's
	// availability strip reads.
	maxStripEvents = 5000
)

// humanDuration says d the way people say it, to two units at most:
// "45 s", "2 min", "1 h 5 min", "3 d 4 h".
func humanDuration(d time.Duration) string {
	s := int64(d / time.Second)
	unit := func(n int64, u string, rest int64, ru string) string {
		out := strconv.FormatInt(n, 10) + " " + u
		if rest > 0 {
			out += " " + strconv.FormatInt(rest, 10) + " " + ru
		}
		return out
	}
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case s < 60:
		return strconv.FormatInt(s, 10) + " s"
	case s < 3600:
		return unit(s/60, "min", 0, "")
	case s < 86400:
		return unit(s/3600, "h", s/60%60, "min")
	}
	return unit(s/86400, "d", s/3600%24, "h")
}

// Availability is a device's presence over a range, as the device page's
// strip shows it: a segment per presence episode, and each status's share
// of the time recorded.
type Availability struct {
	// From and To are the range drawn (Unix ms), for the page's script,
	// which extends the strip as the device's presence changes.
	From, To int64
	Segments []Segment
	// Summary says the shares in words: "online 97.5 %, offline 2.5 %".
	Summary string
	// Problem says why the strip could not be read ("" if it could).
	Problem string
}

// Segment is one presence episode within the strip's range: X and Width
// in thousandths of the range, From and To in Unix ms (To 0: it lasts
// still).
type Segment struct {
	Status   devices.Status
	X, Width int
	From, To int64
	Title    string
}

// NewAvailability draws the presence episodes es (any order) over
// [from, to), as of now; time with no episode recorded is left blank.
func NewAvailability(es []devices.Event, from, to int64, now time.Time) Availability {
	a := Availability{From: from, To: to}
	end := min(to, now.UnixMilli())
	span := to - from
	if span <= 0 || end <= from {
		a.Summary = "Nothing recorded in this range."
		return a
	}
	shares := map[devices.Status]int64{}
	var recorded int64
	es = slices.Clone(es)
	slices.SortFunc(es, func(x, y devices.Event) int { return int(max(-1, min(1, x.From-y.From))) })
	for _, e := range es {
		if e.Kind != devices.EventPresence {
			continue
		}
		stop := e.To
		if stop == 0 {
			stop = end
		}
		lo, hi := max(e.From, from), min(stop, end)
		if hi <= lo {
			continue
		}
		shares[e.Status] += hi - lo
		recorded += hi - lo
		x := int((lo - from) * 1000 / span)
		w := max(1, int((hi-from)*1000/span)-x)
		a.Segments = append(a.Segments, Segment{Status: e.Status, X: x, Width: w, From: e.From, To: e.To,
			Title: statusText(e.Status) + " " + formatAt(lo, now.Location()) + " – " + formatAt(hi, now.Location()) + " (" + humanDuration(time.Duration(hi-lo)*time.Millisecond) + ")"})
	}
	if recorded == 0 {
		a.Summary = "Nothing recorded in this range."
		return a
	}
	var parts []string
	for _, s := range []devices.Status{devices.StatusOnline, devices.StatusStale, devices.StatusOffline} {
		if n := shares[s]; n > 0 {
			parts = append(parts, statusText(s)+" "+strconv.FormatFloat(float64(n)*100/float64(recorded), 'f', 1, 64)+" %")
		}
	}
	a.Summary = strings.Join(parts, ", ")
	if gap := end - from - recorded; gap*100 > end-from {
		a.Summary += "; nothing recorded for " + humanDuration(time.Duration(gap)*time.Millisecond)
	}
	a.Summary += "."
	return a
}

// addAvailability reads the presence of device d over m's range into its
// strip.
func addAvailability(ctx context.Context, l EventLog, m *DeviceModel, d devices.Device, now time.Time, log *slog.Logger) {
	if l == nil {
		return
	}
	m.HasAvailability = true
	es, err := l.Events(ctx, devices.EventQuery{Device: m.Device.ID, Kind: devices.EventPresence, From: m.Range.From, To: m.Range.To, Limit: maxStripEvents})
	if err != nil {
		log.Warn("reading the device's presence", "device", m.Device.ID, "error", err)
		m.Availability = Availability{Problem: "The presence history could not be read: " + devices.ErrorMessage(err) + "."}
		return
	}
	m.Availability = NewAvailability(withPresence(es, d), m.Range.From, m.Range.To, now)
}

// withPresence is the presence episodes es with the device's current one,
// as the fleet knows it, in place of what the log says after it: the fleet
// hands the log its events once a second, so a page drawn just after a
// change would show a strip that ends in the status before it, beside a
// badge that says the new one.
func withPresence(es []devices.Event, d devices.Device) []devices.Event {
	if d.Since == 0 {
		return es
	}
	var out []devices.Event
	for _, e := range es {
		if e.Kind == devices.EventPresence && e.From >= d.Since {
			continue // the current episode, or one the fleet has ended since
		}
		if e.Kind == devices.EventPresence && (e.To == 0 || e.To > d.Since) {
			e.To = d.Since
		}
		out = append(out, e)
	}
	if d.Status != devices.StatusUnknown {
		out = append(out, devices.Event{Device: d.ID, Kind: devices.EventPresence, Status: d.Status, From: d.Since})
	}
	return out
}

// EventsModel is the fleet's event log page.
type EventsModel struct {
	Page
	Range Range
	// Device and Kind are the filter ("" for all).
	Device, Kind string
	// Devices are the devices the filter offers, by id.
	Devices []DeviceChoice
	Rows    []EventRow
	// More is true when there were more events than the page lists.
	More bool
	// CSV is the address of the same events as a CSV download.
	CSV     string
	Problem string
}

// DeviceChoice is one device of a filter's list.
type DeviceChoice struct{ ID, Name string }

// EventRow is one event as the event log lists it.
type EventRow struct {
	Device, DeviceName string
	Kind               string
	Status             devices.Status
	What               string
	From, To           string
	Ongoing            bool
	Duration           string
	// Peak is, for a range episode, its worst value and the limits.
	Peak string
}

// EventPages serves the fleet's event log.
type EventPages struct {
	Log   EventLog
	Fleet Fleet
	Options
}

// Page serves GET /events: what happened in the fleet (presence changes and
// out-of-range episodes), newest first, filtered by ?device=, ?kind=
// (presence or range) and the range picker's ?range= or ?from=&to=
// (default the last 24 hours), with a link to the same as CSV.
func (ep EventPages) Page() http.Handler {
	log := orDiscard(ep.Logger)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := ep.now(r)
		q := r.URL.Query()
		get := q.Get
		if get("range") == "" && get("from") == "" && get("to") == "" {
			get = func(k string) string {
				if k == "range" {
					return "24h"
				}
				return ""
			}
		}
		m := EventsModel{Page: Page{Title: "Events", TZ: zoneName(now.Location())}, Range: ParseRange(get, now),
			Device: q.Get("device"), Kind: q.Get("kind")}
		fleet := ep.Fleet.List()
		for _, d := range fleet {
			m.Devices = append(m.Devices, DeviceChoice{d.ID, d.Name()})
		}
		eq := devices.EventQuery{Device: m.Device, Kind: m.Kind, From: m.Range.From, To: m.Range.To, Limit: maxEventRows + 1}
		status := http.StatusOK
		if err := eq.Validate(); err != nil {
			m.Problem, status = devices.ErrorMessage(err)+".", http.StatusBadRequest
			m.Device, m.Kind = "", ""
			render(w, r, log, status, EventsPage(m))
			return
		}
		v := url.Values{"from": {strconv.FormatInt(m.Range.From, 10)}, "to": {strconv.FormatInt(m.Range.To, 10)},
			"format": {"csv"}, "tz": {zoneName(now.Location())}}
		if m.Device != "" {
			v.Set("device", m.Device)
		}
		if m.Kind != "" {
			v.Set("kind", m.Kind)
		}
		m.CSV = "/api/v1/events?" + v.Encode()
		es, err := ep.Log.Events(r.Context(), eq)
		if err != nil {
			log.Warn("reading the event log", "error", err)
			m.Problem = "The event log could not be read: " + devices.ErrorMessage(err) + "."
			render(w, r, log, http.StatusServiceUnavailable, EventsPage(m))
			return
		}
		if len(es) > maxEventRows {
			es, m.More = es[:maxEventRows], true
		}
		names := make(map[string]devices.Device, len(fleet))
		for _, d := range fleet {
			names[d.ID] = d
		}
		for _, e := range es {
			m.Rows = append(m.Rows, newEventRow(e, names[e.Device], now))
		}
		render(w, r, log, status, EventsPage(m))
	})
}

func newEventRow(e devices.Event, d devices.Device, now time.Time) EventRow {
	row := EventRow{Device: e.Device, DeviceName: e.Device, Kind: e.Kind, Status: e.Status, What: statusText(e.Status),
		From: formatAt(e.From, now.Location()), Ongoing: e.Ongoing(), Duration: humanDuration(e.Duration(now))}
	if d.ID != "" {
		row.DeviceName = d.Name()
	}
	if !row.Ongoing {
		row.To = formatAt(e.To, now.Location())
	}
	if e.Kind == devices.EventRange {
		mt := Metric{Name: e.Metric, Label: d.Meta.Label(e.Metric), Unit: d.Meta.Units[e.Metric], Decimals: Decimals(e.Peak, e.Low, e.High)}
		for _, c := range NewCard(d, now).Metrics {
			if c.Name == e.Metric {
				mt = c
			}
		}
		if _, declared := d.Meta.Decimals[e.Metric]; !declared {
			mt.Decimals = max(mt.Decimals, Decimals(e.Peak)) // the worst value as it was
		}
		mt.Lo, mt.Hi = e.Low, e.High
		row.What = mt.Label + " out of range"
		row.Peak = mt.withUnit(e.Peak) + " (expected " + mt.LimitsText() + ")"
	}
	return row
}

// Download is one link to the device's history as CSV over the page's
// range: what /api/v1/query exports.
type Download struct{ Label, URL string }

// Downloads are the device page's CSV links for its range: the raw
// readings of every metric, a row per reading or a row per time with a
// column per metric. A relative range is asked as such, so that the link
// reads up to the moment it is followed.
func (m DeviceModel) Downloads() []Download {
	if len(m.Device.Metrics) == 0 {
		return nil
	}
	v := url.Values{"device": {m.Device.ID}, "step": {"raw"}, "format": {"csv"}, "tz": {m.TZ}}
	metrics := make([]string, len(m.Device.Metrics))
	for i, mt := range m.Device.Metrics {
		metrics[i] = mt.Name
	}
	v.Set("metric", strings.Join(metrics, ","))
	if m.Range.Custom() {
		v.Set("from", strconv.FormatInt(m.Range.From, 10))
		v.Set("to", strconv.FormatInt(m.Range.To, 10))
	} else {
		v.Set("from", "-"+m.Range.Name)
		v.Set("to", "now")
	}
	long := "/api/v1/query?" + v.Encode()
	v.Set("layout", "wide")
	return []Download{
		{"a row per reading (CSV)", long},
		{"a column per metric (CSV)", "/api/v1/query?" + v.Encode()},
	}
}
