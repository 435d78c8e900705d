// Package views renders iotdash's HTML pages with templ and serves the small
// scripts and stylesheet that make them live.
//
// A page is a templ component of a typed view model: the handlers here read
// the fleet (and, when given one, the history store) and build the model
// with every string already formatted; the components only render it. Every
// page is complete and readable without scripts: values, statuses, times,
// and a summary of each chart in words. The ES modules in static/ then keep
// it live over /ws and draw the charts on canvas.
//
// It is not the JSON API and not the WebSocket hub; it reads the fleet and
// the history only through the small Fleet and History interfaces declared
// here.
package views

//go:generate go tool templ generate -path .

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"

	"iotdash/devices"
	"iotdash/store"
)

// Page is what the shared chrome needs from every page.
type Page struct {
	Title string
	// Kind names the page for the scripts: "overview", "device", "board",
	// or "" for a page that is not live.
	Kind string
	// Live names the devices the page subscribes to over /ws, separated
	// by spaces ("*" for all, "-" for none: only what every page gets,
	// such as alerts); empty for a page that is not live.
	// LiveLatest, when not 0, asks for the latest reading of each device
	// and metric at most that many times a second instead of every one
	// (the overview: a person reads a card a few times a second at most).
	Live       string
	LiveLatest int
	// NowMs is the server's time when the page was rendered (Unix ms), so
	// that the script can tick ages from the server's clock.
	NowMs int64
	// History says the server embeds history in the page, so that a fresh
	// copy of the page brings sparklines the script does not have.
	History bool
	// TZ is the plant's time zone (IANA name), every time's zone.
	TZ string
	// Kiosk leaves out the chrome (top bar, footer) for a wall screen.
	Kiosk bool
}

// OverviewLatest is how many times a second the overview takes each
// card's latest values.
const OverviewLatest = 4

// Counts are how many devices are in each status, and how many need
// attention (all but those online within their limits).
type Counts struct {
	Online, Stale, Offline, Unknown int
	Attention                       int
}

// attentionOrder is the overview's order, most urgent first: offline, out
// of range, stale, unknown; then every device that is fine. The page hands
// it to live.js (data-attention-order), which keeps the cards in it.
var attentionOrder = []string{"offline", "out", "stale", "unknown"}

// Attention is c's place in attentionOrder (len(attentionOrder) when it
// needs none).
func (c Card) Attention() int { return attention(c.Status, c.OutOfRange()) }

// attention is the place in attentionOrder of a device in status, out of
// its limits or not.
func attention(status devices.Status, out bool) int {
	key := string(status)
	switch {
	case status == devices.StatusOffline:
	case out:
		key = "out"
	}
	if i := slices.Index(attentionOrder, key); i >= 0 {
		return i
	}
	return len(attentionOrder)
}

// outside says whether v lies outside the limits l.
func outside(v float64, l [2]float64) bool { return v < l[0] || v > l[1] }

// deviceAttention is Card.Attention of d's card, without making it.
func deviceAttention(d devices.Device) int {
	status := d.Status
	if status == "" {
		status = devices.StatusUnknown
	}
	out := false
	for name, l := range d.Meta.Limits {
		if v, ok := d.Latest[name]; ok && outside(v.V, l) {
			out = true
			break
		}
	}
	return attention(status, out)
}

// Seen is an instant as a page shows it.
type Seen struct {
	Ms       int64  // Unix ms, 0 for never
	ISO      string // RFC 3339 with milliseconds, for <time datetime>
	Absolute string // "2025-11-24 16:00:00 +01:00", in the plant's zone
	Relative string // "12 s ago", "never"
}

// Metric is one metric's latest value on a card.
type Metric struct {
	Name  string
	Label string // the name people read (meta labels), else Name
	Value string // formatted
	Unit  string // "" when the device named none
	// Decimals is how many decimals every value of the metric is shown
	// with, on the server and (from data-decimals) in the browser.
	Decimals int
	At       Seen
	// HasLimits says Lo and Hi bound the metric; OutOfRange that the value
	// is outside them.
	HasLimits  bool
	Lo, Hi     float64
	OutOfRange bool
	// Recent is the metric's last minutes for the card's sparkline; its
	// Known is false when the page was rendered without history.
	Recent Series
}

