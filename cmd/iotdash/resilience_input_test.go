package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/internal/testenv"
)

// hostileCorpus is what devices must not be able to get stored: each
// message and the reason iotdash_rejected_total counts it under. Topics with
// + or # cannot be published (MQTT forbids them in topic names, and brokers
// disconnect who tries), nor can control characters or invalid UTF-8 in a
// topic; everything else a device can send is here.
func hostileCorpus() []struct{ topic, payload, reason string } {
	const tel = "devices/hostile-1/telemetry"
	deep := strings.Repeat("[", 30000) + strings.Repeat("]", 30000)
	many := &strings.Builder{}
	many.WriteString("{")
	for i := range 10000 {
		fmt.Fprintf(many, `"m%d":%d,`, i, i)
	}
	many.WriteString(`"v":1}`)
	return []struct{ topic, payload, reason string }{
		// Invalid UTF-8, in and around strings.
		{tel, "{\"note\":\"\xff\xfe\",\"v\":1}", "invalid_json"},
		{tel, "{\"\xc3\x28\":1}", "invalid_json"},
		{tel, "{\"\xc0\xaf\":1}", "invalid_json"}, // overlong encoding of '/'
		{tel, "{\"v\":1}\xff", "invalid_json"},
		{tel, "\xef\xbb\xbf{\"v\":1}", "invalid_json"}, // byte order mark
		{tel, "{\"v\":1}\x00", "invalid_json"},
		{tel, `{"\ud800":1}`, "metric_name"}, // a lone surrogate decodes to U+FFFD
		// Huge and deeply nested.
		{tel, `{"v":1,"pad":"` + strings.Repeat("x", 70000) + `"}`, "too_large"},
		{tel, many.String(), "too_large"},
		{tel, `{"v":` + deep + `}`, "invalid_json"}, // deeper than encoding/json's limit
		{tel, deep, "invalid_json"},
		{tel, `{"v":{"a":{"b":[1,2,{"c":null}]}}}`, "not_number"},
		// Not numbers, and numbers out of range.
		{tel, `{"v":NaN}`, "invalid_json"},
		{tel, `{"v":nan}`, "invalid_json"},
		{tel, `{"v":Infinity}`, "invalid_json"},
		{tel, `{"v":-Infinity}`, "invalid_json"},
		{tel, `{"v":"NaN"}`, "not_number"},
		{tel, `{"v":+1}`, "invalid_json"},
		{tel, `{"v":0x10}`, "invalid_json"},
		{tel, `{"v":.5}`, "invalid_json"},
		{tel, `{"v":1.}`, "invalid_json"},
		{tel, `{"v":1e309}`, "out_of_range"},
		{tel, `{"v":-1e400}`, "out_of_range"},
		{tel, `{"v":1` + strings.Repeat("0", 400) + `}`, "out_of_range"},
		{tel, `{"ts":1e30,"v":1}`, "timestamp"},
		{tel, `{"ts":-1,"v":1}`, "timestamp"},
		{tel, `{"ts":99999999999999999999,"v":1}`, "timestamp"},
		{tel, `{"ts":"9999-12-31T23:59:59Z","v":1}`, "timestamp"},
		{tel, `{"ts":[1],"v":1}`, "timestamp"},
		// Metric names with separators, wildcards and line-protocol syntax.
		{tel, `{"a+b":1}`, "metric_name"},
		{tel, `{"#":1}`, "metric_name"},
		{tel, `{"a/b":1}`, "metric_name"},
		{tel, `{"a,b=c":1}`, "metric_name"},
		{tel, `{"a b":1}`, "metric_name"},
		{tel, `{"ä":1}`, "metric_name"},
		{tel, `{"":1}`, "metric_name"},
		{tel, `{"` + strings.Repeat("x", 65) + `":1}`, "metric_name"},
		// Not an object, or nothing in it.
		{tel, ``, "invalid_json"},
		{tel, `null`, "invalid_json"},
		{tel, `"v"`, "invalid_json"},
		{tel, `[]`, "invalid_json"},
		{tel, `{}`, "empty"},
		{tel, `{"ts":1764000000000}`, "empty"},
		// Device ids with separators and other characters outside the contract.
		{"devices/a:b/telemetry", `{"v":1}`, "device_id"},
		{"devices/a,b=c/telemetry", `{"v":1}`, "device_id"},
		{"devices/a b/telemetry", `{"v":1}`, "device_id"},
		{"devices/ä/telemetry", `{"v":1}`, "device_id"},
		{"devices/$x/telemetry", `{"v":1}`, "device_id"},
		{"devices/a%2Bb/telemetry", `{"v":1}`, "device_id"},
		{"devices//telemetry", `{"v":1}`, "device_id"},
		{"devices/" + strings.Repeat("x", 20000) + "/telemetry", `{"v":1}`, "device_id"},
		// Topics outside the contract.
		{"devices/hostile-1/telemetry/", `{"v":1}`, "topic"},
		{"devices/hostile-1/a/telemetry", `{"v":1}`, "topic"},
		{"devices/hostile-1/Telemetry", `{"v":1}`, "topic"},
		{"devices/hostile-1", `{"v":1}`, "topic"},
		{"devices/", `{"v":1}`, "topic"},
	}
}

