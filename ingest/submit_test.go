package ingest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"iotdash/devices"
	"iotdash/ingest"
	"iotdash/internal/testenv"
)

// pickyStore refuses, as invalid, any group holding a reading of the metric
// "bad", as a store whose rules differ from the decoder's would.
type pickyStore struct{ memStore }

func (s *pickyStore) Append(ctx context.Context, rs []devices.Reading) error {
	for _, r := range rs {
		if r.Metric == "bad" {
			return devices.Errorf(devices.EInvalid, "the store takes no metric named bad")
		}
	}
	return s.memStore.Append(ctx, rs)
}

// runSubmitted runs an ingester fed by Submit, as the embedded broker feeds
// it, until the test ends.
func runSubmitted(t *testing.T, cfg ingest.Config) *ingest.Ingester {
	t.Helper()
	in := ingest.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return in
}

// TestSubmitAcksOnlyWhenDurable: a message handed to Submit is acknowledged
// only once its readings are stored, however long the store is down.
func TestSubmitAcksOnlyWhenDurable(t *testing.T) {
	st := &memStore{down: true}
	in := runSubmitted(t, ingest.Config{Store: st, Fleet: devices.NewFleet(nil)})
	var acked atomic.Int64
	const n = 50
	base := time.Now().UnixMilli()
	for i := range n {
		if !in.Submit("devices/d1/telemetry", fmt.Appendf(nil, `{"ts":%d,"v":1}`, base+int64(i)), func() { acked.Add(1) }) {
			t.Fatal("Submit refused a message while running")
		}
	}
	testenv.WaitFor(t, 10*time.Second, "the store to be tried twice", func() bool { _, a := st.snapshot(); return a >= 2 })
	if got := acked.Load(); got != 0 {
		t.Fatalf("store down, yet %d messages acknowledged", got)
	}
	st.setDown(false)
	testenv.WaitFor(t, 10*time.Second, "every message acknowledged", func() bool { return acked.Load() == n })
	if rs, _ := st.snapshot(); len(rs) != n {
		t.Errorf("stored %d readings, want %d", len(rs), n)
	}
}

// TestSubmitAfterStop: once the ingester has stopped, Submit takes nothing
// and acknowledges nothing, so the device sends the message again.
func TestSubmitAfterStop(t *testing.T) {
	in := ingest.New(ingest.Config{Store: &memStore{}, Fleet: devices.NewFleet(nil)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	cancel()
	<-done
	if in.Submit("devices/d1/telemetry", []byte(`{"v":1}`), func() { t.Error("acknowledged after stop") }) {
		t.Error("Submit took a message after the ingester stopped")
	}
}

// TestDeadLetters: when the store refuses a group as invalid, the group is
// stored message by message; the one it refuses again goes to the
// dead-letter file and is counted, and every other reading is stored. All
// are acknowledged.
func TestDeadLetters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dead-letters.jsonl")
	dl, err := ingest.OpenDeadLetters(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dl.Close() })
	st := &pickyStore{}
	m := ingest.NewMetrics(nil)
	fleet := devices.NewFleet(nil)
	in := runSubmitted(t, ingest.Config{Store: st, Fleet: fleet, DeadLetters: dl, Metrics: m,
		// One group for all three messages.
		MinGroup: 3, Linger: time.Second})
	var mu sync.Mutex
	var acked []string
	ts := time.Now().UnixMilli()
	bad := fmt.Sprintf(`{"ts":%d,"bad":2}`, ts)
	for _, p := range []struct{ topic, payload string }{
		{"devices/d1/telemetry", fmt.Sprintf(`{"ts":%d,"ok":1}`, ts)},
		{"devices/d2/telemetry", bad},
		{"devices/d3/telemetry", fmt.Sprintf(`{"ts":%d,"ok":3}`, ts)},
	} {
		in.Submit(p.topic, []byte(p.payload), func() { mu.Lock(); acked = append(acked, p.topic); mu.Unlock() })
	}
	testenv.WaitFor(t, 10*time.Second, "three acknowledgements", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) == 3 })
	if want := []string{"devices/d1/telemetry", "devices/d2/telemetry", "devices/d3/telemetry"}; !slices.Equal(acked, want) {
		t.Errorf("acknowledged %v, want %v in order", acked, want)
	}
	rs, _ := st.snapshot()
	var got []string
	for _, r := range rs {
		got = append(got, r.Device)
	}
	if want := []string{"d1", "d3"}; !slices.Equal(got, want) {
		t.Errorf("stored readings of %v, want %v", got, want)
	}
	if _, ok := fleet.Get("d2"); ok {
		t.Error("the refused message marked its device as seen")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var l map[string]string
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("dead-letter line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 1 || lines[0]["topic"] != "devices/d2/telemetry" || lines[0]["payload"] != bad || lines[0]["error"] == "" {
		t.Errorf("dead letters = %v, want the one message from d2 with its error", lines)
	}
	if got := testutil.ToFloat64(m.DeadLetters); got != 1 {
		t.Errorf("iotdash_dead_letters_total = %v, want 1", got)
	}
}

