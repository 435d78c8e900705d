package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/internal/testenv"
)

// TestHostileFleet runs the built binary with its default limits and does
// what a hostile device could: 500 messages of 2,000 new metric names each
// (from 500 new device ids), then 20,000 new device ids (each saying it is
// online). New series stop at -max-new-series and -max-metrics-per-device, the fleet
// at -max-devices; every refusal is counted in /metrics by reason, a
// device known before the flood keeps being stored, and the process's
// memory stays bounded.
// Then 150 WebSockets from one address: past -max-websockets-per-addr
// they are refused with 429.
func TestHostileFleet(t *testing.T) {
	t.Parallel()
	brokerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p := startBinary(t, buildBinary(t), "-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		"-broker", brokerAddr, "-data", filepath.Join(t.TempDir(), "data"), "-simulate", "0")
	broker := "tcp://" + brokerAddr
	rss0, _ := memory(t, p.cmd.Process.Pid)

	good := publisher(t, broker)
	base := time.Now().Add(-time.Minute).UnixMilli()
	publish(t, good, "devices/good-1/telemetry", false, fmt.Sprintf(`{"ts":%d,"temperature":21,"humidity":40}`, base))

	const (
		floodMessages = 500
		floodMetrics  = 2000
		newDevices    = 20000
	)
	var msgs [][2]string
	for i := range floodMessages {
		var b strings.Builder
		fmt.Fprintf(&b, `{"ts":%d`, base+int64(i))
		for j := range floodMetrics {
			fmt.Fprintf(&b, `,"m%04d-%04d":1`, i, j)
		}
		b.WriteString("}")
		msgs = append(msgs, [2]string{fmt.Sprintf("devices/flood-%03d/telemetry", i), b.String()})
	}
	start := time.Now()
	flood(t, broker, msgs, 4)
	var hello [][2]string
	for i := range newDevices {
		hello = append(hello, [2]string{fmt.Sprintf("devices/new-%05d/status", i), "online"})
	}
	flood(t, broker, hello, 4)
	took := time.Since(start)

	publish(t, good, "devices/good-1/telemetry", false, fmt.Sprintf(`{"ts":%d,"temperature":22,"humidity":41}`, base+1000))
	var ans queryAnswer
	testenv.WaitFor(t, 10*time.Second, "good-1's readings from before and after the flood", func() bool {
		ans = queryAnswer{}
		getJSON(t, p.URL, rawQuery("good-1", "temperature", base, base+2000), &ans)
		return len(ans.Points) == 2
	})

	// The fleet hears of a message just after its PUBACK.
	var m map[string]float64
	testenv.WaitFor(t, 10*time.Second, "the fleet to be full", func() bool {
		m = mustScrape(t, p.URL)
		return shownDevices(m) >= 10000
	})
	reason := func(r string) float64 { return m[fmt.Sprintf(`iotdash_rejected_total{reason=%q}`, r)] }
	stored := m["iotdash_readings_stored_total"] - 4 // good-1's
	tooManyDevices, tooManyMetrics, newSeries := reason("too_many_devices"), reason("too_many_metrics"), reason("new_series_rate")
	// Every reading of the flood is stored or refused for one reason.
	if total := stored + tooManyMetrics + newSeries; total != floodMessages*floodMetrics {
		t.Errorf("stored %v + refused %v (metrics) + %v (new series) = %v, want the %d readings sent",
			stored, tooManyMetrics, newSeries, total, floodMessages*floodMetrics)
	}
	if tooManyMetrics == 0 || newSeries == 0 {
		t.Errorf("refused: %v for too many metrics, %v for new series; want both limits hit", tooManyMetrics, newSeries)
	}
	// The new devices fill the fleet to -max-devices; the rest are refused.
	shown := shownDevices(m)
	var admitted []struct{}
	getJSON(t, p.URL, "/api/v1/devices?q=new-", &admitted)
	if want := float64(newDevices - len(admitted)); shown != 10000 || tooManyDevices != want {
		t.Errorf("the fleet shows %v devices and refused %v, want 10000 and %v", shown, tooManyDevices, want)
	}
	rss, peak := memory(t, p.cmd.Process.Pid)
	const bound = 300 << 20
	if peak > bound {
		t.Errorf("peak RSS %d MiB, want at most %d MiB", peak>>20, bound>>20)
	}
	logged := strings.Count(p.stderr.String(), "rejected message")
	figures(t, "hostile-fleet", "%d messages (%d of %d new metric names, then %d new device ids) in %v: %.0f readings stored, refused %.0f too_many_devices, %.0f too_many_metrics, %.0f new_series_rate; %.0f devices shown; %d log lines about them; RSS %d MiB before, %d MiB after, peak %d MiB (bound %d MiB)",
		len(msgs)+len(hello), floodMessages, floodMetrics, newDevices, took.Round(time.Millisecond), stored, tooManyDevices, tooManyMetrics, newSeries, shown, logged, rss0>>20, rss>>20, peak>>20, bound>>20)

	// WebSockets from one address: a session cookie, so that each upgrade
	// does not check a password.
	plain := strings.Replace(p.URL, "admin:"+adminPassword+"@", "", 1)
	cookie := signIn(t, plain)
	opened, refused := 0, 0
	for range 150 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, resp, err := websocket.Dial(ctx, wsURL(plain), &websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {cookie}}})
		cancel()
		switch {
		case err == nil:
			opened++
			t.Cleanup(func() { c.CloseNow() })
		case resp != nil && resp.StatusCode == http.StatusTooManyRequests:
			refused++
		default:
			t.Fatalf("dial /ws: %v", err)
		}
	}
	if opened != 100 || refused != 50 {
		t.Errorf("150 WebSockets from one address: %d opened, %d refused; want 100 and 50", opened, refused)
	}
	if got := metric(t, p.URL, `iotdash_websocket_refused_total{reason="too_many_per_addr"}`); got != 50 {
		t.Errorf(`iotdash_websocket_refused_total{reason="too_many_per_addr"} = %v, want 50`, got)
	}
}

