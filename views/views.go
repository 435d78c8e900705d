// Package views renders iotdash's HTML pages with templ and serves the small
// script and stylesheet that make them live.
//
// A page is a templ component of a typed view model: the handlers here read
// the fleet and build the model (every string already formatted), and the
// components only render it. Every page is complete and readable without
// scripts; static/live.js then keeps values, statuses, counts and ages
// current over /ws.
//
// It is not the JSON API and not the WebSocket hub; it only reads the fleet
// through the small Fleet interface declared here.
package views

//go:generate go tool templ generate -path .

import (
	"bytes"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/a-h/templ"

	"iotdash/devices"
)

// Fleet is what the pages read: the devices known now. *devices.Fleet
// satisfies it.
type Fleet interface {
	// List returns every known device, ordered by id.
	List() []devices.Device
	// Get returns the device with id, and false if it is not known.
	Get(id string) (devices.Device, bool)
}

var _ Fleet = (*devices.Fleet)(nil)

// Page is what the shared chrome needs from every page.
type Page struct {
	Title string
	// Live names the devices the page subscribes to over /ws ("*" for
	// all); empty for a page that is not live.
	Live string
	// NowMs is the server's time when the page was rendered (Unix ms), so
	// that the script can tick ages from the server's clock.
	NowMs int64
}

// Counts are how many devices are in each status.
type Counts struct {
	Online, Stale, Offline, Unknown int
}

// Seen is an instant as a page shows it.
type Seen struct {
	Ms       int64  // Unix ms, 0 for never
	ISO      string // RFC 3339 with milliseconds, for <time datetime>
	Absolute string // "2025-11-24 16:00:00 UTC"
	Relative string // "12 s ago", "never"
}

// Metric is one metric's latest value on a card.
type Metric struct {
	Name  string
	Value string // formatted
	Unit  string // "" when the device named none
	At    Seen
	// HasLimits says Lo and Hi bound the metric; OutOfRange that the value
	// is outside them.
	HasLimits  bool
	Lo, Hi     float64
	OutOfRange bool
}

// LimitsText is the metric's allowed range as shown, e.g. "5–30 °C".
func (m Metric) LimitsText() string {
	s := formatValue(m.Lo) + "–" + formatValue(m.Hi)
	if m.Unit != "" {
		s += " " + m.Unit
	}
	return s
}

// Card is one device as the fleet overview and the device page show it.
type Card struct {
	ID, Name, Kind, Location string
	Status                   devices.Status
	LastSeen                 Seen
	// Interval is the device's usual time between messages, "" until known.
	Interval string
	Metrics  []Metric
}

// URL is the device's page.
func (c Card) URL() templ.SafeURL { return templ.URL("/devices/" + c.ID) }

// OverviewModel is the fleet overview page.
type OverviewModel struct {
	Page
	Counts  Counts
	Devices []Card
}

// DeviceModel is one device's page.
type DeviceModel struct {
	Page
	Device Card
}

// NotFoundModel is the page for something that does not exist.
type NotFoundModel struct {
	Page
	Message string
}

// NewOverview builds the overview of ds as of now.
func NewOverview(ds []devices.Device, now time.Time) OverviewModel {
	m := OverviewModel{Page: Page{Title: "Fleet", Live: "*", NowMs: now.UnixMilli()}, Devices: make([]Card, 0, len(ds))}
	for _, d := range ds {
		switch d.Status {
		case devices.StatusOnline:
			m.Counts.Online++
		case devices.StatusStale:
			m.Counts.Stale++
		case devices.StatusOffline:
			m.Counts.Offline++
		default:
			m.Counts.Unknown++
		}
		m.Devices = append(m.Devices, NewCard(d, now))
	}
	return m
}

// NewDevice builds the page of d as of now.
func NewDevice(d devices.Device, now time.Time) DeviceModel {
	c := NewCard(d, now)
	return DeviceModel{Page: Page{Title: c.Name, Live: d.ID, NowMs: now.UnixMilli()}, Device: c}
}

// NewCard builds d's card as of now.
func NewCard(d devices.Device, now time.Time) Card {
	status := d.Status
	if status == "" {
		status = devices.StatusUnknown
	}
	c := Card{
		ID:       d.ID,
		Name:     d.Name(),
		Kind:     d.Meta.Kind,
		Location: d.Meta.Location,
		Status:   status,
		LastSeen: newSeen(d.LastSeen, now),
	}
	if d.Interval > 0 {
		c.Interval = formatDuration(time.Duration(d.Interval) * time.Millisecond)
	}
	for _, name := range d.Metrics() {
		v := d.Latest[name]
		m := Metric{Name: name, Value: formatValue(v.V), Unit: d.Meta.Units[name], At: newSeen(v.T, now)}
		if l, ok := d.Meta.Limits[name]; ok {
			m.HasLimits, m.Lo, m.Hi = true, l[0], l[1]
			m.OutOfRange = v.V < l[0] || v.V > l[1]
		}
		c.Metrics = append(c.Metrics, m)
	}
	return c
}

