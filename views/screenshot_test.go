package views

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"iotdash/boards"
	"iotdash/devices"
	"iotdash/internal/testenv"
	"iotdash/push"
	"iotdash/simulator"
	"iotdash/store/sqlite"
)

// screenshotScenario is the README's fleet: 49 simulated devices of the
// five kinds, three of which leave their limits soon after the start and
// three drop off (two say so, one's connection is cut: stale until the
// broker gives up on it).
const screenshotScenario = `
name: README screenshot
interval: 2s
devices:
  - {kind: thermostat, count: 10}
  - {kind: power-meter, count: 10}
  - {kind: air-quality, count: 10}
  - {kind: vibration, count: 10}
  - {kind: tank, count: 9}
incidents:
  - {at: 10s, device: thermostat-03, do: disconnect}
  - {at: 10s, device: tank-02, do: disconnect}
  - {at: 10s, device: vibration-04, do: offline}
  - {at: 5s, device: thermostat-07, do: high, metric: temperature}
  - {at: 5s, device: air-quality-05, do: high, metric: co2}
  - {at: 5s, device: tank-06, do: low}
`

// TestReadmeScreenshot renders the overview of 50 devices (49 simulated
// by the simulator against the built binary, some of them offline or out
// of range, and one that sent a single message and went stale) in
// Chromium, as cards and as a table grouped by location, and writes the
// README's screenshots into the directory IOTDASH_SCREENSHOT names
// (skipped without it):
//
//	IOTDASH_SCREENSHOT=$PWD/docs go test -run TestReadmeScreenshot ./views
func TestReadmeScreenshot(t *testing.T) {
	dir := os.Getenv("IOTDASH_SCREENSHOT")
	if dir == "" {
		t.Skip("set IOTDASH_SCREENSHOT to a directory to write the README's screenshots into")
	}
	d := startDashboard(t, "-simulate", "0", "-stale-after", "10s")
	sc, err := simulator.ParseScenario([]byte(screenshotScenario))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- simulator.Run(ctx, simulator.Config{Broker: d.Broker, Scenario: sc, Seed: 19}) }()
	t.Cleanup(func() { cancel(); <-done })
	once := newDevice(t, d.Broker, "once-01", `{"name":"Once 01","kind":"counter","location":"Yard","units":{"count":""}}`)
	once.publish("telemetry", false, `{"count":1}`)

	started := time.Now()
	testenv.WaitFor(t, 60*time.Second, "devices offline and stale", func() bool {
		var list []apiDevice
		d.getJSON(t, "/api/v1/devices", &list)
		n := map[string]int{}
		for _, dev := range list {
			n[dev.Status]++
		}
		return len(list) == 50 && n["offline"] >= 2 && n["stale"] >= 1
	})
	// A few minutes of history, for sparklines worth the picture.
	time.Sleep(time.Until(started.Add(3 * time.Minute)))

	tab := page(t, d.URL)
	until(t, tab, "the live connection", connected)
	settle(t, tab, "50 devices, some offline, stale and out of range", `document.querySelectorAll('[data-testid="device-card"]').length === 50 &&
		document.querySelectorAll('[data-testid="device-card"][data-status="offline"]').length >= 2 &&
		document.querySelectorAll('[data-testid="device-card"][data-status="stale"]').length >= 1 &&
		document.querySelectorAll('[data-testid="device-card"][data-out]:not([data-status="offline"])').length >= 2`)
	for _, shot := range []struct{ name, path string }{
		{"overview-50.png", "/"},
		{"overview-50-table.png", "/?view=table&group=location"},
	} {
		if err := chromedp.Do(tab, chromedp.Navigate(d.URL+shot.path)); err != nil {
			t.Fatal(err)
		}
		until(t, tab, "the live connection", connected)
		time.Sleep(3 * time.Second) // let the sparklines draw (a picture, not an assertion)
		img, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, shot.name), img, 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("wrote %s (%d bytes)\n", filepath.Join(dir, shot.name), len(img))
	}
}

// shoot opens path of the pages mux serves (with the static files and a
// hub for /ws) in Chromium, and writes the screenshot take makes of it,
// once it is live and drawn, to the file out.
func shoot(t *testing.T, mux *http.ServeMux, path string, take chromedp.Action[[]byte], out string) {
	t.Helper()
	mux.Handle("GET /static/", http.StripPrefix("/static/", Static()))
	hub := push.NewHub(push.Options{})
	defer hub.Close()
	mux.Handle("GET /ws", hub)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+path)); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the live connection", connected)
	until(t, ctx, "every chart drawn", `[...document.querySelectorAll('figure canvas')].every(c => c.drawing?.layout != null)`)
	time.Sleep(500 * time.Millisecond) // let the frame with every sparkline land (a picture, not an assertion)
	img, err := chromedp.Run(ctx, take)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, img, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReadmeBoardScreenshot renders a board of every panel type over 12
// devices with 16 minutes of history in Chromium, and writes the
// screenshot the README's Boards section shows to the file
// IOTDASH_BOARD_SCREENSHOT names (skipped without it):
//
//	IOTDASH_BOARD_SCREENSHOT=$PWD/docs/board.png go test -run TestReadmeBoardScreenshot ./views
func TestReadmeBoardScreenshot(t *testing.T) {
	out := os.Getenv("IOTDASH_BOARD_SCREENSHOT")
	if out == "" {
		t.Skip("set IOTDASH_BOARD_SCREENSHOT to a .png path to write the README's screenshot of a board")
	}
	f, st := historyFleet(t, 12, time.Now())
	docs, err := sqlite.OpenDocs(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docs.Close() })
	bs := boards.New(docs, boards.Options{})
	one := func(id, metric string) []boards.Series {
		return []boards.Series{{Selector: devices.Selector{Device: id}, Metric: metric}}
	}
	b, err := bs.Create(context.Background(), boards.Board{Title: "Boiler room", Panels: []boards.Panel{
		{Title: "Temperatures", Type: boards.TimeSeries, W: 8, Series: append(append(one("device-000", "temperature"), one("device-001", "temperature")...), one("device-002", "temperature")...),
			Thresholds: []boards.Threshold{{Value: 27, Level: "warn"}}},
		{Title: "Pressure", Type: boards.Stat, W: 4, Series: one("device-001", "pressure"), Decimals: ptr(1),
			Thresholds: []boards.Threshold{{Value: 0, Level: "ok"}, {Value: 1030, Level: "warn"}}},
		{Title: "Humidity", Type: boards.Gauge, W: 4, Series: one("device-000", "humidity"), Unit: "% RH"},
		{Title: "Room 1", Type: boards.Table, W: 8, Series: []boards.Series{{Selector: devices.Selector{Location: "Room 1"}, Metric: "temperature"}, {Selector: devices.Selector{Location: "Room 1"}, Metric: "humidity"}}},
	}}, "otto")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /boards/{id}", BoardPages{Boards: bs, Fleet: f, Options: Options{History: st}}.Page())
	shoot(t, mux, "/boards/"+b.ID, chromedp.FullScreenshot(100), out) // 100: PNG
}
