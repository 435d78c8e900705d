package views

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/a-h/templ"

	"iotdash/devices"
)

// now is the instant the test pages are rendered at.
var now = time.Date(2025, 11, 24, 16, 0, 0, 0, time.UTC)

// fleetAt is a fleet as the views see it, for rendering at now.
func fleetAt() []devices.Device {
	ms := func(d time.Duration) int64 { return now.Add(-d).UnixMilli() }
	return []devices.Device{
		{
			ID:       "boiler-1",
			Meta:     devices.Meta{Name: "Boiler room", Kind: "thermometer", Location: "Basement", Units: map[string]string{"temperature": "°C", "humidity": "%"}, Limits: map[string][2]float64{"temperature": {5, 30}}},
			Status:   devices.StatusOnline,
			LastSeen: ms(12 * time.Second),
			Interval: 5000,
			Latest:   map[string]devices.Value{"temperature": {T: ms(12 * time.Second), V: 21.534}, "humidity": {T: ms(12 * time.Second), V: 40.2}},
		},
		{
			ID:       "freezer-2",
			Meta:     devices.Meta{Name: "Freezer", Kind: "thermometer", Location: "Kitchen", Units: map[string]string{"temperature": "°C"}, Limits: map[string][2]float64{"temperature": {-25, -15}}},
			Status:   devices.StatusStale,
			LastSeen: ms(3 * time.Minute),
			Latest:   map[string]devices.Value{"temperature": {T: ms(3 * time.Minute), V: -2}},
		},
		{
			ID:       "gate-3",
			Status:   devices.StatusOffline,
			LastSeen: ms(2 * time.Hour),
			Latest:   map[string]devices.Value{"pressure": {T: ms(2 * time.Hour), V: 1013.25}},
		},
		{ID: "new-4", Status: devices.StatusUnknown, Latest: map[string]devices.Value{}},
	}
}

// renderDoc renders c and parses it as a browser would.
func renderDoc(t *testing.T, c templ.Component) *goquery.Document {
	t.Helper()
	var buf bytes.Buffer
	if err := c.Render(context.Background(), &buf); err != nil {
		t.Fatalf("render: %v", err)
	}
	doc, err := goquery.NewDocumentFromReader(&buf)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return doc
}

// text is s's text with runs of white space made one space.
func text(s *goquery.Selection) string { return strings.Join(strings.Fields(s.Text()), " ") }

func card(doc *goquery.Document, id string) *goquery.Selection {
	return doc.Find(`[data-testid="device-card"][data-device="` + id + `"]`)
}

func TestOverviewHasACardPerDevice(t *testing.T) {
	doc := renderDoc(t, OverviewPage(NewOverview(fleetAt(), now)))

	cards := doc.Find(`[data-testid="device-card"]`)
	var ids []string
	cards.Each(func(_ int, s *goquery.Selection) { ids = append(ids, s.AttrOr("data-device", "")) })
	// What needs attention first: offline, out of range (freezer-2 is
	// also stale), unknown, then those that are fine.
	if got, want := strings.Join(ids, ","), "gate-3,freezer-2,new-4,boiler-1"; got != want {
		t.Fatalf("cards for %s, want %s", got, want)
	}
	if got := text(doc.Find(`[data-testid="count-attention"] .count-n`)); got != "3" {
		t.Errorf("need attention: %s, want 3", got)
	}

	for _, tc := range []struct {
		id, name, badge, status, kind, location string
	}{
		{"boiler-1", "Boiler room", "Online", "online", "thermometer", "Basement"},
		{"freezer-2", "Freezer", "Stale", "stale", "thermometer", "Kitchen"},
		{"gate-3", "gate-3", "Offline", "offline", "", ""}, // no meta: named by its id
		{"new-4", "new-4", "Unknown", "unknown", "", ""},
	} {
		c := card(doc, tc.id)
		if got := text(c.Find("h2 a")); got != tc.name {
			t.Errorf("%s: name %q, want %q", tc.id, got, tc.name)
		}
		if got := c.Find("h2 a").AttrOr("href", ""); got != "/devices/"+tc.id {
			t.Errorf("%s: link %q", tc.id, got)
		}
		badge := c.Find(`[data-testid="status-badge"]`)
		if got := text(badge.Find(".badge-text")); got != tc.badge {
			t.Errorf("%s: badge text %q, want %q (the status must be in words, not colour alone)", tc.id, got, tc.badge)
		}
		if got := badge.AttrOr("data-status", ""); got != tc.status {
			t.Errorf("%s: badge data-status %q, want %q", tc.id, got, tc.status)
		}
		if got := text(c.Find(`[data-testid="kind"]`)); got != tc.kind {
			t.Errorf("%s: kind %q, want %q", tc.id, got, tc.kind)
		}
		if got := text(c.Find(`[data-testid="location"]`)); got != tc.location {
			t.Errorf("%s: location %q, want %q", tc.id, got, tc.location)
		}
	}
}

