package simulator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/devices"
	"iotdash/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testLogger logs to the test's output, shown when it fails or with -v.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// message is one message a watcher received.
type message struct {
	topic    string
	payload  []byte
	retained bool
}

// watcher subscribes to devices/# and keeps every message.
type watcher struct {
	mu   sync.Mutex
	msgs []message
}

func watch(t *testing.T, broker string) *watcher {
	t.Helper()
	w := &watcher{}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("watcher-%d", time.Now().UnixNano())).
		SetOrderMatters(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher connect: %v", tok.Error())
	}
	tok := c.Subscribe("devices/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		w.mu.Lock()
		w.msgs = append(w.msgs, message{m.Topic(), m.Payload(), m.Retained()})
		w.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return w
}

// messages returns what has arrived so far.
func (w *watcher) messages() []message {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]message(nil), w.msgs...)
}

// waitFor polls until ok holds for the messages so far, or fails after within.
func (w *watcher) waitFor(t *testing.T, within time.Duration, what string, ok func([]message) bool) []message {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ms := w.messages()
		if ok(ms) {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s; got %d messages", within, what, len(ms))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func split(topic string) (id, leaf string) {
	parts := strings.Split(topic, "/")
	if len(parts) != 3 || parts[0] != "devices" {
		return "", ""
	}
	return parts[1], parts[2]
}

// telemetry decodes the telemetry of device id, in order of arrival.
func telemetry(t *testing.T, ms []message, id string) []map[string]float64 {
	t.Helper()
	var out []map[string]float64
	for _, m := range ms {
		if d, leaf := split(m.topic); d == id && leaf == "telemetry" {
			var obj map[string]float64
			if err := json.Unmarshal(m.payload, &obj); err != nil {
				t.Fatalf("telemetry of %s %s is not a flat object of numbers: %v", id, m.payload, err)
			}
			out = append(out, obj)
		}
	}
	return out
}

// lastStatus returns the last status payload of device id, "" if none.
func lastStatus(ms []message, id string) string {
	s := ""
	for _, m := range ms {
		if d, leaf := split(m.topic); d == id && leaf == "status" {
			s = string(m.payload)
		}
	}
	return s
}

// start runs a Sim in the background; the returned func stops it and
// returns Run's error.
func start(t *testing.T, s *Sim) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = fmt.Errorf("Run did not return 30s after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestFleetPublishesMetaStatusAndTelemetry(t *testing.T) {
	broker := testenv.StartMosquitto(t)
	w := watch(t, broker.URL)
	const n = 12
	const interval = 100 * time.Millisecond
	s, err := New(Config{Broker: broker.URL, Devices: n, Interval: interval, Seed: 7, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ids := s.Devices()
	if len(ids) != n {
		t.Fatalf("got %d devices, want %d", len(ids), n)
	}
	for _, want := range []string{"thermostat-01", "power-meter-02", "air-quality-01", "vibration-02", "tank-02", "thermostat-03"} {
		if !containsString(ids, want) {
			t.Errorf("devices %v lack %s", ids, want)
		}
	}
	stop := start(t, s)

	// Every device says who it is, that it is online, and sends telemetry.
	ms := w.waitFor(t, 20*time.Second, "every device sends 10 telemetry messages", func(ms []message) bool {
		for _, id := range ids {
			if len(telemetry(t, ms, id)) < 10 {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		var meta []byte
		for _, m := range ms {
			if d, leaf := split(m.topic); d == id && leaf == "meta" {
				meta = m.payload
			}
		}
		md, err := devices.ParseMeta(meta)
		if err != nil {
			t.Fatalf("meta of %s: %v (%s)", id, err, meta)
		}
		k, ok := KindNamed(md.Kind)
		if !ok || !strings.HasPrefix(id, k.Name+"-") {
			t.Errorf("meta of %s names kind %q", id, md.Kind)
			continue
		}
		if got := lastStatus(ms, id); got != "online" {
			t.Errorf("status of %s: got %q, want online", id, got)
		}
		for _, obj := range telemetry(t, ms, id) {
			if obj["ts"] < 1e12 {
				t.Fatalf("telemetry of %s: ts %v is not Unix ms", id, obj["ts"])
			}
			for metric := range obj {
				if metric != "ts" && md.Units[metric] == "" {
					t.Fatalf("telemetry of %s has metric %q with no unit in its meta", id, metric)
				}
			}
			if len(obj) < 2 {
				t.Fatalf("telemetry of %s carries no metric: %v", id, obj)
			}
		}
	}

	// The fleet sends at its declared rate, measured by the readings' own
	// timestamps: n devices at a mean interval of 100ms make about 120
	// messages a second in all. The bounds are wide: this checks the pacing
	// logic, not the machine.
	var count int
	var first, last float64
	for _, id := range ids {
		tel := telemetry(t, ms, id)
		count += len(tel) - 1
		first = minNonZero(first, tel[0]["ts"])
		last = max(last, tel[len(tel)-1]["ts"])
	}
	span := (last - first) / 1000
	rate := float64(count) / span
	want := float64(n) / interval.Seconds()
	if rate < want/2 || rate > want*1.5 {
		t.Errorf("got %.0f messages/s by their timestamps, want about %.0f", rate, want)
	}

	// Meta and status are retained: a client arriving late gets them.
	late := watch(t, broker.URL)
	late.waitFor(t, 10*time.Second, "a late subscriber gets every retained meta and status", func(ms []message) bool {
		got := 0
		for _, m := range ms {
			if _, leaf := split(m.topic); m.retained && (leaf == "meta" || leaf == "status") {
				got++
			}
		}
		return got == 2*n
	})

	// Stopping takes every device offline cleanly.
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	w.waitFor(t, 10*time.Second, "every device says offline", func(ms []message) bool {
		for _, id := range ids {
			if lastStatus(ms, id) != "offline" {
				return false
			}
		}
		return true
	})
}

func minNonZero(a, b float64) float64 {
	if a == 0 || b < a {
		return b
	}
	return a
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestLastWillFiresWhenTheConnectionIsCut(t *testing.T) {
	broker := testenv.StartMosquitto(t)
	w := watch(t, broker.URL)
	s, err := New(Config{Broker: broker.URL, Devices: 3, Interval: 200 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	start(t, s)
	w.waitFor(t, 10*time.Second, "air-quality-01 online", func(ms []message) bool { return lastStatus(ms, "air-quality-01") == "online" })

	if err := s.Cut("air-quality-01"); err != nil {
		t.Fatal(err)
	}
	// The device publishes no offline of its own when cut: this one is the
	// broker's, its Last Will. Then it comes back.
	w.waitFor(t, 10*time.Second, "the Last Will says air-quality-01 is offline", func(ms []message) bool {
		return lastStatus(ms, "air-quality-01") == "offline"
	})
	w.waitFor(t, 10*time.Second, "air-quality-01 back online", func(ms []message) bool {
		return lastStatus(ms, "air-quality-01") == "online"
	})
	if lastStatus(w.messages(), "thermostat-01") != "online" {
		t.Errorf("thermostat-01 is not online; only the cut device should have gone")
	}
	if err := s.Cut("no-such-device"); devices.ErrorKind(err) != devices.ENotFound {
		t.Errorf("Cut of an unknown device: got %v, want a not_found error", err)
	}
}

func TestRunFailsWithoutABroker(t *testing.T) {
	url := fmt.Sprintf("tcp://127.0.0.1:%d", testenv.FreePort(t))
	err := Run(context.Background(), Config{Broker: url, Devices: 3})
	if devices.ErrorKind(err) != devices.EUnavailable {
		t.Errorf("got %v, want an unavailable error", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Broker: "http://127.0.0.1:1883", Devices: 1},
		{Broker: "tcp://127.0.0.1", Devices: 1},
		{Broker: "tcp://127.0.0.1:1883"},
		{Broker: "tcp://127.0.0.1:1883", Devices: 1, Churn: 2},
	} {
		if _, err := New(cfg); devices.ErrorKind(err) != devices.EInvalid {
			t.Errorf("New(%+v): got %v, want an invalid error", cfg, err)
		}
	}
}

// With churn 1 (a drop a minute on average) on a clock 60 times faster than
// real time, every device drops off and comes back within a few seconds.
func TestChurnDropsDevicesAndBringsThemBack(t *testing.T) {
	broker := testenv.StartMosquitto(t)
	w := watch(t, broker.URL)
	clock := NewFastClock(time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC), 60)
	s, err := New(Config{Broker: broker.URL, Devices: 4, Seed: 11, Churn: 1, Clock: clock, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	start(t, s)
	w.waitFor(t, 25*time.Second, "every device online, offline, and online again", func(ms []message) bool {
		for _, id := range s.Devices() {
			var seq []string
			for _, m := range ms {
				if d, leaf := split(m.topic); d == id && leaf == "status" {
					if len(seq) == 0 || seq[len(seq)-1] != string(m.payload) {
						seq = append(seq, string(m.payload))
					}
				}
			}
			if len(seq) < 3 {
				return false
			}
		}
		return true
	})
}

// Devices that lose the broker keep trying, and announce themselves again
// when it is back.
func TestDevicesComeBackAfterTheBrokerRestarts(t *testing.T) {
	broker := testenv.StartMosquitto(t)
	s, err := New(Config{Broker: broker.URL, Devices: 5, Interval: 100 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	start(t, s)
	w := watch(t, broker.URL)
	w.waitFor(t, 10*time.Second, "telemetry from every device", func(ms []message) bool {
		for _, id := range s.Devices() {
			if len(telemetry(t, ms, id)) == 0 {
				return false
			}
		}
		return true
	})
	broker.Stop()
	broker.Start(t)
	w = watch(t, broker.URL)
	w.waitFor(t, 15*time.Second, "every device online and sending again", func(ms []message) bool {
		for _, id := range s.Devices() {
			if len(telemetry(t, ms, id)) == 0 || lastStatus(ms, id) != "online" {
				return false
			}
		}
		return true
	})
}
