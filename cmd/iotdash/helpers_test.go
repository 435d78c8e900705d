package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var dashboardLine = regexp.MustCompile(`dashboard on (http://\S+)/`)

// adminPassword is the first admin's password in every instance the tests
// start (IOTDASH_ADMIN_PASSWORD). Their URLs carry it (http://admin:…@…),
// so that every request a test makes signs in with HTTP Basic.
const adminPassword = "test-admin-password"

// testEnv is the environment the tests start iotdash in.
func testEnv(name string) string {
	if name == "IOTDASH_ADMIN_PASSWORD" {
		return adminPassword
	}
	return ""
}

// withAdmin returns base with the admin's credentials in it.
func withAdmin(base string) string {
	return strings.Replace(base, "://", "://admin:"+adminPassword+"@", 1)
}

// instance is iotdash running in this test process through run.
type instance struct {
	URL    string
	stdout *testenv.Buffer
	stderr *testenv.Buffer
	stop   func() error
}

// startInProcess runs iotdash with args (plus a free -http port) until the
// test ends, and waits until it is ready.
func startInProcess(t *testing.T, args ...string) *instance {
	t.Helper()
	in := launch(t, args...)
	in.waitReady(t)
	return in
}

// launch runs iotdash with args (plus a free -http port) until the test
// ends, and returns once it serves HTTP, ready or not.
func launch(t *testing.T, args ...string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{stdout: &testenv.Buffer{}, stderr: &testenv.Buffer{}}
	errc := make(chan error, 1)
	args = append([]string{"-http", "127.0.0.1:0", "-data", t.TempDir()}, args...)
	go func() { errc <- run(ctx, args, testEnv, in.stdout, in.stderr) }()
	in.stop = func() error {
		cancel()
		err, hang := testenv.AwaitReturn(errc)
		if hang != nil {
			return hang
		}
		errc <- err // for the next call
		return err
	}
	t.Cleanup(func() {
		if err := in.stop(); err != nil {
			t.Errorf("stopping iotdash: %v", err)
		}
		if t.Failed() {
			t.Logf("iotdash stderr:\n%s", in.stderr.String())
		}
	})
	testenv.WaitFor(t, 30*time.Second, "iotdash to print its address", func() bool {
		select {
		case err := <-errc:
			t.Fatalf("iotdash stopped: %v\n%s", err, in.stderr.String())
		default:
		}
		m := dashboardLine.FindStringSubmatch(in.stdout.String())
		if m != nil {
			in.URL = withAdmin(m[1])
		}
		return m != nil
	})
	return in
}

func (in *instance) waitReady(t testing.TB) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, "/readyz", func() bool {
		resp, err := http.Get(in.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// getJSON fetches path and decodes its JSON into v, returning the status.
func getJSON(t *testing.T, base, path string, v any) int {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, b)
		}
	}
	return resp.StatusCode
}

// queryAnswer is what /api/v1/query returns.
type queryAnswer struct {
	Device string       `json:"device"`
	Metric string       `json:"metric"`
	StepMS int64        `json:"step_ms"`
	Points [][2]float64 `json:"points"`
}

func rawQuery(device, metric string, from, to int64) string {
	return "/api/v1/query?" + url.Values{"device": {device}, "metric": {metric}, "from": {fmt.Sprint(from)}, "to": {fmt.Sprint(to)}, "step": {"raw"}}.Encode()
}

// wsReading is a reading as /ws sends it.
type wsReading struct {
	D string  `json:"d"`
	M string  `json:"m"`
	T int64   `json:"t"`
	V float64 `json:"v"`
}

// liveClient is a browser-like /ws client that collects what it is sent.
type liveClient struct {
	mu       sync.Mutex
	readings []wsReading
	status   map[string]string
	notice   string // the last notice frame's text
	conn     *websocket.Conn
}

func dialLive(t *testing.T, base string, devices ...string) *liveClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, strings.Replace(base, "http://", "ws://", 1)+"/ws", nil)
	if err != nil {
		t.Fatalf("dial /ws: %v", err)
	}
	conn.SetReadLimit(1 << 24)
	if len(devices) == 0 {
		devices = []string{"*"}
	}
	sub, _ := json.Marshal(map[string]any{"subscribe": map[string]any{"devices": devices}})
	if err := conn.Write(ctx, websocket.MessageText, sub); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	lc := &liveClient{conn: conn, status: map[string]string{}}
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			var f struct {
				Readings []wsReading `json:"readings"`
				Status   []struct {
					D string `json:"d"`
					S string `json:"s"`
				} `json:"status"`
				Notice *string `json:"notice"`
			}
			if json.Unmarshal(b, &f) != nil {
				continue
			}
			lc.mu.Lock()
			lc.readings = append(lc.readings, f.Readings...)
			for _, s := range f.Status {
				lc.status[s.D] = s.S
			}
			if f.Notice != nil {
				lc.notice = *f.Notice
			}
			lc.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(websocket.StatusNormalClosure, "") })
	return lc
}

func (lc *liveClient) has(f func(wsReading) bool) bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, r := range lc.readings {
		if f(r) {
			return true
		}
	}
	return false
}

func (lc *liveClient) lastNotice() string {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.notice
}

func (lc *liveClient) devices() map[string]bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	out := map[string]bool{}
	for _, r := range lc.readings {
		out[r.D] = true
	}
	return out
}

// publisher is a device-side MQTT client.
func publisher(t *testing.T, broker string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("test-pub-%d", time.Now().UnixNano())))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connecting to %s: %v", broker, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publish(t *testing.T, c mqtt.Client, topic string, retained bool, payload any) {
	t.Helper()
	tok := c.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// metric returns the value of a Prometheus sample line such as
// `iotdash_rejected_total{reason="topic"}` from /metrics.
func metric(t testing.TB, base, sample string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}