func newSeen(ms int64, now time.Time) Seen {
	if ms == 0 {
		return Seen{Relative: "never"}
	}
	t := time.UnixMilli(ms).UTC()
	return Seen{
		Ms:       ms,
		ISO:      t.Format("2006-01-02T15:04:05.000Z07:00"),
		Absolute: t.Format("2006-01-02 15:04:05 UTC"),
		Relative: relative(now.Sub(t)),
	}
}

// relative says how long ago something was, coarsely. live.js says it the
// same way.
func relative(d time.Duration) string {
	s := int64(d / time.Second)
	switch {
	case s < 1:
		return "just now"
	case s < 60:
		return strconv.FormatInt(s, 10) + " s ago"
	case s < 3600:
		return strconv.FormatInt(s/60, 10) + " min ago"
	case s < 86400:
		return strconv.FormatInt(s/3600, 10) + " h ago"
	}
	return strconv.FormatInt(s/86400, 10) + " d ago"
}

func formatDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + " s"
	}
	return d.Round(time.Second).String()
}

// formatValue shows a value with as many decimals as its size deserves:
// 21.53, 101.3, 1013. live.js formats the same way.
func formatValue(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	decimals := 0
	switch a := math.Abs(v); {
	case a < 100:
		decimals = 2
	case a < 1000:
		decimals = 1
	}
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	if decimals > 0 {
		s = trimZeros(s)
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

func trimZeros(s string) string {
	for s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s
}

// statusText is a status as words, so that a badge never relies on colour.
func statusText(s devices.Status) string {
	switch s {
	case devices.StatusOnline:
		return "Online"
	case devices.StatusStale:
		return "Stale"
	case devices.StatusOffline:
		return "Offline"
	}
	return "Unknown"
}

// statusIcon is a shape per status, for a glance at a row of badges.
func statusIcon(s devices.Status) string {
	switch s {
	case devices.StatusOnline:
		return "●"
	case devices.StatusStale:
		return "◐"
	case devices.StatusOffline:
		return "○"
	}
	return "?"
}

// Overview serves the fleet overview at /. Any other path gets the 404 page,
// so the handler may also be mounted as the catch-all "/".
func Overview(f Fleet) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			notFound(w, r, "There is no page at "+r.URL.Path+".")
			return
		}
		render(w, r, http.StatusOK, OverviewPage(NewOverview(f.List(), time.Now())))
	})
}

// DevicePage serves /devices/{id}: one device's metadata and latest values.
// An unknown id gets the 404 page.
func DevicePage(f Fleet) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		d, ok := f.Get(id)
		if !devices.ValidName(id) || !ok {
			notFound(w, r, "There is no device with the id “"+id+"”.")
			return
		}
		render(w, r, http.StatusOK, DeviceView(NewDevice(d, time.Now())))
	})
}

// NotFound serves the 404 page.
func NotFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		notFound(w, r, "There is no page at "+r.URL.Path+".")
	})
}

func notFound(w http.ResponseWriter, r *http.Request, msg string) {
	render(w, r, http.StatusNotFound, NotFoundPage(NotFoundModel{Page: Page{Title: "Not found"}, Message: msg}))
}

// render writes c whole, or a plain 500 if it fails to render.
func render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	var buf bytes.Buffer
	if err := c.Render(r.Context(), &buf); err != nil {
		if r.Context().Err() == nil {
			slog.Error("render page", "path", r.URL.Path, "error", err)
		}
		http.Error(w, "The page could not be shown; the server's log says why.", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store") // the values are live
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// metricAttrs are the attributes of a metric's element, on a card or in a
// table row, by which tests and live.js find it: its name, the time of the
// value shown, and its limits.
func metricAttrs(m Metric) templ.Attributes {
	a := templ.Attributes{
		"data-testid": "metric",
		"data-metric": m.Name,
		"data-t":      strconv.FormatInt(m.At.Ms, 10),
	}
	if m.HasLimits {
		a["data-lo"] = strconv.FormatFloat(m.Lo, 'g', -1, 64)
		a["data-hi"] = strconv.FormatFloat(m.Hi, 'g', -1, 64)
		a["title"] = "Expected range " + m.LimitsText()
	}
	return a
}
