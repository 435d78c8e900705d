package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"iotdash/internal/testenv"
)

// apiEvent is an event as /api/v1/events gives it.
type apiEvent struct {
	Device string     `json:"device"`
	Kind   string     `json:"kind"`
	Status string     `json:"status"`
	Metric string     `json:"metric"`
	From   time.Time  `json:"from"`
	To     *time.Time `json:"to"`
	Peak   *float64   `json:"peak"`
}

func events(t *testing.T, base, query string) []apiEvent {
	t.Helper()
	var es []apiEvent
	if code := getJSON(t, base, "/api/v1/events?"+query, &es); code != http.StatusOK {
		t.Fatalf("/api/v1/events?%s: status %d", query, code)
	}
	return es
}

// TestWhatHappenedSurvivesRestart: the built binary records a device's
// presence changes and its metric's time outside its declared limits, from
// when to when; they outlive a restart, an out-of-range episode open at the
// restart is ended by the next run's first reading in range, and the event
// log page, its CSV and the device page's availability strip show them.
func TestWhatHappenedSurvivesRestart(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	data := t.TempDir()
	brokerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	args := []string{"-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-data", data, "-broker", brokerAddr, "-simulate", "0", "-log-level", "error"}
	app := startBinary(t, bin, args...)
	dev := publisher(t, "tcp://"+brokerAddr)
	publish(t, dev, "devices/boiler-1/meta", true, `{"name":"Boiler 1","units":{"temperature":"°C"},"limits":{"temperature":[5,30]}}`)
	publish(t, dev, "devices/boiler-1/status", true, "online")
	ts := time.Now().UnixMilli() - 10_000 // every reading in the past, also after the restart
	reading := func(dt int64, v float64) {
		publish(t, dev, "devices/boiler-1/telemetry", false, fmt.Sprintf(`{"ts":%d,"temperature":%v}`, ts+dt, v))
	}
	reading(0, 21)
	reading(1000, 31.5) // out of range …
	reading(2000, 35.25)
	reading(3000, 22) // … for 2 s, at worst 35.25
	reading(4000, 40) // out again, still at the restart
	publish(t, dev, "devices/boiler-1/status", true, "offline")
	testenv.WaitFor(t, 10*time.Second, "the offline episode recorded", func() bool {
		es := events(t, app.URL, "device=boiler-1&kind=presence")
		return len(es) == 2 && es[0].Status == "offline"
	})
	app.stop(t)

	app = startBinary(t, bin, args...)
	publish(t, dev, "devices/boiler-1/telemetry", false, fmt.Sprintf(`{"ts":%d,"temperature":20}`, ts+5000))
	testenv.WaitFor(t, 10*time.Second, "the second range episode ended", func() bool {
		es := events(t, app.URL, "kind=range")
		return len(es) == 2 && es[0].To != nil
	})
	ranges := events(t, app.URL, "kind=range")
	first := ranges[1]
	if first.Metric != "temperature" || first.From.UnixMilli() != ts+1000 || first.To == nil || first.To.UnixMilli() != ts+3000 || first.Peak == nil || *first.Peak != 35.25 {
		t.Errorf("first range episode = %+v, want temperature from %d to %d at worst 35.25", first, ts+1000, ts+3000)
	}
	if second := ranges[0]; second.From.UnixMilli() != ts+4000 || second.To.UnixMilli() != ts+5000 {
		t.Errorf("second range episode = %+v, want from %d to %d, across the restart", second, ts+4000, ts+5000)
	}
	presence := events(t, app.URL, "kind=presence")
	if len(presence) != 3 || presence[0].Status != "online" || presence[1].Status != "offline" || presence[1].To == nil || presence[2].Status != "online" {
		t.Errorf("presence episodes, newest first = %+v, want online, offline (ended), online", presence)
	}

	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(app.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	page := get("/events?device=boiler-1&kind=range")
	if n := strings.Count(page, `data-testid="event"`); n != 2 || !strings.Contains(page, "35.25 °C (expected 5–30 °C)") {
		t.Errorf("/events lists %d range episodes, want 2 with the worst 35.25 °C of 5–30 °C", n)
	}
	csv := get("/api/v1/events?device=boiler-1&format=csv&tz=UTC")
	if lines := strings.Split(strings.TrimSpace(csv), "\n"); len(lines) != 6 || !strings.HasPrefix(lines[0], "from,to,duration_s,device,kind,what") {
		t.Errorf("CSV:\n%s\nwant a header and 5 events", csv)
	}
	if m := get("/metrics"); !strings.Contains(m, "\niotdash_events_dropped_total 0\n") {
		t.Errorf("/metrics has no iotdash_events_dropped_total of 0")
	}
	device := get("/devices/boiler-1?range=1h")
	if !strings.Contains(device, `data-testid="strip"`) || !strings.Contains(device, `class="seg-offline"`) || !strings.Contains(device, "Offline ") {
		t.Errorf("/devices/boiler-1 has no availability strip with its offline span")
	}

	// The device page's raw download, a column per metric.
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(device))
	if err != nil {
		t.Fatal(err)
	}
	href, _ := doc.Find(`[data-testid="downloads"] a`).Last().Attr("href")
	wide := get(href)
	if lines := strings.Split(strings.TrimSpace(wide), "\n"); lines[0] != "time,unix_ms,temperature" || len(lines) != 7 || !strings.HasSuffix(lines[3], ",35.25") {
		t.Errorf("%s:\n%s\nwant a column of temperature, its 6 readings exactly", href, wide)
	}
}
