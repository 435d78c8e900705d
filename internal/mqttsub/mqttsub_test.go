package mqttsub_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/internal/mqttsub"
	"iotdash/internal/testenv"
)

// received is what a handler got, in order.
type received struct {
	mu   sync.Mutex
	msgs []mqttsub.Message
}

func (r *received) handle(m mqttsub.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

func (r *received) snapshot() []mqttsub.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

func (r *received) len() int { return len(r.snapshot()) }

// events counts a client's connections and losses.
type events struct {
	connects, losses atomic.Int32
	mu               sync.Mutex
	lastLoss         error
}

func (e *events) lost(err error) {
	e.mu.Lock()
	e.lastLoss = err
	e.mu.Unlock()
	e.losses.Add(1)
}

func (e *events) lastError() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastLoss
}

// client starts a client of o that subscribes to topic at QoS 1 on every
// connection, records what it receives and its connections, and is
// disconnected when the test ends.
func client(t *testing.T, o mqttsub.Options, topic string) (*mqttsub.Client, *received, *events) {
	t.Helper()
	r, ev := &received{}, &events{}
	o.Handler = r.handle
	o.OnConnect = func(c *mqttsub.Client) error {
		codes, err := c.Subscribe(10*time.Second, mqttsub.Subscription{Topic: topic, QoS: 1})
		if err != nil {
			return err
		}
		if codes[0] != 1 {
			return fmt.Errorf("granted %#x", codes[0])
		}
		ev.connects.Add(1)
		return nil
	}
	o.OnConnectionLost = ev.lost
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c, err := mqttsub.New(o)
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { c.Disconnect(time.Second) }) })
	testenv.WaitFor(t, 20*time.Second, "the client to subscribe", func() bool { return ev.connects.Load() > 0 && c.Connected() })
	return c, r, ev
}

// publish publishes payloads to topic at qos, in order, and returns once
// the broker has taken them.
func publish(t *testing.T, broker, topic string, qos byte, payloads ...string) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	for _, p := range payloads {
		if tok := c.Publish(topic, qos, false, p); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
}

func payloads(prefix string, n int) []string {
	var ps []string
	for i := range n {
		ps = append(ps, fmt.Sprintf("%s-%d", prefix, i))
	}
	return ps
}

func texts(ms []mqttsub.Message) []string {
	var ps []string
	for _, m := range ms {
		ps = append(ps, string(m.Payload))
	}
	return ps
}

// TestReceive: QoS 0 and QoS 1 messages arrive in order, with their topic,
// payload and QoS, and only a QoS 1 message has something to acknowledge.
// Payloads handed out stay as they were while later ones arrive (they are
// copies, never reused). So also when the reader pauses between reads
// (Options.ReadPause), and reads several messages at a time.
func TestReceive(t *testing.T) {
	for _, pause := range []time.Duration{0, 2 * time.Millisecond} {
		t.Run(fmt.Sprintf("pause=%v", pause), func(t *testing.T) { testReceive(t, pause) })
	}
}

func testReceive(t *testing.T, pause time.Duration) {
	mq := testenv.StartMosquitto(t)
	c, r, _ := client(t, mqttsub.Options{Broker: mq.URL, ClientID: "receive", ReadPause: pause}, "devices/#")
	publish(t, mq.URL, "devices/a/telemetry", 0, payloads("zero", 50)...)
	publish(t, mq.URL, "devices/b/telemetry", 1, payloads("one", 50)...)
	// The broker sends 20 QoS 1 messages at a time, then waits for their
	// acknowledgements.
	acked := 0
	testenv.WaitFor(t, 10*time.Second, "100 messages", func() bool {
		ms := r.snapshot()
		for _, m := range ms[acked:] {
			m.Ack.Queue()
		}
		acked = len(ms)
		c.Flush()
		return len(ms) >= 100
	})
	// Each publisher's messages in order (the two publishers' may
	// interleave).
	byTopic := map[string][]mqttsub.Message{}
	for _, m := range r.snapshot() {
		byTopic[m.Topic] = append(byTopic[m.Topic], m)
	}
	for _, want := range []struct {
		topic  string
		qos    byte
		prefix string
	}{{"devices/a/telemetry", 0, "zero"}, {"devices/b/telemetry", 1, "one"}} {
		ms := byTopic[want.topic]
		if got := texts(ms); !slices.Equal(got, payloads(want.prefix, 50)) {
			t.Errorf("payloads on %s = %q, want %q", want.topic, got, payloads(want.prefix, 50))
		}
		for i, m := range ms {
			if m.QoS != want.qos || m.Size != len(m.Payload) || m.Retain || m.Dup {
				t.Errorf("message %d on %s: QoS %d size %d retain %v dup %v, want QoS %d", i, want.topic, m.QoS, m.Size, m.Retain, m.Dup, want.qos)
			}
		}
	}
}

