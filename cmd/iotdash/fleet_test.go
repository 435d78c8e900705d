package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"iotdash/internal/testenv"
)

// apiDevice is a device as /api/v1/devices gives it.
type apiDevice struct {
	ID       string     `json:"id"`
	Name     string     `json:"name"`
	Status   string     `json:"status"`
	Since    *time.Time `json:"since"`
	LastSeen *time.Time `json:"last_seen"`
	Latest   map[string]struct {
		T int64   `json:"t"`
		V float64 `json:"v"`
	} `json:"latest"`
}

func fleetByID(t *testing.T, base string) map[string]apiDevice {
	t.Helper()
	var list []apiDevice
	if code := getJSON(t, base, "/api/v1/devices", &list); code != http.StatusOK {
		t.Fatalf("/api/v1/devices: status %d", code)
	}
	out := map[string]apiDevice{}
	for _, d := range list {
		out[d.ID] = d
	}
	return out
}

// TestFleetSurvivesRestart: the fleet (meta, status and since when, last
// seen, latest values) outlives a restart of the built binary, with the
// embedded store and with InfluxDB: a device that went offline through its
// Last Will is listed as offline with its last values and has its page,
// whose chart carries the stored value exactly; one that was online and is
// silent after the restart goes stale (-stale-after, since it sent only one
// message and its interval is not known).
func TestFleetSurvivesRestart(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	for _, backend := range []string{"embedded", "influxdb"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			data := t.TempDir()
			brokerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			args := []string{"-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-data", data, "-broker", brokerAddr, "-simulate", "0", "-stale-after", "3s", "-log-level", "error"}
			if backend == "influxdb" {
				ix := testenv.StartInfluxDB(t)
				args = append(args, "-influx-url", ix.URL, "-influx-bucket", ix.Bucket)
			}
			app := startBinary(t, bin, args...)
			dev := publisher(t, "tcp://"+brokerAddr)
			publish(t, dev, "devices/tank-01/meta", true, `{"name":"Tank 1","kind":"tank","units":{"level":"%"}}`)
			publish(t, dev, "devices/tank-01/status", true, "online")
			ts := time.Now().UnixMilli()
			publish(t, dev, "devices/tank-01/telemetry", false, fmt.Sprintf(`{"ts":%d,"level":40240.648123}`, ts))
			publish(t, dev, "devices/tank-01/status", true, "offline") // as its Last Will would
			publish(t, dev, "devices/once-01/telemetry", false, fmt.Sprintf(`{"ts":%d,"temperature":21.5}`, ts))
			testenv.WaitFor(t, 10*time.Second, "tank-01 offline", func() bool { return fleetByID(t, app.URL)["tank-01"].Status == "offline" })
			before := fleetByID(t, app.URL)
			app.stop(t)

			app = startBinary(t, bin, args...)
			after := fleetByID(t, app.URL)
			tank := after["tank-01"]
			if tank.Status != "offline" || tank.Name != "Tank 1" || tank.Since == nil || !tank.Since.Equal(*before["tank-01"].Since) ||
				tank.LastSeen == nil || tank.Latest["level"].V != 40240.648123 || tank.Latest["level"].T != ts {
				t.Errorf("after a restart tank-01 = %+v, want offline since %v as Tank 1 with level 40240.648123 at %d", tank, before["tank-01"].Since, ts)
			}
			if once := after["once-01"]; once.Status != "online" && once.Status != "stale" {
				t.Errorf("after a restart once-01 is %q, want online or stale", once.Status)
			}
			testenv.WaitFor(t, 10*time.Second, "once-01 to go stale", func() bool { return fleetByID(t, app.URL)["once-01"].Status == "stale" })
			if off, stale := metric(t, app.URL, `iotdash_devices{status="offline"}`), metric(t, app.URL, `iotdash_devices{status="stale"}`); off != 1 || stale != 1 {
				t.Errorf("iotdash_devices: offline %v, stale %v; want 1 and 1", off, stale)
			}

			resp, err := http.Get(app.URL + "/devices/tank-01")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Tank 1") {
				t.Errorf("/devices/tank-01 after a restart: %d, want 200 with its name", resp.StatusCode)
			}
			// The chart's embedded history carries the stored value exactly.
			if !strings.Contains(string(body), "40240.648123") {
				t.Errorf("/devices/tank-01 does not carry the level 40240.648123 exactly")
			}
		})
	}
}

// TestFleetFromHistory: a device the store has history of, but the fleet's
// registry does not (data from before it, or a registry lost), is listed
// after a start as unknown, with its last values and when it was last
// seen, and has its page.
func TestFleetFromHistory(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	for _, backend := range []string{"embedded", "influxdb"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			data := t.TempDir()
			brokerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			args := []string{"-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-data", data, "-broker", brokerAddr, "-simulate", "0", "-log-level", "error"}
			if backend == "influxdb" {
				ix := testenv.StartInfluxDB(t)
				args = append(args, "-influx-url", ix.URL, "-influx-bucket", ix.Bucket)
			}
			app := startBinary(t, bin, args...)
			dev := publisher(t, "tcp://"+brokerAddr)
			ts := time.Now().UnixMilli()
			publish(t, dev, "devices/tank-07/telemetry", false, fmt.Sprintf(`{"ts":%d,"level":12.5}`, ts))
			testenv.WaitFor(t, 10*time.Second, "tank-07 known", func() bool { return fleetByID(t, app.URL)["tank-07"].ID != "" })
			app.stop(t)
			if err := os.Remove(filepath.Join(data, "fleet.db")); err != nil {
				t.Fatal(err)
			}

			app = startBinary(t, bin, args...)
			testenv.WaitFor(t, 20*time.Second, "tank-07 listed from history", func() bool { return fleetByID(t, app.URL)["tank-07"].ID != "" })
			tank := fleetByID(t, app.URL)["tank-07"]
			if tank.Status != "unknown" || tank.LastSeen == nil || tank.LastSeen.UnixMilli() != ts || tank.Latest["level"].V != 12.5 {
				t.Errorf("tank-07 from history = %+v, want unknown, last seen at %d with level 12.5", tank, ts)
			}
			if resp, err := http.Get(app.URL + "/devices/tank-07"); err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("/devices/tank-07: %v %v, want 200", resp.StatusCode, err)
			}
		})
	}
}
