package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"iotdash/devices"
)

// wait bounds every read and poll so that a broken test fails instead of
// hanging; no test depends on how long anything takes.
const wait = 15 * time.Second

// frame is any message the server sends.
type frame struct {
	Subscribed *struct {
		Devices []string `json:"devices"`
	} `json:"subscribed"`
	Readings []devices.Reading `json:"readings"`
	Status   []struct {
		D string         `json:"d"`
		S devices.Status `json:"s"`
	} `json:"status"`
	Gap    *gapFrame       `json:"gap"`
	Notice *string         `json:"notice"`
	Alerts json.RawMessage `json:"alerts"`
}

type testClient struct {
	t    *testing.T
	conn *websocket.Conn
}

func wsURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws" }

func newServer(t *testing.T, opts Options) (*Hub, *httptest.Server) {
	t.Helper()
	h := NewHub(opts)
	srv := httptest.NewServer(h)
	t.Cleanup(func() { h.Close(); srv.Close() })
	return h, srv
}

func dial(t *testing.T, srv *httptest.Server) *testClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, wsURL(srv), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn.SetReadLimit(-1)
	t.Cleanup(func() { conn.CloseNow() })
	return &testClient{t: t, conn: conn}
}

func (c *testClient) send(msg string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		c.t.Fatalf("write %s: %v", msg, err)
	}
}

// next returns the next frame, or the error that ended the connection.
func (c *testClient) next() (frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, b, err := c.conn.Read(ctx)
	if err != nil {
		return frame{}, err
	}
	var f frame
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		c.t.Fatalf("frame %s: %v", b, err)
	}
	return f, nil
}

func (c *testClient) mustNext() frame {
	c.t.Helper()
	f, err := c.next()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f
}

// subscribe sends a subscribe and waits for its confirmation.
func (c *testClient) subscribe(ids ...string) {
	c.t.Helper()
	b, _ := json.Marshal(map[string]any{"subscribe": map[string]any{"devices": ids}})
	c.send(string(b))
	f := c.mustNext()
	if f.Subscribed == nil || !slices.Equal(f.Subscribed.Devices, ids) {
		c.t.Fatalf("after subscribing to %v got %+v, want the confirmation", ids, f)
	}
}

// readings reads frames until n readings have arrived.
func (c *testClient) readings(n int) []devices.Reading {
	c.t.Helper()
	var got []devices.Reading
	for len(got) < n {
		f := c.mustNext()
		if f.Readings == nil {
			c.t.Fatalf("got %+v, want readings", f)
		}
		got = append(got, f.Readings...)
	}
	return got
}

func reading(dev string, t int64) devices.Reading {
	return devices.Reading{Device: dev, Metric: "temperature", Time: t, Value: float64(t) / 2}
}

