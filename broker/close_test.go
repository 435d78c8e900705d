package broker_test

import (
	"net"
	"testing"
	"time"

	"iotdash/broker"
	"iotdash/internal/testenv"
)

// TestCloseReturns: Close returns whatever the clients are doing, since
// iotdash's shutdown (SIGTERM, Ctrl-C) waits for it: not when a connection
// never sends its CONNECT, nor when Deliver never acknowledges a QoS 2
// message (an ingester that stops does not acknowledge what it has not
// committed).
func TestCloseReturns(t *testing.T) {
	cases := []struct {
		name string
		// busy leaves a client of b doing something when b closes.
		busy func(t *testing.T, b *broker.Broker, h *held)
	}{
		{"a connection that never sends CONNECT", func(t *testing.T, b *broker.Broker, _ *held) {
			c, err := net.Dial("tcp", b.Addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			// The broker accepts connections in turn: once a later
			// client is in, the silent one has been accepted.
			connect(t, b, "later")
		}},
		{"a QoS 2 message Deliver holds", func(t *testing.T, b *broker.Broker, h *held) {
			dev := connect(t, b, "dev-1")
			dev.Publish("devices/dev-1/telemetry", 2, false, `{"v":1}`)
			testenv.WaitFor(t, 10*time.Second, "the message handed to Deliver", func() bool { return h.count() == 1 })
		}},
		{"a QoS 1 message Deliver holds", func(t *testing.T, b *broker.Broker, h *held) {
			dev := connect(t, b, "dev-1")
			dev.Publish("devices/dev-1/telemetry", 1, false, `{"v":1}`)
			testenv.WaitFor(t, 10*time.Second, "the message handed to Deliver", func() bool { return h.count() == 1 })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &held{}
			// Not start: its cleanup closes the broker once more.
			b, err := broker.Start("127.0.0.1:0", broker.Options{Deliver: h.deliver, Anonymous: true})
			if err != nil {
				t.Fatal(err)
			}
			tc.busy(t, b, h)
			closed := make(chan error, 1)
			go func() { closed <- b.Close() }()
			select {
			case err := <-closed:
				if err != nil {
					t.Errorf("Close: %v", err)
				}
			case <-time.After(testenv.StopWithin):
				t.Fatalf("Close had not returned %v later", testenv.StopWithin)
			}
		})
	}
}
