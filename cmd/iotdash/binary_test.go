package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"iotdash/internal/testenv"
)

// buildBinary builds iotdash once for the tests that run it as a user does.
func buildBinary(t testing.TB) string { return testenv.Iotdash(t) }

// process is the iotdash binary running as a user starts it.
type process struct {
	cmd    *exec.Cmd
	URL    string
	stdout *testenv.Buffer
	stderr *testenv.Buffer
	done   chan error
}

func startBinary(t testing.TB, bin string, args ...string) *process {
	t.Helper()
	p := &process{stdout: &testenv.Buffer{}, stderr: &testenv.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.Env = append(os.Environ(), "IOTDASH_ADMIN_PASSWORD="+adminPassword)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("iotdash stdout:\n%s\nstderr:\n%s", p.stdout.String(), p.stderr.String())
		}
	})
	testenv.WaitFor(t, 30*time.Second, "iotdash to print its address", func() bool {
		if m := dashboardLine.FindStringSubmatch(p.stdout.String()); m != nil {
			p.URL = withAdmin(m[1])
			return true
		}
		return false
	})
	(&instance{URL: p.URL}).waitReady(t)
	return p
}

// stop sends SIGTERM and checks that iotdash exits cleanly with code 0.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := testenv.Terminate(p.cmd, p.done); err != nil {
		t.Fatal(err)
	}
}

// TestSelfContained runs the built binary as a user starts it (no flags but
// free ports): a browser-like client sees live readings from the 12
// simulated devices, the history API returns them, and after a restart the
// history is still there.
func TestSelfContained(t *testing.T) {
	bin := buildBinary(t)
	data := t.TempDir()
	args := []string{
		"-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		"-broker", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		"-data", data,
		"-simulate-interval", "500ms",
	}
	p := startBinary(t, bin, args...)
	live := dialLive(t, p.URL)
	testenv.WaitFor(t, 30*time.Second, "live readings from 12 simulated devices", func() bool { return len(live.devices()) == 12 })

	var list []struct {
		ID     string         `json:"id"`
		Status string         `json:"status"`
		Latest map[string]any `json:"latest"`
	}
	getJSON(t, p.URL, "/api/v1/devices", &list)
	if len(list) != 12 {
		t.Fatalf("/api/v1/devices lists %d devices, want 12", len(list))
	}
	dev := list[0]
	var metricName string
	for m := range dev.Latest {
		metricName = m
		break
	}
	from := time.Now().Add(-time.Hour).UnixMilli()
	var before queryAnswer
	testenv.WaitFor(t, 10*time.Second, "history of "+dev.ID, func() bool {
		before = queryAnswer{}
		getJSON(t, p.URL, rawQuery(dev.ID, metricName, from, time.Now().Add(time.Minute).UnixMilli()), &before)
		return len(before.Points) >= 2
	})
	p.stop(t)

	// Started again on the same data: the history is still there.
	p = startBinary(t, bin, args...)
	var after queryAnswer
	getJSON(t, p.URL, rawQuery(dev.ID, metricName, from, int64(before.Points[len(before.Points)-1][0])+1), &after)
	if len(after.Points) < len(before.Points) {
		t.Fatalf("after a restart the history has %d points, want at least the %d from before", len(after.Points), len(before.Points))
	}
	for i, pt := range before.Points {
		if after.Points[i] != pt {
			t.Fatalf("point %d after restart = %v, want %v", i, after.Points[i], pt)
		}
	}
	p.stop(t)
}

// TestPortTaken checks that a taken port gives a one-line error naming the
// flag to change.
func TestPortTaken(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	var out testenv.Buffer
	err := run(t.Context(), []string{"-http", mq.Addr, "-data", t.TempDir()}, func(string) string { return "" }, &out, &out)
	if err == nil || !containsAll(err.Error(), mq.Addr, "-http") {
		t.Errorf("run with a taken -http port = %v, want an error naming %s and -http", err, mq.Addr)
	}
	err = run(t.Context(), []string{"-http", "127.0.0.1:0", "-broker", mq.Addr, "-data", t.TempDir()}, func(string) string { return "" }, &out, &out)
	if err == nil || !containsAll(err.Error(), mq.Addr, "-broker") {
		t.Errorf("run with a taken -broker port = %v, want an error naming %s and -broker", err, mq.Addr)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
