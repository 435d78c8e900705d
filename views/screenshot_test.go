package views

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"iotdash/boards"
	"iotdash/devices"
	"iotdash/push"
	"iotdash/store/sqlite"
)

// TestReadmeScreenshot renders the overview of 50 devices, a few offline,
// stale or out of range, in Chromium, and writes the screenshot the README
// shows to the file IOTDASH_SCREENSHOT names (skipped without it):
//
//	IOTDASH_SCREENSHOT=$PWD/docs/overview-50.jpg go test -run TestReadmeScreenshot ./views
func TestReadmeScreenshot(t *testing.T) {
	out := os.Getenv("IOTDASH_SCREENSHOT")
	if out == "" {
		t.Skip("set IOTDASH_SCREENSHOT to a .jpg path to write the README's screenshot")
	}
	f, st := historyFleet(t, 50, time.Now())
	for _, id := range []string{"device-007", "device-023"} {
		f.SetPresence(id, devices.StatusOffline)
	}
	f.Seen("device-031", []devices.Reading{{Device: "device-031", Metric: "temperature", Time: time.Now().UnixMilli(), Value: 34.2}})
	f.Seen("device-042", []devices.Reading{{Device: "device-042", Metric: "humidity", Time: time.Now().UnixMilli(), Value: 91.5}})
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", OverviewWithHistory(f, Options{History: st}))
	shoot(t, mux, "/", chromedp.CaptureScreenshot(), out)
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
