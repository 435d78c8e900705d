package broker_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"iotdash/broker"
	"iotdash/internal/testenv"
	"iotdash/store/sqlite"
)

// fleet is a broker with device credentials in a real state file, and
// what it handed to Deliver.
type fleet struct {
	b       *broker.Broker
	creds   *sqlite.Credentials
	metrics *broker.Metrics
	mu      sync.Mutex
	topics  []string
}

// startFleet starts a broker with opts (plus credentials, metrics and a
// Deliver that acknowledges at once) on loopback.
func startFleet(t *testing.T, opts broker.Options) *fleet {
	t.Helper()
	creds, err := sqlite.OpenCredentials(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { creds.Close() })
	f := &fleet{creds: creds, metrics: broker.NewMetrics(nil)}
	opts.Credentials, opts.Metrics = creds, f.metrics
	opts.Deliver = func(topic string, _ []byte, ack func()) bool {
		f.mu.Lock()
		f.topics = append(f.topics, topic)
		f.mu.Unlock()
		go ack()
		return true
	}
	f.b = startWith(t, "127.0.0.1:0", opts)
	return f
}

// add gives device id credentials and returns its secret.
func (f *fleet) add(t *testing.T, id string) string {
	t.Helper()
	secret, err := broker.AddDevice(context.Background(), f.creds, id)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

func (f *fleet) delivered() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.topics...)
}

func (f *fleet) refused(reason string) float64 {
	return testutil.ToFloat64(f.metrics.Refused.WithLabelValues(reason))
}