func poll(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSubscribeAllReceivesBatches(t *testing.T) {
	h, srv := newServer(t, Options{})
	c := dial(t, srv)
	c.subscribe("*")

	var rs []devices.Reading
	for i := range 500 {
		rs = append(rs, reading(fmt.Sprintf("dev-%d", i%7), int64(1764000000000+i)))
	}
	h.Publish(rs)

	f := c.mustNext()
	if !slices.Equal(f.Readings, rs) {
		t.Fatalf("got one frame of %d readings, want all %d published together in one frame", len(f.Readings), len(rs))
	}

	// Several publishes: every reading arrives, in order, in as many frames
	// as the flushes that happened to run.
	var more []devices.Reading
	for i := range 10 {
		batch := []devices.Reading{reading("dev-1", int64(i)), reading("dev-2", int64(i))}
		h.Publish(batch)
		more = append(more, batch...)
	}
	if got := c.readings(len(more)); !slices.Equal(got, more) {
		t.Fatalf("got %v, want %v", got, more)
	}
}

func TestSubscribeListReceivesOnlyThoseDevices(t *testing.T) {
	h, srv := newServer(t, Options{})
	some, all := dial(t, srv), dial(t, srv)
	some.subscribe("dev-2", "dev-3")
	all.subscribe("*")

	rs := []devices.Reading{reading("dev-1", 1), reading("dev-2", 2), reading("dev-3", 3), reading("dev-4", 4)}
	h.Publish(rs)
	h.Publish([]devices.Reading{reading("dev-1", 5), reading("dev-3", 6)})

	want := []devices.Reading{reading("dev-2", 2), reading("dev-3", 3), reading("dev-3", 6)}
	if got := some.readings(len(want)); !slices.Equal(got, want) {
		t.Errorf("subscribed to dev-2, dev-3: got %v, want %v", got, want)
	}
	if got := all.readings(6); len(got) != 6 {
		t.Errorf("subscribed to *: got %d readings, want 6", len(got))
	}
}

func TestResubscribeChangesWhatArrives(t *testing.T) {
	h, srv := newServer(t, Options{})
	c := dial(t, srv)

	c.subscribe("dev-1")
	h.Publish([]devices.Reading{reading("dev-1", 1), reading("dev-2", 2)})
	if got, want := c.readings(1), []devices.Reading{reading("dev-1", 1)}; !slices.Equal(got, want) {
		t.Fatalf("subscribed to dev-1: got %v, want %v", got, want)
	}

	c.subscribe("dev-2")
	h.Publish([]devices.Reading{reading("dev-1", 3), reading("dev-2", 4)})
	if got, want := c.readings(1), []devices.Reading{reading("dev-2", 4)}; !slices.Equal(got, want) {
		t.Fatalf("resubscribed to dev-2: got %v, want %v", got, want)
	}

	c.subscribe("*")
	h.Publish([]devices.Reading{reading("dev-1", 5), reading("dev-9", 6)})
	if got, want := c.readings(2), []devices.Reading{reading("dev-1", 5), reading("dev-9", 6)}; !slices.Equal(got, want) {
		t.Fatalf("resubscribed to *: got %v, want %v", got, want)
	}
}

func TestNothingIsSentBeforeSubscribe(t *testing.T) {
	h, srv := newServer(t, Options{})
	quiet, other := dial(t, srv), dial(t, srv)
	other.subscribe("*")
	poll(t, "two clients", func() bool { return h.Stats().Clients == 2 })

	h.Publish([]devices.Reading{reading("dev-1", 1)})
	other.readings(1) // published and delivered while quiet had not subscribed

	quiet.subscribe("*") // its first frame is the confirmation, not dev-1 at 1
	h.Publish([]devices.Reading{reading("dev-1", 2)})
	if got, want := quiet.readings(1), []devices.Reading{reading("dev-1", 2)}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want only what was published after subscribing: %v", got, want)
	}
}

// TestNotice: a notice reaches every subscribed client at once, a client
// that subscribes later gets it after its confirmation, and "" clears it.
func TestNotice(t *testing.T) {
	h, srv := newServer(t, Options{})
	early := dial(t, srv)
	early.subscribe("dev-1")

	h.SetNotice("The broker is dropping messages")
	if f := early.mustNext(); f.Notice == nil || *f.Notice != "The broker is dropping messages" {
		t.Fatalf("got %+v, want the notice", f)
	}
	late := dial(t, srv)
	late.subscribe("*")
	if f := late.mustNext(); f.Notice == nil || *f.Notice != "The broker is dropping messages" {
		t.Fatalf("a late client got %+v, want the notice", f)
	}

	h.SetNotice("The broker is dropping messages") // unchanged: nothing sent
	h.SetNotice("")
	for _, c := range []*testClient{early, late} {
		if f := c.mustNext(); f.Notice == nil || *f.Notice != "" {
			t.Fatalf("got %+v, want the notice cleared", f)
		}
	}
}