// LimitsText is the metric's allowed range as shown, e.g. "5–30 °C".
func (m Metric) LimitsText() string {
	// The limits as the device declared them: configuration, not a
	// measurement, so each with its own decimals.
	s := formatValue(m.Lo, Decimals(m.Lo)) + "–" + formatValue(m.Hi, Decimals(m.Hi))
	if m.Unit != "" {
		s += " " + m.Unit
	}
	return s
}

// withUnit is v followed by the metric's unit, if it has one.
func (m Metric) withUnit(v float64) string {
	if m.Unit == "" {
		return formatValue(v, m.Decimals)
	}
	return formatValue(v, m.Decimals) + " " + m.Unit
}

// Card is one device as the fleet overview and the device page show it.
type Card struct {
	// Search is what the text filter looks in (devices.SearchText),
	// handed to the script so that it filters by the server's rule.
	Search                   string
	ID, Name, Kind, Location string
	Status                   devices.Status
	LastSeen                 Seen
	// Interval is the device's usual time between messages, "" until known.
	Interval string
	Metrics  []Metric
	// Hidden says the overview's filter leaves the card out.
	Hidden bool
}

// URL is the device's page.
func (c Card) URL() templ.SafeURL { return templ.URL("/devices/" + c.ID) }

// OutOfRange reports whether any metric of the card is outside its limits.
func (c Card) OutOfRange() bool {
	for _, m := range c.Metrics {
		if m.OutOfRange {
			return true
		}
	}
	return false
}

// Series is a stretch of one metric's history as a chart draws it.
type Series struct {
	// Known says the history was read. Without it the page embeds none: a
	// device page's script asks the history API, and a sparkline starts
	// from the live readings.
	Known bool
	// From and To are the span shown (Unix ms, From <= t < To).
	From, To int64
	// Step is the bucket width in ms, 0 when Points are raw readings.
	Step int64
	// Points are the readings, or each bucket's mean.
	Points []store.Point
	// Lo and Hi are each bucket's min and max, beside Points; nil for raw
	// readings.
	Lo, Hi []float64
}

// Range returns the lowest and highest value in s, and false if s is empty.
func (s Series) Range() (lo, hi float64, ok bool) {
	if len(s.Points) == 0 {
		return 0, 0, false
	}
	lo, hi = math.Inf(1), math.Inf(-1)
	for i, p := range s.Points {
		l, h := p.V, p.V
		if s.Lo != nil {
			l, h = s.Lo[i], s.Hi[i]
		}
		lo, hi = min(lo, l), max(hi, h)
	}
	return lo, hi, true
}

// OverviewModel is the fleet overview page.
type OverviewModel struct {
	Page
	Counts  Counts
	Filter  Filter
	Shown   int // cards the filter leaves on screen
	Devices []Card
	// A fleet of more than OverviewCards devices is shown a page at a
	// time, filtered on the server: Paged says so, Matching is how many
	// devices the filter matches, First the 1-based place of the first
	// card shown, PrevURL and NextURL the neighbouring pages ("" if none).
	Paged            bool
	Matching, First  int
	PrevURL, NextURL string
	// Groups are the runs of Devices that share a location or kind, when
	// the filter groups them (nil when not).
	Groups []Group
}

// OverviewCards is the most cards the overview shows at once: a fleet
// larger than that is paged (and filtered on the server), so the page
// stays small and quick at 10,000 devices (with 200, reading the
// sparklines of a page took as long as the rest of its render).
const OverviewCards = 100

