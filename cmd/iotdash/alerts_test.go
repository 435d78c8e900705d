package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"iotdash/internal/testenv"
)

// TestAlertsEndToEnd runs the built binary as an operator would with a
// real Alertmanager and a webhook receiver: a rule made over the API fires
// once for a boiler hovering around its threshold, reaches both, is
// acknowledged, survives a restart without being sent again, and its
// resolution reaches both. Self-contained, and with Mosquitto and
// InfluxDB: readings reach the rules the same way on both.
func TestAlertsEndToEnd(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		brokerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		alertsEndToEnd(t, "tcp://"+brokerAddr, "-broker", brokerAddr)
	})
	t.Run("mosquitto+influxdb", func(t *testing.T) {
		mq := testenv.StartMosquitto(t)
		ix := testenv.StartInfluxDB(t)
		alertsEndToEnd(t, mq.URL, "-mqtt", mq.URL, "-mqtt-client-id", "alerts-e2e", "-influx-url", ix.URL, "-influx-bucket", ix.Bucket)
	})
}

func alertsEndToEnd(t *testing.T, broker string, mode ...string) {
	am := testenv.StartAlertmanager(t)
	var mu sync.Mutex
	var got []string // each webhook's status
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Status string `json:"status"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		got = append(got, body.Status)
		mu.Unlock()
	}))
	defer rx.Close()
	received := func() string { mu.Lock(); defer mu.Unlock(); return strings.Join(got, ",") }

	bin := buildBinary(t)
	args := append([]string{"-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-data", t.TempDir(),
		"-simulate", "0", "-alertmanager-url", am.URL, "-alert-webhook", "critical=" + rx.URL}, mode...)
	p := startBinary(t, bin, args...)

	send := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, p.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := send("POST", "/api/v1/alerts/rules", `{"name":"Boiler too hot","device":"boiler-1","metric":"temperature","op":">","value":30,"clear":29,"severity":"critical"}`); code != http.StatusCreated {
		t.Fatalf("POST a rule: %d %s", code, body)
	}
	if code, body := send("POST", "/api/v1/alerts/rules", `{"name":"x","device":"boiler-1","metric":"temperature","op":">","value":30,"clear":31}`); code != http.StatusBadRequest || !strings.Contains(body, "clear 31 is above") {
		t.Errorf("POST a rule that clears above where it fires: %d %s, want a 400 that says so", code, body)
	}

	dev := publisher(t, broker)
	temp := func(vs ...float64) {
		for _, v := range vs {
			publish(t, dev, "devices/boiler-1/telemetry", false, fmt.Sprintf(`{"ts":%d,"temperature":%v}`, time.Now().UnixMilli(), v))
		}
	}
	temp(25, 30.5, 29.5, 30.4, 29.2, 31)
	testenv.WaitFor(t, 20*time.Second, "the webhook's firing notification", func() bool { return received() == "firing" })
	inAM := func() bool {
		resp, err := http.Get(am.URL + "/api/v2/alerts?filter=device%3D%22boiler-1%22")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var list []any
		json.NewDecoder(resp.Body).Decode(&list)
		return len(list) == 1
	}
	testenv.WaitFor(t, 20*time.Second, "Alertmanager to hold the alert", inAM)

	var firing []struct {
		Key   string `json:"key"`
		State string `json:"state"`
	}
	getJSON(t, p.URL, "/api/v1/alerts?state=firing", &firing)
	if len(firing) != 1 {
		t.Fatalf("/api/v1/alerts?state=firing: %+v", firing)
	}
	if code, body := send("POST", "/api/v1/alerts/"+firing[0].Key+"/ack", `{"comment":"on it"}`); code != http.StatusOK || !strings.Contains(body, `"acked_by":"admin"`) {
		t.Errorf("ack: %d %s", code, body)
	}

	// A restart while it fires: still firing, nothing sent again.
	p.stop(t)
	p = startBinary(t, bin, args...)
	dev = publisher(t, broker)
	getJSON(t, p.URL, "/api/v1/alerts?state=firing", &firing)
	if len(firing) != 1 {
		t.Fatalf("after a restart firing: %+v", firing)
	}
	temp(31.5, 29.5, 32)
	temp(28) // cooled below the clearing point
	testenv.WaitFor(t, 20*time.Second, "the webhook's resolution", func() bool { return received() != "firing" })
	if r := received(); r != "firing,resolved" {
		t.Errorf("the webhook received %s, want firing,resolved", r)
	}
	testenv.WaitFor(t, 20*time.Second, "Alertmanager to let the alert go", func() bool { return !inAM() })
}
