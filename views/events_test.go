package views

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"iotdash/devices"
	"iotdash/internal/testenv"
	"iotdash/store/sqlite"
)

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		250 * time.Millisecond:                  "250 ms",
		45 * time.Second:                        "45 s",
		120 * time.Second:                       "2 min",
		time.Hour + 5*time.Minute + time.Second: "1 h 5 min",
		2 * time.Hour:                           "2 h",
		76 * time.Hour:                          "3 d 4 h",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestAvailability: the strip draws each presence episode within the
// range, an ongoing one up to now, and says the shares of the time
// recorded, and how long nothing was.
func TestAvailability(t *testing.T) {
	now := time.UnixMilli(10_000_000).UTC()
	from, to := int64(0), int64(10_000_000) // 10,000 s
	es := []devices.Event{
		{Kind: devices.EventPresence, Status: devices.StatusOffline, From: 8_000_000},                // ongoing
		{Kind: devices.EventPresence, Status: devices.StatusOnline, From: -5_000_000, To: 6_000_000}, // begins before the range
		{Kind: devices.EventPresence, Status: devices.StatusStale, From: 6_000_000, To: 7_000_000},
	}
	a := NewAvailability(es, from, to, now)
	var got []string
	for _, s := range a.Segments {
		got = append(got, string(s.Status)+" "+strconv.Itoa(s.X)+"+"+strconv.Itoa(s.Width))
	}
	if want := "online 0+600,stale 600+100,offline 800+200"; strings.Join(got, ",") != want {
		t.Errorf("segments %s, want %s", strings.Join(got, ","), want)
	}
	// The times, for the page's script to extend the strip: the episodes'
	// own (an ongoing one to 0), and the range's.
	if s := a.Segments[2]; s.From != 8_000_000 || s.To != 0 || a.Segments[0].From != -5_000_000 || a.From != from || a.To != to {
		t.Errorf("times: %+v", a)
	}
	if want := "Online 66.7 %, Stale 11.1 %, Offline 22.2 %; nothing recorded for 16 min."; a.Summary != want {
		t.Errorf("summary %q, want %q", a.Summary, want)
	}
	if a := NewAvailability(nil, from, to, now); len(a.Segments) != 0 || a.Summary != "Nothing recorded in this range." {
		t.Errorf("no events: %+v", a)
	}
}

// TestAvailabilityAheadOfTheLog: a status change the fleet has not yet
// handed the event log (it does once a second) is on the strip all the
// same, ending the episode the log still holds open.
func TestAvailabilityAheadOfTheLog(t *testing.T) {
	now := time.UnixMilli(10_000_000).UTC()
	saved := []devices.Event{{Kind: devices.EventPresence, Status: devices.StatusOnline, From: 1_000_000}} // open in the log
	d := devices.Device{ID: "tank", Status: devices.StatusOffline, Since: 9_000_000}
	a := NewAvailability(withPresence(saved, d), 0, 10_000_000, now)
	var got []string
	for _, s := range a.Segments {
		got = append(got, string(s.Status)+" "+strconv.Itoa(s.X)+"+"+strconv.Itoa(s.Width)+" to "+strconv.FormatInt(s.To, 10))
	}
	if want := "online 100+800 to 9000000,offline 900+100 to 0"; strings.Join(got, ",") != want {
		t.Errorf("segments %s, want %s", strings.Join(got, ","), want)
	}
	// Once the log has it, the same strip, the episode not drawn twice.
	saved = []devices.Event{{Kind: devices.EventPresence, Status: devices.StatusOnline, From: 1_000_000, To: 9_000_000},
		{Kind: devices.EventPresence, Status: devices.StatusOffline, From: 9_000_000}}
	if b := NewAvailability(withPresence(saved, d), 0, 10_000_000, now); len(b.Segments) != 2 || b.Summary != a.Summary {
		t.Errorf("with the log caught up: %+v, want the strip of %+v", b, a)
	}
	// Unknown ends the episode and begins none.
	d = devices.Device{ID: "tank", Status: devices.StatusUnknown, Since: 9_000_000}
	if c := NewAvailability(withPresence(saved[:1], d), 0, 10_000_000, now); len(c.Segments) != 1 || c.Segments[0].Width != 800 {
		t.Errorf("gone unknown: %+v", c.Segments)
	}
}