func TestAlertsFrame(t *testing.T) {
	h, srv := newServer(t, Options{})
	early := dial(t, srv)
	early.subscribe("dev-1")
	h.SetAlerts(json.RawMessage(`{"firing":1,"devices":{"dev-9":{"severity":"critical","names":["Too hot"]}}}`))
	// Every page gets what fires, whichever devices it subscribed to.
	if f := early.mustNext(); string(f.Alerts) != `{"firing":1,"devices":{"dev-9":{"severity":"critical","names":["Too hot"]}}}` {
		t.Fatalf("got %+v, want the alerts", f)
	}
	late := dial(t, srv)
	late.subscribe("*")
	if f := late.mustNext(); !strings.Contains(string(f.Alerts), `"firing":1`) {
		t.Fatalf("a late client got %+v, want the alerts", f)
	}
	h.SetAlerts(json.RawMessage(`{"firing":0,"devices":{}}`))
	if f := early.mustNext(); string(f.Alerts) != `{"firing":0,"devices":{}}` {
		t.Fatalf("got %+v, want none firing", f)
	}
}

func TestStatusFrames(t *testing.T) {
	h, srv := newServer(t, Options{})
	c := dial(t, srv)
	c.subscribe("dev-1")

	h.PublishStatus("dev-2", devices.StatusOffline) // not subscribed
	h.PublishStatus("dev-1", devices.StatusOffline)

	f := c.mustNext()
	if len(f.Status) != 1 || f.Status[0].D != "dev-1" || f.Status[0].S != devices.StatusOffline {
		t.Fatalf("got %+v, want status dev-1 offline only", f)
	}

	c.subscribe("*")
	h.PublishStatus("dev-2", devices.StatusStale)
	f = c.mustNext()
	if len(f.Status) != 1 || f.Status[0].D != "dev-2" || f.Status[0].S != devices.StatusStale {
		t.Fatalf("got %+v, want status dev-2 stale", f)
	}
}

func TestGapWhenQueueOverflows(t *testing.T) {
	h, srv := newServer(t, Options{QueueSize: 8})
	c := dial(t, srv)
	c.subscribe("*")

	var rs []devices.Reading
	for i := int64(1); i <= 20; i++ {
		rs = append(rs, reading("dev-1", i))
	}
	h.Publish(rs) // 8 fit, 12 (times 9 to 20) do not

	if got := c.readings(8); !slices.Equal(got, rs[:8]) {
		t.Fatalf("got %v, want the first 8", got)
	}
	f := c.mustNext()
	if want := (gapFrame{From: 9, To: 20, Dropped: 12}); f.Gap == nil || *f.Gap != want {
		t.Fatalf("got %+v, want gap %+v", f, want)
	}
	poll(t, "gap counted", func() bool { return h.Stats().Gaps == 1 })
	if got := h.Stats().DroppedReadings; got != 12 {
		t.Errorf("DroppedReadings = %d, want 12", got)
	}

	// The client keeps receiving after the gap.
	h.Publish([]devices.Reading{reading("dev-1", 21)})
	if got := c.readings(1); got[0] != reading("dev-1", 21) {
		t.Errorf("after the gap got %v", got)
	}
}

func TestOrigin(t *testing.T) {
	for _, tc := range []struct {
		name     string
		patterns []string
		origin   string
		want     int
	}{
		{"no origin (not a browser)", nil, "", http.StatusSwitchingProtocols},
		{"same host", nil, "SAME", http.StatusSwitchingProtocols},
		{"other host refused", nil, "http://evil.example", http.StatusForbidden},
		{"other host allowed by pattern", []string{"dash.example"}, "https://dash.example", http.StatusSwitchingProtocols},
		{"pattern does not allow others", []string{"dash.example"}, "https://evil.example", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, srv := newServer(t, Options{OriginPatterns: tc.patterns})
			hdr := http.Header{}
			switch tc.origin {
			case "":
			case "SAME":
				hdr.Set("Origin", srv.URL)
			default:
				hdr.Set("Origin", tc.origin)
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			conn, resp, err := websocket.Dial(ctx, wsURL(srv), &websocket.DialOptions{HTTPHeader: hdr})
			if conn != nil {
				defer conn.CloseNow()
			}
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d (%v), want %d", resp.StatusCode, err, tc.want)
			}
		})
	}
}

