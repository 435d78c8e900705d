package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestComposeFile loads docker-compose.yml with the compose-spec loader (no
// Docker engine runs here) and checks the production shape it describes.
func TestComposeFile(t *testing.T) {
	dir, _ := filepath.Abs("../..")
	path := filepath.Join(dir, "docker-compose.yml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: path, Content: b}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("iotdash", true) })
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
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
}

// knownEnv reports whether iotdash reads the environment variable k.
func knownEnv(t *testing.T, k string) bool {
	read := map[string]bool{}
	parseFlags(nil, func(name string) string { read[name] = true; return "" }, nil)
	return read[k]
}
