package views

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"iotdash/devices"
	"iotdash/store"
)

// shownCards are the ids of the cards the filter leaves on screen.
func shownCards(doc *goquery.Document) string {
	var ids []string
	doc.Find(`[data-testid="device-list"] > li`).Each(func(_ int, li *goquery.Selection) {
		if _, hidden := li.Attr("hidden"); !hidden {
			ids = append(ids, li.Find(`[data-testid="device-card"]`).AttrOr("data-device", ""))
		}
	})
	return strings.Join(ids, ",")
}

func TestOverviewFilter(t *testing.T) {
	for _, tc := range []struct {
		query, shown, says string
	}{
		// Most urgent first: offline, out of range, stale, unknown, fine.
		{"", "gate-3,freezer-2,new-4,boiler-1", "4 devices"},
		{"q=thermo", "freezer-2,boiler-1", "Showing 2 of 4 devices"},
		{"q=KITCHEN", "freezer-2", "Showing 1 of 4 devices"},                     // location, any case
		{"q=gate-3", "gate-3", "Showing 1 of 4 devices"},                         // the id of a device with no meta
		{"status=offline", "gate-3", "Showing 1 of 4 devices"},                   // by status
		{"status=attention", "gate-3,freezer-2,new-4", "Showing 3 of 4 devices"}, // not online, or out of range
		{"q=boiler&status=stale", "", "Showing 0 of 4 devices"},
		{"status=bogus", "gate-3,freezer-2,new-4,boiler-1", "4 devices"}, // an unknown status is ignored
	} {
		v, _ := url.ParseQuery(tc.query)
		m := NewOverview(fleetAt(), now)
		m.SetFilter(ParseFilter(v.Get))
		doc := renderDoc(t, OverviewPage(m))
		if got := shownCards(doc); got != tc.shown {
			t.Errorf("?%s shows %q, want %q", tc.query, got, tc.shown)
		}
		if got := text(doc.Find(`[data-testid="shown"]`)); got != tc.says {
			t.Errorf("?%s says %q, want %q", tc.query, got, tc.says)
		}
		_, noMatchHidden := doc.Find(`[data-testid="no-match"]`).Attr("hidden")
		if noMatchHidden != (tc.shown != "") {
			t.Errorf("?%s: the no-match note hidden=%v", tc.query, noMatchHidden)
		}
		// The form says what the filter is, so that it can be changed.
		if got := doc.Find(`#filter-q`).AttrOr("value", ""); got != v.Get("q") {
			t.Errorf("?%s: text field %q", tc.query, got)
		}
		if got := doc.Find(`#filter-status option[selected]`).AttrOr("value", ""); got != m.Filter.Status {
			t.Errorf("?%s: status %q selected, want %q", tc.query, got, m.Filter.Status)
		}
		// Counts are of the whole fleet, whatever the filter.
		if got := text(doc.Find(`[data-testid="count-online"] .count-n`)); got != "1" {
			t.Errorf("?%s: online count %q, want 1", tc.query, got)
		}
	}
}

func TestFilterFormIsLabelled(t *testing.T) {
	doc := renderDoc(t, OverviewPage(NewOverview(fleetAt(), now)))
	form := doc.Find(`form[data-testid="filter"]`)
	if form.AttrOr("role", "") != "search" || form.AttrOr("method", "") != "get" {
		t.Errorf("the filter is not a GET search form")
	}
	form.Find(`input:not([type="hidden"]), select`).Each(func(_ int, s *goquery.Selection) {
		id := s.AttrOr("id", "")
		if id == "" || doc.Find(`label[for="`+id+`"]`).Length() != 1 {
			t.Errorf("control %s has no label", s.AttrOr("name", "?"))
		}
	})
	var statuses []string
	form.Find("#filter-status option").Each(func(_ int, o *goquery.Selection) { statuses = append(statuses, o.AttrOr("value", "")) })
	if got := strings.Join(statuses, ","); got != ",attention,online,stale,offline,unknown" {
		t.Errorf("status choices %q", got)
	}
}