// retainedJunk is junk devices leave on their retained topics, where every
// (re)subscription finds it again.
func retainedJunk() []struct{ topic, payload, reason string } {
	const meta, status = "devices/junk-1/meta", "devices/junk-2/status"
	return []struct{ topic, payload, reason string }{
		{meta, `[1,2,3]`, "meta"},
		{meta, `{"name":`, "meta"},
		{meta, `"x"`, "meta"},
		{meta, `true`, "meta"},
		{meta, `null`, "meta"},
		{meta, "{\"name\":\"\xff\"}", "meta"},
		{meta, `{"name":"` + strings.Repeat("x", 20000) + `"}`, "meta"},
		{meta, `{"name":` + strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat("}", 5001), "meta"},
		{meta, `{"units":{"a b":"x"}}`, "meta"},
		{meta, `{"limits":{"t":[5,1]}}`, "meta"},
		{meta, `{"limits":{"t":[1e400,2]}}`, "meta"},
		{status, `maybe`, "status"},
		{status, `ONLINE`, "status"},
		{status, "online\n", "status"},
		{status, `{"status":"online"}`, "status"},
		{status, "\xff\xfe", "status"},
		{status, strings.Repeat("x", 100000), "status"},
	}
}

// TestResilienceHostileInput replays a corpus of hostile messages through a
// real Mosquitto, each between two good readings, then a flood of bad
// messages: every hostile message is rejected and counted by reason in
// /metrics, none leaves a reading or a device state behind, every good
// reading around them is stored, the flood is logged at a limited rate, and
// iotdash stays healthy. (badinput_test.go covers the basic cases.)
func TestResilienceHostileInput(t *testing.T) {
	t.Parallel()
	mq := testenv.StartMosquitto(t, keepQueued)
	app := startInProcess(t, "-mqtt", mq.URL, "-mqtt-client-id", "hostile-input")
	pub := publisher(t, mq.URL)
	before, err := scrape(app.URL)
	if err != nil {
		t.Fatal(err)
	}

	corpus := hostileCorpus()
	junk := retainedJunk()
	want := map[string]int{}
	base := time.Now().Add(-time.Hour).UnixMilli()
	good := 0
	send := func(topic string, retained bool, payload string) {
		tok := pub.Publish(topic, 1, retained, payload)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish to %.80s: %v", topic, tok.Error())
		}
	}
	for _, c := range corpus {
		send("devices/hostile-good/telemetry", false, fmt.Sprintf(`{"ts":%d,"v":%d}`, base+int64(good)*1000, good))
		good++
		send(c.topic, false, c.payload)
		want[c.reason]++
	}
	for _, c := range junk {
		send("devices/hostile-good/telemetry", false, fmt.Sprintf(`{"ts":%d,"v":%d}`, base+int64(good)*1000, good))
		good++
		send(c.topic, true, c.payload)
		want[c.reason]++
	}
	send("devices/hostile-good/telemetry", false, fmt.Sprintf(`{"ts":%d,"v":%d}`, base+int64(good)*1000, good))
	good++

	// A flood of bad messages, as fast as the broker takes them.
	const flood = 2000
	floodStart := time.Now()
	toks := make([]mqtt.Token, 0, flood)
	for i := range flood {
		toks = append(toks, pub.Publish("devices/flood-1/telemetry", 1, false, fmt.Sprintf(`{"v":NaN,"n":%d}`, i)))
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("flood: %v", tok.Error())
		}
	}
	want["invalid_json"] += flood

	var ans queryAnswer
	testenv.WaitFor(t, 30*time.Second, "every good reading in history", func() bool {
		ans = queryAnswer{}
		getJSON(t, app.URL, rawQuery("hostile-good", "v", base, base+int64(good)*1000), &ans)
		return len(ans.Points) == good
	})
	for i, p := range ans.Points {
		if p != [2]float64{float64(base + int64(i)*1000), float64(i)} {
			t.Errorf("good reading %d = %v, want [%d %d]", i, p, base+int64(i)*1000, i)
		}
	}
	total := 0
	for reason, n := range want {
		sample := fmt.Sprintf(`iotdash_rejected_total{reason=%q}`, reason)
		testenv.WaitFor(t, 30*time.Second, sample, func() bool {
			m, err := scrape(app.URL)
			return err == nil && m[sample]-before[sample] >= float64(n)
		})
		total += n
	}
	floodTook := time.Since(floodStart)
	after, err := scrape(app.URL)
	if err != nil {
		t.Fatal(err)
	}
	var counted []string
	for reason, n := range want {
		sample := fmt.Sprintf(`iotdash_rejected_total{reason=%q}`, reason)
		if got := after[sample] - before[sample]; got != float64(n) {
			t.Errorf("%s rose by %v, want %d", sample, got, n)
		}
		counted = append(counted, fmt.Sprintf("%s %d", reason, n))
	}
	slices.Sort(counted)
	if got := after["iotdash_readings_stored_total"] - before["iotdash_readings_stored_total"]; got != float64(good) {
		t.Errorf("readings stored = %v, want only the %d good ones", got, good)
	}

	// No hostile device got a reading, a name or a presence.
	var list []struct {
		ID     string         `json:"id"`
		Name   string         `json:"name"`
		Status string         `json:"status"`
		Latest map[string]any `json:"latest"`
	}
	getJSON(t, app.URL, "/api/v1/devices", &list)
	for _, d := range list {
		if d.ID != "hostile-good" && (len(d.Latest) > 0 || d.Name != "" || d.Status == "online" || d.Status == "offline") {
			t.Errorf("hostile input left device state behind: %+v", d)
		}
	}
	logged := strings.Count(app.stderr.String(), `msg="rejected message"`)
	if logged > 100 {
		t.Errorf("%d rejections were logged in %d lines, want a limited rate", total, logged)
	}
	if code, body := readiness(app.URL); code != http.StatusOK {
		t.Errorf("/readyz after hostile input = %d %s", code, body)
	}
	figures(t, "hostile-input", "%d hostile messages (%d live, %d retained on meta and status) and a flood of %d invalid ones, each between good readings: all %d rejected and counted (%s); %d good readings stored, all of them and nothing else; %d log lines for the %d rejections (all counted %v after the flood began)",
		len(corpus)+len(junk), len(corpus), len(junk), flood, total, strings.Join(counted, ", "), good, logged, total, floodTook.Round(10*time.Millisecond))
}
