package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/internal/testenv"
)

// composeSecrets are the secrets docker-compose.yml requires, as an
// operator's .env would give them.
var composeSecrets = types.Mapping{
	"INFLUX_TOKEN": "test-token", "INFLUX_PASSWORD": "test-password",
	"MQTT_IOTDASH_PASSWORD": "test-iotdash", "MQTT_IOTSIM_PASSWORD": "test-iotsim",
}

// loadCompose loads docker-compose.yml with the compose-spec loader (no
// Docker engine runs here) in env.
func loadCompose(t *testing.T, env types.Mapping) (*types.Project, error) {
	t.Helper()
	dir, _ := filepath.Abs("../..")
	path := filepath.Join(dir, "docker-compose.yml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: path, Content: b}},
		Environment: env,
	}, func(o *loader.Options) { o.SetProjectName("iotdash", true) })
}

// TestComposeFile checks the production shape docker-compose.yml
// describes: no default secrets (it does not load without them), ports on
// loopback only, Mosquitto with a password file and an ACL.
func TestComposeFile(t *testing.T) {
	for k := range composeSecrets {
		without := types.Mapping{}
		for k2, v := range composeSecrets {
			if k2 != k {
				without[k2] = v
			}
		}
		if _, err := loadCompose(t, without); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("docker-compose.yml loads without %s (error %v): it must refuse to start without its secrets", k, err)
		}
	}
	p, err := loadCompose(t, composeSecrets)
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	for name, svc := range p.Services {
		for _, port := range svc.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("service %s publishes port %d on %q, want 127.0.0.1", name, port.Target, port.HostIP)
			}
		}
	}
	for _, name := range []string{"mosquitto", "influxdb", "iotdash", "simulator"} {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("service %s missing", name)
		}
	}
	ix := p.Services["influxdb"]
	if !strings.HasPrefix(ix.Image, "influxdb:2") {
		t.Errorf("influxdb image = %q, want InfluxDB 2.x", ix.Image)
	}
	for _, k := range []string{"DOCKER_INFLUXDB_INIT_MODE", "DOCKER_INFLUXDB_INIT_ORG", "DOCKER_INFLUXDB_INIT_BUCKET", "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"} {
		if v := ix.Environment[k]; v == nil || *v == "" {
			t.Errorf("influxdb is not initialised: %s unset", k)
		}
	}
	app := p.Services["iotdash"]
	env := func(k string) string {
		if v := app.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	if env("IOTDASH_MQTT") != "tcp://mosquitto:1883" || env("IOTDASH_INFLUX_URL") != "http://influxdb:8086" {
		t.Errorf("iotdash is not pointed at the mosquitto and influxdb services: %v", app.Environment)
	}
	if env("INFLUX_TOKEN") != *ix.Environment["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] {
		t.Errorf("iotdash's INFLUX_TOKEN differs from the token InfluxDB is initialised with")
	}
	if env("IOTDASH_INFLUX_BUCKET") != *ix.Environment["DOCKER_INFLUXDB_INIT_BUCKET"] {
		t.Errorf("iotdash's bucket differs from the one InfluxDB is initialised with")
	}
	// Every IOTDASH_* variable the file sets must be one iotdash reads.
	for k := range app.Environment {
		if strings.HasPrefix(k, "IOTDASH_") && !knownEnv(t, k) {
			t.Errorf("docker-compose.yml sets %s, which iotdash does not read", k)
		}
	}
	if _, ok := p.Services["simulator"].Environment["IOTSIM_MQTT"]; !ok {
		t.Errorf("simulator service is not pointed at the broker")
	}
	conf, ok := p.Configs["mosquitto_conf"]
	if !ok || !strings.Contains(conf.Content, "max_inflight_messages") {
		t.Errorf("mosquitto config must raise max_inflight_messages (see README)")
	}
	for _, line := range []string{"allow_anonymous false", "password_file ", "acl_file "} {
		if !strings.Contains(conf.Content, line) {
			t.Errorf("mosquitto config lacks %q", line)
		}
	}
	if env("IOTDASH_MQTT_USER") == "" || env("IOTDASH_MQTT_PASSWORD") != composeSecrets["MQTT_IOTDASH_PASSWORD"] {
		t.Errorf("iotdash does not sign in to Mosquitto with MQTT_IOTDASH_PASSWORD")
	}
	if sim := p.Services["simulator"].Environment; sim["IOTSIM_USERNAME"] == nil || sim["IOTSIM_PASSWORD"] == nil || *sim["IOTSIM_PASSWORD"] != composeSecrets["MQTT_IOTSIM_PASSWORD"] {
		t.Errorf("the simulator does not sign in to Mosquitto with MQTT_IOTSIM_PASSWORD")
	}
}

// knownEnv reports whether iotdash reads the environment variable k.
func knownEnv(t *testing.T, k string) bool {
	read := map[string]bool{}
	parseFlags(nil, func(name string) string { read[name] = true; return "" }, nil)
	return read[k]
}

