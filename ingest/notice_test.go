package ingest_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"iotdash/devices"
	"iotdash/ingest"
	"iotdash/internal/testenv"
)

// TestBrokerGoneNotice: when Mosquitto dies under a subscribed ingester,
// every page is told the broker cannot be reached; once it is back and
// the ingester has subscribed again, the notice is cleared.
func TestBrokerGoneNotice(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	var mu sync.Mutex
	notice := ""
	in := ingest.New(ingest.Config{Broker: mq.URL, ClientID: "notice-iotdash", Store: &memStore{}, Fleet: devices.NewFleet(nil),
		Notice: func(s string) { mu.Lock(); notice = s; mu.Unlock() }})
	shown := func() string { mu.Lock(); defer mu.Unlock(); return notice }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	testenv.WaitFor(t, 20*time.Second, "the ingester to subscribe", in.Connected)
	if s := shown(); s != "" {
		t.Fatalf("a notice while the broker is up: %q", s)
	}

	mq.Kill()
	testenv.WaitFor(t, 20*time.Second, "a notice that the broker is gone", func() bool {
		return strings.Contains(shown(), "MQTT broker cannot be reached")
	})
	mq.Start(t)
	testenv.WaitFor(t, 30*time.Second, "the ingester to subscribe again", in.Connected)
	testenv.WaitFor(t, 5*time.Second, "the notice cleared", func() bool { return shown() == "" })
}
