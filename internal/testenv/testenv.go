// Package testenv starts the real services iotdash's tests talk to
// (Mosquitto, InfluxDB OSS 1.8 with Flux, Chromium) on free loopback ports,
// and builds the iotdash binary once for the tests that run it (Iotdash).
// It never mocks them: where a program is missing, the test fails with a
// message that says what to install (`make test` installs everything).
// FakeBroker is the one fake, a peer that sends what no broker does, for
// the tests of malformed input from a broker.
// Tests stop iotdash through Terminate or AwaitReturn, which give every
// goroutine's stack if it hangs.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: no free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// program finds a program by the environment variable `make test` sets, then
// on PATH, then in extra places, and fails t with what to install.
func program(t testing.TB, envVar, name, install string, extra ...string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range extra {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("testenv: %s not found (set %s or put it on PATH). %s, or run `make test`, which installs it.", name, envVar, install)
	return ""
}

// Chromium returns the path of a Chromium binary for browser tests.
func Chromium(t testing.TB) string {
	return program(t, "IOTDASH_TEST_CHROMIUM", "chromium", "Install it with `apt-get install chromium`", "/usr/bin/chromium", "/usr/bin/chromium-browser")
}

// Axe returns the path of axe-core's axe.min.js for accessibility tests,
// which `make test` installs from the npm registry.
func Axe(t testing.TB) string {
	t.Helper()
	return npmTool(t, "IOTDASH_TEST_AXE", "axe-core")
}

// Redocly returns the path of Redocly CLI, the OpenAPI linter, which `make
// test` installs from the npm registry.
func Redocly(t testing.TB) string {
	t.Helper()
	return npmTool(t, "IOTDASH_TEST_REDOCLY", "@redocly/cli")
}

// npmTool returns the path in envVar, which scripts/test-deps.sh sets once
// it has installed pkg with npm. Without npm there is none: the test is
// skipped, loudly.
func npmTool(t testing.TB, envVar, pkg string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		return p
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skipf("SKIPPED: %s needs npm (install Node.js and npm, then run `make test`, which installs %s)", pkg, pkg)
	}
	t.Fatalf("testenv: %s not found (set %s). Run `make test`, which installs it with npm", pkg, envVar)
	return ""
}

// WaitFor polls cond every 50ms until it holds, and fails t if it does not
// within the deadline: tests wait for a condition, never for a time.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Buffer is an io.Writer that is safe to read while a process or a
// goroutine writes to it: the output of a program under test.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what has been written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// process is a started service that dies with the test binary.
type process struct {
	cmd    *exec.Cmd
	out    Buffer
	exited chan struct{}
}

