package views

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"iotdash/devices"
	"iotdash/internal/testenv"
	"iotdash/push"
)

// liveServer is the overview with a fleet and a push hub behind /ws, as
// cmd/iotdash wires them. The hub can be swapped to play a server restart.
type liveServer struct {
	*httptest.Server
	fleet *devices.Fleet
	hub   atomic.Pointer[push.Hub]
}

func newLiveServer(t *testing.T) *liveServer {
	s := &liveServer{}
	s.hub.Store(push.NewHub(push.Options{}))
	s.fleet = devices.NewFleet(func(id string, st devices.Status) { s.hub.Load().PublishStatus(id, st) })
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", Overview(s.fleet))
	mux.Handle("GET /devices/{id}", DevicePage(s.fleet))
	mux.Handle("GET /static/", Static())
	mux.Handle("GET /ws", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.hub.Load().ServeHTTP(w, r) }))
	mux.Handle("/", NotFound())
	s.Server = httptest.NewServer(mux)
	t.Cleanup(func() { s.hub.Load().Close(); s.Close() })
	return s
}

// reading is what ingest does with one message: the fleet sees it, then the
// hub publishes it.
func (s *liveServer) reading(id, metric string, v float64) {
	rs := []devices.Reading{{Device: id, Metric: metric, Time: time.Now().UnixMilli(), Value: v}}
	s.fleet.Seen(id, rs)
	s.hub.Load().Publish(rs)
}

func browser(t *testing.T) context.Context { return browserFor(t, 60*time.Second) }

// browserFor is a tab of a fresh Chromium that a test may use for so long.
func browserFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(testenv.Chromium(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 800),
	)
	ctx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel = chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, d)
	t.Cleanup(cancel)
	return ctx
}

// until polls a JavaScript expression in the page until it is true.
func until(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(max(time.Until(deadline), time.Millisecond))))
		if err == nil {
			return
		}
		// A navigation that ends under the poll takes the page's execution
		// context with it: poll the page that replaced it.
		msg := err.Error()
		gone := strings.Contains(msg, "Cannot find context with specified id") || strings.Contains(msg, "Execution context was destroyed") || strings.Contains(msg, "Inspected target navigated or closed")
		if !gone || time.Now().After(deadline) {
			t.Fatalf("waiting for %s (%s): %v", what, expr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// screenshot saves the whole page as PNG in the test's artifacts directory
// (go test -artifacts keeps them).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

const (
	connected = `document.body.dataset.liveState === 'connected'`
)

func TestOverviewIsLiveInABrowser(t *testing.T) {
	s := newLiveServer(t)
	s.fleet.SetMeta("boiler-1", devices.Meta{Name: "Boiler room", Kind: "thermometer", Location: "Basement", Units: map[string]string{"temperature": "°C"}, Limits: map[string][2]float64{"temperature": {5, 30}}})
	s.reading("boiler-1", "temperature", 21.5)
	s.reading("gate-3", "open", 0)

	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(s.URL)); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "two cards", `document.querySelectorAll('[data-testid="device-card"]').length === 2`)
	until(t, ctx, "the live connection", connected)

	// A reading changes the value in place; out of its limits, it says so.
	s.reading("boiler-1", "temperature", 31.25)
	until(t, ctx, "the new value", `document.querySelector('[data-device="boiler-1"] [data-metric="temperature"] [data-value]').textContent === '31.25'`)
	until(t, ctx, "out of range shown", `!document.querySelector('[data-device="boiler-1"] [data-testid="out-of-range"]').hidden`)

	// A device that goes offline changes its badge and the counts.
	s.fleet.SetPresence("gate-3", devices.StatusOffline)
	until(t, ctx, "the offline badge", `document.querySelector('[data-device="gate-3"] .badge-text').textContent === 'Offline'`)
	until(t, ctx, "the counts", `document.querySelector('[data-count="offline"] .count-n').textContent === '1' && document.querySelector('[data-count="online"] .count-n').textContent === '1'`)

	// A device the page has not shown gets a card.
	s.reading("new-9", "humidity", 40)
	until(t, ctx, "a card for the new device", `document.querySelector('[data-device="new-9"] [data-metric="humidity"]') !== null`)
	screenshot(t, ctx, "overview-live.png")

	// The server goes away: the page says so, then reconnects by itself.
	s.hub.Load().Close()
	until(t, ctx, "the disconnected banner", `!document.getElementById('conn-banner').hidden && document.body.dataset.liveState === 'disconnected'`)
	screenshot(t, ctx, "overview-disconnected.png")
	s.hub.Store(push.NewHub(push.Options{}))
	until(t, ctx, "the reconnection", connected+` && document.getElementById('conn-banner').hidden`)
	s.reading("boiler-1", "temperature", 22)
	until(t, ctx, "values after reconnecting", `document.querySelector('[data-device="boiler-1"] [data-metric="temperature"] [data-value]').textContent === '22'`)
}

