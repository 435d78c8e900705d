package api

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

// EventSource lists the fleet's events (presence and out-of-range
// episodes): *sqlite.Events.
type EventSource interface {
	// Events returns the events q picks, newest first; EInvalid for a q
	// it cannot answer, EUnavailable when the log cannot be read.
	Events(ctx context.Context, q devices.EventQuery) ([]devices.Event, error)
}

// Bounds on one answer of /api/v1/events.
const (
	// DefaultEventLimit is how many events an answer holds without ?limit=.
	DefaultEventLimit = 1000
	// MaxEventLimit is the most ?limit= may ask for.
	MaxEventLimit = 10_000
)

var eventParams = []string{"device", "kind", "from", "to", "limit", "format", "tz"}

// EventRequest is a request of /api/v1/events: what to pick, and how to
// write it.
type EventRequest struct {
	devices.EventQuery
	// Format is json or csv.
	Format string
	// Zone is what the CSV's times are written in.
	Zone *time.Location
}

// ParseEvents reads an event query from URL parameters: device, kind
// (presence or range), from and to (as /api/v1/query reads them; default
// the last 7 days), limit (default DefaultEventLimit, at most
// MaxEventLimit), format (json or csv) and tz (the CSV's zone; default
// zone). Every mistake gives an EInvalid error that names the parameter.
func ParseEvents(v url.Values, now time.Time, zone *time.Location) (EventRequest, error) {
	r := EventRequest{Zone: zone, Format: "json"}
	get := map[string]string{}
	for name, vs := range v {
		if !slices.Contains(eventParams, name) {
			return r, devices.Errorf(devices.EInvalid, "unknown parameter %q; the parameters are %s", name, strings.Join(eventParams, ", "))
		}
		if len(vs) > 1 {
			return r, devices.Errorf(devices.EInvalid, "%s is given %d times; give it once", name, len(vs))
		}
		get[name] = vs[0]
	}
	r.Device, r.Kind = get["device"], get["kind"]
	var err error
	if r.From, err = ParseTime(get["from"], "-7d", now); err != nil {
		return r, devices.Errorf(devices.EInvalid, "from: %v", err)
	}
	if r.To, err = ParseTime(get["to"], "now", now); err != nil {
		return r, devices.Errorf(devices.EInvalid, "to: %v", err)
	}
	r.Limit = DefaultEventLimit
	if s := get["limit"]; s != "" {
		if r.Limit, err = strconv.Atoi(s); err != nil || r.Limit < 1 || r.Limit > MaxEventLimit {
			return r, devices.Errorf(devices.EInvalid, "limit %q is not a whole number from 1 to %d", s, MaxEventLimit)
		}
	}
	switch f := get["format"]; f {
	case "", "json":
	case "csv":
		r.Format = "csv"
	default:
		return r, devices.Errorf(devices.EInvalid, "format %q is not json or csv", f)
	}
	if s := get["tz"]; s != "" {
		if r.Zone, err = time.LoadLocation(s); err != nil || s == "Local" {
			return r, devices.Errorf(devices.EInvalid, "tz %q is not a time zone such as Europe/Berlin or UTC", s)
		}
	}
	return r, r.Validate()
}

// eventJSON is an event as /api/v1/events gives it.
type eventJSON struct {
	Device   string         `json:"device"`
	Kind     string         `json:"kind"`
	Status   devices.Status `json:"status,omitempty"`
	Metric   string         `json:"metric,omitempty"`
	From     time.Time      `json:"from"`
	To       *time.Time     `json:"to"`
	Duration float64        `json:"duration_s"`
	Peak     *float64       `json:"peak,omitempty"`
	Low      *float64       `json:"low,omitempty"`
	High     *float64       `json:"high,omitempty"`
}

// Events serves GET /api/v1/events: what happened in the fleet, newest
// first: presence episodes (online, stale, offline) and out-of-range
// episodes (a metric outside its device's declared limits), each from when
// to when, as JSON or CSV (see ParseEvents). zone is the plant's.
func Events(src EventSource, zone *time.Location, logger *slog.Logger) http.Handler {
	log := logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			writeError(w, r, log, devices.Errorf(devices.EInvalid, "the query string is malformed: %v", err))
			return
		}
		now := time.Now()
		req, err := ParseEvents(v, now, zone)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		es, err := src.Events(r.Context(), req.EventQuery)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if req.Format == "csv" {
			writeEventsCSV(w, req, es, now)
			return
		}
		out := make([]eventJSON, 0, len(es))
		for _, e := range es {
			j := eventJSON{Device: e.Device, Kind: e.Kind, Status: e.Status, Metric: e.Metric,
				From: time.UnixMilli(e.From).UTC(), To: timeOrNil(e.To), Duration: e.Duration(now).Seconds()}
			if e.Kind == devices.EventRange {
				j.Peak, j.Low, j.High = &e.Peak, &e.Low, &e.High
			}
			out = append(out, j)
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// writeEventsCSV writes es as CSV: one row an episode, its times in the
// request's zone with their offset, an ongoing one's end empty.
func writeEventsCSV(w http.ResponseWriter, req EventRequest, es []devices.Event, now time.Time) {
	zone := req.Zone
	if zone == nil {
		zone = time.UTC
	}
	b := []byte("from,to,duration_s,device,kind,what,metric,peak,low,high\n")
	at := func(b []byte, ms int64) []byte {
		return time.UnixMilli(ms).In(zone).AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	}
	for _, e := range es {
		b = at(b, e.From)
		b = append(b, ',')
		if e.To != 0 {
			b = at(b, e.To)
		}
		b = append(b, ',')
		b = appendCSVNumber(b, e.Duration(now).Seconds())
		b = append(b, ',')
		b = appendCSVName(b, e.Device)
		b = append(b, ',')
		b = append(b, e.Kind...)
		b = append(b, ',')
		if e.Kind == devices.EventRange {
			b = append(b, "out of range,"...)
			b = appendCSVName(b, e.Metric)
			for _, f := range []float64{e.Peak, e.Low, e.High} {
				b = append(b, ',')
				b = appendCSVNumber(b, f)
			}
		} else {
			b = append(b, e.Status...)
			b = append(b, ",,,,"...)
		}
		b = append(b, '\n')
	}
	name := "iotdash_events"
	if req.Device != "" {
		name += "_" + req.Device
	}
	name += "_" + fileStamp(req.From) + "_" + fileStamp(req.To) + ".csv"
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(b)
}
