package main

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"iotdash/internal/testenv"
)

// TestResilienceBrokerRestart restarts Mosquitto (same port, same
// persistence file) under a QoS 1 load: /readyz reports the broker gone,
// iotdash reconnects and resubscribes on its own, the readings flow again to
// a browser's WebSocket that was opened before the restart and never
// reconnects (the WebSocket is to iotdash, which stays up), and every
// message the broker accepted is stored exactly once. The time iotdash took
// is logged, not asserted.
func TestResilienceBrokerRestart(t *testing.T) {
	t.Parallel()
	const rate = 500
	mq := testenv.StartMosquitto(t, keepQueued)
	app := startInProcess(t, "-mqtt", mq.URL, "-mqtt-client-id", "restart-iotdash", "-log-level", "error")
	live := watch(t, app.URL, true, "*")
	l := startLoad(t, loadConfig{Broker: mq.URL, Rate: rate, Prefix: "restart"})
	testenv.WaitFor(t, time.Minute, "live readings before the restart", func() bool { return live.received() > 0 })

	mq.Stop()
	stopped := time.Now()
	var notReady string
	testenv.WaitFor(t, 30*time.Second, "/readyz to report the broker gone", func() bool {
		code, body := readiness(app.URL)
		if code == http.StatusServiceUnavailable && strings.Contains(body, "broker") {
			notReady = body
			return true
		}
		return false
	})
	mq.Start(t)
	up := time.Now()
	testenv.WaitFor(t, time.Minute, "/readyz once the broker is back", func() bool {
		code, _ := readiness(app.URL)
		return code == http.StatusOK
	})
	back := time.Now()
	testenv.WaitFor(t, time.Minute, "live readings sent after the restart, on the same WebSocket", func() bool {
		for _, times := range live.series() {
			if slices.Max(times) >= up.UnixMilli() {
				return true
			}
		}
		return false
	})
	resumed := time.Since(up)

	_, acked := l.counts()
	l.waitAcked(t, acked+rate)
	res := l.Stop(t)
	res.waitStored(t, time.Minute, func() series { return res.historySeries(t, app.URL) })
	tl := res.check(t, res.historySeries(t, app.URL))

	// Every accepted reading also reached the browser, which never
	// reconnected: its connection is still open.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := live.conn.Ping(ctx); err != nil {
		t.Errorf("the WebSocket opened before the restart is closed: %v", err)
	}
	testenv.WaitFor(t, 30*time.Second, "every accepted reading on the WebSocket", func() bool {
		wsTally, _ := res.compare(live.series())
		return wsTally.Missing == 0 || live.gaps() > 0
	})
	wsTally, _ := res.compare(live.series())
	if wsTally.Missing > 0 || live.gaps() > 0 {
		t.Errorf("the WebSocket missed %d accepted readings, %d gaps", wsTally.Missing, live.gaps())
	}
	figures(t, "broker-restart", "Mosquitto restarted under %d msg/s: %v; /readyz while it was down: %s; resubscribed %v after the broker was back (%v after it stopped), live readings resumed on the same WebSocket %v after; that WebSocket received %d readings, every accepted one (%d of them more than once, after redelivery)",
		rate, tl, notReady, back.Sub(up).Round(10*time.Millisecond), back.Sub(stopped).Round(10*time.Millisecond), resumed.Round(10*time.Millisecond), live.received(), wsTally.Duplicates)
}