// Filter is what the overview's filter asks for, and how it shows what
// it matches; it lives in the URL as
// ?q=text&status=offline&view=table&group=location&sort=-seen.
type Filter struct {
	// Text matches a device's id, name, kind, location or the names and
	// labels of its metrics, ignoring case.
	Text string
	// Status is one of the Statuses' values; "" shows every device.
	Status string
	// View is one of the Views' values: "" for cards, "table".
	View string
	// Group is one of the Groupings' values: "", "location" or "kind".
	Group string
	// Sort is a Columns' key the table is sorted by, led by "-" for
	// descending; "" for what needs attention first.
	Sort string
}

// Statuses are the filter's status choices: a value and its label.
var Statuses = []struct{ Value, Label string }{
	{"", "Any status"},
	{"attention", "Needs attention"},
	{"online", "Online"},
	{"stale", "Stale"},
	{"offline", "Offline"},
	{"unknown", "Unknown"},
}

// ParseFilter reads a filter from the overview's URL parameters; a status
// it does not know is ignored.
func ParseFilter(get func(string) string) Filter {
	f := Filter{Text: strings.TrimSpace(get("q"))}
	for _, s := range Statuses {
		if s.Value == get("status") {
			f.Status = s.Value
		}
	}
	f.parseLayout(get)
	return f
}

// Active reports whether the filter may leave devices out.
func (f Filter) Active() bool { return f.Text != "" || f.Status != "" }

// Match reports whether c passes the filter. "attention" is a device that
// is not online or has a value out of range. live.js matches the same way.
func (f Filter) Match(c Card) bool {
	return f.matchText(c.Status, c.Attention(), c.Search)
}

// match is the filter's one rule, over a device's status, its place in
// attentionOrder and what the fleet's text rule reads of it.
func (f Filter) match(status devices.Status, att int, d devices.Device) bool {
	return f.matchText(status, att, d.SearchText())
}

func (f Filter) matchText(status devices.Status, att int, search string) bool {
	switch f.Status {
	case "":
	case "attention":
		if att == len(attentionOrder) {
			return false
		}
	default:
		if string(status) != f.Status {
			return false
		}
	}
	return devices.TextMatches(search, f.Text)
}

// DeviceModel is one device's page.
type DeviceModel struct {
	Page
	Device Card
	Range  Range
	// Kept says how long the store keeps raw readings ("" when it keeps
	// them for ever); see SetKept.
	Kept string
	// Charts are one per metric, in the order of Device.Metrics.
	Charts []Chart
	// HasAvailability says the page shows the device's presence over
	// the range (Availability), read from the event log.
	HasAvailability bool
	Availability    Availability
}

// Chart is one metric's chart on the device page or a board.
type Chart struct {
	// Key tells the chart's elements apart on its page; "" for the
	// metric's name (a device page has one chart per metric).
	Key    string
	Metric Metric
	Series Series
	// Device and DeviceName are the chart's device on a board, which
	// charts several; "" on a device page.
	Device, DeviceName string
	// Alerts are the spans this metric's alerts fired over, drawn as
	// bands on the chart and said in words under it.
	Alerts []AlertSpan
}

// AlertSpan is one alert of a chart's metric: from when it fired to when
// it cleared (To 0: it fires still).
type AlertSpan struct {
	Name, Severity string
	From, To       int64
	Fired, Cleared string // the times, as the page shows them
}

// key is what tells c's elements apart on its page.
func (c Chart) key() string {
	if c.Key != "" {
		return c.Key
	}
	return c.Metric.Name
}

// NotFoundModel is the page for something that does not exist.
type NotFoundModel struct {
	Page
	Message string
}

// NewOverview builds the overview of ds as of now, every device shown as
// cards, those needing attention first.
func NewOverview(ds []devices.Device, now time.Time) OverviewModel {
	return newOverviewOf(ds, now, Filter{})
}

// newOverviewOf builds the overview of ds as of now, every device shown,
// ordered and grouped as f says.
func newOverviewOf(ds []devices.Device, now time.Time, f Filter) OverviewModel {
	m, order := newOverview(ds, now, f)
	m.Devices = make([]Card, 0, len(order))
	for _, e := range order {
		m.Devices = append(m.Devices, NewCard(*e.d, now))
	}
	m.Shown = len(m.Devices)
	m.Groups = groupsOf(f, m.Devices)
	return m
}