// eventServer serves the event log page and the device page over a real
// event log, as cmd/iotdash wires them.
func eventServer(t *testing.T) (*httptest.Server, *devices.Fleet) {
	t.Helper()
	log, err := sqlite.OpenEvents(filepath.Join(t.TempDir(), "fleet.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	fleet := devices.NewFleet(nil)
	fleet.SetMeta("boiler-1", devices.Meta{Name: "Boiler room", Location: "Basement",
		Units: map[string]string{"temperature": "°C"}, Limits: map[string][2]float64{"temperature": {5, 30}}})
	now := time.Now().UnixMilli()
	for i, v := range []float64{21, 31.5, 35, 22} {
		fleet.Seen("boiler-1", []devices.Reading{{Device: "boiler-1", Metric: "temperature", Time: now - int64(4-i)*60_000, Value: v}})
	}
	fleet.SetPresence("boiler-1", devices.StatusOffline)
	fleet.Seen("tank-01", []devices.Reading{{Device: "tank-01", Metric: "level", Time: now, Value: 40.5}})
	if err := fleet.SaveEvents(context.Background(), log); err != nil {
		t.Fatal(err)
	}
	o := Options{Events: log}
	mux := http.NewServeMux()
	mux.Handle("GET /events", EventPages{Log: log, Fleet: fleet, Options: o}.Page())
	mux.Handle("GET /devices/{id}", DevicePageWithHistory(fleet, o))
	mux.Handle("GET /static/", Static())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, fleet
}

// TestEventsPage: the event log lists what happened, newest first, filters
// by device and kind, links its CSV with the same filter, and says what is
// wrong with a filter it cannot use.
func TestEventsPage(t *testing.T) {
	srv, _ := eventServer(t)
	get := func(path string) (*goquery.Document, int) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		doc, err := goquery.NewDocumentFromReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return doc, resp.StatusCode
	}
	doc, _ := get("/events")
	if n := doc.Find(`[data-testid="event"]`).Length(); n != 4 {
		t.Errorf("all events: %d rows, want 4 (boiler-1 online, offline, out of range; tank-01 online)", n)
	}
	doc, _ = get("/events?device=boiler-1&kind=range")
	row := doc.Find(`[data-testid="event"]`)
	if row.Length() != 1 || !strings.Contains(row.Text(), "temperature out of range") || !strings.Contains(row.Text(), "35 °C (expected 5–30 °C)") ||
		row.Find(`[data-testid="event-duration"]`).Text() != "2 min" {
		t.Errorf("boiler-1's range episodes: %q", row.Text())
	}
	if href, _ := doc.Find(`[data-testid="events-csv"]`).Attr("href"); !strings.Contains(href, "device=boiler-1") || !strings.Contains(href, "kind=range") || !strings.Contains(href, "format=csv") {
		t.Errorf("CSV link %q, want the same filter as CSV", href)
	}
	if doc, code := get("/events?kind=alarm"); code != http.StatusBadRequest || !strings.Contains(doc.Find(`[data-testid="events-problem"]`).Text(), "alarm") {
		t.Errorf("kind=alarm: %d, want 400 that names it", code)
	}
	doc, _ = get("/devices/boiler-1")
	if doc.Find(`[data-testid="strip"][data-from][data-to] rect.seg-offline[data-from][data-to]`).Length() != 1 || !strings.Contains(doc.Find(`[data-testid="strip-summary"]`).Text(), "Offline") {
		t.Errorf("device page's strip: %q", doc.Find(`[data-testid="availability"]`).Text())
	}
}

// TestEventPagesInABrowser: the event log and the device page with its
// strip pass axe-core in the light and the dark theme and do not scroll
// sideways at phone width.
func TestEventPagesInABrowser(t *testing.T) {
	testenv.Axe(t)
	srv, _ := eventServer(t)
	for _, theme := range []string{"light", "dark"} {
		for _, path := range []string{"/events", "/devices/boiler-1"} {
			t.Run(theme+path, func(t *testing.T) {
				ctx := browser(t)
				if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
					Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: theme}}}); err != nil {
					t.Fatal(err)
				}
				if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844)); err != nil {
					t.Fatal(err)
				}
				if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+path)); err != nil {
					t.Fatal(err)
				}
				until(t, ctx, "no sideways scrolling at phone width", `document.documentElement.scrollWidth <= window.innerWidth`)
				checkAccessible(t, ctx)
				screenshot(t, ctx, theme+strings.ReplaceAll(path, "/", "_")+".png")
				if theme == "light" && path != "/events" {
					// Another range: the strip is drawn anew for it.
					until(t, ctx, "the page's script", `document.querySelector('[data-testid="download-csv"]').hidden === false`)
					if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.getElementById('availability').dataset.old = '1'; document.querySelector('input[name=range][value="1h"]').click(); document.querySelector('form.range button[type=submit]').click()`)); err != nil {
						t.Fatal(err)
					}
					until(t, ctx, "the strip of the last hour", `location.search === '?range=1h' && !document.getElementById('availability').dataset.old`)
				}
			})
		}
	}
}
