package ingest_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"iotdash/devices"
	"iotdash/ingest"
	"iotdash/internal/testenv"
)

// groupStore is a memStore that takes a few milliseconds a commit, as a
// store's fsync does, and records how many readings each commit carried.
type groupStore struct {
	memStore
	groups []int // guarded by memStore.mu
}

func (s *groupStore) Append(ctx context.Context, rs []devices.Reading) error {
	time.Sleep(5 * time.Millisecond)
	s.mu.Lock()
	s.groups = append(s.groups, len(rs))
	s.mu.Unlock()
	return s.memStore.Append(ctx, rs)
}

func (s *groupStore) largestGroup() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Max(append(s.groups, 0))
}

// burst publishes n QoS 1 messages {"ts":base+i,"seq":i} of each device at
// once, one publisher connection per device, and returns once the broker
// has acknowledged them all.
func burst(t *testing.T, broker string, devs []string, n int, base int64) {
	t.Helper()
	var wg sync.WaitGroup
	for _, dev := range devs {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("pub-%s-%d", dev, time.Now().UnixNano())))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		defer c.Disconnect(100)
		wg.Go(func() {
			toks := make([]mqtt.Token, n)
			for i := range n {
				toks[i] = c.Publish("devices/"+dev+"/telemetry", 1, false, fmt.Sprintf(`{"ts":%d,"seq":%d}`, base+int64(i), i))
			}
			for _, tok := range toks {
				if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
					t.Errorf("publish: %v", tok.Error())
					return
				}
			}
		})
	}
	wg.Wait()
}

// checkOnce checks that st holds exactly the n readings of each device
// that burst(devs, n, base) published, each once.
func checkOnce(t *testing.T, st *groupStore, devs []string, n int, base int64) {
	t.Helper()
	rs, _ := st.snapshot()
	seen := map[string]int{}
	for _, r := range rs {
		seen[fmt.Sprintf("%s@%d", r.Device, r.Time)]++
	}
	for _, dev := range devs {
		for i := range n {
			if k := fmt.Sprintf("%s@%d", dev, base+int64(i)); seen[k] != 1 {
				t.Errorf("reading %s stored %d times, want once", k, seen[k])
			}
		}
	}
	if want := len(devs) * n; len(rs) != want {
		t.Errorf("stored %d readings, want %d", len(rs), want)
	}
}