func TestOverviewCounts(t *testing.T) {
	doc := renderDoc(t, OverviewPage(NewOverview(fleetAt(), now)))
	for status, want := range map[string]string{"online": "1", "stale": "1", "offline": "1", "unknown": "1"} {
		c := doc.Find(`[data-testid="count-` + status + `"]`)
		if got := text(c.Find(".count-n")); got != want {
			t.Errorf("count of %s = %q, want %q", status, got, want)
		}
		if got := text(c.Find(".count-label")); got != status {
			t.Errorf("count label %q, want %q", got, status)
		}
	}

	// Counts sit above the list, and unknown is left out when it is zero.
	doc = renderDoc(t, OverviewPage(NewOverview(fleetAt()[:3], now)))
	if doc.Find(`[data-testid="counts"] ~ [data-testid="device-list"]`).Length() != 1 {
		t.Error("counts are not above the device list")
	}
	if n := doc.Find(`[data-testid="count-unknown"]`).Length(); n != 0 {
		t.Errorf("a zero count of unknown is shown")
	}
}

func TestOverviewMetricsWithUnits(t *testing.T) {
	doc := renderDoc(t, OverviewPage(NewOverview(fleetAt(), now)))
	for _, tc := range []struct {
		device, metric, value, unit string
		out                         bool
	}{
		{"boiler-1", "temperature", "21.534", "°C", false},
		{"boiler-1", "humidity", "40.2", "%", false},
		{"freezer-2", "temperature", "-2", "°C", true}, // limits -25..-15
		{"gate-3", "pressure", "1013.25", "", false},   // no unit named
	} {
		m := card(doc, tc.device).Find(`[data-testid="metric"][data-metric="` + tc.metric + `"]`)
		if m.Length() != 1 {
			t.Errorf("%s/%s: %d metric elements, want 1", tc.device, tc.metric, m.Length())
			continue
		}
		if got := text(m.Find("dt")); got != tc.metric {
			t.Errorf("%s/%s: label %q", tc.device, tc.metric, got)
		}
		if got := text(m.Find(`[data-testid="value"]`)); got != tc.value {
			t.Errorf("%s/%s: value %q, want %q", tc.device, tc.metric, got, tc.value)
		}
		if got := text(m.Find(`[data-testid="unit"]`)); got != tc.unit {
			t.Errorf("%s/%s: unit %q, want %q", tc.device, tc.metric, got, tc.unit)
		}
		_, hidden := m.Find(`[data-testid="out-of-range"]`).Attr("hidden")
		if got := m.HasClass("out") && !hidden; got != tc.out {
			t.Errorf("%s/%s: marked out of range %v, want %v", tc.device, tc.metric, got, tc.out)
		}
	}
	if got := card(doc, "new-4").Find(`[data-testid="no-metrics"]`).Length(); got != 1 {
		t.Errorf("a device without readings does not say so")
	}
}

func TestLastSeenIsATimeElement(t *testing.T) {
	doc := renderDoc(t, OverviewPage(NewOverview(fleetAt(), now)))
	for _, tc := range []struct {
		device, datetime, rel, abs string
	}{
		{"boiler-1", "2025-11-24T15:59:48.000Z", "12 s ago", "(2025-11-24 15:59:48 UTC)"},
		{"freezer-2", "2025-11-24T15:57:00.000Z", "3 min ago", "(2025-11-24 15:57:00 UTC)"},
		{"gate-3", "2025-11-24T14:00:00.000Z", "2 h ago", "(2025-11-24 14:00:00 UTC)"},
	} {
		tm := card(doc, tc.device).Find(`time[data-testid="last-seen"]`)
		if got := tm.AttrOr("datetime", ""); got != tc.datetime {
			t.Errorf("%s: datetime %q, want %q", tc.device, got, tc.datetime)
		}
		if got := text(tm.Find(".rel")); got != tc.rel {
			t.Errorf("%s: relative %q, want %q", tc.device, got, tc.rel)
		}
		if got := text(tm.Find(".abs")); got != tc.abs {
			t.Errorf("%s: absolute %q, want %q", tc.device, got, tc.abs)
		}
	}
	if got := text(card(doc, "new-4").Find(`time[data-testid="last-seen"]`)); got != "never" {
		t.Errorf("never-seen device: %q, want never", got)
	}
}