func TestBadMessageClosesOnlyThatConnection(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  string
		want websocket.StatusCode
	}{
		{"not JSON", "hello", websocket.StatusPolicyViolation},
		{"unknown field", `{"subscribe":{"devices":["*"]},"admin":true}`, websocket.StatusPolicyViolation},
		{"no devices", `{"subscribe":{}}`, websocket.StatusPolicyViolation},
		{"bad id", `{"subscribe":{"devices":["dev 1"]}}`, websocket.StatusPolicyViolation},
		{"two messages in one", `{"subscribe":{"devices":["*"]}} {}`, websocket.StatusPolicyViolation},
		{"too big", `{"subscribe":{"devices":["` + strings.Repeat("a", maxMessage) + `"]}}`, websocket.StatusMessageTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, srv := newServer(t, Options{})
			good, bad := dial(t, srv), dial(t, srv)
			good.subscribe("*")

			bad.send(tc.msg)
			_, err := bad.next()
			if got := websocket.CloseStatus(err); got != tc.want {
				t.Fatalf("bad client closed with %v (%v), want %v", got, err, tc.want)
			}
			var ce websocket.CloseError
			if errors.As(err, &ce) && ce.Reason == "" {
				t.Errorf("close frame has no reason")
			}

			poll(t, "bad client gone", func() bool { return h.Stats().Clients == 1 })
			h.Publish([]devices.Reading{reading("dev-1", 1)})
			if got := good.readings(1); got[0] != reading("dev-1", 1) {
				t.Errorf("good client got %v", got)
			}
		})
	}
}

