package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"iotdash/internal/testenv"
)

// TestResilienceHostileBrowsers runs the built iotdash (self-contained, with
// a few simulated devices) and attacks it as browsers and callers might,
// while one healthy browser keeps watching: a WebSocket upgrade from another
// origin is refused; an oversized, a malformed and a binary client message
// each close that connection only; a request with a huge header gets 431;
// a slowloris connection that never finishes its headers is closed. The
// healthy browser keeps receiving readings throughout. (The push package's
// tests cover the WebSocket cases in detail.)
func TestResilienceHostileBrowsers(t *testing.T) {
	t.Parallel()
	p := startBinary(t, buildBinary(t), "-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		"-broker", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-data", t.TempDir(),
		"-simulate", "3", "-simulate-interval", "100ms", "-log-level", "error")
	healthy := dialLive(t, p.URL)
	readingsSoFar := func() int {
		healthy.mu.Lock()
		defer healthy.mu.Unlock()
		return len(healthy.readings)
	}
	testenv.WaitFor(t, 30*time.Second, "live readings", func() bool { return readingsSoFar() > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Another origin's page may not open /ws; the dashboard's own may.
	_, resp, err := websocket.Dial(ctx, wsURL(p.URL), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("upgrade from another origin: %v, %v; want 403", err, resp)
	}
	own, _, err := websocket.Dial(ctx, wsURL(p.URL), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {p.URL}}})
	if err != nil {
		t.Fatalf("upgrade from the dashboard's own origin: %v", err)
	}
	own.CloseNow()

	// Bad client messages close that connection only, with a status that
	// says why. (The server stops reading an oversized message at its limit,
	// so the client may see its connection reset before the close frame.)
	var ends []string
	for _, c := range []struct {
		name string
		typ  websocket.MessageType
		msg  []byte
		want websocket.StatusCode
	}{
		{"oversized", websocket.MessageText, []byte(`{"subscribe":{"devices":["` + strings.Repeat("x", 100<<10) + `"]}}`), websocket.StatusMessageTooBig},
		{"malformed", websocket.MessageText, []byte(`{"subscribe":`), websocket.StatusPolicyViolation},
		{"not a subscribe", websocket.MessageText, []byte(`{"subscribe":{"devices":["a/b#"]}}`), websocket.StatusPolicyViolation},
		{"binary", websocket.MessageBinary, []byte{0, 1, 2}, websocket.StatusUnsupportedData},
	} {
		conn, _, err := websocket.Dial(ctx, wsURL(p.URL), nil)
		if err != nil {
			t.Fatalf("%s: dial: %v", c.name, err)
		}
		err = conn.Write(ctx, c.typ, c.msg)
		if err == nil {
			_, _, err = conn.Read(ctx)
		}
		got := websocket.CloseStatus(err)
		switch {
		case got == c.want:
			ends = append(ends, fmt.Sprintf("%s %d", c.name, got))
		case got == -1 && c.want == websocket.StatusMessageTooBig && err != nil && ctx.Err() == nil:
			ends = append(ends, c.name+" reset")
		default:
			t.Errorf("%s client message: connection ended with %v (%v), want %v", c.name, got, err, c.want)
		}
		conn.CloseNow()
	}

	// A header larger than the server's limit.
	status := rawRequest(t, p.URL, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("x", 256<<10)+"\r\n\r\n")
	if !strings.Contains(status, " 431 ") {
		t.Errorf("request with a 256 KiB header: %q, want 431", status)
	}

	// Slowloris: a header line every half second, never the end of them.
	slow, closedAfter := slowloris(t, p.URL, 2*time.Minute)
	if !slow {
		t.Errorf("a connection that never finished its headers was still open after 2 minutes")
	}

	// The healthy browser kept receiving, and still does.
	n := readingsSoFar()
	testenv.WaitFor(t, 30*time.Second, "the healthy browser to receive more readings", func() bool { return readingsSoFar() > n })
	if err := healthy.conn.Ping(ctx); err != nil {
		t.Errorf("the healthy browser's connection is closed: %v", err)
	}
	if code, body := readiness(p.URL); code != http.StatusOK {
		t.Errorf("/readyz after the attacks = %d %s", code, body)
	}
	figures(t, "hostile-browsers", "foreign-origin upgrade refused with 403; bad client messages each closed that connection only (%s); a 256 KiB header got 431; a slowloris connection was closed %v after it opened; the healthy browser received %d readings meanwhile, without a reconnect",
		strings.Join(ends, ", "), closedAfter.Round(100*time.Millisecond), readingsSoFar())
}

// rawRequest writes req on a new connection to base and returns the status
// line of the answer.
func rawRequest(t *testing.T, base, req string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	go io.WriteString(conn, req) // the server may answer before it has read it all
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return strings.TrimSpace(line)
}

// slowloris opens a connection to base and sends a header line every half
// second without ever ending the headers, until the server closes the
// connection (true) or within has passed (false).
func slowloris(t *testing.T, base string, within time.Duration) (closed bool, after time.Duration) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	ended := make(chan struct{})
	go func() {
		// Whatever the server says (it may answer 408 first), the
		// connection ends when it is closed.
		io.Copy(io.Discard, conn)
		close(ended)
	}()
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for i := 0; time.Since(start) < within; i++ {
		select {
		case <-ended:
			return true, time.Since(start)
		case <-tick.C:
			// A failed write means the server has gone: the reader sees it.
			fmt.Fprintf(conn, "X-Slow-%d: 1\r\n", i)
		}
	}
	return false, time.Since(start)
}