// dial connects a client with the given client id, user name and
// password; it returns the connect error, if any. lost, if not nil, is
// closed when the broker drops the connection.
func dial(t *testing.T, url, id, user, pass string, lost chan struct{}) (paho.Client, error) {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectRetry(false).
		SetProtocolVersion(4) // paho would try 3.1 after a refusal: one refusal, counted once
	if lost != nil {
		var once sync.Once
		opts.SetConnectionLostHandler(func(paho.Client, error) { once.Do(func() { close(lost) }) })
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("no CONNACK within 10s")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func mustDial(t *testing.T, url, id, user, pass string) paho.Client {
	t.Helper()
	c, err := dial(t, url, id, user, pass, nil)
	if err != nil {
		t.Fatalf("connecting %s as %q: %v", id, user, err)
	}
	return c
}

func published(t *testing.T, c paho.Client, topic string, retained bool, payload any) {
	t.Helper()
	if tok := c.Publish(topic, 1, retained, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// TestDeviceCredentials: a device connects with its id and secret; a wrong
// or missing secret, another device's secret, an unknown or revoked device
// and an anonymous client are refused, and each refusal is counted.
func TestDeviceCredentials(t *testing.T) {
	f := startFleet(t, broker.Options{})
	secret := f.add(t, "pump-1")
	other := f.add(t, "pump-2")

	c := mustDial(t, f.b.URL(), "pump-1", "pump-1", secret)
	published(t, c, "devices/pump-1/telemetry", false, `{"v":1}`)
	testenv.WaitFor(t, 10*time.Second, "the device's message delivered", func() bool { return len(f.delivered()) == 1 })

	for _, tc := range []struct {
		name, user, pass, reason string
	}{
		{"wrong secret", "pump-1", secret[1:] + "x", "credentials"},
		{"no secret", "pump-1", "", "credentials"},
		{"another device's secret", "pump-1", other, "credentials"},
		{"unknown device", "pump-9", secret, "credentials"},
		{"not a device id", "pump/1", secret, "credentials"},
		{"anonymous", "", "", "anonymous"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.refused(tc.reason)
			if _, err := dial(t, f.b.URL(), "someone", tc.user, tc.pass, nil); err == nil {
				t.Fatalf("connected as %q with %s", tc.user, tc.name)
			}
			if got := f.refused(tc.reason); got != before+1 {
				t.Errorf("refused{reason=%q} = %v, want %v", tc.reason, got, before+1)
			}
		})
	}

	if err := f.creds.Revoke(context.Background(), "pump-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, f.b.URL(), "pump-2", "pump-2", other, nil); err == nil {
		t.Errorf("a revoked device connected")
	}
}

// TestDeviceACL: a device publishes only under devices/{its id}/ (another
// device's topic drops its connection and nothing is delivered), and
// subscribes only there: # is refused and gets nothing, its own
// devices/{id}/# gets what is addressed to it.
func TestDeviceACL(t *testing.T) {
	f := startFleet(t, broker.Options{Anonymous: true})
	secretA, secretB := f.add(t, "dev-a"), f.add(t, "dev-b")

	lost := make(chan struct{})
	a, err := dial(t, f.b.URL(), "dev-a", "dev-a", secretA, lost)
	if err != nil {
		t.Fatal(err)
	}
	before := f.refused("acl_publish")
	a.Publish("devices/dev-b/telemetry", 1, false, `{"v":666}`)
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("a device publishing to another's topic was not disconnected")
	}
	if got := f.refused("acl_publish"); got != before+1 {
		t.Errorf("refused{acl_publish} = %v, want %v", got, before+1)
	}

	// Two connections of dev-a's: paho hands a message to every local
	// handler that matches, whatever the broker granted.
	all := make(chan string, 10)
	wide := mustDial(t, f.b.URL(), "dev-a-wide", "dev-a", secretA)
	tok := wide.Subscribe("#", 1, func(_ paho.Client, m paho.Message) { all <- m.Topic() })
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("no SUBACK for #")
	}
	if code := tok.(*paho.SubscribeToken).Result()["#"]; code != 0x80 {
		t.Errorf("SUBACK for # = %#x, want 0x80 (refused)", code)
	}
	if got := f.refused("acl_subscribe"); got != 1 {
		t.Errorf("refused{acl_subscribe} = %v, want 1", got)
	}
	got := make(chan string, 10)
	sub := mustDial(t, f.b.URL(), "dev-a", "dev-a", secretA)
	if tok := sub.Subscribe("devices/dev-a/#", 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribing to its own topics: %v", tok.Error())
	}

	b := mustDial(t, f.b.URL(), "dev-b", "dev-b", secretB)
	published(t, b, "devices/dev-b/telemetry", false, `{"v":2}`)
	ops := mustDial(t, f.b.URL(), "operator", "", "")
	published(t, ops, "devices/dev-a/command", false, "reboot")
	select {
	case topic := <-got:
		if topic != "devices/dev-a/command" {
			t.Errorf("dev-a received %s, want only devices/dev-a/command", topic)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dev-a did not get what was addressed to it")
	}
	testenv.WaitFor(t, 10*time.Second, "dev-b's and the operator's messages delivered", func() bool { return len(f.delivered()) == 2 })
	if d := f.delivered(); len(d) != 2 || d[0] != "devices/dev-b/telemetry" || d[1] != "devices/dev-a/command" {
		t.Errorf("delivered %v, want dev-b's telemetry and the command only (not dev-a's on dev-b's topic)", d)
	}
	select {
	case topic := <-got:
		t.Errorf("dev-a also received %s", topic)
	case topic := <-all:
		t.Errorf("dev-a's refused # received %s", topic)
	case <-time.After(200 * time.Millisecond):
	}

	// A Last Will is published without an ACL check: one on another
	// device's topic is refused at CONNECT.
	opts := paho.NewClientOptions().AddBroker(f.b.URL()).SetClientID("dev-a").SetUsername("dev-a").SetPassword(secretA).
		SetWill("devices/dev-b/status", "offline", 1, true).SetProtocolVersion(4)
	c := paho.NewClient(opts)
	if tok := c.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		c.Disconnect(0)
		t.Errorf("a device connected with its Last Will on another device's status")
	}
}

// TestClientIDTakeover: no client may connect with a client id iotdash
// keeps for itself (the ingester's, mochi's inline client's), and no
// device may take over another user's session; the one it would have
// taken over stays connected.
func TestClientIDTakeover(t *testing.T) {
	f := startFleet(t, broker.Options{Anonymous: true, ReservedIDs: []string{"iotdash-ingest"}})
	secretA, secretB := f.add(t, "dev-a"), f.add(t, "dev-b")
	lost := make(chan struct{})
	a, err := dial(t, f.b.URL(), "dev-a", "dev-a", secretA, lost)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, id, user, pass string }{
		{"anonymous as the ingester", "iotdash-ingest", "", ""},
		{"a device as the ingester", "iotdash-ingest", "dev-b", secretB},
		{"anonymous as the inline client", "inline", "", ""},
		{"another device's session", "dev-a", "dev-b", secretB},
		{"anonymous on a device's session", "dev-a", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.refused("client_id")
			if _, err := dial(t, f.b.URL(), tc.id, tc.user, tc.pass, nil); err == nil {
				t.Fatalf("%s connected", tc.name)
			}
			if got := f.refused("client_id"); got != before+1 {
				t.Errorf("refused{client_id} = %v, want %v", got, before+1)
			}
		})
	}
	select {
	case <-lost:
		t.Fatal("dev-a lost its connection")
	default:
	}
	published(t, a, "devices/dev-a/telemetry", false, `{"v":1}`)
}