func TestCloseSaysGoingAway(t *testing.T) {
	h := NewHub(Options{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := dial(t, srv)
	c.subscribe("*")

	errc := make(chan error, 1)
	go func() { _, err := c.next(); errc <- err }() // reading answers the close handshake
	h.Close()
	if err := <-errc; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("got %v, want StatusGoingAway", err)
	}
	if n := h.Stats().Clients; n != 0 {
		t.Errorf("after Close, %d clients", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, wsURL(srv), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after Close: %v, want 503", err)
	}
}

// smallBuffers keeps the kernel's socket buffers small, so that a client
// that does not read stalls the server's writes after a few kilobytes
// instead of a few megabytes.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}

func dialStalled(t *testing.T, srv *httptest.Server) *websocket.Conn {
	t.Helper()
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, wsURL(srv), &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	return conn
}

func TestStalledClientDoesNotHoldUpOthers(t *testing.T) {
	const queue = 64
	h := NewHub(Options{QueueSize: queue, WriteTimeout: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	t.Cleanup(func() { h.Close(); srv.Close() })

	stalled := dialStalled(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := stalled.Write(ctx, websocket.MessageText, []byte(`{"subscribe":{"devices":["*"]}}`)); err != nil {
		t.Fatal(err)
	}
	// From here on the stalled client never reads.

	healthy := make([]*testClient, 3)
	for i := range healthy {
		healthy[i] = dial(t, srv)
		healthy[i].subscribe("*")
	}

	// Publish rounds of readings, each round once the healthy clients have
	// taken the last, until the hub gives up on the stalled client.
	const round = 48
	var published []devices.Reading
	got := make([][]devices.Reading, len(healthy))
	maxQueued := 0
	deadline := time.Now().Add(wait)
	for h.Stats().SlowClosed == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stalled client never closed; stats %+v", h.Stats())
		}
		var rs []devices.Reading
		for i := range round {
			rs = append(rs, reading(fmt.Sprintf("dev-%d", i%12), int64(len(published)+i)))
		}
		h.Publish(rs)
		published = append(published, rs...)
		for i, c := range healthy {
			got[i] = append(got[i], c.readings(len(published)-len(got[i]))...)
		}
		for _, c := range *h.clients.Load() {
			maxQueued = max(maxQueued, c.queued())
		}
	}

	for i := range healthy {
		if !slices.Equal(got[i], published) {
			t.Errorf("healthy client %d got %d readings, want all %d published in order", i, len(got[i]), len(published))
		}
	}
	if maxQueued > queue {
		t.Errorf("a client's queue held %d readings, want at most %d", maxQueued, queue)
	}
	st := h.Stats()
	if st.DroppedReadings == 0 && st.Gaps == 0 {
		t.Errorf("stats %+v: the stalled client neither dropped readings nor got a gap", st)
	}
	poll(t, "stalled client removed", func() bool { return h.Stats().Clients == len(healthy) })
	t.Logf("%d readings published in rounds of %d; stats %+v; largest queue %d", len(published), round, st, maxQueued)
}

// benchMessage is one MQTT message's worth of readings: one device, a few
// metrics.
func benchMessage() []devices.Reading {
	return []devices.Reading{
		{Device: "dev-1", Metric: "temperature", Value: 21.5},
		{Device: "dev-1", Metric: "humidity", Value: 40.2},
		{Device: "dev-1", Metric: "pressure", Value: 1013.2},
		{Device: "dev-1", Metric: "battery", Value: 3.7},
	}
}

// BenchmarkPublish measures what Publish costs the caller (ingest) per
// reading with 100 clients subscribed to every device. The clients are the
// hub's own, without connections, and their queues are emptied outside the
// timed part as their writers would, so that the figure is Publish alone,
// never the drop path.
func BenchmarkPublish(b *testing.B) {
	const clients = 100
	h := NewHub(Options{})
	for range clients {
		c := newClient(h, nil)
		c.subscribe([]string{"*"}, 0)
		// As if each client's writer were busy writing a frame: Publish
		// only queues, and the loop below takes the queues.
		c.writing = true
		h.add(c)
	}
	cs := *h.clients.Load()
	msg := benchMessage()
	t := int64(1764000000000)
	spare := make([]devices.Reading, 0, h.opts.QueueSize)
	for b.Loop() {
		t++
		for i := range msg {
			msg[i].Time = t
		}
		h.Publish(msg)
		// A busy client's writer takes its queue each time a frame is written; at 10,000
		// readings a second that may be some 500 readings.
		if cs[0].queued() >= 512 {
			b.StopTimer()
			for _, c := range cs {
				b, _ := c.take(spare)
				spare = b.readings
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msg)), "ns/reading")
	if d := h.Stats().DroppedReadings; d != 0 {
		b.Fatalf("%d readings dropped; the figure would not be Publish's normal path", d)
	}
}

// BenchmarkPublishLive publishes as fast as it can to 100 real WebSocket
// clients on this machine, reading as fast as they can. Its ns/reading
// includes the CPU the clients' writers and readers take from the publisher;
// dropped/delivery is the share of readings the clients could not take.
func BenchmarkPublishLive(b *testing.B) {
	const clients = 100
	h := NewHub(Options{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer h.Close()
	for range clients {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		conn, _, err := websocket.Dial(ctx, wsURL(srv), nil)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		conn.SetReadLimit(-1)
		defer conn.CloseNow()
		if err := conn.Write(context.Background(), websocket.MessageText, []byte(`{"subscribe":{"devices":["*"]}}`)); err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				if _, _, err := conn.Read(context.Background()); err != nil {
					return
				}
			}
		}()
	}
	for h.Stats().Frames < clients { // every subscription confirmed
		time.Sleep(time.Millisecond)
	}

	msg := benchMessage()
	t := int64(1764000000000)
	for b.Loop() {
		t++
		for i := range msg {
			msg[i].Time = t
		}
		h.Publish(msg)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msg)), "ns/reading")
	b.ReportMetric(float64(h.Stats().DroppedReadings)/float64(b.N*len(msg)*clients), "dropped/delivery")
}

// TestLoneReadingsGoAtOnce: with nothing else queued, each reading goes
// out in a frame of its own as soon as it is published; none waits for a
// later one to keep it company.
func TestLoneReadingsGoAtOnce(t *testing.T) {
	h, srv := newServer(t, Options{})
	c := dial(t, srv)
	c.subscribe("dev-1")
	for i := range int64(20) {
		h.Publish([]devices.Reading{reading("dev-1", 1000+i)})
		f := c.mustNext()
		if len(f.Readings) != 1 || f.Readings[0].Time != 1000+i {
			t.Fatalf("reading %d came as %+v, want a frame of its own", i, f)
		}
	}
}

// TestConflatedSubscription: a subscription to the latest gets, however
// fast readings come, the newest of each series, never one older than it
// has already got, and the newest last.
func TestConflatedSubscription(t *testing.T) {
	h, srv := newServer(t, Options{})
	c := dial(t, srv)
	c.send(`{"subscribe":{"devices":["*"],"latest":5}}`)
	if f := c.mustNext(); f.Subscribed == nil {
		t.Fatalf("got %+v, want the confirmation", f)
	}
	const n = 2000
	for i := range int64(n) {
		h.Publish([]devices.Reading{reading("dev-1", 10_000+i), reading("dev-2", 10_000+i)})
		if i == n/2 {
			h.Publish([]devices.Reading{reading("dev-1", 5)}) // late: older than what was sent
		}
	}
	h.Publish([]devices.Reading{reading("dev-1", 7)}) // late, after everything
	last := map[string]int64{}
	got := 0
	for last["dev-1"] != 10_000+n-1 || last["dev-2"] != 10_000+n-1 {
		f := c.mustNext()
		seen := map[string]bool{}
		for _, r := range f.Readings {
			got++
			if seen[r.Device] {
				t.Fatalf("a frame holds %s twice: %+v", r.Device, f.Readings)
			}
			seen[r.Device] = true
			if r.Time < last[r.Device] {
				t.Fatalf("%s went back from %d to %d", r.Device, last[r.Device], r.Time)
			}
			last[r.Device] = r.Time
		}
	}
	if got >= 2*n/10 {
		t.Errorf("%d readings of %d arrived, want far fewer: the latest of each, a few times a second", got, 2*n)
	}
	// Nothing older follows the newest.
	h.Publish([]devices.Reading{reading("dev-2", 10_000+n)})
	if f := c.mustNext(); len(f.Readings) != 1 || f.Readings[0].Device != "dev-2" {
		t.Fatalf("after the newest came %+v, want only dev-2's next reading", f)
	}
}

func TestLatestOutOfRange(t *testing.T) {
	_, srv := newServer(t, Options{})
	c := dial(t, srv)
	c.send(`{"subscribe":{"devices":["*"],"latest":1000}}`)
	if _, err := c.next(); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("latest 1000: %v, want a policy violation close", err)
	}
}

// A client may send its subscribe in the same packet as its upgrade request:
// what net/http read ahead of the handshake reaches the hub all the same.
func TestSubscribeSentWithTheUpgrade(t *testing.T) {
	_, srv := newServer(t, Options{})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(wait))
	sub := []byte(`{"subscribe":{"devices":["*"]}}`)
	mask := [4]byte{1, 2, 3, 4}
	frame := append([]byte{0x81, 0x80 | byte(len(sub))}, mask[:]...) // a final text frame, masked, as clients send
	for i, b := range sub {
		frame = append(frame, b^mask[i%4])
	}
	req := "GET / HTTP/1.1\r\nHost: " + srv.Listener.Addr().String() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), frame...)); err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 512)
	for !strings.Contains(string(got), `{"subscribed":{"devices":["*"]}}`) {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("got %q (%v), want the 101 and the confirmation", got, err)
		}
	}
}
