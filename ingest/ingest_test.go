package ingest_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/devices"
	"iotdash/ingest"
	"iotdash/internal/testenv"
)

// memStore is an Appender in memory that can be made to fail, standing in
// for a store that is down.
type memStore struct {
	mu       sync.Mutex
	readings []devices.Reading
	down     bool
	attempts int
}

func (s *memStore) Append(_ context.Context, rs []devices.Reading) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	if s.down {
		return devices.Errorf(devices.EUnavailable, "store is down")
	}
	s.readings = append(s.readings, rs...)
	return nil
}

func (s *memStore) snapshot() ([]devices.Reading, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]devices.Reading(nil), s.readings...), s.attempts
}

func (s *memStore) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// start runs an ingester of cfg until the returned stop is called, and
// returns once it is subscribed.
func start(t *testing.T, cfg ingest.Config) (*ingest.Ingester, func()) {
	in := ingest.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	testenv.WaitFor(t, 20*time.Second, "the ingester to subscribe", in.Connected)
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return in, stop
}

func publishAll(t *testing.T, broker string, n int, base int64) {
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	for i := range n {
		tok := c.Publish("devices/dev-1/telemetry", 1, false, fmt.Sprintf(`{"ts":%d,"seq":%d}`, base+int64(i), i))
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
}

// TestInOrder: a device's readings reach the store in the order it sent them.
func TestInOrder(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	st := &memStore{}
	start(t, ingest.Config{Broker: mq.URL, ClientID: "order", Store: st, Fleet: devices.NewFleet(nil)})
	const n = 500
	base := time.Now().UnixMilli()
	publishAll(t, mq.URL, n, base)
	testenv.WaitFor(t, 20*time.Second, "every reading stored", func() bool { rs, _ := st.snapshot(); return len(rs) == n })
	rs, _ := st.snapshot()
	for i, r := range rs {
		if r.Value != float64(i) || r.Time != base+int64(i) {
			t.Fatalf("reading %d = %+v, want seq %d", i, r, i)
		}
	}
}

// TestAckAfterDurable: messages whose readings could not be stored are not
// acknowledged, so the broker delivers them again to the same persistent
// sessions once the ingester is back, and nothing is lost: over one
// connection, and over four that share the subscription (each member's
// unacknowledged messages wait in its own session).
func TestAckAfterDurable(t *testing.T) {
	for _, conns := range []int{1, 4} {
		t.Run(fmt.Sprintf("connections=%d", conns), func(t *testing.T) {
			t.Parallel()
			mq := testenv.StartMosquitto(t)
			st := &memStore{down: true}
			fleet := devices.NewFleet(nil)
			cfg := ingest.Config{Broker: mq.URL, ClientID: "durable", Connections: conns, Store: st, Fleet: fleet}
			_, stop := start(t, cfg)
			const n = 100
			base := time.Now().UnixMilli()
			publishAll(t, mq.URL, n, base)
			testenv.WaitFor(t, 20*time.Second, "the store to be tried", func() bool { _, a := st.snapshot(); return a > 0 })
			stop()
			if rs, _ := st.snapshot(); len(rs) != 0 {
				t.Fatalf("store down, yet %d readings stored", len(rs))
			}

			st.setDown(false)
			start(t, cfg)
			testenv.WaitFor(t, 20*time.Second, "the unacknowledged messages to be delivered again", func() bool { rs, _ := st.snapshot(); return len(rs) >= n })
			rs, _ := st.snapshot()
			seen := map[int64]int{}
			for _, r := range rs {
				seen[r.Time]++
			}
			for i := range n {
				if seen[base+int64(i)] == 0 {
					t.Errorf("reading %d lost", i)
				}
			}
			if d, ok := fleet.Get("dev-1"); !ok || d.Status != devices.StatusOnline || d.Latest["seq"].V != n-1 {
				t.Errorf("fleet has dev-1 = %+v, %v; want online with seq %d", d, ok, n-1)
			}
		})
	}
}