func TestOverviewWithoutDevices(t *testing.T) {
	doc := renderDoc(t, OverviewPage(NewOverview(nil, now)))
	if doc.Find(`[data-testid="no-devices"]`).Length() != 1 {
		t.Error("an empty fleet does not say so")
	}
	if got := text(doc.Find(`[data-testid="count-online"] .count-n`)); got != "0" {
		t.Errorf("online count %q, want 0", got)
	}
}

func TestLayoutChrome(t *testing.T) {
	doc := renderDoc(t, OverviewPage(NewOverview(fleetAt(), now)))
	if got := text(doc.Find("title")); got != "Fleet · iotdash" {
		t.Errorf("title %q", got)
	}
	if got := doc.Find("html").AttrOr("lang", ""); got != "en" {
		t.Errorf("lang %q", got)
	}
	body := doc.Find("body")
	if got := body.AttrOr("data-live", ""); got != "*" {
		t.Errorf("data-live %q, want *", got)
	}
	if got := body.AttrOr("data-now", ""); got != "1764000000000" {
		t.Errorf("data-now %q, want the render time in Unix ms", got)
	}
	for _, name := range []string{"theme.js", "live.js"} {
		if doc.Find(`script[type="module"][src^="/static/`+name+`?v="]`).Length() != 1 {
			t.Errorf("no module /static/%s?v=…", name)
		}
	}
	if href := doc.Find(`link[rel="stylesheet"]`).AttrOr("href", ""); !strings.HasPrefix(href, "/static/style.css?v=") {
		t.Errorf("stylesheet href %q", href)
	}
	banner := doc.Find(`[data-testid="conn-banner"]`)
	if _, hidden := banner.Attr("hidden"); !hidden || banner.AttrOr("role", "") != "status" {
		t.Errorf("connection banner should be a hidden status region")
	}
	if doc.Find(`a.skip[href="#main"]`).Length() != 1 || doc.Find("main#main h1").Length() != 1 {
		t.Error("no skip link to main, or main has no heading")
	}
}

func TestEscapesWhatDevicesSay(t *testing.T) {
	ds := []devices.Device{{ID: "x", Status: devices.StatusOnline, Meta: devices.Meta{Name: `<script>alert(1)</script>`, Units: map[string]string{"t": `"><b>`}}, Latest: map[string]devices.Value{"t": {T: 1, V: 1}}}}
	var buf bytes.Buffer
	if err := OverviewPage(NewOverview(ds, now)).Render(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "<script>alert") || strings.Contains(buf.String(), `"><b>`) {
		t.Fatal("a device's metadata was rendered as HTML")
	}
}

func TestDeviceView(t *testing.T) {
	doc := renderDoc(t, DeviceView(NewDevice(fleetAt()[0], now)))
	dev := doc.Find(`[data-testid="device"][data-device="boiler-1"]`)
	if dev.Length() != 1 {
		t.Fatal("no device element")
	}
	if got := text(dev.Find("h1")); got != "Boiler room" {
		t.Errorf("heading %q", got)
	}
	if got := text(dev.Find(`[data-testid="status-badge"] .badge-text`)); got != "Online" {
		t.Errorf("badge %q", got)
	}
	for testid, want := range map[string]string{"device-id": "boiler-1", "kind": "thermometer", "location": "Basement", "interval": "5 s"} {
		if got := text(dev.Find(`[data-testid="facts"] [data-testid="` + testid + `"]`)); got != want {
			t.Errorf("%s = %q, want %q", testid, got, want)
		}
	}
	row := dev.Find(`table [data-testid="metric"][data-metric="temperature"]`)
	var cells []string
	row.Children().Each(func(_ int, c *goquery.Selection) { cells = append(cells, text(c)) })
	// "out of range" is in the markup, hidden, for live.js to show.
	want := []string{"temperature", "21.534 °C out of range", "5–30 °C", "12 s ago (2025-11-24 15:59:48 UTC)"}
	if strings.Join(cells, "|") != strings.Join(want, "|") {
		t.Errorf("temperature row %q, want %q", cells, want)
	}
	if _, hidden := row.Find(`[data-testid="out-of-range"]`).Attr("hidden"); !hidden {
		t.Error("21.53 within 5–30 is marked out of range")
	}
	if got := doc.Find("body").AttrOr("data-live", ""); got != "boiler-1" {
		t.Errorf("device page subscribes to %q, want its own id", got)
	}
}

