package main

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/internal/testenv"
)

var brokerLine = regexp.MustCompile(`embedded MQTT broker on (tcp://\S+)`)

// offLoopback returns an address of this machine that is not loopback,
// or skips the test, loudly, if it has none.
func offLoopback(t *testing.T) string {
	t.Helper()
	ifaces, _ := net.Interfaces()
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
				return ipn.IP.String()
			}
		}
	}
	t.Skip("SKIPPED: this machine has no non-loopback IPv4 address to run the embedded broker on; the off-loopback checks did not run")
	return ""
}

// mqttDial connects to url as user; it returns the connect error.
func mqttDial(t *testing.T, url, clientID, user, pass string) (mqtt.Client, error) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(clientID).SetUsername(user).SetPassword(pass).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false))
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("no CONNACK within 10s")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

// TestDeviceCommand: iotdash device add prints a secret once and refuses a
// second add, list shows the device, revoke takes it away; mistakes are
// usage errors.
func TestDeviceCommand(t *testing.T) {
	data := t.TempDir()
	device := func(args ...string) (string, error) {
		var out testenv.Buffer
		err := run(t.Context(), append([]string{"device"}, args...), testEnv, &out, &out)
		return out.String(), err
	}
	out, err := device("add", "pump-1", "-data", data)
	if err != nil || !strings.Contains(out, "pump-1") {
		t.Fatalf("device add = %q, %v", out, err)
	}
	secret := lastLine(out)
	if len(secret) != 43 {
		t.Errorf("the secret %q is not 43 characters (32 random bytes, base64url)", secret)
	}
	if _, err := device("-data", data, "add", "pump-1"); err == nil {
		t.Errorf("adding pump-1 twice succeeded")
	}
	if out, err := device("list", "-data", data); err != nil || !strings.HasPrefix(out, "pump-1\t") || strings.Contains(out, secret) {
		t.Errorf("device list = %q, %v; want pump-1 and no secret", out, err)
	}
	if _, err := device("revoke", "pump-1", "-data", data); err != nil {
		t.Errorf("device revoke: %v", err)
	}
	if _, err := device("revoke", "pump-1", "-data", data); err == nil {
		t.Errorf("revoking pump-1 twice succeeded")
	}
	for _, args := range [][]string{{"add"}, {"remove", "x"}, {"list", "extra"}} {
		if _, err := device(append(args, "-data", data)...); exitCode(err, &testenv.Buffer{}) != 2 {
			t.Errorf("iotdash device %v: exit code %d, want 2", args, exitCode(err, &testenv.Buffer{}))
		}
	}
	if _, err := device("add", "no/slash", "-data", data); err == nil {
		t.Errorf("a device id with a slash was added")
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// TestAnonymousOffLoopback: with the embedded broker off loopback an
// anonymous device is refused (and counted), unless -mqtt-anonymous says
// otherwise, which iotdash says loudly.
func TestAnonymousOffLoopback(t *testing.T) {
	ip := offLoopback(t)
	app := startInProcess(t, "-simulate", "0", "-broker", ip+":0")
	url := brokerLine.FindStringSubmatch(app.stdout.String())[1]
	if _, err := mqttDial(t, url, "anon", "", ""); err == nil {
		t.Fatalf("an anonymous client connected to the broker on %s", url)
	}
	if got := metric(t, app.URL, `iotdash_broker_refused_total{reason="anonymous"}`); got != 1 {
		t.Errorf(`iotdash_broker_refused_total{reason="anonymous"} = %v, want 1`, got)
	}

	open := startInProcess(t, "-simulate", "0", "-broker", ip+":0", "-mqtt-anonymous")
	url = brokerLine.FindStringSubmatch(open.stdout.String())[1]
	if _, err := mqttDial(t, url, "anon", "", ""); err != nil {
		t.Fatalf("with -mqtt-anonymous an anonymous client was refused: %v", err)
	}
	if !strings.Contains(open.stdout.String(), "WARNING: -mqtt-anonymous") {
		t.Errorf("-mqtt-anonymous off loopback was not announced:\n%s", open.stdout.String())
	}
}

// TestDeviceOffLoopback runs the built binary as an operator would:
// iotdash device add, then iotdash with its broker off loopback. The
// device connects with its secret and its readings are stored; its
// publish on another device's topic is refused; the simulated devices
// connect with iotdash's own secret for them.
func TestDeviceOffLoopback(t *testing.T) {
	ip := offLoopback(t)
	bin := buildBinary(t)
	data := t.TempDir()
	out, err := exec.Command(bin, "device", "add", "pump-7", "-data", data).CombinedOutput()
	if err != nil {
		t.Fatalf("iotdash device add: %v\n%s", err, out)
	}
	secret := lastLine(string(out))
	brokerAddr := fmt.Sprintf("%s:%d", ip, testenv.FreePort(t))
	p := startBinary(t, bin, "-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-broker", brokerAddr, "-data", data,
		"-simulate", "2", "-simulate-interval", "500ms")
	url := "tcp://" + brokerAddr

	if _, err := mqttDial(t, url, "pump-7", "pump-7", "not-"+secret); err == nil {
		t.Fatal("pump-7 connected with a wrong secret")
	}
	dev, err := mqttDial(t, url, "pump-7", "pump-7", secret)
	if err != nil {
		t.Fatalf("pump-7 could not connect with its secret: %v", err)
	}
	publish(t, dev, "devices/pump-7/telemetry", false, fmt.Sprintf(`{"ts":%d,"pressure":2.5}`, time.Now().UnixMilli()))
	dev.Publish("devices/pump-8/telemetry", 1, false, `{"pressure":9}`)

	var list []struct {
		ID string `json:"id"`
	}
	testenv.WaitFor(t, 30*time.Second, "pump-7 and the 2 simulated devices listed", func() bool {
		list = nil
		getJSON(t, p.URL, "/api/v1/devices", &list)
		return len(list) == 3
	})
	for _, d := range list {
		if d.ID == "pump-8" {
			t.Errorf("pump-8, published by pump-7, is listed")
		}
	}
	if got := metric(t, p.URL, `iotdash_broker_refused_total{reason="acl_publish"}`); got != 1 {
		t.Errorf(`iotdash_broker_refused_total{reason="acl_publish"} = %v, want 1`, got)
	}
	if got := metric(t, p.URL, `iotdash_broker_refused_total{reason="credentials"}`); got != 1 {
		t.Errorf(`iotdash_broker_refused_total{reason="credentials"} = %v, want 1`, got)
	}
	p.stop(t)
}
