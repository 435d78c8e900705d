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

// noticed runs an ingester of broker until the test ends, and returns
// the warning it last gave every page.
func noticed(t *testing.T, broker string) (*ingest.Ingester, func() string) {
	var mu sync.Mutex
	notice := ""
	in := ingest.New(ingest.Config{Broker: broker, ClientID: "notice-iotdash", Store: &memStore{}, Fleet: devices.NewFleet(nil),
		Notice: func(s string) { mu.Lock(); notice = s; mu.Unlock() }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return in, func() string { mu.Lock(); defer mu.Unlock(); return notice }
}

// TestBrokerGoneNotice: when Mosquitto dies under a subscribed ingester,
// every page is told the broker cannot be reached; once it is back and
// the ingester has subscribed again, the notice is cleared.
func TestBrokerGoneNotice(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	in, shown := noticed(t, mq.URL)
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

// TestBrokerUnreachableAtStart: an ingester that cannot reach its broker
// from the start says so too, and stops saying so once it has subscribed.
func TestBrokerUnreachableAtStart(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	mq.Kill()
	in, shown := noticed(t, mq.URL)
	testenv.WaitFor(t, 30*time.Second, "a notice that the broker cannot be reached", func() bool {
		return strings.Contains(shown(), "MQTT broker cannot be reached")
	})
	mq.Start(t)
	testenv.WaitFor(t, 30*time.Second, "the ingester to subscribe", in.Connected)
	testenv.WaitFor(t, 5*time.Second, "the notice cleared", func() bool { return shown() == "" })
}