// TestSharedSubscriptionBurst: over four connections sharing the telemetry
// subscription, to a Mosquitto with its defaults, a burst of 2,000 QoS 1
// messages is stored exactly once. Over one connection the same burst
// loses messages at the broker (its session queues at most
// max_queued_messages, 1,000, while the ingester commits); over four,
// each session is handed a quarter of it. Each device's latest value is its
// newest reading, although its messages arrive over different connections
// and so out of order; and the retained meta and status, which a shared
// subscription does not get, still reach the fleet.
func TestSharedSubscriptionBurst(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL).SetClientID("retainer"))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	for topic, payload := range map[string]string{"devices/quiet/meta": `{"name":"Boiler"}`, "devices/quiet/status": "offline"} {
		if tok := pub.Publish(topic, 1, true, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	pub.Disconnect(100)

	st := &groupStore{}
	fleet := devices.NewFleet(nil)
	// Each connection reads in batches, as the binary's do by default.
	_, stop := start(t, ingest.Config{Broker: mq.URL, ClientID: "shared", Connections: 4, ReadPause: ingest.DefaultReadPause, Store: st, Fleet: fleet})
	devs := []string{"d0", "d1", "d2", "d3"}
	const n = 500
	base := time.Now().UnixMilli()
	burst(t, mq.URL, devs, n, base)
	testenv.WaitFor(t, time.Minute, "every reading stored", func() bool { rs, _ := st.snapshot(); return len(rs) >= len(devs)*n })
	stop()
	checkOnce(t, st, devs, n, base)
	// Not a bound to check: Mosquitto 2.0.11 lets more than
	// max_inflight_messages out to a session with a backlog (fixed in
	// 2.0.13, "inflight quota management", #2306).
	t.Logf("the largest commit carried %d messages", st.largestGroup())
	for _, dev := range devs {
		if d, _ := fleet.Get(dev); d.Latest["seq"] != (devices.Value{T: base + n - 1, V: n - 1}) {
			t.Errorf("%s's latest seq = %+v, want the newest reading (ts %d, %d)", dev, d.Latest["seq"], base+n-1, n-1)
		}
	}
	if d, ok := fleet.Get("quiet"); !ok || d.Name() != "Boiler" || d.Status != devices.StatusOffline {
		t.Errorf("fleet has quiet = %+v, %v; want the retained meta (Boiler) and status (offline)", d, ok)
	}
}

// TestConnectionsChange: the same client id run with one connection, then
// four, then one again: after each change every message is stored once, so
// the first connection's session no longer holds the other count's
// subscription (devices/# beside the shared one, or its place in the
// group). Two bursts each time: the first connection's session gets its
// messages in order, so once the second burst's share of it is stored, any
// second copy of the first burst has been too.
func TestConnectionsChange(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	for i, conns := range []int{1, 4, 1} {
		st := &groupStore{}
		_, stop := start(t, ingest.Config{Broker: mq.URL, ClientID: "change", Connections: conns, Store: st, Fleet: devices.NewFleet(nil)})
		devs := []string{fmt.Sprintf("first-%d", i), fmt.Sprintf("second-%d", i)}
		const n = 500
		base := time.Now().UnixMilli()
		burst(t, mq.URL, devs[:1], n, base)
		burst(t, mq.URL, devs[1:], n, base)
		testenv.WaitFor(t, time.Minute, "both bursts stored", func() bool {
			rs, _ := st.snapshot()
			return len(rs) >= 2*n && slices.ContainsFunc(rs, func(r devices.Reading) bool { return r.Device == devs[1] && r.Time == base+n-1 })
		})
		stop()
		t.Logf("connections=%d", conns)
		checkOnce(t, st, devs, n, base)
	}
}

// TestSharedConnectionTakenOver: of four connections, one that the broker
// drops (another client takes its client id over, and acknowledges nothing
// it is sent) is said in the log, reconnects on its own, taking its
// session back, and nothing published around it is lost: the messages the
// intruder got unacknowledged are sent again to the session's next
// connection. (A message may then be stored twice, as after any
// reconnection; the stores take that as one reading.)
func TestSharedConnectionTakenOver(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	st := &groupStore{}
	var log testenv.Buffer
	in, stop := start(t, ingest.Config{Broker: mq.URL, ClientID: "taken", Connections: 4, Store: st, Fleet: devices.NewFleet(nil),
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	intruder := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL).SetClientID("taken-2").SetCleanSession(false).
		SetAutoReconnect(false).SetAutoAckDisabled(true).SetDefaultPublishHandler(func(mqtt.Client, mqtt.Message) {}))
	devs := []string{"d0", "d1"}
	const n = 300
	base := time.Now().UnixMilli()
	done := make(chan struct{})
	go func() { defer close(done); burst(t, mq.URL, devs, n, base) }()
	if tok := intruder.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	testenv.WaitFor(t, 10*time.Second, "the lost connection in the log", func() bool {
		return strings.Contains(log.String(), `msg="broker connection lost"`) && strings.Contains(log.String(), "client_id=taken-2")
	})
	<-done
	testenv.WaitFor(t, 20*time.Second, "every connection up again", in.Connected)
	testenv.WaitFor(t, time.Minute, "every reading stored", func() bool {
		rs, _ := st.snapshot()
		seen := map[string]bool{}
		for _, r := range rs {
			seen[fmt.Sprintf("%s@%d", r.Device, r.Time)] = true
		}
		return len(seen) == len(devs)*n
	})
	stop()
	if in.Connected() {
		t.Error("Connected after Run returned")
	}
}

// TestLargeMessageFromBroker: a message far over ingest.MaxPayload from a
// broker of the user's is not read into memory but skipped on the wire,
// counted as too large, and acknowledged in turn (the session does not
// send it again), while the messages around it are stored.
func TestLargeMessageFromBroker(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	var published atomic.Int64 // the last ts handed to Publish, which comes after a group's acknowledgements are sent
	cfg := ingest.Config{Broker: mq.URL, ClientID: "large", Store: &memStore{}, Fleet: devices.NewFleet(nil), Metrics: ingest.NewMetrics(nil),
		Publish: func(rs []devices.Reading) { published.Store(rs[len(rs)-1].Time) }}
	_, stop := start(t, cfg)
	base := time.Now().UnixMilli()
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL).SetClientID("large-pub"))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	for _, p := range []string{fmt.Sprintf(`{"ts":%d,"seq":0}`, base), `{"pad":"` + strings.Repeat("x", 4*ingest.MaxPayload) + `"}`, fmt.Sprintf(`{"ts":%d,"seq":2}`, base+2)} {
		if tok := pub.Publish("devices/big/telemetry", 1, false, p); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	st := cfg.Store.(*memStore)
	testenv.WaitFor(t, 10*time.Second, "the two small messages stored", func() bool { rs, _ := st.snapshot(); return len(rs) == 2 })
	testenv.WaitFor(t, 10*time.Second, "the last one acknowledged", func() bool { return published.Load() == base+2 })
	stop()
	if got := testutil.ToFloat64(cfg.Metrics.Rejected.WithLabelValues(ingest.ReasonTooLarge)); got != 1 {
		t.Errorf("rejected as too large: %v, want 1", got)
	}

	// The session has nothing left to send again.
	cfg.Store, cfg.Metrics = &memStore{}, ingest.NewMetrics(nil)
	start(t, cfg)
	if tok := pub.Publish("devices/big/telemetry", 1, false, fmt.Sprintf(`{"ts":%d,"seq":3}`, base+3)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	testenv.WaitFor(t, 10*time.Second, "the next message stored", func() bool { rs, _ := cfg.Store.(*memStore).snapshot(); return len(rs) == 1 })
	if got := testutil.ToFloat64(cfg.Metrics.Received); got != 1 {
		t.Errorf("after a restart the ingester received %v messages, want only the new one", got)
	}
}

// TestMalformedFromBroker: a peer on the broker's address that answers
// CONNECT and then sends what is not MQTT (no real broker does: the one
// place this package is tested against a fake) gets its connection closed,
// counted and logged, and is connected to again; nothing crashes, nothing
// is stored.
func TestMalformedFromBroker(t *testing.T) {
	// A remaining length of five bytes, which MQTT does not have.
	url, conns := testenv.FakeBroker(t, []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x7f})
	var log testenv.Buffer
	st := &memStore{}
	cfg := ingest.Config{Broker: url, ClientID: "junk", Store: st, Fleet: devices.NewFleet(nil), Metrics: ingest.NewMetrics(nil),
		Logger: slog.New(slog.NewTextHandler(&log, nil))}
	in := ingest.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	testenv.WaitFor(t, 20*time.Second, "two malformed connections counted", func() bool {
		return testutil.ToFloat64(cfg.Metrics.BrokerProtocolErrors) >= 2
	})
	cancel()
	<-done
	if conns.Load() < 2 {
		t.Errorf("%d connections, want a reconnection after the first", conns.Load())
	}
	if !strings.Contains(log.String(), "malformed") {
		t.Errorf("the log does not say why the connection ended:\n%s", log.String())
	}
	if rs, _ := st.snapshot(); len(rs) != 0 {
		t.Errorf("stored %d readings from junk", len(rs))
	}
}