// testFleet is a real fleet fed as ingest would feed it.
func testFleet() *devices.Fleet {
	f := devices.NewFleet(nil)
	f.SetMeta("boiler-1", devices.Meta{Name: "Boiler room", Units: map[string]string{"temperature": "°C"}})
	f.Seen("boiler-1", []devices.Reading{{Device: "boiler-1", Metric: "temperature", Time: time.Now().UnixMilli(), Value: 21.5}})
	f.SetPresence("gate-3", devices.StatusOffline)
	return f
}

// routes mounts the handlers as the server does.
func routes(f Fleet) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", Overview(f))
	mux.Handle("GET /devices/{id}", DevicePage(f))
	mux.Handle("GET /static/", Static())
	mux.Handle("/", NotFound())
	return mux
}

func get(t *testing.T, h http.Handler, path string) (*http.Response, *goquery.Document) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	res := rec.Result()
	doc, err := goquery.NewDocumentFromReader(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, doc
}

func TestHandlers(t *testing.T) {
	h := routes(testFleet())
	for _, tc := range []struct {
		path   string
		status int
		check  string // a selector the page must have
	}{
		{"/", http.StatusOK, `[data-testid="device-card"][data-device="boiler-1"] [data-testid="unit"]`},
		{"/devices/boiler-1", http.StatusOK, `[data-testid="device"][data-device="boiler-1"]`},
		{"/devices/gate-3", http.StatusOK, `[data-testid="status-badge"][data-status="offline"]`},
		{"/devices/nope", http.StatusNotFound, `[data-testid="not-found"]`},
		{"/devices/bad%20id", http.StatusNotFound, `[data-testid="not-found"]`},
		{"/no/such/page", http.StatusNotFound, `[data-testid="not-found"]`},
	} {
		res, doc := get(t, h, tc.path)
		if res.StatusCode != tc.status {
			t.Errorf("GET %s: status %d, want %d", tc.path, res.StatusCode, tc.status)
		}
		if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", tc.path, ct)
		}
		if doc.Find(tc.check).Length() == 0 {
			t.Errorf("GET %s: no %s", tc.path, tc.check)
		}
	}

	res, doc := get(t, h, "/devices/nope")
	if got := text(doc.Find(`[data-testid="not-found"] p`).First()); !strings.Contains(got, "nope") {
		t.Errorf("404 page says %q, want it to name the device", got)
	}
	if res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("pages may be cached: %q", res.Header.Get("Cache-Control"))
	}

	// Mounted as the catch-all, the overview still serves 404 elsewhere.
	res, _ = get(t, Overview(testFleet()), "/elsewhere")
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("Overview at /elsewhere: %d, want 404", res.StatusCode)
	}
}

func TestStatic(t *testing.T) {
	t.Run("mounted as is", func(t *testing.T) { testStatic(t, routes(testFleet())) })
	t.Run("behind StripPrefix", func(t *testing.T) {
		mux := http.NewServeMux()
		mux.Handle("GET /static/", http.StripPrefix("/static/", Static()))
		mux.Handle("/", routes(testFleet()))
		testStatic(t, mux)
	})
}

