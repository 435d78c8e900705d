package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"iotdash/internal/testenv"
)

// TestHostileWeb runs the built binary and tries what a web page on another
// site could: reach it under a host name of its own (DNS rebinding), for a
// page, the API and a WebSocket. Each is refused with 421 before any
// handler runs, while the addresses and the -public-url name it is reached
// by work, with the security headers. Its data directory and files are its
// owner's alone.
func TestHostileWeb(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	port := testenv.FreePort(t)
	p := startBinary(t, buildBinary(t), "-http", fmt.Sprintf("127.0.0.1:%d", port),
		"-broker", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-data", data,
		"-simulate", "2", "-log-level", "error", "-public-url", "https://dash.plant.example")

	get := func(path, host string, header ...string) *http.Response {
		req, _ := http.NewRequest("GET", p.URL+path, nil)
		req.Host = host
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	evil := fmt.Sprintf("attacker.example:%d", port)
	for _, path := range []string{"/", "/api/v1/devices", "/api/v1/query?device=a&metric=b", "/metrics", "/devices/x"} {
		if resp := get(path, evil, "Origin", "http://"+evil); resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("GET %s as %s: %d, want 421", path, evil, resp.StatusCode)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, wsURL(p.URL), &websocket.DialOptions{Host: evil, HTTPHeader: http.Header{"Origin": {"http://" + evil}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("/ws upgrade as %s: %v, %v; want 421", evil, err, resp)
	}

	for _, host := range []string{fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("localhost:%d", port), "dash.plant.example"} {
		resp := get("/", host)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET / as %s: %d, want 200", host, resp.StatusCode)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET / as %s: Content-Security-Policy %q", host, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET / as %s: no nosniff", host)
		}
	}

	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory: %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	files, _ := filepath.Glob(filepath.Join(data, "*"))
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v; want no access for group or others", filepath.Base(f), fi.Mode().Perm())
		}
	}
	if len(files) < 2 {
		t.Errorf("data directory holds %v", files)
	}
}

// TestTLSOptionsNeedSSL: a CA or client certificate with a tcp:// broker
// URL is refused at start, not used to connect in clear text.
func TestTLSOptionsNeedSSL(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(buildBinary(t), "-mqtt", "tcp://127.0.0.1:1", "-mqtt-ca", "ca.pem", "-data", t.TempDir(),
		"-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "need an ssl:// broker URL") {
		t.Errorf("iotdash -mqtt tcp://… -mqtt-ca …: %v\n%s", err, out)
	}
}
