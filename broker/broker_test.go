package broker_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"iotdash/broker"
	"iotdash/internal/testenv"
)

// held is a Deliver that keeps every message and its ack until the test
// releases them, as an ingester does until its commit.
type held struct {
	mu     sync.Mutex
	topics []string
	acks   []func()
}

func (h *held) deliver(topic string, _ []byte, ack func()) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.topics = append(h.topics, topic)
	h.acks = append(h.acks, ack)
	return true
}

func (h *held) count() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.acks) }

func (h *held) release() {
	h.mu.Lock()
	acks := h.acks
	h.acks = nil
	h.mu.Unlock()
	for _, a := range acks {
		a()
	}
}

func connect(t *testing.T, b *broker.Broker, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID(id))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// start starts a broker that lets anonymous clients in, as iotdash's
// does on loopback.
func start(t *testing.T, d broker.Deliver) *broker.Broker {
	t.Helper()
	return startWith(t, "127.0.0.1:0", broker.Options{Deliver: d, Anonymous: true})
}

func startWith(t *testing.T, addr string, opts broker.Options) *broker.Broker {
	t.Helper()
	b, err := broker.Start(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestPubackWaitsForDeliver: a device's QoS 1 message is handed to Deliver,
// and the device gets its PUBACK, and other subscribers the message, only
// when Deliver acknowledges it. Topics outside the prefix go through as
// usual.
func TestPubackWaitsForDeliver(t *testing.T) {
	h := &held{}
	b := start(t, h.deliver)
	got := make(chan string, 100)
	sub := connect(t, b, "watcher")
	if tok := sub.Subscribe("#", 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() + " " + string(m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	dev := connect(t, b, "dev-1")

	var toks []paho.Token
	for i := range 10 {
		toks = append(toks, dev.Publish("devices/dev-1/telemetry", 1, false, fmt.Sprintf(`{"seq":%d}`, i)))
	}
	testenv.WaitFor(t, 10*time.Second, "ten messages handed to Deliver", func() bool { return h.count() == 10 })
	for i, tok := range toks {
		if tok.WaitTimeout(200 * time.Millisecond) {
			t.Fatalf("message %d got its PUBACK before Deliver acknowledged it", i)
		}
	}
	select {
	case m := <-got:
		t.Fatalf("a subscriber got %q before Deliver acknowledged it", m)
	default:
	}

	h.release()
	for i, tok := range toks {
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("message %d: no PUBACK after Deliver acknowledged it: %v", i, tok.Error())
		}
	}
	for i := range 10 {
		select {
		case m := <-got:
			if want := fmt.Sprintf(`devices/dev-1/telemetry {"seq":%d}`, i); m != want {
				t.Errorf("subscriber got %q, want %q", m, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the subscriber got %d of 10 messages", i)
		}
	}

	// Not a device topic: the broker's own way, Deliver never sees it.
	if tok := dev.Publish("other/x", 1, false, "hi"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish other/x: %v", tok.Error())
	}
	if m := <-got; m != "other/x hi" {
		t.Errorf("subscriber got %q, want other/x hi", m)
	}
	if n := h.count(); n != 0 {
		t.Errorf("Deliver got %d messages outside devices/", n)
	}
}

// TestRetainedAfterDeliver: a retained device message is retained once
// Deliver acknowledges it, so a late subscriber gets it.
func TestRetainedAfterDeliver(t *testing.T) {
	b := start(t, func(_ string, _ []byte, ack func()) bool { go ack(); return true })
	dev := connect(t, b, "dev-1")
	if tok := dev.Publish("devices/dev-1/status", 1, true, "online"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	got := make(chan string, 1)
	late := connect(t, b, "late")
	late.Subscribe("devices/+/status", 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) })
	select {
	case s := <-got:
		if s != "online" {
			t.Errorf("retained status %q, want online", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a late subscriber did not get the retained status")
	}
}

// TestDeliverRefuses: a message Deliver does not take gets no PUBACK.
func TestDeliverRefuses(t *testing.T) {
	b := start(t, func(string, []byte, func()) bool { return false })
	dev := connect(t, b, "dev-1")
	if tok := dev.Publish("devices/dev-1/telemetry", 1, false, `{"v":1}`); tok.WaitTimeout(500 * time.Millisecond) {
		t.Fatalf("a refused message got a PUBACK (error %v)", tok.Error())
	}
}
