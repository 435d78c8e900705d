package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"iotdash/internal/testenv"
)

// TestErrorsKeepTheirCauseToTheLog points iotdash at an InfluxDB that does
// not answer: every route answers with a message fit for its caller, and
// none carries InfluxDB's address, a URL or the driver's words; the log
// has them.
func TestErrorsKeepTheirCauseToTheLog(t *testing.T) {
	t.Parallel()
	dead := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	brokerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	app := launch(t, "-simulate", "0", "-broker", brokerAddr, "-influx-url", "http://"+dead, "-influx-bucket", "iotdash")
	dev := publisher(t, "tcp://"+brokerAddr)
	publish(t, dev, "devices/tank-01/telemetry", false, fmt.Sprintf(`{"ts":%d,"level":1}`, time.Now().UnixMilli()))
	testenv.WaitFor(t, 10*time.Second, "tank-01 known", func() bool { return fleetByID(t, app.URL)["tank-01"].ID != "" })

	leaks := []string{dead, "dial tcp", "connection refused", "http://"}
	paths := []string{
		"/api/v1/query?device=tank-01&metric=level&from=-1h&step=1m",
		"/api/v1/query?device=tank-01&metric=level&from=-1h&step=raw&format=csv",
		"/api/v1/query?device=tank-01&metric=level&from=-1h&step=fit&points=500",
	}
	// And every page and answer routes.go serves to a GET (but the
	// WebSocket, the profiler's 30 s profile and trace and the OpenAPI document,
	// whose examples name webhook URLs and come from no store).
	ids := strings.NewReplacer("{$}", "", "{id}", "tank-01", "{key}", "x", "{kind}", "users", "{what}", "zone", "{action}", "ack")
	for _, r := range table(deps{registry: prometheus.NewRegistry(), pprof: true}, http.NewServeMux()) {
		method, p, ok := strings.Cut(r.pattern, " ")
		if !ok {
			method, p = "GET", r.pattern
		}
		if method != "GET" || p == "/ws" || p == "/debug/pprof/profile" || p == "/debug/pprof/trace" || p == "/api/v1/openapi.json" {
			continue
		}
		p = ids.Replace(p)
		if strings.HasSuffix(p, "/") && p != "/" {
			p += "nothing-here"
		}
		paths = append(paths, p)
	}
	for _, path := range paths {
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
