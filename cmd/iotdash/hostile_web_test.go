package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
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

// TestHostileClients runs the built binary and tries what a hostile page or
// client would with sign-in in place: a form posted from another site's
// page (CSRF), guessing a password, and a device id a spreadsheet would
// run as a formula in the server's CSV export. Each is refused or
// neutralised.
func TestHostileClients(t *testing.T) {
	t.Parallel()
	brokerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p := startBinary(t, buildBinary(t), "-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		"-broker", brokerAddr, "-data", t.TempDir(), "-simulate", "0", "-log-level", "error")
	base := strings.Replace(p.URL, "admin:"+adminPassword+"@", "", 1)

	// CSRF: the admin's browser, signed in, is made to post the add-user
	// form by a page on another site. Refused, and nobody is added.
	post := func(path string, form url.Values, header ...string) int {
		req, _ := http.NewRequest("POST", p.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	mallory := url.Values{"username": {"mallory"}, "role": {"admin"}, "password": {"mallory-password"}}
	if code := post("/admin/users", mallory, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"); code != http.StatusForbidden {
		t.Errorf("add-user form posted from another site: %d, want 403", code)
	}
	if code := post("/admin/users", mallory, "Origin", "https://evil.example"); code != http.StatusForbidden {
		t.Errorf("add-user form posted from another origin (no Sec-Fetch-Site): %d, want 403", code)
	}
	if code := getJSON(t, strings.Replace(base, "://", "://mallory:mallory-password@", 1), "/api/v1/devices", nil); code != http.StatusUnauthorized {
		t.Errorf("the user a cross-site form tried to add can sign in: %d", code)
	}
	// The same form from the dashboard's own page works.
	if code := post("/admin/users", url.Values{"username": {"vera"}, "role": {"viewer"}, "password": {"vera-password"}}, "Origin", base, "Sec-Fetch-Site", "same-origin"); code != http.StatusOK {
		t.Errorf("add-user form from the admin page: %d, want 200", code)
	}

	// Guessing vera's password: after a few tries every answer is 429,
	// the right password included, until the limit lets up.
	limited := 0
	for i := range 40 {
		resp, err := http.PostForm(base+"/login", url.Values{"username": {"vera"}, "password": {fmt.Sprintf("guess-%04d", i)}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
			if resp.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		}
	}
	if limited < 30 {
		t.Errorf("%d of 40 quick wrong passwords were refused as too many, want at least 30", limited)
	}
	resp, err := http.PostForm(base+"/login", url.Values{"username": {"vera"}, "password": {"vera-password"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the right password while limited: %d, want 429", resp.StatusCode)
	}
	if n := metric(t, p.URL, `iotdash_sign_ins_total{result="limited"}`); n < 30 {
		t.Errorf("iotdash_sign_ins_total{result=\"limited\"} = %v", n)
	}

	// A device whose id a spreadsheet would take for a formula: the raw
	// CSV export keeps it text.
	dev := publisher(t, "tcp://"+brokerAddr)
	now := time.Now().UnixMilli()
	publish(t, dev, "devices/-2-A1/telemetry", false, fmt.Sprintf(`{"ts":%d,"level":-3.5}`, now))
	var body string
	testenv.WaitFor(t, 10*time.Second, "the reading in the CSV export", func() bool {
		resp, err := http.Get(p.URL + "/api/v1/query?" + url.Values{"device": {"-2-A1"}, "metric": {"level"}, "from": {fmt.Sprint(now - 1000)}, "to": {fmt.Sprint(now + 1000)}, "step": {"raw"}, "format": {"csv"}}.Encode())
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK && strings.Count(body, "\n") >= 2
	})
	if !strings.Contains(body, ",'-2-A1,level,-3.5") {
		t.Errorf("CSV export of device -2-A1:\n%s\nwant the id led by a quote mark and the value left a number", body)
	}
}

// TestServesHTTPS: with -tls-cert and -tls-key the dashboard speaks HTTPS
// only, and the session cookie is Secure, HttpOnly and SameSite.
func TestServesHTTPS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certPEM, keyPEM := testenv.SelfSigned(t)
	os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd := exec.Command(buildBinary(t), "-http", addr, "-broker", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-data", filepath.Join(dir, "data"),
		"-simulate", "0", "-tls-cert", filepath.Join(dir, "cert.pem"), "-tls-key", filepath.Join(dir, "key.pem"))
	cmd.Env = append(os.Environ(), "IOTDASH_ADMIN_PASSWORD="+adminPassword)
	var out testenv.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	testenv.WaitFor(t, 30*time.Second, "iotdash on https", func() bool { return strings.Contains(out.String(), "dashboard on https://"+addr+"/") })

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.PostForm("https://"+addr+"/login", url.Values{"username": {"admin"}, "password": {adminPassword}})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	resp.Body.Close()
	set := resp.Request.Response.Header.Get("Set-Cookie") // the 303 that set it
	for _, want := range []string{"iotdash_session=", "Secure", "HttpOnly", "SameSite=Lax"} {
		if !strings.Contains(set, want) {
			t.Errorf("Set-Cookie %q lacks %s", set, want)
		}
	}
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/" {
		t.Errorf("signed in over HTTPS: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the HTTPS port: %d, want 400", resp.StatusCode)
		}
	}
}