// NewOverviewPage is the overview of ds as the page shows it: every card,
// those f leaves out hidden (SetFilter), or, for a fleet of more than
// OverviewCards devices, only page (from 1) of the cards f matches, cut
// before any card is made, so the page stays quick at 10,000 devices.
func NewOverviewPage(ds []devices.Device, now time.Time, f Filter, page int) OverviewModel {
	if len(ds) <= OverviewCards {
		m := newOverviewOf(ds, now, f)
		m.SetFilter(f)
		return m
	}
	m, order := newOverview(ds, now, f)
	m.Filter, m.Paged = f, true
	kept := order[:0]
	for _, e := range order {
		if f.match(e.status, e.att, *e.d) {
			kept = append(kept, e)
		}
	}
	m.Matching = len(kept)
	pages := max(1, (m.Matching+OverviewCards-1)/OverviewCards)
	page = min(max(page, 1), pages)
	lo, hi := (page-1)*OverviewCards, min(page*OverviewCards, m.Matching)
	for _, e := range kept[lo:hi] {
		m.Devices = append(m.Devices, NewCard(*e.d, now))
	}
	m.Shown, m.First = hi-lo, lo+1
	m.Groups = groupsOf(f, m.Devices)
	if page > 1 {
		m.PrevURL = f.URL(page - 1)
	}
	if page < pages {
		m.NextURL = f.URL(page + 1)
	}
	return m
}

// overviewEntry is a device with what the overview orders it by.
type overviewEntry struct {
	d      *devices.Device
	status devices.Status
	att    int
	name   string
	group  string
}

// newOverview counts ds by status and orders it as the overview shows
// it: group by group (f.Group), each by f's sort column, what needs
// attention first by default, then by name, as people read them.
func newOverview(ds []devices.Device, now time.Time, f Filter) (OverviewModel, []overviewEntry) {
	m := OverviewModel{Page: Page{Title: "Fleet", Kind: "overview", Live: "*", LiveLatest: OverviewLatest, NowMs: now.UnixMilli(), TZ: zoneName(now.Location())}}
	order := make([]overviewEntry, len(ds))
	for i := range ds {
		d := &ds[i]
		status := d.Status
		if status == "" {
			status = devices.StatusUnknown
		}
		switch status {
		case devices.StatusOnline:
			m.Counts.Online++
		case devices.StatusStale:
			m.Counts.Stale++
		case devices.StatusOffline:
			m.Counts.Offline++
		default:
			m.Counts.Unknown++
		}
		e := overviewEntry{d: d, status: status, att: deviceAttention(*d), name: strings.ToLower(d.Name()), group: f.groupOf(*d)}
		if e.att < len(attentionOrder) {
			m.Counts.Attention++
		}
		order[i] = e
	}
	slices.SortStableFunc(order, func(a, b overviewEntry) int {
		return cmp.Or(compareGroups(a.group, b.group), f.compareEntries(a, b))
	})
	return m, order
}

func (m *OverviewModel) SetFilter(f Filter) {
	m.Filter = f
	m.Shown = 0
	for i := range m.Devices {
		m.Devices[i].Hidden = !f.Match(m.Devices[i])
		if !m.Devices[i].Hidden {
			m.Shown++
		}
	}
}

// NewDevice builds the page of d as of now, over the last 15 minutes.
func NewDevice(d devices.Device, now time.Time) DeviceModel {
	c := NewCard(d, now)
	m := DeviceModel{Page: Page{Title: c.Name, Kind: "device", Live: d.ID, NowMs: now.UnixMilli(), TZ: zoneName(now.Location())}, Device: c, Range: DefaultRange(now)}
	for _, mt := range c.Metrics {
		m.Charts = append(m.Charts, Chart{Metric: mt, Series: Series{From: m.Range.From, To: m.Range.To}})
	}
	return m
}

