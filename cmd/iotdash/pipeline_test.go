package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"

	"iotdash/internal/testenv"
)

// TestPipeline publishes readings to a real Mosquitto as a device would, and
// follows them through iotdash to the store (InfluxDB, and the embedded
// store), to a live WebSocket client, and back out of the history API.
func TestPipeline(t *testing.T) {
	t.Run("influxdb", func(t *testing.T) {
		mq := testenv.StartMosquitto(t)
		ix := testenv.StartInfluxDB(t)
		app := startInProcess(t, "-mqtt", mq.URL, "-mqtt-client-id", "pipeline-influx",
			"-influx-url", ix.URL, "-influx-org", "any", "-influx-bucket", ix.Bucket)
		readings := checkPipeline(t, app, mq.URL)

		// The readings are in InfluxDB itself, one point per message.
		client := influxdb2.NewClient(ix.URL, "")
		defer client.Close()
		flux := fmt.Sprintf(`from(bucket: %q) |> range(start: -1h) |> filter(fn: (r) => r._measurement == "telemetry" and r.device == "pipe-1")`, ix.Bucket)
		res, err := client.QueryAPI("any").Query(context.Background(), flux)
		if err != nil {
			t.Fatalf("flux query: %v", err)
		}
		got := map[string]float64{}
		for res.Next() {
			got[res.Record().Field()+"@"+fmt.Sprint(res.Record().Time().UnixMilli())] = res.Record().Value().(float64)
		}
		for k, v := range readings {
			if got[k] != v {
				t.Errorf("InfluxDB has %s = %v, want %v (all: %v)", k, got[k], v, got)
			}
		}
	})
	t.Run("embedded store", func(t *testing.T) {
		mq := testenv.StartMosquitto(t)
		app := startInProcess(t, "-mqtt", mq.URL, "-mqtt-client-id", "pipeline-embedded")
		checkPipeline(t, app, mq.URL)
	})
}

// checkPipeline publishes meta, status and three telemetry messages for
// device pipe-1 and checks they arrive live and in history. It returns the
// readings as metric@time -> value.
func checkPipeline(t *testing.T, app *instance, broker string) map[string]float64 {
	live := dialLive(t, app.URL)
	pub := publisher(t, broker)
	publish(t, pub, "devices/pipe-1/meta", true, `{"name":"Pipe one","kind":"thermostat","location":"lab","units":{"temperature":"°C"}}`)
	publish(t, pub, "devices/pipe-1/status", true, "online")
	base := time.Now().Add(-time.Minute).UnixMilli()
	want := map[string]float64{}
	for i := range 3 {
		ts := base + int64(i)*1000
		publish(t, pub, "devices/pipe-1/telemetry", false, fmt.Sprintf(`{"ts":%d,"temperature":%g,"humidity":%g}`, ts, 20.5+float64(i), 40.25-float64(i)))
		want[fmt.Sprintf("temperature@%d", ts)] = 20.5 + float64(i)
		want[fmt.Sprintf("humidity@%d", ts)] = 40.25 - float64(i)
	}

	testenv.WaitFor(t, 10*time.Second, "the readings on the WebSocket", func() bool {
		n := 0
		for k, v := range want {
			m, ts, _ := strings.Cut(k, "@")
			if live.has(func(r wsReading) bool { return r.D == "pipe-1" && r.M == m && fmt.Sprint(r.T) == ts && r.V == v }) {
				n++
			}
		}
		return n == len(want)
	})

	var ans queryAnswer
	testenv.WaitFor(t, 15*time.Second, "the readings in the history API", func() bool {
		ans = queryAnswer{}
		getJSON(t, app.URL, rawQuery("pipe-1", "temperature", base, base+3000), &ans)
		return len(ans.Points) == 3
	})
	for i, p := range ans.Points {
		if int64(p[0]) != base+int64(i)*1000 || p[1] != 20.5+float64(i) {
			t.Errorf("history point %d = %v, want [%d %v]", i, p, base+int64(i)*1000, 20.5+float64(i))
		}
	}
	// An aggregated query over the same readings.
	var agg queryAnswer
	getJSON(t, app.URL, fmt.Sprintf("/api/v1/query?device=pipe-1&metric=humidity&from=%d&to=%d&step=1h&agg=min", base, base+3000), &agg)
	if len(agg.Points) != 1 || agg.Points[0][1] != 38.25 || agg.StepMS != 3600000 {
		t.Errorf("min over an hour = %+v, want one point of 38.25", agg)
	}

	var list []struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		Status   string `json:"status"`
		Location string `json:"location"`
		Latest   map[string]struct {
			V    float64 `json:"v"`
			Unit string  `json:"unit"`
		} `json:"latest"`
	}
	testenv.WaitFor(t, 10*time.Second, "pipe-1 in /api/v1/devices with its latest values", func() bool {
		list = nil
		getJSON(t, app.URL, "/api/v1/devices", &list)
		return len(list) == 1 && list[0].Latest["temperature"].V == 22.5
	})
	if list[0].ID != "pipe-1" || list[0].Name != "Pipe one" || list[0].Status != "online" ||
		list[0].Location != "lab" || list[0].Latest["temperature"].Unit != "°C" {
		t.Errorf("/api/v1/devices = %+v", list)
	}
	return want
}