func TestCountsFilterByStatus(t *testing.T) {
	m := NewOverview(fleetAt(), now)
	m.SetFilter(Filter{Text: "room", Status: "stale"})
	doc := renderDoc(t, OverviewPage(m))
	for status, want := range map[string]string{"online": "/?q=room&status=online", "stale": "/?q=room&status=stale", "offline": "/?q=room&status=offline"} {
		a := doc.Find(`[data-testid="count-` + status + `"] a`)
		if got := a.AttrOr("href", ""); got != want {
			t.Errorf("count of %s links to %q, want %q", status, got, want)
		}
		if _, current := a.Attr("aria-current"); current != (status == "stale") {
			t.Errorf("count of %s: aria-current %v", status, current)
		}
	}
}

func TestCardMarksOutOfRange(t *testing.T) {
	doc := renderDoc(t, OverviewPage(NewOverview(fleetAt(), now)))
	for id, want := range map[string]bool{"boiler-1": false, "freezer-2": true, "gate-3": false} {
		if _, out := card(doc, id).Attr("data-out"); out != want {
			t.Errorf("%s: data-out %v, want %v", id, out, want)
		}
	}
}

// flat decodes a series attribute, a flat JSON array of numbers.
func flat(t *testing.T, s string) []float64 {
	t.Helper()
	var out []float64
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("%q is not a JSON array of numbers: %v", s, err)
	}
	return out
}

// timed reads data-points or data-band, rows of n numbers whose first is
// a time given as the difference from the row before, with whole times.
func timed(t *testing.T, s string, n int) []float64 {
	t.Helper()
	out := flat(t, s)
	for i := n; i < len(out); i += n {
		out[i] += out[i-n]
	}
	return out
}

