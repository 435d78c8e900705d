package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"iotdash/internal/testenv"
)

// TestErrorsKeepTheirCauseToTheLog points iotdash at an InfluxDB that does
// not answer: every route answers with a message fit for its caller, and
// none carries InfluxDB's address or the driver's words; the log has them.
func TestErrorsKeepTheirCauseToTheLog(t *testing.T) {
	t.Parallel()
	dead := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	brokerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	app := launch(t, "-simulate", "0", "-broker", brokerAddr, "-influx-url", "http://"+dead, "-influx-bucket", "iotdash")
	dev := publisher(t, "tcp://"+brokerAddr)
	publish(t, dev, "devices/tank-01/telemetry", false, fmt.Sprintf(`{"ts":%d,"level":1}`, time.Now().UnixMilli()))
	testenv.WaitFor(t, 10*time.Second, "tank-01 known", func() bool { return fleetByID(t, app.URL)["tank-01"].ID != "" })

	leaks := []string{dead, "dial tcp", "connection refused", "http://"}
	for _, path := range []string{
		"/readyz",
		"/api/v1/query?device=tank-01&metric=level&from=-1h&step=1m",
		"/api/v1/query?device=tank-01&metric=level&from=-1h&step=raw&format=csv",
		"/api/v1/devices", "/api/v1/devices/tank-01", "/", "/devices/tank-01", "/healthz",
	} {
		resp, err := http.Get(app.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range leaks {
			if strings.Contains(string(body), l) {
				t.Errorf("GET %s (%d) tells its caller %q:\n%s", path, resp.StatusCode, l, body)
			}
		}
		if path == "/readyz" && (resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "InfluxDB does not answer")) {
			t.Errorf("/readyz = %d %s, want 503 saying InfluxDB does not answer", resp.StatusCode, body)
		}
	}
	testenv.WaitFor(t, 10*time.Second, "the cause in the log", func() bool { return strings.Contains(app.stderr.String(), dead) })
}