// TestLimits: a packet over the size limit drops its connection and is
// not delivered; a client over the most clients is refused; a retained
// message outside devices/ is passed on but not kept. Each is counted.
func TestLimits(t *testing.T) {
	f := startFleet(t, broker.Options{Anonymous: true, MaxPacketSize: 1024, MaxClients: 3})

	lost := make(chan struct{})
	big, err := dial(t, f.b.URL(), "big", "", "", lost)
	if err != nil {
		t.Fatal(err)
	}
	big.Publish("devices/big/telemetry", 1, false, `{"v":"`+strings.Repeat("x", 2000)+`"}`)
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("a client that sent a packet over the limit is still connected")
	}
	testenv.WaitFor(t, 10*time.Second, "refused{packet_size} counted", func() bool { return f.refused("packet_size") == 1 })
	if d := f.delivered(); len(d) != 0 {
		t.Errorf("an oversized packet was delivered: %v", d)
	}

	// Retained outside devices/: subscribers get it, a late one does not.
	pub := mustDial(t, f.b.URL(), "pub", "", "")
	live := make(chan string, 1)
	watcher := mustDial(t, f.b.URL(), "watcher", "", "")
	if tok := watcher.Subscribe("junk/#", 1, func(_ paho.Client, m paho.Message) { live <- string(m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	published(t, pub, "junk/x", true, "ballast")
	select {
	case <-live:
	case <-time.After(10 * time.Second):
		t.Fatal("a retained message outside devices/ was not passed on")
	}
	if got := f.refused("retain_topic"); got != 1 {
		t.Errorf("refused{retain_topic} = %v, want 1", got)
	}

	// Three clients are connected (pub, watcher, and the late subscriber
	// below: no client's leaving is waited for); the fourth is refused.
	late := make(chan string, 1)
	lateSub := mustDial(t, f.b.URL(), "late-2", "", "")
	lateSub.Subscribe("junk/#", 1, func(_ paho.Client, m paho.Message) { late <- string(m.Payload()) })
	if _, err := dial(t, f.b.URL(), "one-too-many", "", "", nil); err == nil {
		t.Errorf("a fourth client connected to a broker of at most 3")
	}
	testenv.WaitFor(t, 10*time.Second, "refused{clients} counted", func() bool { return f.refused("clients") == 1 })
	select {
	case m := <-late:
		t.Errorf("a late subscriber got the retained %q outside devices/", m)
	case <-time.After(500 * time.Millisecond):
	}
}

// TestLoopback: anonymous clients are let in by default only where the
// broker cannot be reached from another machine.
func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:1883": true, "[::1]:1883": true, "localhost:1883": true,
		"0.0.0.0:1883": false, ":1883": false, "192.168.1.5:1883": false, "[::]:1883": false, "example.com:1883": false,
	} {
		if got := broker.Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestRevokeDisconnects: a connected device whose credentials are revoked
// (by another process, through the store) is disconnected at the next
// recheck, and cannot connect again.
func TestRevokeDisconnects(t *testing.T) {
	f := startFleet(t, broker.Options{Recheck: 50 * time.Millisecond})
	secret := f.add(t, "pump-1")
	lost := make(chan struct{})
	if _, err := dial(t, f.b.URL(), "pump-1", "pump-1", secret, lost); err != nil {
		t.Fatal(err)
	}
	if err := f.creds.Revoke(context.Background(), "pump-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("a revoked device is still connected")
	}
	if _, err := dial(t, f.b.URL(), "pump-1", "pump-1", secret, nil); err == nil {
		t.Error("a revoked device connected again")
	}
}

// BenchmarkConnect is a device's CONNECT and DISCONNECT with paho over
// loopback: with credentials (a lookup in the state file and a SHA-256)
// and anonymous.
func BenchmarkConnect(b *testing.B) {
	for _, anonymous := range []bool{false, true} {
		name := "credentials"
		if anonymous {
			name = "anonymous"
		}
		b.Run(name, func(b *testing.B) {
			creds, err := sqlite.OpenCredentials(filepath.Join(b.TempDir(), "fleet.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer creds.Close()
			user, secret := "", ""
			if !anonymous {
				user = "pump-1"
				if secret, err = broker.AddDevice(context.Background(), creds, user); err != nil {
					b.Fatal(err)
				}
			}
			br, err := broker.Start("127.0.0.1:0", broker.Options{Credentials: creds, Anonymous: anonymous})
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			opts := paho.NewClientOptions().AddBroker(br.URL()).SetClientID("pump-1").SetUsername(user).SetPassword(secret).
				SetProtocolVersion(4).SetAutoReconnect(false)
			for b.Loop() {
				c := paho.NewClient(opts)
				if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					b.Fatalf("connect: %v", tok.Error())
				}
				c.Disconnect(0)
			}
		})
	}
}
