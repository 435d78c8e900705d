package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/internal/testenv"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestHelpExplainsEveryFlag(t *testing.T) {
	var stdout, stderr testenv.Buffer
	if err := run(context.Background(), []string{"-h"}, envOf(nil), &stdout, &stderr); err != nil {
		t.Fatalf("run -h: %v", err)
	}
	for _, name := range []string{"mqtt", "devices", "interval", "seed", "churn", "scenario", "rate", "for", "conns", "qos", "stamp"} {
		if !strings.Contains(stderr.String(), "-"+name) || !strings.Contains(stderr.String(), "$"+env(name)) {
			t.Errorf("help lacks -%s or $%s:\n%s", name, env(name), stderr.String())
		}
	}
}

func TestBadFlagsAndEnvironment(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-devices", "many"}, nil, "usage"},
		{[]string{"extra"}, nil, "usage"},
		{nil, map[string]string{"IOTSIM_INTERVAL": "often"}, "IOTSIM_INTERVAL"},
		{[]string{"-rate", "10", "-qos", "2"}, nil, "qos"},
		{[]string{"-scenario", "no-such-scenario"}, nil, "no-such-scenario"},
		{[]string{"-mqtt", "localhost:1883"}, nil, "broker"},
	} {
		var stdout, stderr testenv.Buffer
		err := run(context.Background(), tc.args, envOf(tc.env), &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %v with %v: got %v, want an error about %s", tc.args, tc.env, err, tc.want)
		}
	}
}

// countTelemetry subscribes to the broker's telemetry and counts it by device.
func countTelemetry(t *testing.T, broker string) func() map[string]int {
	var mu sync.Mutex
	counts := map[string]int{}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("cmd-test-watcher"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	tok := c.Subscribe("devices/+/telemetry", 0, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		counts[strings.Split(m.Topic(), "/")[1]]++
		mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher: %v", tok.Error())
	}
	return func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range counts {
			out[k] = v
		}
		return out
	}
}

// runUntil runs iotsim with args and env until the telemetry counted so far
// satisfies ok, then interrupts it and returns what it printed.
func runUntil(t *testing.T, broker string, args []string, env map[string]string, ok func(map[string]int) bool) (stdout string) {
	t.Helper()
	counts := countTelemetry(t, broker)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut testenv.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, envOf(env), &out, &errOut) }()
	deadline := time.Now().Add(15 * time.Second)
	for c := counts(); !ok(c); c = counts() {
		if time.Now().After(deadline) {
			t.Fatalf("run %v: got telemetry %v; stdout %q stderr %q", args, c, out.String(), errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String()
}

// Fleet mode takes its broker from the environment and its size from a flag
// that overrides the environment, runs until interrupted, and leaves cleanly.
func TestFleetModeUntilInterrupted(t *testing.T) {
	broker := testenv.StartMosquitto(t)
	env := map[string]string{"IOTSIM_MQTT": broker.URL, "IOTSIM_DEVICES": "7", "IOTSIM_INTERVAL": "100ms"}
	out := runUntil(t, broker.URL, []string{"-devices", "3"}, env, func(c map[string]int) bool {
		return len(c) == 3 && c["thermostat-01"] >= 3 && c["power-meter-01"] >= 3 && c["air-quality-01"] >= 3
	})
	if !strings.Contains(out, "simulating 3 devices") || !strings.Contains(out, "offline cleanly") {
		t.Errorf("stdout: %q", out)
	}
}

func TestScenarioMode(t *testing.T) {
	broker := testenv.StartMosquitto(t)
	out := runUntil(t, broker.URL, []string{"-mqtt", broker.URL, "-scenario", "boiler-room"}, nil, func(c map[string]int) bool {
		return c["boiler-3"] > 0
	})
	if !strings.Contains(out, "simulating 8 devices") {
		t.Errorf("stdout: %q", out)
	}
}

func TestLoadMode(t *testing.T) {
	broker := testenv.StartMosquitto(t)
	counts := countTelemetry(t, broker.URL)
	var stdout, stderr testenv.Buffer
	args := []string{"-mqtt", broker.URL, "-rate", "500", "-for", "1500ms", "-devices", "20", "-conns", "2", "-stamp"}
	if err := run(context.Background(), args, envOf(nil), &stdout, &stderr); err != nil {
		t.Fatalf("run %v: %v\n%s%s", args, err, stdout.String(), stderr.String())
	}
	if out := stdout.String(); !strings.Contains(out, "sent") || !strings.Contains(out, "rate 500/s held") {
		t.Errorf("stdout: %q", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for total(counts()) < 750 {
		if time.Now().After(deadline) {
			t.Fatalf("got %d messages, want 750", total(counts()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(counts()); n != 20 {
		t.Errorf("messages from %d devices, want 20", n)
	}
}

// A rate far beyond any machine is not held, and run says so.
func TestLoadModeFailsWhenTheRateIsNotHeld(t *testing.T) {
	broker := testenv.StartMosquitto(t)
	var stdout, stderr testenv.Buffer
	err := run(context.Background(), []string{"-mqtt", broker.URL, "-rate", "50000000", "-for", "300ms", "-qos", "0", "-conns", "1"}, envOf(nil), &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "not held") {
		t.Errorf("got %v, want the rate not held; stdout %q", err, stdout.String())
	}
	if !strings.Contains(stdout.String(), "NOT held") {
		t.Errorf("stdout %q, want a summary saying NOT held", stdout.String())
	}
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