func TestDevicePageIsLiveInABrowser(t *testing.T) {
	s := newLiveServer(t)
	s.fleet.SetMeta("boiler-1", devices.Meta{Name: "Boiler room", Units: map[string]string{"temperature": "°C"}})
	s.reading("boiler-1", "temperature", 21.5)

	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(s.URL+"/devices/boiler-1")); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the live connection", connected)
	s.reading("boiler-1", "temperature", 23.75)
	until(t, ctx, "the new value", `document.querySelector('[data-metric="temperature"] [data-value]').textContent === '23.75'`)
	screenshot(t, ctx, "device-live.png")
}

// TestEmbeddedHistoryInABrowser serves the pages with history from a real
// embedded store and no history API: the sparklines and charts draw what
// the page carries, without asking for more, and grow with live readings.
func TestEmbeddedHistoryInABrowser(t *testing.T) {
	f, st := historyFleet(t, 3, time.Now())
	hub := push.NewHub(push.Options{})
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", OverviewWithHistory(f, Options{History: st}))
	mux.Handle("GET /devices/{id}", DevicePageWithHistory(f, Options{History: st}))
	mux.Handle("GET /static/", Static())
	mux.Handle("GET /ws", hub)
	mux.Handle("/", NotFound())
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { hub.Close(); srv.Close() })

	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the live connection", connected)
	spark := `document.querySelector('[data-device="device-001"] [data-metric="temperature"] canvas.spark').drawing.series`
	until(t, ctx, "a sparkline of the embedded 15 minutes", spark+`.pts.length >= 15`)
	last := time.Now().Truncate(time.Minute).Add(time.Minute)
	hub.Publish([]devices.Reading{{Device: "device-001", Metric: "temperature", Time: last.UnixMilli(), Value: 99}})
	until(t, ctx, "the live reading in the sparkline", fmt.Sprintf(`%s.last().t === %d && %s.last().v === 99`, spark, last.UnixMilli(), spark))
	screenshot(t, ctx, "overview-history.png")

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/devices/device-001")); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the live connection", connected)
	chart := `document.querySelector('figure[data-chart="humidity"]').chart`
	until(t, ctx, "a chart of every reading of the last 15 minutes", chart+`.series.step === 0 && `+chart+`.shown().length > 400`)
	hub.Publish([]devices.Reading{{Device: "device-001", Metric: "humidity", Time: time.Now().UnixMilli(), Value: 95}})
	until(t, ctx, "the live reading on the chart", chart+`.series.last().v === 95`)
	if got := eval[string](t, ctx, `document.getElementById('range-label').textContent`); got != "Showing the last 15 min." {
		t.Errorf("range label %q: the page asked for history it had", got)
	}

	// The keyboard reads the chart too.
	if err := chromedp.Do(ctx, chromedp.Focus(`figure[data-chart="humidity"] canvas`), chromedp.KeyEvent(kb.ArrowLeft)); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the read-out of the point before the last", `/: \d+(\.\d+)? % — out of range$|: \d+(\.\d+)? %$/.test(document.querySelector('figure[data-chart="humidity"] output').textContent)`)
	screenshot(t, ctx, "device-history.png")
}

