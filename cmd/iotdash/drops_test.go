package main

import (
	"strings"
	"testing"
	"time"

	"iotdash/internal/testenv"
)

// TestBrokerDropsAreShown: a Mosquitto whose window and queue for a slow
// subscriber are tiny drops part of a burst before iotdash sees it. iotdash
// cannot prevent that loss, but it reads the broker's own count under $SYS
// into /metrics and warns every open page while the drops go on.
func TestBrokerDropsAreShown(t *testing.T) {
	t.Parallel()
	mq := testenv.StartMosquitto(t, "sys_interval 1", "max_inflight_messages 1", "max_queued_messages 10")
	app := startInProcess(t, "-mqtt", mq.URL, "-mqtt-client-id", "drops", "-log-level", "error")
	page := dialLive(t, app.URL)

	res := burst(t, burstConfig{Broker: mq.URL, Messages: 20_000, Conns: 4, Devices: 20, Prefix: "drops"})
	if n := len(res.Accepted()); n != res.Sent {
		t.Fatalf("the broker acknowledged %d of %d messages; want all (its drops come after)", n, res.Sent)
	}
	testenv.WaitFor(t, 30*time.Second, "iotdash_broker_dropped_messages_total to rise", func() bool {
		return metric(t, app.URL, "iotdash_broker_dropped_messages_total") > 0
	})
	testenv.WaitFor(t, 30*time.Second, "the pages' warning", func() bool {
		return strings.Contains(page.lastNotice(), "The MQTT broker has dropped")
	})
	received := metric(t, app.URL, "iotdash_messages_received_total")
	dropped := metric(t, app.URL, "iotdash_broker_dropped_messages_total")
	if received >= float64(res.Sent) {
		t.Errorf("iotdash received %.0f of %d messages: the broker dropped none, so this test shows nothing", received, res.Sent)
	}
	figures(t, "broker-drops", "Mosquitto with max_inflight_messages 1 and max_queued_messages 10, a burst of %d QoS 1 messages: iotdash received %.0f, the broker reported %.0f dropped; the pages said %q",
		res.Sent, received, dropped, page.lastNotice())
}
