package push

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"iotdash/devices"
)

// dialStatus dials /ws and returns the connection (closed when the test
// ends) and 101, or for a refused upgrade nil, its HTTP status and body.
func dialStatus(t *testing.T, url string) (*websocket.Conn, int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, url, nil)
	if err == nil {
		t.Cleanup(func() { conn.CloseNow() })
		return conn, http.StatusSwitchingProtocols, ""
	}
	if resp == nil {
		t.Fatalf("dial: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	return nil, resp.StatusCode, strings.TrimSpace(string(body))
}

// TestConnectionsPerAddressAndInTotal: past MaxPerAddr connections from one
// address the next gets 429 and a message naming the limit; past
// MaxClients, 503. A connection that ends gives its place back.
func TestConnectionsPerAddressAndInTotal(t *testing.T) {
	// Every test client comes from 127.0.0.1; Addr tells two "addresses"
	// apart by a query parameter, as a proxy's header would.
	h, srv := newServer(t, Options{MaxPerAddr: 3, MaxClients: 5, Addr: func(r *http.Request) string { return r.URL.Query().Get("from") }})
	a, b := wsURL(srv)+"?from=a", wsURL(srv)+"?from=b"
	var first *websocket.Conn
	for i := range 3 {
		conn, code, _ := dialStatus(t, a)
		if code != http.StatusSwitchingProtocols {
			t.Fatalf("connection within the limit got %d", code)
		}
		if i == 0 {
			first = conn
		}
	}
	_, code, msg := dialStatus(t, a)
	if code != http.StatusTooManyRequests || !strings.Contains(msg, "-max-websockets-per-addr") {
		t.Errorf("a fourth connection from one address: %d %q, want 429 naming -max-websockets-per-addr", code, msg)
	}
	for range 2 {
		if _, code, _ := dialStatus(t, b); code != http.StatusSwitchingProtocols {
			t.Fatalf("another address's connection got %d", code)
		}
	}
	_, code, msg = dialStatus(t, b)
	if code != http.StatusServiceUnavailable || !strings.Contains(msg, "-max-websockets)") {
		t.Errorf("a sixth connection in all: %d %q, want 503 naming -max-websockets", code, msg)
	}
	st := h.Stats()
	if st.Refused[RefusedTooManyAddr] != 1 || st.Refused[RefusedTooMany] != 1 {
		t.Errorf("refused = %v, want one of each reason", st.Refused)
	}

	first.Close(websocket.StatusNormalClosure, "")
	poll(t, "the closed connection's place to be free", func() bool {
		conn, code, _ := dialStatus(t, a)
		if conn != nil {
			conn.CloseNow()
		}
		return code == http.StatusSwitchingProtocols
	})
}

// TestClosedWithoutSubscribe: a client that connects and never subscribes
// is closed with a policy violation that says why.
func TestClosedWithoutSubscribe(t *testing.T) {
	h, srv := newServer(t, Options{SubscribeWithin: 100 * time.Millisecond})
	c := dial(t, srv)
	_, err := c.next()
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation || !strings.Contains(err.Error(), "no subscribe") {
		t.Fatalf("got %v, want a 1008 close that says no subscribe came", err)
	}
	if n := h.Stats().Closed[ClosedNoSubscribe]; n != 1 {
		t.Errorf("closed for no subscribe: %d, want 1", n)
	}
	poll(t, "the client to be gone", func() bool { return h.Stats().Clients == 0 })
}

// TestSubscribedClientStays: a client that subscribed in time and reads
// (so answers pings) is served past the subscribe deadline.
func TestSubscribedClientStays(t *testing.T) {
	const within = 50 * time.Millisecond
	h, srv := newServer(t, Options{SubscribeWithin: within, PingEvery: 10 * time.Millisecond})
	c := dial(t, srv)
	c.subscribe("*")
	start := time.Now()
	for i := int64(1); time.Since(start) < 4*within; i++ {
		h.Publish([]devices.Reading{reading("d", i)})
		c.readings(1)
	}
	if st := h.Stats(); st.Closed[ClosedNoSubscribe] != 0 || st.Closed[ClosedNoPong] != 0 || st.Clients != 1 {
		t.Errorf("stats = %+v, want the client still connected, none closed", st)
	}
}

// TestDeadClientDropped: a client that stops reading (a browser whose
// machine went to sleep) answers no ping and is dropped.
func TestDeadClientDropped(t *testing.T) {
	h, srv := newServer(t, Options{PingEvery: 20 * time.Millisecond, PingTimeout: 50 * time.Millisecond})
	c := dial(t, srv)
	c.subscribe("*")
	// c reads nothing more, so no pong is ever read and answered.
	poll(t, "the silent client to be dropped", func() bool { return h.Stats().Clients == 0 })
	if n := h.Stats().Closed[ClosedNoPong]; n != 1 {
		t.Errorf("closed for no pong: %d, want 1", n)
	}
}

// TestIdleClientHoldsOnlyItsReader: a subscribed client with nothing to
// send costs the hub one goroutine, its reader; the writer runs while
// there is something to send and is gone once it is sent.
func TestIdleClientHoldsOnlyItsReader(t *testing.T) {
	h, srv := newServer(t, Options{})
	const n = 20
	cs := make([]*testClient, n)
	for i := range cs {
		cs[i] = dial(t, srv)
		cs[i].subscribe("dev-1")
	}
	count := func(fn string) int {
		buf := make([]byte, 1<<20)
		for {
			if m := runtime.Stack(buf, true); m < len(buf) {
				return strings.Count(string(buf[:m]), "iotdash/push.(*client)."+fn+"(")
			}
			buf = make([]byte, 2*len(buf))
		}
	}
	idle := func() bool { return count("serve") == n && count("write") == 0 && count("ping") == 0 }
	poll(t, "every client idle: one goroutine each, no writer", idle)

	h.Publish([]devices.Reading{reading("dev-1", 1)})
	for _, c := range cs {
		if got := c.readings(1); got[0].Time != 1 {
			t.Fatalf("got %+v", got)
		}
	}
	poll(t, "the writers gone once the reading was sent", idle)
}
