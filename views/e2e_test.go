package views

// End-to-end tests of the pages in headless Chromium, against the built
// iotdash binary running with its simulated fleet, as a user starts it.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/internal/testenv"
)

// simulated is how many devices the binary simulates by default.
const simulated = 12

// iotdashBinary is cmd/iotdash built once for the package's tests (and
// cmd/iotdash's).
func iotdashBinary(t *testing.T) string { return testenv.Iotdash(t) }

// dashboard is the iotdash binary, on the same ports and data directory
// across restarts.
type dashboard struct {
	URL    string // http://127.0.0.1:port
	Broker string // tcp://127.0.0.1:port
	// Bin is the binary start runs: the built iotdash unless set (to
	// another build, for an upgrade).
	Bin  string
	args []string
	cmd  *exec.Cmd
	out  *testenv.Buffer
	done chan error
}

// startDashboard starts the built iotdash on free ports with a data
// directory of its own, and flags after those.
func startDashboard(t *testing.T, flags ...string) *dashboard {
	t.Helper()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	brokerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	d := &dashboard{
		URL:    "http://" + httpAddr,
		Broker: "tcp://" + brokerAddr,
		args:   append([]string{"-http", httpAddr, "-broker", brokerAddr, "-data", t.TempDir(), "-simulate-interval", "500ms"}, flags...),
		out:    &testenv.Buffer{},
	}
	t.Cleanup(func() {
		if d.cmd != nil {
			d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("iotdash output:\n%s", d.out.String())
		}
	})
	d.start(t)
	return d
}

var dashboardLine = regexp.MustCompile(`dashboard on (http://\S+?)/?\n`)

func (d *dashboard) start(t *testing.T) {
	t.Helper()
	bin := d.Bin
	if bin == "" {
		bin = iotdashBinary(t)
	}
	d.cmd = exec.Command(bin, d.args...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.Env = append(os.Environ(), "IOTDASH_ADMIN_PASSWORD="+adminPassword)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait() }(d.cmd, d.done)
	starts := strings.Count(d.out.String(), "dashboard on")
	testenv.WaitFor(t, 30*time.Second, "iotdash to start", func() bool {
		return len(dashboardLine.FindAllString(d.out.String(), -1)) > starts
	})
	testenv.WaitFor(t, 30*time.Second, "iotdash to be ready", func() bool {
		res, err := http.Get(d.URL + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
}

// stop ends iotdash as a service manager does, with SIGTERM.
func (d *dashboard) stop(t *testing.T) {
	t.Helper()
	err := testenv.Terminate(d.cmd, d.done)
	d.cmd = nil
	if err != nil {
		t.Fatal(err)
	}
}

// getJSON decodes the answer of GET path.
func (d *dashboard) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", d.URL+path, nil)
	req.SetBasicAuth("admin", adminPassword)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

type apiDevice struct {
	ID     string                     `json:"id"`
	Status string                     `json:"status"`
	Latest map[string]json.RawMessage `json:"latest"`
}

// fleet waits until every simulated device has readings, and returns them.
func (d *dashboard) fleet(t *testing.T) []apiDevice {
	t.Helper()
	var list []apiDevice
	testenv.WaitFor(t, 30*time.Second, "every simulated device to report", func() bool {
		list = nil
		d.getJSON(t, "/api/v1/devices", &list)
		n := 0
		for _, dev := range list {
			if len(dev.Latest) > 0 {
				n++
			}
		}
		return n >= simulated
	})
	return list
}

// device is a device of the test's own, publishing to the dashboard's
// embedded broker as a real one would.
type device struct {
	t      *testing.T
	id     string
	client mqtt.Client
}

func newDevice(t *testing.T, broker, id string, meta string) *device {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("views-test-" + id))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connecting to %s: %v", broker, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	d := &device{t: t, id: id, client: c}
	d.publish("meta", true, meta)
	return d
}

func (d *device) publish(topic string, retained bool, payload string) {
	d.t.Helper()
	tok := d.client.Publish("devices/"+d.id+"/"+topic, 1, retained, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		d.t.Fatalf("publish devices/%s/%s: %v", d.id, topic, tok.Error())
	}
}

// adminPassword is the first admin's, set by IOTDASH_ADMIN_PASSWORD.
const adminPassword = "e2e-admin-password"

// signIn signs in on the sign-in form as a person does, asking for url,
// and waits until the browser is there.
func signIn(t *testing.T, ctx context.Context, target string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	login := u.Scheme + "://" + u.Host + "/login?next=" + url.QueryEscape(u.RequestURI())
	if err := chromedp.Do(ctx,
		chromedp.Navigate(login),
		chromedp.SetValue(chromedp.ID("username"), "admin"),
		chromedp.SetValue(chromedp.ID("password"), adminPassword),
		chromedp.Submit(chromedp.ID("password")),
	); err != nil {
		t.Fatal(err)
	}
	// The form's POST navigates: the page's context changes under an
	// evaluation, so errors while it does are waited out.
	testenv.WaitFor(t, 30*time.Second, "signed in and at "+u.RequestURI(), func() bool {
		at, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`location.pathname + location.search === %q && document.readyState === "complete"`, u.RequestURI())))
		return err == nil && at
	})
}