// TestComposeMosquittoACL runs a real Mosquitto with docker-compose.yml's
// ACL and a password file made as its mosquitto service makes it (plus a
// device added as the README says): anonymous clients are refused, a
// device publishes only on its own topics, the simulator on any device's,
// and iotdash reads them all.
func TestComposeMosquittoACL(t *testing.T) {
	p, err := loadCompose(t, composeSecrets)
	if err != nil {
		t.Fatal(err)
	}
	passwd, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Skip("SKIPPED: mosquitto_passwd not found; install it with `apt-get install mosquitto`")
	}
	dir := t.TempDir()
	acl, pw := filepath.Join(dir, "acl"), filepath.Join(dir, "passwd")
	if err := os.WriteFile(acl, []byte(p.Configs["mosquitto_acl"].Content), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, u := range [][2]string{{"iotdash", composeSecrets["MQTT_IOTDASH_PASSWORD"]}, {"iotsim", composeSecrets["MQTT_IOTSIM_PASSWORD"]}, {"pump-1", "pump-1-secret"}} {
		args := []string{"-b", pw, u[0], u[1]}
		if _, err := os.Stat(pw); err != nil {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command(passwd, args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
		}
	}
	mq := testenv.StartMosquitto(t, "allow_anonymous false", "password_file "+pw, "acl_file "+acl)

	if _, err := mqttDial(t, mq.URL, "anon", "", ""); err == nil {
		t.Errorf("an anonymous client connected")
	}
	if _, err := mqttDial(t, mq.URL, "pump-1", "pump-1", "wrong"); err == nil {
		t.Errorf("pump-1 connected with a wrong password")
	}
	got := make(chan string, 10)
	ingester, err := mqttDial(t, mq.URL, "iotdash-ingest", "iotdash", composeSecrets["MQTT_IOTDASH_PASSWORD"])
	if err != nil {
		t.Fatal(err)
	}
	if tok := ingester.Subscribe("devices/#", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m.Topic() }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	dev, err := mqttDial(t, mq.URL, "pump-1", "pump-1", "pump-1-secret")
	if err != nil {
		t.Fatal(err)
	}
	sim, err := mqttDial(t, mq.URL, "iotsim-x", "iotsim", composeSecrets["MQTT_IOTSIM_PASSWORD"])
	if err != nil {
		t.Fatal(err)
	}
	spy := make(chan string, 10)
	dev.Subscribe("#", 1, func(_ mqtt.Client, m mqtt.Message) { spy <- m.Topic() })
	// Mosquitto takes a publish it does not allow and drops it; one
	// connection's messages arrive in order, so the allowed one after it
	// shows it has been dealt with.
	publish(t, dev, "devices/pump-2/telemetry", false, `{"v":1}`)
	publish(t, dev, "devices/pump-1/telemetry", false, `{"v":1}`)
	publish(t, sim, "devices/thermo-9/telemetry", false, `{"v":1}`)
	want := []string{"devices/pump-1/telemetry", "devices/thermo-9/telemetry"}
	for _, w := range want {
		select {
		case topic := <-got:
			if topic != w {
				t.Errorf("iotdash got %s, want %s", topic, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("iotdash did not get %s", w)
		}
	}
	for deadline := time.After(200 * time.Millisecond); ; {
		select {
		case topic := <-spy:
			if topic != "devices/pump-1/telemetry" {
				t.Errorf("pump-1 subscribed to # and read %s", topic)
			}
			continue
		case <-deadline:
		}
		break
	}

	// With -mqtt-connections > 1 iotdash reads telemetry through a shared
	// subscription, which the same ACL lets it make and read.
	shared, err := mqttDial(t, mq.URL, "iotdash-ingest-1", "iotdash", composeSecrets["MQTT_IOTDASH_PASSWORD"])
	if err != nil {
		t.Fatal(err)
	}
	tok := shared.Subscribe("$share/iotdash-ingest/devices/+/telemetry", 1, func(_ mqtt.Client, m mqtt.Message) { got <- "shared " + m.Topic() })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if codes := tok.(*mqtt.SubscribeToken).Result(); codes["$share/iotdash-ingest/devices/+/telemetry"] > 2 {
		t.Fatalf("the shared subscription was refused: %v", codes)
	}
	publish(t, dev, "devices/pump-1/telemetry", false, `{"v":2}`)
	// The plain subscription and the shared one each get it, in either order.
	var both []string
	for range 2 {
		select {
		case topic := <-got:
			both = append(both, topic)
		case <-time.After(10 * time.Second):
			t.Fatalf("iotdash got only %v of the message on its plain and shared subscriptions", both)
		}
	}
	if slices.Sort(both); !slices.Equal(both, []string{"devices/pump-1/telemetry", "shared devices/pump-1/telemetry"}) {
		t.Errorf("iotdash got %v", both)
	}
}