func start(name string, args ...string) (*process, error) {
	p := &process{exited: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &p.out
	// The service dies with the test binary, however the binary ends.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	return p, nil
}

func (p *process) output() string { return p.out.String() }

func (p *process) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// waitTCP waits until addr accepts connections, or the process exits.
func waitTCP(p *process, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("exited early: %s", p.output())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not listening on %s after %v: %s", addr, within, p.output())
}

// Mosquitto is a running Mosquitto broker with default settings but for its
// listener.
type Mosquitto struct {
	// Addr is host:port; URL is tcp://Addr for MQTT clients.
	Addr, URL string
	bin, conf string
	proc      *process
}

// StartMosquitto starts a Mosquitto broker of its own for this test on a free
// port and stops it when the test ends. extraConf lines, if any, are added
// to its configuration (such as "max_inflight_messages 1000").
func StartMosquitto(t testing.TB, extraConf ...string) *Mosquitto {
	t.Helper()
	bin := program(t, "IOTDASH_TEST_MOSQUITTO", "mosquitto", "Install it with `apt-get install mosquitto`", "/usr/sbin/mosquitto")
	port := FreePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	// Default settings but for where it listens: the throughput figures and
	// the in-flight window tests rely on Mosquitto's defaults.
	cfg := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nlog_dest stderr\nlog_type error\nlog_type warning\n%s\n", port, dir, strings.Join(extraConf, "\n"))
	if os.Getuid() == 0 {
		// Run as root, Mosquitto switches to the user "mosquitto", which
		// cannot write its persistence file in the test's directory: it
		// would then lose every persistent session, subscription and queued
		// message when stopped and started again.
		cfg += "user root\n"
	}
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &Mosquitto{Addr: fmt.Sprintf("127.0.0.1:%d", port), bin: bin, conf: conf}
	m.URL = "tcp://" + m.Addr
	m.Start(t)
	t.Cleanup(m.Stop)
	return m
}

// Start starts the broker again after Stop, on the same port, with the same
// persistence file.
func (m *Mosquitto) Start(t testing.TB) {
	t.Helper()
	p, err := start(m.bin, "-c", m.conf)
	if err != nil {
		t.Fatalf("testenv: starting mosquitto: %v", err)
	}
	if err := waitTCP(p, m.Addr, 10*time.Second); err != nil {
		p.stop()
		t.Fatalf("testenv: mosquitto: %v", err)
	}
	m.proc = p
}

// Stop stops the broker gracefully (it saves its persistent sessions).
func (m *Mosquitto) Stop() {
	if m.proc != nil {
		m.proc.stop()
		m.proc = nil
	}
}

// Kill ends the broker at once, as a crash or a power cut does: it saves
// nothing and closes no connection with a goodbye.
func (m *Mosquitto) Kill() {
	if m.proc != nil {
		m.proc.cmd.Process.Kill()
		<-m.proc.exited
		m.proc = nil
	}
}

// InfluxDB is a database on a running InfluxDB OSS 1.8 server with Flux and
// the v2 API compatibility endpoints on. Clients use URL, an empty token,
// any org, and Bucket ("db/autogen").
type InfluxDB struct {
	URL      string
	Database string
	Bucket   string
}

var influx struct {
	once sync.Once
	url  string
	proc *process
	err  error
	seq  atomic.Int64
}

// StartInfluxDB returns a new, empty database on the package's InfluxDB
// server, starting the server on first use. The server is shared by the tests
// of a package (it takes a second or two to start) and dies with the test
// binary; call Main from TestMain to stop it tidily.
func StartInfluxDB(t testing.TB) *InfluxDB {
	t.Helper()
	bin := influxdBinary(t)
	influx.once.Do(func() { influx.url, influx.proc, influx.err = startInfluxd(bin) })
	if influx.err != nil {
		t.Fatalf("testenv: influxd: %v", influx.err)
	}
	db := fmt.Sprintf("iotdash_test_%d_%d", os.Getpid(), influx.seq.Add(1))
	if err := InfluxQL(influx.url, "CREATE DATABASE "+db); err != nil {
		t.Fatalf("testenv: creating database %s: %v", db, err)
	}
	return &InfluxDB{URL: influx.url, Database: db, Bucket: db + "/autogen"}
}

func influxdBinary(t testing.TB) string {
	t.Helper()
	home, _ := os.UserHomeDir()
	return program(t, "IOTDASH_TEST_INFLUXD", "influxd",
		"Build it with `scripts/test-deps.sh` (go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10)",
		filepath.Join(home, ".cache", "iotdash", "influxd-v1.8.10"))
}

func startInfluxd(bin string) (string, *process, error) {
	dir, err := os.MkdirTemp("", "iotdash-influxd-")
	if err != nil {
		return "", nil, err
	}
	confPath, u, err := writeInfluxdConf(dir)
	if err != nil {
		return "", nil, err
	}
	p, err := runInfluxd(bin, confPath, u)
	return u, p, err
}

// writeInfluxdConf writes the configuration of a server with its data under
// dir, listening on free ports, and returns its path and the server's URL.
func writeInfluxdConf(dir string) (confPath, baseURL string, err error) {
	httpPort, rpcPort := freePortNoT(), freePortNoT()
	conf := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = "%[3]s/meta"
[data]
  dir = "%[3]s/data"
  wal-dir = "%[3]s/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = "127.0.0.1:%[2]d"
  flux-enabled = true
  log-enabled = false
[logging]
  level = "warn"
`, rpcPort, httpPort, dir)
	confPath = filepath.Join(dir, "influxdb.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return "", "", err
	}
	return confPath, fmt.Sprintf("http://127.0.0.1:%d", httpPort), nil
}

// runInfluxd starts influxd with confPath and waits until baseURL answers
// its ping.
func runInfluxd(bin, confPath, baseURL string) (*process, error) {
	p, err := start(bin, "-config", confPath)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(baseURL + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return p, nil
			}
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("exited early: %s", p.output())
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("not ready at %s after 60s: %s", baseURL, p.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// InfluxServer is an InfluxDB server of one test's own, with one database,
// that the test can stop and start again on the same port and data: an
// outage of the database iotdash writes to.
type InfluxServer struct {
	InfluxDB
	bin, conf string
	proc      *process
}

// StartInfluxServer starts an InfluxDB server for this test alone, creates
// one database on it, and stops it when the test ends. It takes a few
// seconds; tests that do not stop the server use StartInfluxDB instead.
func StartInfluxServer(t testing.TB) *InfluxServer {
	t.Helper()
	s := &InfluxServer{bin: influxdBinary(t)}
	conf, u, err := writeInfluxdConf(t.TempDir())
	if err != nil {
		t.Fatalf("testenv: influxd: %v", err)
	}
	s.conf, s.URL = conf, u
	s.Start(t)
	t.Cleanup(s.Stop)
	s.Database = "iotdash_test"
	s.Bucket = s.Database + "/autogen"
	if err := InfluxQL(s.URL, "CREATE DATABASE "+s.Database); err != nil {
		t.Fatalf("testenv: creating database %s: %v", s.Database, err)
	}
	return s
}

// Start starts the server again after Stop, on the same port and data, and
// returns once it answers.
func (s *InfluxServer) Start(t testing.TB) {
	t.Helper()
	p, err := runInfluxd(s.bin, s.conf, s.URL)
	if err != nil {
		t.Fatalf("testenv: influxd: %v", err)
	}
	s.proc = p
}

// Stop stops the server (SIGTERM: what it has acknowledged is on disk).
func (s *InfluxServer) Stop() {
	if s.proc != nil {
		s.proc.stop()
		s.proc = nil
	}
}

func freePortNoT() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// InfluxQL runs one InfluxQL statement against the server at baseURL.
func InfluxQL(baseURL, q string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", baseURL+"/query", strings.NewReader(url.Values{"q": {q}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.Contains(body.String(), `"error"`) {
		return fmt.Errorf("%s: %s", resp.Status, body.String())
	}
	return nil
}

// Main runs a package's tests and then stops the services testenv shared
// among them. Call it from TestMain: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if influx.proc != nil {
		influx.proc.stop()
	}
	os.Exit(code)
}

// Alertmanager is a running Prometheus Alertmanager whose one receiver
// drops what it is sent: tests read alerts back from its API.
type Alertmanager struct {
	URL string // http://127.0.0.1:port
}

// StartAlertmanager starts an Alertmanager on a free port until the test
// ends (`make test` builds it from the Go module proxy).
func StartAlertmanager(t testing.TB) *Alertmanager {
	t.Helper()
	bin := program(t, "IOTDASH_TEST_ALERTMANAGER", "alertmanager",
		"Build it with `go install github.com/prometheus/alertmanager/cmd/alertmanager@v0.31.1`")
	dir := t.TempDir()
	conf := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(conf, []byte("route:\n  receiver: none\n  group_wait: 1s\nreceivers:\n  - name: none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	p, err := start(bin, "--config.file="+conf, "--storage.path="+dir, "--web.listen-address="+addr, "--cluster.listen-address=")
	if err != nil {
		t.Fatalf("starting alertmanager: %v", err)
	}
	t.Cleanup(p.stop)
	if err := waitTCP(p, addr, 30*time.Second); err != nil {
		t.Fatalf("alertmanager: %v", err)
	}
	return &Alertmanager{URL: "http://" + addr}
}