// shownDevices is how many devices iotdash_devices counts.
func shownDevices(m map[string]float64) float64 {
	n := 0.0
	for _, s := range []string{"online", "stale", "offline", "unknown"} {
		n += m[fmt.Sprintf(`iotdash_devices{status=%q}`, s)]
	}
	return n
}

// flood publishes msgs with QoS 1 over conns connections and returns once
// every one is acknowledged: stored or refused.
func flood(t *testing.T, broker string, msgs [][2]string, conns int) {
	t.Helper()
	var wg sync.WaitGroup
	for c := range conns {
		pub := publisher(t, broker)
		wg.Go(func() {
			var toks []mqtt.Token
			for i := c; i < len(msgs); i += conns {
				toks = append(toks, pub.Publish(msgs[i][0], 1, false, msgs[i][1]))
				if len(toks) == 500 {
					waitAll(t, toks)
					toks = toks[:0]
				}
			}
			waitAll(t, toks)
		})
	}
	wg.Wait()
}

func waitAll(t *testing.T, toks []mqtt.Token) {
	for _, tok := range toks {
		if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
			t.Errorf("publish: %v", tok.Error())
			return
		}
	}
}

// memory returns a process's resident memory now and at its peak, from
// /proc (VmRSS and VmHWM), in bytes.
func memory(t *testing.T, pid int) (rss, peak int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &kb); err == nil {
			rss = kb << 10
		}
		if _, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb); err == nil {
			peak = kb << 10
		}
	}
	return rss, peak
}

// signIn signs in as the admin with the form and returns the session
// cookie, as name=value.
func signIn(t *testing.T, base string) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(base+"/login", map[string][]string{"username": {"admin"}, "password": {adminPassword}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "iotdash_session" {
			return ck.Name + "=" + ck.Value
		}
	}
	t.Fatalf("signing in: %d, no session cookie", resp.StatusCode)
	return ""
}