func testStatic(t *testing.T, h http.Handler) {
	srv := httptest.NewServer(h)
	defer srv.Close()

	// The page links to versioned URLs, which may be cached for good.
	_, page := get(t, h, "/")
	for _, tc := range []struct{ url, contentType string }{
		{page.Find(`script[type="module"]`).AttrOr("src", ""), "text/javascript; charset=utf-8"},
		{page.Find(`link[rel="stylesheet"]`).AttrOr("href", ""), "text/css; charset=utf-8"},
	} {
		res, err := http.Get(srv.URL + tc.url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || len(body) == 0 {
			t.Errorf("GET %s: %d, %d bytes", tc.url, res.StatusCode, len(body))
		}
		if got := res.Header.Get("Content-Type"); got != tc.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.url, got, tc.contentType)
		}
		if got := res.Header.Get("Cache-Control"); !strings.Contains(got, "immutable") {
			t.Errorf("GET %s: Cache-Control %q, want long-lived", tc.url, got)
		}
	}

	// Unversioned: revalidated by ETag.
	res, err := http.Get(srv.URL + "/static/live.js")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	etag := res.Header.Get("ETag")
	if res.Header.Get("Cache-Control") != "no-cache" || etag == "" {
		t.Errorf("unversioned: Cache-Control %q, ETag %q", res.Header.Get("Cache-Control"), etag)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/static/live.js", nil)
	req.Header.Set("If-None-Match", etag)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", res.StatusCode)
	}

	for _, p := range []string{"/static/", "/static/nope.js", "/static/../views.go"} {
		res, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, res.StatusCode)
		}
	}
}

// TestDecimals: without decimals from the device, a metric is shown with
// as many decimals as its latest value and its limits need, so that a small
// value is told from its limits and from its neighbours.
func TestDecimals(t *testing.T) {
	for _, c := range []struct {
		vs   []float64
		want int
	}{
		{[]float64{21.5}, 1},
		{[]float64{21}, 0},
		{[]float64{0.0046, 0, 0.003}, 4},
		{[]float64{1.015}, 3},
		{[]float64{40240.648}, 3},
		{[]float64{0.1 + 0.2}, 1},
		{[]float64{1e-12}, 9},
		{[]float64{0.00001}, 5},
		{[]float64{12345678901.5}, 0},
		{[]float64{1e300}, 0},
		{[]float64{math.NaN(), 2.25}, 2},
	} {
		if got := Decimals(c.vs...); got != c.want {
			t.Errorf("Decimals(%v) = %d, want %d", c.vs, got, c.want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	// chart.js's formatValue must agree; keep the two in step.
	for _, c := range []struct {
		v        float64
		decimals int
		want     string
	}{
		{21.5, 2, "21.50"}, {0.0046, 4, "0.0046"}, {-0.001, 2, "0.00"}, {1013.25, 0, "1013"},
		{40240.648, 3, "40240.648"}, {1234567.891, 3, "1234567.891"}, {math.Inf(1), 2, "–"},
	} {
		if got := formatValue(c.v, c.decimals); got != c.want {
			t.Errorf("formatValue(%v, %d) = %q, want %q", c.v, c.decimals, got, c.want)
		}
	}
}

// TestSmallValuesAndLabels: a small value is told from its limits, a
// device's declared decimals and labels are used, and limits keep their
// own form.
func TestSmallValuesAndLabels(t *testing.T) {
	d := devices.Device{ID: "lab-1", Status: devices.StatusOnline,
		Meta: devices.Meta{Units: map[string]string{"dust": "g", "co2": "ppm", "temperature": "°C"},
			Limits:   map[string][2]float64{"dust": {0, 0.003}},
			Decimals: map[string]int{"temperature": 1},
			Labels:   map[string]string{"co2": "CO₂"}},
		Latest: map[string]devices.Value{"dust": {T: 1, V: 0.0046}, "co2": {T: 1, V: 415}, "temperature": {T: 1, V: 21.534}}}
	c := NewCard(d, now)
	got := map[string]Metric{}
	for _, m := range c.Metrics {
		got[m.Name] = m
	}
	for _, want := range []struct{ name, label, value, limits string }{
		{"dust", "dust", "0.0046", "0–0.003 g"},
		{"co2", "CO₂", "415", ""},
		{"temperature", "temperature", "21.5", ""},
	} {
		m := got[want.name]
		limits := ""
		if m.HasLimits {
			limits = m.LimitsText()
		}
		if m.Label != want.label || m.Value != want.value || limits != want.limits {
			t.Errorf("%s: label %q, value %q, limits %q; want %q, %q, %q", want.name, m.Label, m.Value, limits, want.label, want.value, want.limits)
		}
	}
	if !got["dust"].OutOfRange {
		t.Error("0.0046 g against [0, 0.003] is not out of range")
	}
}