// TestFutureReadingsRefused: a message whose ts is further ahead of the
// server's clock than MaxAhead is refused and counted as "future", so the
// device's latest value is its newest real one.
func TestFutureReadingsRefused(t *testing.T) {
	st := &memStore{}
	fleet := devices.NewFleet(nil)
	m := ingest.NewMetrics(nil)
	in := runSubmitted(t, ingest.Config{Store: st, Fleet: fleet, Metrics: m, MaxAhead: time.Minute})
	now := time.Now()
	var acked atomic.Int64
	ack := func() { acked.Add(1) }
	in.Submit("devices/d1/telemetry", fmt.Appendf(nil, `{"ts":%d,"temperature":99}`, now.Add(time.Hour).UnixMilli()), ack)
	in.Submit("devices/d1/telemetry", fmt.Appendf(nil, `{"ts":%d,"temperature":21}`, now.UnixMilli()), ack)
	in.Submit("devices/d1/telemetry", fmt.Appendf(nil, `{"ts":%d,"humidity":40}`, now.Add(30*time.Second).UnixMilli()), ack)
	testenv.WaitFor(t, 10*time.Second, "three acknowledgements", func() bool { return acked.Load() == 3 })
	if rs, _ := st.snapshot(); len(rs) != 2 {
		t.Errorf("stored %v, want the two readings within a minute of now", rs)
	}
	if d, _ := fleet.Get("d1"); d.Latest["temperature"].V != 21 || d.Latest["humidity"].V != 40 {
		t.Errorf("latest = %v, want temperature 21 and humidity 40", d.Latest)
	}
	if got := testutil.ToFloat64(m.Rejected.WithLabelValues(ingest.ReasonFuture)); got != 1 {
		t.Errorf(`iotdash_rejected_total{reason="future"} = %v, want 1`, got)
	}
}

// TestPublishBeforeCommit: with PublishBeforeCommit, a reading reaches the
// live push while its store is down, before it is durable, and is still
// acknowledged (stored, with Mosquitto) only once the store takes it;
// without it, nothing is published before the commit. Both ways a
// message arrives: Submit (the embedded broker's) and a real Mosquitto.
func TestPublishBeforeCommit(t *testing.T) {
	for _, via := range []string{"Submit", "Mosquitto"} {
		for _, early := range []bool{true, false} {
			t.Run(fmt.Sprint(via, " early=", early), func(t *testing.T) {
				st := &memStore{down: true}
				var mu sync.Mutex
				var published []devices.Reading
				cfg := ingest.Config{Store: st, Fleet: devices.NewFleet(nil), PublishBeforeCommit: early,
					Publish: func(rs []devices.Reading) { mu.Lock(); published = append(published, rs...); mu.Unlock() }}
				count := func() int { mu.Lock(); defer mu.Unlock(); return len(published) }
				var acked atomic.Int64
				base := time.Now().UnixMilli()
				if via == "Submit" {
					in := runSubmitted(t, cfg)
					in.Submit("devices/dev-1/telemetry", fmt.Appendf(nil, `{"ts":%d,"v":1}`, base), func() { acked.Add(1) })
				} else {
					mq := testenv.StartMosquitto(t)
					cfg.Broker, cfg.ClientID = mq.URL, "early"
					in := runSubmitted(t, cfg)
					testenv.WaitFor(t, 20*time.Second, "the ingester to subscribe", in.Connected)
					publishAll(t, mq.URL, 1, base)
				}
				testenv.WaitFor(t, 10*time.Second, "the store to be tried twice", func() bool { _, a := st.snapshot(); return a >= 2 })
				if early {
					testenv.WaitFor(t, 10*time.Second, "the reading published before its commit", func() bool { return count() == 1 })
				} else if n := count(); n != 0 {
					t.Fatalf("%d readings published before their commit", n)
				}
				if acked.Load() != 0 {
					t.Fatal("acknowledged before it was stored")
				}
				st.setDown(false)
				testenv.WaitFor(t, 10*time.Second, "the reading stored", func() bool { rs, _ := st.snapshot(); return len(rs) == 1 })
				if via == "Submit" {
					testenv.WaitFor(t, 10*time.Second, "the message acknowledged", func() bool { return acked.Load() == 1 })
				}
				testenv.WaitFor(t, 10*time.Second, "the reading published", func() bool { return count() >= 1 })
				if n := count(); n != 1 {
					t.Errorf("published %d times, want once", n)
				}
			})
		}
	}
}

// TestFleetLearnsInOrder: the fleet learns of the messages of one commit
// in the order they came, telemetry, status and meta alike, and before
// they are acknowledged: a device that sends a reading and then says it
// goes offline is offline, one that says so and then sends a reading is
// online, and a device whose message is acknowledged finds the fleet
// knowing it.
func TestFleetLearnsInOrder(t *testing.T) {
	fleet := devices.NewFleet(nil)
	// The four messages wait for each other: they are committed together.
	in := runSubmitted(t, ingest.Config{Store: &memStore{}, Fleet: fleet, MinGroup: 4, Linger: time.Minute})
	var acked, unknown atomic.Int64
	ts := time.Now().UnixMilli()
	for _, m := range [][2]string{
		{"devices/a/telemetry", fmt.Sprintf(`{"ts":%d,"v":1}`, ts)},
		{"devices/a/status", "offline"},
		{"devices/b/status", "offline"},
		{"devices/b/telemetry", fmt.Sprintf(`{"ts":%d,"v":2}`, ts)},
	} {
		id, _, _ := ingest.ParseTopic(m[0])
		in.Submit(m[0], []byte(m[1]), func() {
			if _, ok := fleet.Get(id); !ok {
				unknown.Add(1)
			}
			acked.Add(1)
		})
	}
	testenv.WaitFor(t, 10*time.Second, "every message acknowledged", func() bool { return acked.Load() == 4 })
	if n := unknown.Load(); n > 0 {
		t.Errorf("%d messages acknowledged before the fleet knew their device", n)
	}
	for id, want := range map[string]devices.Status{"a": devices.StatusOffline, "b": devices.StatusOnline} {
		if d, _ := fleet.Get(id); d.Status != want || len(d.Latest) != 1 {
			t.Errorf("device %s: %s with %v, want %s with its reading", id, d.Status, d.Latest, want)
		}
	}
}