// page signs in and opens url in a fresh browser tab, and fails the test
// on any uncaught exception of its scripts.
func page(t *testing.T, target string) context.Context {
	t.Helper()
	return pageIn(t, browser(t), target)
}

// pageIn is page in the tab ctx.
func pageIn(t *testing.T, ctx context.Context, target string) context.Context {
	t.Helper()
	messages := chromedp.Console(ctx)
	var mu sync.Mutex
	ended := false
	t.Cleanup(func() { mu.Lock(); ended = true; mu.Unlock() })
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			mu.Lock()
			if !ended {
				if m.IsException() {
					t.Errorf("script exception: %s", m)
				} else {
					t.Logf("console: %s", m)
				}
			}
			mu.Unlock()
		}
	}()
	signIn(t, ctx, target)
	return ctx
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

func TestOverviewEndToEnd(t *testing.T) {
	d := startDashboard(t)
	list := d.fleet(t)
	ctx := page(t, d.URL)

	// Every device has a card, with its values, and the page is live.
	until(t, ctx, "a card per device", fmt.Sprintf(`document.querySelectorAll('[data-testid="device-card"]').length >= %d`, len(list)))
	until(t, ctx, "the live connection", connected)
	for _, dev := range list {
		if !eval[bool](t, ctx, fmt.Sprintf(`!!document.querySelector('[data-testid="device-card"][data-device=%q] [data-value]')`, dev.ID)) {
			t.Errorf("no card with values for %s", dev.ID)
		}
	}

	// Values change live, and the sparklines grow with them.
	first := list[0].ID
	card := fmt.Sprintf(`document.querySelector('[data-device=%q]')`, first)
	t0 := eval[string](t, ctx, card+`.querySelector('[data-metric]').dataset.t`)
	until(t, ctx, "a newer value on "+first, fmt.Sprintf(`%s.querySelector('[data-metric]').dataset.t > %q`, card, t0))
	until(t, ctx, "sparklines with points", card+`.querySelector('canvas.spark').drawing.series.pts.length > 0`)
	screenshot(t, ctx, "overview.png")

	// The filter hides what does not match, lives in the URL, and the
	// subscription follows it without a reload.
	kind := eval[string](t, ctx, card+`.dataset.kind`)
	if err := chromedp.Do(ctx, chromedp.SendKeys(`#filter-q`, kind)); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the filter in the URL", fmt.Sprintf(`new URLSearchParams(location.search).get('q') === %q`, kind))
	const visible = `[...document.querySelectorAll('[data-testid="device-card"]')].filter(c => !c.parentElement.hidden)`
	until(t, ctx, "only matching cards", fmt.Sprintf(`%s.every(c => c.dataset.kind === %q) && %s.length < %d`, visible, kind, visible, len(list)))
	until(t, ctx, "the subscription to follow the filter", fmt.Sprintf(`document.body.dataset.subscribed === %s.map(c => c.dataset.device).join(' ')`, visible))
	if got := eval[string](t, ctx, `document.getElementById('shown').textContent`); !strings.HasPrefix(got, "Showing ") {
		t.Errorf("filtered overview says %q, want how many it shows", got)
	}
	screenshot(t, ctx, "overview-filtered.png")
	if err := chromedp.Do(ctx, chromedp.Navigate(d.URL+"/?status=offline")); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the status filter from the URL", `document.getElementById('filter-status').value === 'offline'`)
	if err := chromedp.Do(ctx, chromedp.SetValue(`#filter-status`, ""), chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-testid="filter"]').dispatchEvent(new Event('input'))`)); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "every card again, and everything subscribed", fmt.Sprintf(`%s.length >= %d && document.body.dataset.subscribed === '*' && location.search === ''`, visible, len(list)))

	// A device that says it is offline changes its badge and the counts.
	dev := newDevice(t, d.Broker, "e2e-gate", `{"name":"Test gate","kind":"gate","location":"Yard","units":{"open":""}}`)
	dev.publish("status", true, "online")
	dev.publish("telemetry", false, `{"open":1}`)
	gate := `document.querySelector('[data-device="e2e-gate"]')`
	until(t, ctx, "a card for the new device", gate+` && `+gate+`.dataset.status === 'online'`)
	offline := eval[string](t, ctx, `document.querySelector('[data-count="offline"] .count-n').textContent`)
	dev.publish("status", true, "offline")
	until(t, ctx, "the offline badge", gate+`.querySelector('.badge-text').textContent === 'Offline'`)
	until(t, ctx, "the offline count", fmt.Sprintf(`document.querySelector('[data-count="offline"] .count-n').textContent !== %q`, offline))
	screenshot(t, ctx, "overview-offline.png")

	// At phone width and in the dark theme the page still fits.
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(390, 844),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
			return err
		}),
	); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "no sideways scrolling at phone width", `document.documentElement.scrollWidth <= window.innerWidth`)
	screenshot(t, ctx, "overview-phone-dark.png")
}

