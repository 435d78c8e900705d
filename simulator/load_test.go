package simulator

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"iotdash/devices"
	"iotdash/internal/testenv"
)

// A modest load, which any machine holds: every scheduled message arrives,
// spread evenly over the devices, stamped with its send time.
func TestLoadSendsTheScheduledMessages(t *testing.T) {
	broker := testenv.StartMosquitto(t)
	for _, qos := range []byte{0, 1} {
		w := watch(t, broker.URL)
		var progress strings.Builder
		cfg := LoadConfig{Broker: broker.URL, Rate: 1000, Devices: 50, Conns: 3, Duration: 2 * time.Second,
			QoS: qos, Stamp: true, Progress: &progress, ClientPrefix: "load-test-" + string('0'+qos)}
		sum, err := Load(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !sum.Held || sum.Sent < 1980 || sum.Sent > 2003 || sum.Errors != 0 {
			t.Errorf("qos %d: got %v, want 2000 sent and the rate held", qos, sum)
		}
		if lines := strings.Count(progress.String(), "\n"); lines < 1 || !strings.Contains(progress.String(), "sent") {
			t.Errorf("qos %d: progress %q, want a line a second", qos, progress.String())
		}
		// All of them arrive (QoS 0 on loopback loses none in practice).
		ms := w.waitFor(t, 10*time.Second, "every message arrives", func(ms []message) bool { return int64(len(ms)) >= sum.Sent })
		perDevice := map[string]int{}
		var first, last float64
		for _, m := range ms {
			id, leaf := split(m.topic)
			if leaf != "telemetry" || !devices.ValidName(id) {
				t.Fatalf("message on %s", m.topic)
			}
			perDevice[id]++
			var obj map[string]float64
			if err := json.Unmarshal(m.payload, &obj); err != nil || obj["ts"] < 1e12 || len(obj) != 3 {
				t.Fatalf("payload %s: want ts and two metrics (%v)", m.payload, err)
			}
			first, last = minNonZero(first, obj["ts"]), max(last, obj["ts"])
		}
		if len(perDevice) != 50 {
			t.Errorf("qos %d: messages came from %d devices, want 50", qos, len(perDevice))
		}
		for id, n := range perDevice {
			if n < 35 || n > 45 {
				t.Errorf("qos %d: %s sent %d messages, want 40 (2000 over 50 devices)", qos, id, n)
			}
		}
		// By their stamps, the messages went out over the two seconds, not
		// in a burst.
		if span := (last - first) / 1000; span < 1.5 {
			t.Errorf("qos %d: the stamps span %.2fs, want about 2s", qos, span)
		}
	}
}

func TestLoadConfigErrors(t *testing.T) {
	for _, cfg := range []LoadConfig{
		{Broker: "tcp://127.0.0.1:1883"},
		{Broker: "tcp://127.0.0.1:1883", Rate: 10, QoS: 2},
		{Broker: "tcp://127.0.0.1:1883", Rate: 10, Conns: 20},
		{Broker: "tcp://127.0.0.1:1883", Rate: 100, Conns: 20, Devices: 5},
		{Broker: "udp://127.0.0.1:1883", Rate: 10},
	} {
		if _, err := Load(context.Background(), cfg); devices.ErrorKind(err) != devices.EInvalid {
			t.Errorf("Load(%+v): got %v, want an invalid error", cfg, err)
		}
	}
}