// TestNoticeBannerInABrowser: the server's warning (the broker dropping
// messages, say) shows in a banner on an open page, and goes when cleared.
func TestNoticeBannerInABrowser(t *testing.T) {
	s := newLiveServer(t)
	s.reading("boiler-1", "temperature", 21.5)
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(s.URL)); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the live connection", connected)
	banner := `document.querySelector('[data-testid="notice-banner"]')`
	until(t, ctx, "no banner", banner+`.hidden`)

	s.hub.Load().SetNotice("The MQTT broker has dropped 12 messages")
	until(t, ctx, "the banner", `!`+banner+`.hidden && `+banner+`.textContent === 'The MQTT broker has dropped 12 messages'`)
	screenshot(t, ctx, "notice.png")

	s.hub.Load().SetNotice("")
	until(t, ctx, "the banner gone", banner+`.hidden`)
}

// TestAttentionOrderIsKeptLive: a device that goes offline moves to the top
// of the overview and the need-attention count rises, without a reload.
func TestAttentionOrderIsKeptLive(t *testing.T) {
	s := newLiveServer(t)
	s.reading("a-1", "temperature", 21)
	s.reading("b-1", "temperature", 22)
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(s.URL)); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the live connection", connected)
	order := `[...document.querySelectorAll('[data-testid="device-card"]')].map(c => c.dataset.device).join()`
	until(t, ctx, "both fine, by name", order+` === 'a-1,b-1'`)
	s.fleet.SetPresence("b-1", devices.StatusOffline)
	until(t, ctx, "b-1 first", order+` === 'b-1,a-1'`)
	until(t, ctx, "one needs attention", `document.querySelector('[data-testid="count-attention"] .count-n').textContent === '1'`)
	screenshot(t, ctx, "attention.png")
}

// TestAccessibility runs axe-core (an accessibility engine from the npm
// registry, not ours) in Chromium on the overview and a device page, in the
// light and the dark theme: no violation of WCAG 2.1 A or AA.
func TestAccessibility(t *testing.T) {
	testenv.Axe(t)
	s := newLiveServer(t)
	s.fleet.SetMeta("boiler-1", devices.Meta{Name: "Boiler room", Kind: "thermometer", Location: "Basement",
		Units: map[string]string{"temperature": "°C"}, Limits: map[string][2]float64{"temperature": {5, 30}}})
	s.reading("boiler-1", "temperature", 31.5) // out of range
	s.reading("gate-3", "open", 0)
	s.reading("tank-01", "level", 40.5)
	s.fleet.SetPresence("tank-01", devices.StatusOffline)
	for _, theme := range []string{"light", "dark"} {
		for _, path := range []string{"/", "/devices/boiler-1"} {
			t.Run(theme+path, func(t *testing.T) {
				ctx := browser(t)
				if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
					Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: theme}}}); err != nil {
					t.Fatal(err)
				}
				if err := chromedp.Do(ctx, chromedp.Navigate(s.URL+path)); err != nil {
					t.Fatal(err)
				}
				until(t, ctx, "the live connection", connected)
				checkAccessible(t, ctx)
			})
		}
	}
}

// checkAccessible runs axe-core's WCAG 2.1 A and AA rules on the tab's page
// and fails t for each violation.
func checkAccessible(t *testing.T, ctx context.Context) {
	t.Helper()
	script, err := os.ReadFile(testenv.Axe(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](string(script))); err != nil {
		t.Fatal(err)
	}
	type violation struct {
		ID, Impact, Help string
		Nodes            []struct{ Target []string }
	}
	vs, err := chromedp.Run(ctx, chromedp.Evaluate[[]violation](
		`axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}).then(r => r.violations)`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		var where []string
		for _, n := range v.Nodes {
			where = append(where, strings.Join(n.Target, " "))
		}
		t.Errorf("%s (%s): %s, on %d elements: %s", v.ID, v.Impact, v.Help, len(v.Nodes), strings.Join(where, "; "))
	}
}