// TestAcknowledgedOnly: of ten QoS 1 messages, the six acknowledged (in
// order, in one write) are not sent again to the persistent session, and
// the four not acknowledged are, marked as duplicates. Acknowledgements
// queued for messages of a connection since lost are not sent on the next
// one (whose packet ids name other messages): after such a reconnection
// the broker still sends all four again.
func TestAcknowledgedOnly(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	proxy := startProxy(t, mq.Addr)
	o := mqttsub.Options{Broker: "tcp://" + proxy.addr(), ClientID: "acked"}
	c, r, ev := client(t, o, "devices/#")
	want := payloads("m", 10)
	publish(t, mq.URL, "devices/x/telemetry", 1, want...)
	testenv.WaitFor(t, 10*time.Second, "10 messages", func() bool { return r.len() >= 10 })
	first := r.snapshot()
	for _, m := range first[:6] {
		m.Ack.Queue()
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	barrier(t, c)

	// Cut the connection: the four unacknowledged come again.
	proxy.cut()
	testenv.WaitFor(t, 20*time.Second, "the client to reconnect", func() bool { return ev.connects.Load() >= 2 && c.Connected() })
	testenv.WaitFor(t, 10*time.Second, "the four sent again", func() bool { return r.len() >= 14 })
	// Acknowledging them on the old connection's behalf does nothing.
	for _, m := range first[6:] {
		m.Ack.Queue()
	}
	c.Flush()
	again := r.snapshot()[10:]
	if got := texts(again); !slices.Equal(got, want[6:]) {
		t.Fatalf("sent again after the cut: %q, want %q", got, want[6:])
	}
	for _, m := range again {
		if !m.Dup {
			t.Errorf("%q sent again without DUP", m.Payload)
		}
	}

	proxy.cut()
	testenv.WaitFor(t, 20*time.Second, "the client to reconnect again", func() bool { return ev.connects.Load() >= 3 && c.Connected() })
	testenv.WaitFor(t, 10*time.Second, "the four sent a third time", func() bool { return r.len() >= 18 })
	for _, m := range r.snapshot()[14:18] {
		m.Ack.Queue()
	}
	c.Flush()
	barrier(t, c) // else the next client's CONNECT may take the session over first
	c.Disconnect(time.Second)

	// A new client on the session gets nothing more: all ten are acknowledged.
	_, r2, _ := client(t, o, "devices/#")
	publish(t, mq.URL, "devices/x/telemetry", 1, "last")
	testenv.WaitFor(t, 10*time.Second, "the last message", func() bool { return r2.len() >= 1 })
	if got := texts(r2.snapshot()); !slices.Equal(got, []string{"last"}) {
		t.Errorf("the session sent %q, want only the new message", got)
	}
	if got := r.len(); got != 18 {
		t.Errorf("the first client received %d messages, want 18", got)
	}
}

// barrier returns once the broker has taken what c sent before: it answers
// in order.
func barrier(t *testing.T, c *mqttsub.Client) {
	t.Helper()
	if _, err := c.Subscribe(10*time.Second, mqttsub.Subscription{Topic: "barrier"}); err != nil {
		t.Fatal(err)
	}
}

// TestBrokerRestart: a broker killed is noticed, and once it is back the
// client reconnects on its own and OnConnect runs again; messages queued
// for the session before the kill and not acknowledged come again.
func TestBrokerRestart(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	c, r, ev := client(t, mqttsub.Options{Broker: mq.URL, ClientID: "restart", KeepAlive: time.Second}, "devices/#")
	publish(t, mq.URL, "devices/x/telemetry", 1, "before")
	testenv.WaitFor(t, 10*time.Second, "the first message", func() bool { return r.len() >= 1 })
	mq.Stop() // saves the session, with the message unacknowledged
	testenv.WaitFor(t, 10*time.Second, "the loss noticed", func() bool { return ev.losses.Load() >= 1 && !c.Connected() })
	mq.Start(t)
	testenv.WaitFor(t, 20*time.Second, "OnConnect again", func() bool { return ev.connects.Load() >= 2 && c.Connected() })
	testenv.WaitFor(t, 10*time.Second, "the message again", func() bool { return r.len() >= 2 })
	r.snapshot()[1].Ack.Queue()
	c.Flush()

	if got := texts(r.snapshot()); !slices.Equal(got, []string{"before", "before"}) {
		t.Errorf("received %q, want the message twice", got)
	}

	// Killed, the broker keeps what it last saved (which may hold the
	// message again): only the reconnection matters here.
	mq.Kill()
	testenv.WaitFor(t, 10*time.Second, "the loss noticed", func() bool { return ev.losses.Load() >= 2 && !c.Connected() })
	mq.Start(t)
	testenv.WaitFor(t, 20*time.Second, "OnConnect a third time", func() bool { return ev.connects.Load() >= 3 && c.Connected() })
	publish(t, mq.URL, "devices/x/telemetry", 1, "after")
	testenv.WaitFor(t, 10*time.Second, "the message after", func() bool {
		return slices.Contains(texts(r.snapshot()), "after")
	})
}

// TestKeepAliveDetectsDeadPeer: a connection on which nothing comes back
// any more (a proxy in between stops forwarding, as a dead route or a
// crashed host does, with no FIN or RST) is closed within a keepalive or
// two, said to OnConnectionLost, and replaced once the route is back.
func TestKeepAliveDetectsDeadPeer(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	proxy := startProxy(t, mq.Addr)
	c, r, ev := client(t, mqttsub.Options{Broker: "tcp://" + proxy.addr(), ClientID: "dead", KeepAlive: time.Second}, "devices/#")
	proxy.freeze(true)
	testenv.WaitFor(t, 20*time.Second, "the dead connection noticed", func() bool { return ev.losses.Load() >= 1 })
	if err := ev.lastError(); err == nil || !strings.Contains(err.Error(), "PINGREQ") {
		t.Errorf("lost with %v, want the keepalive's error", err)
	}
	proxy.freeze(false)
	testenv.WaitFor(t, 20*time.Second, "a new connection", func() bool { return ev.connects.Load() >= 2 && c.Connected() })
	publish(t, mq.URL, "devices/x/telemetry", 1, "alive")
	testenv.WaitFor(t, 10*time.Second, "a message over it", func() bool { return r.len() >= 1 })
}

// TestRefused: a broker that refuses the connection is said in the log with
// its reason, and tried again.
func TestRefused(t *testing.T) {
	mq := testenv.StartMosquitto(t, "allow_anonymous false")
	var log testenv.Buffer
	c, err := mqttsub.New(mqttsub.Options{Broker: mq.URL, ClientID: "refused", Username: "nobody", Password: "wrong",
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	defer c.Disconnect(time.Second)
	testenv.WaitFor(t, 10*time.Second, "the refusal in the log", func() bool {
		return strings.Contains(log.String(), "the broker refused the connection: not authorized (CONNACK return code 5)")
	})
	if c.Connected() {
		t.Error("Connected after a refusal")
	}
}

// TestBadURL: New refuses a URL it cannot connect to.
func TestBadURL(t *testing.T) {
	for _, u := range []string{"http://host:1883", "tcp://host", "::"} {
		if _, err := mqttsub.New(mqttsub.Options{Broker: u}); err == nil {
			t.Errorf("New(%q) = nil error", u)
		}
	}
}

// TestTLS: over ssl:// with the broker's certificate trusted, the client
// subscribes and receives; without it trusted, the handshake fails and the
// log says why.
func TestTLS(t *testing.T) {
	certPEM, keyPEM := testenv.SelfSigned(t)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	mq := testenv.StartMosquitto(t, fmt.Sprintf("listener %d 127.0.0.1\ncertfile %s\nkeyfile %s", port, cert, key))
	tlsURL := fmt.Sprintf("ssl://127.0.0.1:%d", port)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	_, r, _ := client(t, mqttsub.Options{Broker: tlsURL, ClientID: "tls", TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, "devices/#")
	publish(t, mq.URL, "devices/x/telemetry", 1, "secret")
	testenv.WaitFor(t, 10*time.Second, "the message over TLS", func() bool { return r.len() >= 1 })

	var log testenv.Buffer
	c, err := mqttsub.New(mqttsub.Options{Broker: tlsURL, ClientID: "untrusting", Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	defer c.Disconnect(time.Second)
	testenv.WaitFor(t, 10*time.Second, "the certificate error in the log", func() bool { return strings.Contains(log.String(), "certificate") })
	if c.Connected() {
		t.Error("connected to a broker whose certificate is not trusted")
	}
}

// TestOversizedPublish: a PUBLISH over MaxPacket is skipped on the wire
// (the handler gets its topic, size and acknowledgement, no payload), and
// the connection carries on with the next message.
func TestOversizedPublish(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	c, r, ev := client(t, mqttsub.Options{Broker: mq.URL, ClientID: "big", MaxPacket: 1024}, "devices/#")
	big := strings.Repeat("x", 100_000)
	publish(t, mq.URL, "devices/x/telemetry", 1, "small", big, "next")
	testenv.WaitFor(t, 10*time.Second, "three messages", func() bool { return r.len() >= 3 })
	ms := r.snapshot()
	if ms[1].Payload != nil || ms[1].Size != len(big) || ms[1].Topic != "devices/x/telemetry" {
		t.Errorf("the large message came as payload %d bytes, size %d, topic %q; want none, %d, devices/x/telemetry", len(ms[1].Payload), ms[1].Size, ms[1].Topic, len(big))
	}
	if got := texts([]mqttsub.Message{ms[0], ms[2]}); !slices.Equal(got, []string{"small", "next"}) {
		t.Errorf("around it: %q", got)
	}
	for _, m := range ms {
		m.Ack.Queue()
	}
	c.Flush()
	if n := ev.losses.Load(); n != 0 {
		t.Errorf("%d connections lost, want none (last: %v)", n, ev.lastError())
	}
}

// TestUnsubscribe: after Unsubscribe nothing more arrives for the topic.
func TestUnsubscribe(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	c, r, _ := client(t, mqttsub.Options{Broker: mq.URL, ClientID: "unsub", CleanSession: true}, "devices/#")
	if err := c.Unsubscribe(10*time.Second, "devices/#", "never/subscribed"); err != nil {
		t.Fatal(err)
	}
	codes, err := c.Subscribe(10*time.Second, mqttsub.Subscription{Topic: "other/#"})
	if err != nil || !slices.Equal(codes, []byte{0}) {
		t.Fatalf("Subscribe = %v, %v; want [0]", codes, err)
	}
	publish(t, mq.URL, "devices/x/telemetry", 1, "gone")
	publish(t, mq.URL, "other/x", 1, "here")
	testenv.WaitFor(t, 10*time.Second, "the other topic's message", func() bool { return r.len() >= 1 })
	if got := texts(r.snapshot()); !slices.Equal(got, []string{"here"}) {
		t.Errorf("received %q after unsubscribing devices/#, want only the other topic's", got)
	}
}

// TestDisconnectThenNothing: after Disconnect, Subscribe and Flush say there
// is no connection, and the handler is not called again.
func TestDisconnectThenNothing(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	c, r, ev := client(t, mqttsub.Options{Broker: mq.URL, ClientID: "bye"}, "devices/#")
	c.Disconnect(time.Second)
	if c.Connected() {
		t.Error("Connected after Disconnect")
	}
	if _, err := c.Subscribe(time.Second, mqttsub.Subscription{Topic: "x"}); !errors.Is(err, mqttsub.ErrNotConnected) {
		t.Errorf("Subscribe after Disconnect = %v, want ErrNotConnected", err)
	}
	publish(t, mq.URL, "devices/x/telemetry", 1, "late")
	_, r2, _ := client(t, mqttsub.Options{Broker: mq.URL, ClientID: "bye"}, "devices/#")
	testenv.WaitFor(t, 10*time.Second, "the message on the session's next connection", func() bool { return r2.len() >= 1 })
	if r.len() != 0 || ev.losses.Load() != 0 {
		t.Errorf("after Disconnect: %d messages handled, %d losses reported; want none", r.len(), ev.losses.Load())
	}
}

// proxy forwards TCP connections to a broker, and can cut them (closing
// both sides) or freeze them (forwarding nothing more, closing nothing).
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	frozen atomic.Bool
}

func startProxy(t *testing.T, target string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target}
	t.Cleanup(func() { l.Close(); p.cut() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			if p.frozen.Load() {
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go p.pipe(in, out)
			go p.pipe(out, in)
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

// pipe copies from src to dst until either closes; frozen, it reads and
// drops.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			dst.Close()
			return
		}
		if p.frozen.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			src.Close()
			return
		}
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// freeze stops forwarding on the connections open (true), and refuses new
// ones; false lets new ones through again (the frozen ones stay dead).
func (p *proxy) freeze(on bool) {
	if !on {
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
		p.mu.Unlock()
	}
	p.frozen.Store(on)
}
