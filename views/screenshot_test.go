package views

import (
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"iotdash/devices"
	"iotdash/push"
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
	mux.Handle("GET /static/", http.StripPrefix("/static/", Static()))
	hub := push.NewHub(push.Options{})
	defer hub.Close()
	mux.Handle("GET /ws", hub)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the live connection", connected)
	time.Sleep(500 * time.Millisecond) // let the frame with every sparkline land (a picture, not an assertion)
	img, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, img, 0o644); err != nil {
		t.Fatal(err)
	}
}
