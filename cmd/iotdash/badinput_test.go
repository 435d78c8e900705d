package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"iotdash/internal/testenv"
)

// TestBadInput sends a stream that mixes good readings with bad messages
// through a real Mosquitto: every good reading is stored, every bad one is
// counted by reason, and iotdash keeps running.
func TestBadInput(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	app := startInProcess(t, "-mqtt", mq.URL, "-mqtt-client-id", "bad-input")
	pub := publisher(t, mq.URL)

	bad := []struct {
		topic, payload, reason string
	}{
		{"devices/good-1/telemetry", `{"temperature":`, "invalid_json"},
		{"devices/good-1/telemetry", `{"temperature":NaN}`, "invalid_json"},
		{"devices/good-1/telemetry", `{"temperature":Infinity}`, "invalid_json"},
		{"devices/good-1/telemetry", `{"temperature":"hot"}`, "not_number"},
		{"devices/good-1/telemetry", `{"temperature":1e400}`, "out_of_range"},
		{"devices/good-1/telemetry", `{"bad metric!":1}`, "metric_name"},
		{"devices/good-1/telemetry", `{"ts":"someday","temperature":1}`, "timestamp"},
		{"devices/good-1/telemetry", `{}`, "empty"},
		{"devices/good-1/telemetry", "{\"t\xffx\":1}", "invalid_json"},
		{"devices/good-1/telemetry", `{"a":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`, "not_number"},
		{"devices/good-1/telemetry", `{"a":"` + strings.Repeat("x", 1<<20) + `"}`, "too_large"},
		{"devices/good-1/firmware", `{"v":1}`, "topic"},
		{"devices/good-1/telemetry/extra", `{"v":1}`, "topic"},
		{"devices/bad id/telemetry", `{"v":1}`, "device_id"},
		{"devices/" + strings.Repeat("x", 65) + "/telemetry", `{"v":1}`, "device_id"},
		{"devices/good-1/meta", `[1,2,3]`, "meta"},
		{"devices/good-1/status", `maybe`, "status"},
	}
	wantReasons := map[string]int{}
	base := time.Now().Add(-time.Hour).UnixMilli()
	good := 0
	for i, b := range bad {
		publish(t, pub, "devices/good-1/telemetry", false, fmt.Sprintf(`{"ts":%d,"temperature":%d}`, base+int64(i)*1000, i))
		good++
		publish(t, pub, b.topic, false, b.payload)
		wantReasons[b.reason]++
	}
	publish(t, pub, "devices/good-1/telemetry", false, fmt.Sprintf(`{"ts":%d,"temperature":%d}`, base+int64(len(bad))*1000, len(bad)))
	good++

	var ans queryAnswer
	testenv.WaitFor(t, 15*time.Second, "every good reading in history", func() bool {
		ans = queryAnswer{}
		getJSON(t, app.URL, rawQuery("good-1", "temperature", base, base+int64(len(bad)+1)*1000), &ans)
		return len(ans.Points) == good
	})
	for i, p := range ans.Points {
		if p[1] != float64(i) {
			t.Errorf("reading %d = %v, want %d", i, p[1], i)
		}
	}
	for reason, n := range wantReasons {
		sample := fmt.Sprintf(`iotdash_rejected_total{reason=%q}`, reason)
		testenv.WaitFor(t, 10*time.Second, sample, func() bool { return metric(t, app.URL, sample) == float64(n) })
	}
	if got := metric(t, app.URL, "iotdash_readings_stored_total"); got != float64(good) {
		t.Errorf("readings stored = %v, want %d", got, good)
	}
	if resp, err := http.Get(app.URL + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("iotdash is not healthy after bad input: %v", err)
	}
}
