package ingest_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"iotdash/broker"
	"iotdash/devices"
	"iotdash/ingest"
	"iotdash/store"
	"iotdash/store/sqlite"
)

// embedded starts an ingester fed by a real embedded broker, as iotdash's
// self-contained mode runs them, and returns the broker's URL.
func embedded(t *testing.T, cfg ingest.Config) string {
	t.Helper()
	in := runSubmitted(t, cfg)
	b, err := broker.Start("127.0.0.1:0", broker.Options{Deliver: in.Submit, Anonymous: true}) // the demo path: loopback
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.URL()
}

// publish sends each payload to its topic with QoS 1 and waits for every
// PUBACK: once it returns, every message is committed or refused.
func publish(t *testing.T, url string, msgs [][2]string) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	var toks []mqtt.Token
	for _, m := range msgs {
		toks = append(toks, c.Publish(m[0], 1, false, m[1]))
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
}

// TestFleetLimits: past the fleet's limits new devices and new metrics are
// refused and counted by reason, while every reading within them is
// stored, and the devices already known keep sending.
func TestFleetLimits(t *testing.T) {
	st := &memStore{}
	fleet := devices.NewFleet(nil)
	fleet.SetLimits(devices.Limits{Devices: 3, Metrics: 2})
	m := ingest.NewMetrics(nil)
	url := embedded(t, ingest.Config{Store: st, Fleet: fleet, Metrics: m})

	ts := time.Now().UnixMilli()
	var msgs [][2]string
	for _, d := range []string{"d1", "d2", "d3", "d4", "d5"} {
		msgs = append(msgs, [2]string{"devices/" + d + "/telemetry", fmt.Sprintf(`{"ts":%d,"a":1,"b":2,"c":3}`, ts)})
	}
	msgs = append(msgs,
		[2]string{"devices/d6/status", "online"},                                // a sixth device, without readings
		[2]string{"devices/d1/telemetry", fmt.Sprintf(`{"ts":%d,"a":4}`, ts+1)}) // known: taken
	publish(t, url, msgs)

	rs, _ := st.snapshot()
	var got []string
	for _, r := range rs {
		got = append(got, fmt.Sprintf("%s.%s=%v", r.Device, r.Metric, r.Value))
	}
	want := []string{"d1.a=1", "d1.b=2", "d2.a=1", "d2.b=2", "d3.a=1", "d3.b=2", "d1.a=4"}
	if !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
	if n := len(fleet.List()); n != 3 {
		t.Errorf("the fleet has %d devices, want 3", n)
	}
	for reason, want := range map[string]float64{ingest.ReasonTooManyDevices: 3, ingest.ReasonTooManyMetrics: 3, ingest.ReasonNewSeries: 0} {
		if got := testutil.ToFloat64(m.Rejected.WithLabelValues(reason)); got != want {
			t.Errorf("iotdash_rejected_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

// TestNewSeriesRate: a device that invents metric names faster than
// -max-new-series gets the rate's worth stored, the rest refused and
// counted, and the fleet is not flooded.
func TestNewSeriesRate(t *testing.T) {
	st := &memStore{}
	fleet := devices.NewFleet(nil)
	fleet.SetLimits(devices.Limits{Metrics: 1000, NewSeriesPerMinute: 10})
	m := ingest.NewMetrics(nil)
	url := embedded(t, ingest.Config{Store: st, Fleet: fleet, Metrics: m})

	ts := time.Now().UnixMilli()
	var msgs [][2]string
	for i := range 4 {
		msgs = append(msgs, [2]string{"devices/flood/telemetry", fmt.Sprintf(`{"ts":%d,"m%da":1,"m%db":1,"m%dc":1,"m%dd":1,"m%de":1}`, ts+int64(i), i, i, i, i, i)})
	}
	publish(t, url, msgs)
	if rs, _ := st.snapshot(); len(rs) != 10 {
		t.Errorf("stored %d readings, want 10 (the new series of a minute)", len(rs))
	}
	if got := testutil.ToFloat64(m.Rejected.WithLabelValues(ingest.ReasonNewSeries)); got != 10 {
		t.Errorf(`iotdash_rejected_total{reason="new_series_rate"} = %v, want 10`, got)
	}
}

// TestPastReadingsRefused: a message whose ts is further behind the
// server's clock than MaxBehind is refused and counted as "past", like one
// too far ahead is as "future"; a late one within the bound is stored.
func TestPastReadingsRefused(t *testing.T) {
	st := &memStore{}
	m := ingest.NewMetrics(nil)
	url := embedded(t, ingest.Config{Store: st, Fleet: devices.NewFleet(nil), Metrics: m, MaxBehind: time.Hour})
	now := time.Now()
	publish(t, url, [][2]string{
		{"devices/d1/telemetry", fmt.Sprintf(`{"ts":%d,"temperature":1}`, now.Add(-2*time.Hour).UnixMilli())},
		{"devices/d1/telemetry", fmt.Sprintf(`{"ts":%q,"temperature":2}`, now.Add(-30*time.Minute).Format(time.RFC3339))},
		{"devices/d1/telemetry", fmt.Sprintf(`{"ts":%d,"temperature":3}`, now.Add(time.Hour).UnixMilli())},
	})
	if rs, _ := st.snapshot(); len(rs) != 1 || rs[0].Value != 2 {
		t.Errorf("stored %v, want the reading of 30 minutes ago alone", rs)
	}
	for reason, want := range map[string]float64{ingest.ReasonPast: 1, ingest.ReasonFuture: 1} {
		if got := testutil.ToFloat64(m.Rejected.WithLabelValues(reason)); got != want {
			t.Errorf("iotdash_rejected_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

// TestHistoryCannotBeRewritten: a reading published again with the same
// ts and another value leaves the embedded store's value and the fleet's
// latest value as first written (first write wins).
func TestHistoryCannotBeRewritten(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "iotdash.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fleet := devices.NewFleet(nil)
	url := embedded(t, ingest.Config{Store: st, Fleet: fleet})
	ts := time.Now().UnixMilli()
	publish(t, url, [][2]string{{"devices/d1/telemetry", fmt.Sprintf(`{"ts":%d,"temperature":21.5}`, ts)}})
	publish(t, url, [][2]string{{"devices/d1/telemetry", fmt.Sprintf(`{"ts":%d,"temperature":99}`, ts)}})
	got, err := st.Query(context.Background(), store.Query{Device: "d1", Metric: "temperature", From: ts - 1000, To: ts + 1000})
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.Point{{T: ts, V: 21.5}}; !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
	if d, _ := fleet.Get("d1"); d.Latest["temperature"].V != 21.5 {
		t.Errorf("latest = %v, want 21.5", d.Latest["temperature"])
	}
}