// NewCard builds d's card as of now.
func NewCard(d devices.Device, now time.Time) Card {
	status := d.Status
	if status == "" {
		status = devices.StatusUnknown
	}
	c := Card{
		Search:   d.SearchText(),
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
		m := Metric{Name: name, Label: d.Meta.Label(name), Unit: d.Meta.Units[name], At: newSeen(v.T, now)}
		l, hasLimits := d.Meta.Limits[name]
		if dec, ok := d.Meta.Decimals[name]; ok {
			m.Decimals = dec
		} else if hasLimits {
			m.Decimals = Decimals(v.V, l[0], l[1])
		} else {
			m.Decimals = Decimals(v.V)
		}
		m.Value = formatValue(v.V, m.Decimals)
		if hasLimits {
			m.HasLimits, m.Lo, m.Hi = true, l[0], l[1]
			m.OutOfRange = outside(v.V, l)
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
		Absolute: formatAt(ms, now.Location()),
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

// Decimals is how many decimals a metric is shown with when its device
// does not say: as many as the most precise of vs needs (the latest value
// and the limits), read to 10 significant digits so that float noise
// (0.30000000000000004) does not count, and at most devices.MaxDecimals.
// So 0.0046 against limits [0, 0.003] shows as 0.0046, not 0, and 1.015 as
// 1.015; a metric keeps the one precision on cards, tables, charts and
// read-outs.
func Decimals(vs ...float64) int {
	n := 0
	for _, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 10, 64), 64)
		if r != 0 && math.Abs(r) < 1e-6 {
			n = devices.MaxDecimals // too small for fewer decimals than we show
			continue
		}
		s := strconv.FormatFloat(r, 'f', -1, 64)
		if _, frac, ok := strings.Cut(s, "."); ok {
			n = max(n, len(frac))
		}
	}
	return min(n, devices.MaxDecimals)
}

// formatValue shows v with decimals decimals; chart.js's formatValue does
// the same with the decimals the page gives it.
func formatValue(v float64, decimals int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	if strings.Trim(s, "-0.") == "" {
		s = strings.TrimPrefix(s, "-") // -0.00 is 0.00
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
		"data-testid":   "metric",
		"data-metric":   m.Name,
		"data-decimals": strconv.Itoa(m.Decimals),
		"data-t":        strconv.FormatInt(m.At.Ms, 10),
	}
	if m.HasLimits {
		addLimits(a, m)
		a["title"] = "Expected range " + m.LimitsText()
	}
	return a
}

func addLimits(a templ.Attributes, m Metric) {
	a["data-lo"], a["data-hi"] = float(m.Lo), float(m.Hi)
}

// seriesAttrs are the attributes that carry a series to the chart script:
// data-from, data-to and data-step, and when the history is known
// data-points, a flat JSON array [t0,v0,t1,v1,…], and for buckets
// data-band, [t0,min0,max0,…]. Each time but the first is written as the
// difference from the one before it (t1−t0, …): readings come at a
// steady pace, so the differences repeat and gzip takes them to almost
// nothing, where whole times were most of a page of charts.
func seriesAttrs(s Series) templ.Attributes {
	a := templ.Attributes{
		"data-from": strconv.FormatInt(s.From, 10),
		"data-to":   strconv.FormatInt(s.To, 10),
		"data-step": strconv.FormatInt(s.Step, 10),
	}
	if !s.Known {
		return a
	}
	dt := func(b []byte, i int) []byte {
		if i == 0 {
			return strconv.AppendInt(b, s.Points[0].T, 10)
		}
		return strconv.AppendInt(b, s.Points[i].T-s.Points[i-1].T, 10)
	}
	a["data-points"] = flatJSON(len(s.Points), func(b []byte, i int) []byte {
		b = append(dt(b, i), ',')
		return devices.AppendNumber(b, s.Points[i].V)
	})
	if s.Lo != nil {
		a["data-band"] = flatJSON(len(s.Points), func(b []byte, i int) []byte {
			b = append(dt(b, i), ',')
			b = devices.AppendNumber(b, s.Lo[i])
			b = append(b, ',')
			return devices.AppendNumber(b, s.Hi[i])
		})
	}
	return a
}