func TestDevicePageEndToEnd(t *testing.T) {
	d := startDashboard(t)
	list := d.fleet(t)

	// A device of our own with six hours of history, one reading a minute,
	// and limits it crosses now and then.
	dev := newDevice(t, d.Broker, "e2e-boiler", `{"name":"Test boiler","kind":"thermometer","location":"Lab","units":{"temperature":"°C"},"limits":{"temperature":[20,30]}}`)
	now := time.Now().Truncate(time.Minute)
	const hours = 6
	for m := hours * 60; m > 0; m-- {
		at := now.Add(-time.Duration(m) * time.Minute)
		dev.publish("telemetry", false, fmt.Sprintf(`{"ts":%d,"temperature":%g}`, at.UnixMilli(), 16+16*float64(m%60)/60))
	}
	dev.publish("telemetry", false, `{"temperature":24.5}`)
	var hist struct{ Points [][2]float64 }
	testenv.WaitFor(t, 30*time.Second, "the history to be stored", func() bool {
		d.getJSON(t, "/api/v1/query?device=e2e-boiler&metric=temperature&from=-7h&step=raw", &hist)
		return len(hist.Points) > hours*60
	})

	// A simulated device's page: charts of the last 15 minutes, extended live.
	sim := list[0].ID
	ctx := page(t, d.URL+"/devices/"+sim)
	until(t, ctx, "the live connection", connected)
	chart := `document.querySelector('figure[data-chart]').chart`
	until(t, ctx, "a chart with points", chart+`.shown().length > 0`)
	n := eval[int](t, ctx, chart+`.series.pts.length`)
	until(t, ctx, "the chart to grow live", fmt.Sprintf(`%s.series.pts.length > %d`, chart, n))

	// Hovering reads out the time and value under the pointer.
	if err := chromedp.Do(ctx, chromedp.ScrollIntoView(`figure[data-chart] canvas`)); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the chart drawn where it is now", chart+`.layout !== null`)
	// Onto the newest point: the read-out snaps only to a point within a
	// few pixels of the pointer.
	at := eval[[]float64](t, ctx, `(c => { const r = c.canvas.getBoundingClientRect(), l = c.layout, p = c.shown().at(-1);
		return [r.left + l.x0 + (p.t - l.from) / (l.to - l.from) * (l.x1 - l.x0), r.top + r.height / 2]; })(`+chart+`)`)
	if err := chromedp.Do(ctx, chromedp.MouseEvent("mouseMoved", at[0], at[1])); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the read-out of the point under the pointer", `/\d\d:\d\d:\d\d( UTC| [+-]\d\d:\d\d)(:| \(\d+ (s|min|h|d)\): mean) -?\d/.test(document.querySelector('figure[data-chart] output').textContent)`)
	screenshot(t, ctx, "device-live.png")

	// The range picker draws history at a step that fits the chart, with
	// its min–max band, and keeps the choice in the URL.
	if err := chromedp.Do(ctx, chromedp.Navigate(d.URL+"/devices/e2e-boiler")); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the chart", chart+` && `+chart+`.shown().length > 0`)
	if err := chromedp.Do(ctx, chromedp.Click(`input[name="range"][value="6h"]`)); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "six hours of history", chart+`.series.step > 0 && `+chart+`.series.pts[0].t < Date.now() - 5.5*3600e3`)
	until(t, ctx, "the range in the URL", `location.search === '?range=6h'`)
	// What a screen reader hears describes the six hours, not the view
	// before.
	until(t, ctx, "the chart's label to describe the new range", chart+`.summary() === document.querySelector('figure[data-chart] canvas').getAttribute('aria-label')`)
	until(t, ctx, "the range said in words", `/last 6 h: one point per/.test(document.getElementById('range-label').textContent)`)
	step := eval[float64](t, ctx, chart+`.series.step`)
	width := eval[float64](t, ctx, chart+`.width()`)
	if points := 6 * 3600e3 / step; points > width {
		t.Errorf("6 h at a step of %v ms is %v points, more than the chart's %v pixels", step, points, width)
	}
	if !eval[bool](t, ctx, chart+`.series.pts.some(p => p.lo < 20 || p.hi > 30)`) {
		t.Error("the history crosses the limits, but no point of the chart is out of range")
	}
	screenshot(t, ctx, "device-range-6h.png")

	// The CSV holds what the charts show.
	dir := t.TempDir()
	downloads := chromedp.BrowserEvents(ctx, cdpbrowser.DownloadProgress)
	yes := true
	if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: &yes}); err != nil {
		t.Fatal(err)
	}
	shown := eval[int](t, ctx, chart+`.shown().length`)
	if err := chromedp.Do(ctx, chromedp.Click(`[data-testid="download-csv"]`)); err != nil {
		t.Fatal(err)
	}
	var file string
	for ev, err := range downloads {
		if err != nil {
			t.Fatal(err)
		}
		if ev.State == cdpbrowser.DownloadProgressStateCompleted {
			file = filepath.Join(dir, ev.GUID)
			break
		}
		if ev.State == cdpbrowser.DownloadProgressStateCanceled {
			t.Fatal("the CSV download was cancelled")
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if lines[0] != "time,unix_ms,device,metric,value,min,max,unit" || len(lines)-1 < shown || !strings.Contains(lines[1], ",e2e-boiler,temperature,") {
		t.Errorf("CSV of %d lines starting %q, want a header and the %d points shown", len(lines), lines[:min(2, len(lines))], shown)
	}
}

func TestReconnectsAfterRestartEndToEnd(t *testing.T) {
	d := startDashboard(t)
	list := d.fleet(t)
	sim := list[0].ID
	var metric string
	for m := range list[0].Latest {
		metric = m
	}
	ctx := page(t, d.URL+"/devices/"+sim)
	until(t, ctx, "the live connection", connected)
	chart := fmt.Sprintf(`document.querySelector('figure[data-chart=%q]').chart`, metric)
	n := eval[int](t, ctx, chart+`.series.pts.length`)
	until(t, ctx, "live points", fmt.Sprintf(`%s.series.pts.length > %d`, chart, n+2))
	before := time.Now().UnixMilli()

	d.stop(t)
	until(t, ctx, "the page to say it is disconnected", `document.body.dataset.liveState === 'disconnected' && !document.getElementById('conn-banner').hidden`)
	screenshot(t, ctx, "restart-disconnected.png")
	d.start(t)
	until(t, ctx, "the page to reconnect by itself", connected+` && document.getElementById('conn-banner').hidden`)
	after := time.Now().UnixMilli()
	until(t, ctx, "live points after the restart", fmt.Sprintf(`%s.series.last().t > %d`, chart, after))

	// Every reading the store has from before the stop to after the
	// reconnection is on the chart: the page filled what it missed.
	var hist struct{ Points [][2]float64 }
	d.getJSON(t, fmt.Sprintf("/api/v1/query?device=%s&metric=%s&from=%d&to=%d&step=raw", sim, metric, before-5000, after), &hist)
	if len(hist.Points) == 0 {
		t.Fatal("no readings stored around the restart")
	}
	times, _ := json.Marshal(hist.Points)
	missing := fmt.Sprintf(`(ts => { const have = new Set(%s.series.pts.map(p => p.t)); return ts.filter(([t]) => !have.has(t)).map(([t]) => t); })(%s)`, chart, times)
	deadline := time.Now().Add(20 * time.Second)
	for {
		gone := eval[[]int64](t, ctx, missing)
		if len(gone) == 0 {
			break
		}
		if time.Now().After(deadline) {
			have := eval[[]int64](t, ctx, fmt.Sprintf(`%s.series.pts.map(p => p.t).filter(t => t >= %d && t < %d)`, chart, before-5000, after))
			t.Fatalf("the chart misses %d of the %d readings stored around the restart: %v\nit has %v", len(gone), len(hist.Points), gone, have)
		}
		time.Sleep(100 * time.Millisecond)
	}
	screenshot(t, ctx, "restart-reconnected.png")
}