func TestSparklines(t *testing.T) {
	m := NewOverview(fleetAt(), now)
	i := slices.IndexFunc(m.Devices, func(c Card) bool { return c.ID == "boiler-1" })
	temp := &m.Devices[i].Metrics[1] // boiler-1 temperature
	from := now.Add(-15 * time.Minute).UnixMilli()
	temp.Recent = Series{Known: true, From: from, To: now.UnixMilli(), Step: 60000, Points: []store.Point{{T: from, V: 21.25}, {T: from + 60000, V: 22.123456789}}}
	doc := renderDoc(t, OverviewPage(m))

	spark := card(doc, "boiler-1").Find(`[data-metric="temperature"] canvas[data-testid="sparkline"]`)
	if spark.Length() != 1 {
		t.Fatal("no sparkline for boiler-1's temperature")
	}
	if got, want := timed(t, spark.AttrOr("data-points", ""), 2), []float64{float64(from), 21.25, float64(from + 60000), 22.123456789}; !slices.Equal(got, want) {
		t.Errorf("data-points %v, want %v exactly", got, want)
	}
	if spark.AttrOr("data-step", "") != "60000" || spark.AttrOr("role", "") != "img" {
		t.Errorf("sparkline step %q, role %q", spark.AttrOr("data-step", ""), spark.AttrOr("role", ""))
	}
	if got, want := spark.AttrOr("aria-label", ""), "temperature over the last 15 minutes: from 21.250 °C to 22.123 °C"; got != want {
		t.Errorf("sparkline label %q, want %q", got, want)
	}
	// Without history, the canvas carries none and says so.
	hum := card(doc, "boiler-1").Find(`[data-metric="humidity"] canvas`)
	if _, ok := hum.Attr("data-points"); ok {
		t.Error("a sparkline without history carries points")
	}
	if got := hum.AttrOr("aria-label", ""); !strings.Contains(got, "no history") {
		t.Errorf("sparkline without history says %q", got)
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDeviceCharts(t *testing.T) {
	m := NewDevice(fleetAt()[0], now)
	m.SetRange(ParseRange(url.Values{"range": {"1h"}}.Get, now))
	m.Charts[1].Series = Series{Known: true, From: m.Range.From, To: m.Range.To, Step: 5000,
		Points: []store.Point{{T: 1000, V: 21}, {T: 6000, V: 22}}, Lo: []float64{20, 21.5}, Hi: []float64{22.5, 31}}
	doc := renderDoc(t, DeviceView(m))

	// A chart per metric, in the order of the table, with its unit and limits.
	var metrics []string
	doc.Find(`figure[data-testid="chart"]`).Each(func(_ int, f *goquery.Selection) { metrics = append(metrics, f.AttrOr("data-chart", "")) })
	if got := strings.Join(metrics, ","); got != "humidity,temperature" {
		t.Fatalf("charts of %q, want humidity,temperature", got)
	}
	fig := doc.Find(`figure[data-chart="temperature"]`)
	for attr, want := range map[string]string{"data-unit": "°C", "data-lo": "5", "data-hi": "30", "data-step": "5000", "data-from": "1763996400001", "data-to": "1764000000001"} {
		if got := fig.AttrOr(attr, ""); got != want {
			t.Errorf("temperature chart %s=%q, want %q", attr, got, want)
		}
	}
	if got, want := timed(t, fig.AttrOr("data-band", ""), 3), []float64{1000, 20, 22.5, 6000, 21.5, 31}; !equalFloats(got, want) {
		t.Errorf("data-band %v, want %v", got, want)
	}
	if got := text(fig.Find("figcaption")); got != "temperature °C expected 5–30 °C" {
		t.Errorf("caption %q", got)
	}
	canvas := fig.Find(`canvas[data-testid="chart-canvas"]`)
	if canvas.AttrOr("tabindex", "") != "0" || canvas.AttrOr("role", "") != "img" {
		t.Error("the chart canvas cannot be focused, or is not an image to assistive technology")
	}
	if got, want := text(fig.Find(`[data-testid="chart-summary"]`)), "temperature, the last 1 h: from 20.000 °C to 31.000 °C; expected 5–30 °C."; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	if id := canvas.AttrOr("aria-describedby", ""); fig.Find("output#"+id).Length() != 1 {
		t.Errorf("the canvas is not described by its read-out")
	}
	if got := text(doc.Find(`figure[data-chart="humidity"] [data-testid="chart-summary"]`)); got != "humidity, the last 1 h." {
		t.Errorf("summary without history %q", got)
	}

	// The range picker: a labelled group of choices, the one shown checked.
	picker := doc.Find(`form[data-testid="range-picker"]`)
	var choices []string
	picker.Find(`input[name="range"]`).Each(func(_ int, s *goquery.Selection) {
		c := s.AttrOr("value", "")
		if _, checked := s.Attr("checked"); checked {
			c += "*"
		}
		choices = append(choices, c)
	})
	if got := strings.Join(choices, ","); got != "15m,1h*,6h,24h,7d,custom" {
		t.Errorf("range choices %q", got)
	}
	if text(picker.Find("fieldset.range-choices > legend")) != "Range" || picker.Find(`input[type="datetime-local"]`).Length() != 2 {
		t.Error("the range picker has no legend, or no custom from and to")
	}
	if got := text(doc.Find(`[data-testid="range-label"]`)); got != "Showing the last 1 h." {
		t.Errorf("range label %q", got)
	}
	if _, hidden := picker.Find(`[data-testid="download-csv"]`).Attr("hidden"); !hidden {
		t.Error("the CSV button shows before the script that makes it work")
	}
}

func TestDeviceWithoutReadingsHasNoCharts(t *testing.T) {
	doc := renderDoc(t, DeviceView(NewDevice(fleetAt()[3], now)))
	if doc.Find(`[data-testid="no-metrics"]`).Length() != 1 || doc.Find(`[data-testid="history"]`).Length() != 0 {
		t.Error("a device without readings should say so and show no charts")
	}
}

func TestParseRange(t *testing.T) {
	ms := now.UnixMilli()
	for _, tc := range []struct {
		query    string
		name     string
		from, to int64
		problem  string // a part of the problem said on the page
	}{
		{"", "15m", ms + 1 - 15*60000, ms + 1, ""},
		{"range=6h", "6h", ms + 1 - 6*3600000, ms + 1, ""},
		{"range=7d&from=1&to=2", "7d", ms + 1 - 7*86400000, ms + 1, ""},
		{"range=custom&from=1000&to=2000", "custom", 1000, 2000, ""},
		{"from=2025-11-24T10:00:00Z&to=2025-11-24T12:00:00%2B01:00", "custom", 1763978400000, 1763982000000, ""},
		{"range=custom&from=2025-11-24T10:00&to=2025-11-24T10:30:15", "custom", 1763978400000, 1763980215000, ""}, // a datetime-local, in UTC
		{"range=custom&from=2000&to=1000", "15m", ms + 1 - 15*60000, ms + 1, "is not before the end"},             // backwards
		{"range=1y", "15m", ms + 1 - 15*60000, ms + 1, "The range “1y” is not one of 15m, 1h, 6h, 24h, 7d. Showing the last 15 min instead."},
		{"range=bogus", "15m", ms + 1 - 15*60000, ms + 1, "The range “bogus”"},
		{"range=custom&from=yesterday&to=now", "15m", ms + 1 - 15*60000, ms + 1, "The start “yesterday” is not a date and time"},
		{"range=custom&from=1000", "15m", ms + 1 - 15*60000, ms + 1, "The end “” is not a date and time"},
	} {
		v, _ := url.ParseQuery(tc.query)
		r := ParseRange(v.Get, now)
		if r.Name != tc.name || r.From != tc.from || r.To != tc.to || (tc.problem == "") != (r.Problem == "") || !strings.Contains(r.Problem, tc.problem) {
			t.Errorf("?%s = %+v, want %s %d..%d, problem %q", tc.query, r, tc.name, tc.from, tc.to, tc.problem)
		}
	}
}

// TestBadRangeSaysSo: a range in the URL that cannot be shown is named on
// the page, above the default range it shows instead.
func TestBadRangeSaysSo(t *testing.T) {
	m := NewDevice(fleetAt()[0], now)
	m.SetRange(ParseRange(url.Values{"range": {"bogus"}}.Get, now))
	doc := renderDoc(t, DeviceView(m))
	if got := text(doc.Find(`[data-testid="range-problem"]`)); !strings.Contains(got, "The range “bogus” is not one of") {
		t.Errorf("range problem %q", got)
	}
	m.SetRange(ParseRange(url.Values{"range": {"1h"}}.Get, now))
	if doc := renderDoc(t, DeviceView(m)); doc.Find(`[data-testid="range-problem"]`).Length() != 0 {
		t.Error("a good range is said to be a problem")
	}
}

func TestCardsOfDevicesAsTheFleetHasThem(t *testing.T) {
	// A device whose status was never set is unknown, not blank.
	c := NewCard(devices.Device{ID: "x"}, now)
	if c.Status != devices.StatusUnknown {
		t.Errorf("status %q, want unknown", c.Status)
	}
}

// TestDeviceSaysWhatIsKept: under the charts, the page says how long raw
// readings are kept and what a range further back is drawn from; with
// everything kept it says nothing.
func TestDeviceSaysWhatIsKept(t *testing.T) {
	for _, c := range []struct {
		raw  time.Duration
		want string
	}{
		{0, ""},
		{30 * 24 * time.Hour, "Raw readings are kept 30 days; a range further back is drawn from minute and hour summaries."},
		{24 * time.Hour, "Raw readings are kept 1 day; a range further back is drawn from minute and hour summaries."},
		{90 * time.Minute, "Raw readings are kept 1h30m0s; a range further back is drawn from minute and hour summaries."},
	} {
		m := NewDevice(fleetAt()[0], now)
		m.SetRange(ParseRange(url.Values{"range": {"7d"}}.Get, now))
		m.SetKept(c.raw)
		doc := renderDoc(t, DeviceView(m))
		kept := doc.Find(`[data-testid="range-kept"]`)
		if got := text(kept); got != c.want || (c.want == "") != (kept.Length() == 0) {
			t.Errorf("raw readings kept %v: the page says %q, want %q", c.raw, got, c.want)
		}
	}
}