// flatJSON is a JSON array of n rows of numbers, each appended by row,
// flattened into one array. It is written by hand because the rows are
// computed (time deltas, a band's two values), which encoding/json would
// need copied into a slice first: BenchmarkSeriesAttrs finds it nearly
// twice as fast for 1,000 points. Numbers and strings are written by
// devices.AppendNumber and devices.AppendString, as encoding/json would.
func flatJSON(n int, row func(b []byte, i int) []byte) string {
	b := make([]byte, 0, 24*n+2)
	b = append(b, '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = row(b, i)
	}
	return string(append(b, ']'))
}

// sparkLabel says in words what a card's sparkline shows.
func sparkLabel(m Metric) string {
	lo, hi, ok := m.Recent.Range()
	if !ok {
		return m.Name + ": no history of the last 15 minutes"
	}
	return m.Name + " over the last 15 minutes: from " + m.withUnit(lo) + " to " + m.withUnit(hi)
}

// chartSummary says in words what a chart shows, for readers without the
// canvas.
func chartSummary(c Chart, r Range) string {
	name := c.Metric.Name
	if c.DeviceName != "" {
		name = c.DeviceName + " " + name
	}
	if !c.Series.Known {
		return name + ", " + r.Label() + "."
	}
	lo, hi, ok := c.Series.Range()
	if !ok {
		return "No readings of " + name + " in " + r.Label() + "."
	}
	s := name + ", " + r.Label() + ": from " + c.Metric.withUnit(lo) + " to " + c.Metric.withUnit(hi)
	if c.Series.Step == 0 {
		s += ", " + strconv.Itoa(len(c.Series.Points)) + " readings"
	}
	if c.Metric.HasLimits {
		s += "; expected " + c.Metric.LimitsText()
	}
	return s + "."
}

// countLabel is a count tile's words.
func countLabel(status string) string {
	if status == "attention" {
		return "need attention"
	}
	return status
}

// filterURL is the overview filtered by f, shown the same way as now.
func filterURL(f Filter) templ.SafeURL { return templ.SafeURL(f.URL(1)) }

// shownText says how many devices the overview shows. live.js says it the
// same way.
func shownText(shown, total int, filtered bool) string {
	noun := " devices"
	if total == 1 {
		noun = " device"
	}
	if !filtered {
		return strconv.Itoa(total) + noun
	}
	return "Showing " + strconv.Itoa(shown) + " of " + strconv.Itoa(total) + noun
}

func int64s(v int64) string { return strconv.FormatInt(v, 10) }

// chartAttrs are a chart's series, unit and limits, for chart.js.
func chartAttrs(c Chart) templ.Attributes {
	a := seriesAttrs(c.Series)
	a["data-chart"] = c.Metric.Name
	if c.Device != "" {
		a["data-device"] = c.Device
	}
	a["data-label"] = c.Metric.Label
	a["data-unit"] = c.Metric.Unit
	a["data-decimals"] = strconv.Itoa(c.Metric.Decimals)
	if c.Metric.HasLimits {
		a["data-expected"] = c.Metric.LimitsText()
	}
	if c.Metric.HasLimits {
		addLimits(a, c.Metric)
	}
	if len(c.Alerts) > 0 {
		a["data-alerts"] = spansJSON(c.Alerts)
	}
	return a
}

// spansJSON is the spans alerts fired over as chart.js reads them:
// [[from, to, severity], …], to 0 while it fires.
func spansJSON(spans []AlertSpan) string {
	return flatJSON(len(spans), func(b []byte, i int) []byte {
		s := spans[i]
		b = strconv.AppendInt(append(b, '['), s.From, 10)
		b = strconv.AppendInt(append(b, ','), s.To, 10)
		return append(devices.AppendString(append(b, ','), s.Severity), ']')
	})
}
