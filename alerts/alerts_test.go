package alerts_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"iotdash/alerts"
	"iotdash/devices"
	"iotdash/internal/testenv"
	"iotdash/store/sqlite"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// receiver is a webhook receiver as an Alertmanager user runs one: it
// keeps every notification it takes, and answers 500 while down is set.
type receiver struct {
	*httptest.Server
	down atomic.Bool
	mu   sync.Mutex
	got  []webhook
	bad  []string // bodies whose signature did not match
}

// webhook is Alertmanager's webhook body (version 4), as receivers read it.
type webhook struct {
	Version string `json:"version"`
	Status  string `json:"status"`
	Alerts  []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
	} `json:"alerts"`
}

const secret = "webhook-secret"

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		body, _ := io.ReadAll(req.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		var wh webhook
		json.Unmarshal(body, &wh)
		r.mu.Lock()
		defer r.mu.Unlock()
		if req.Header.Get("X-Iotdash-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			r.bad = append(r.bad, string(body))
		}
		r.got = append(r.got, wh)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) statuses() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, w := range r.got {
		out = append(out, w.Status)
	}
	return out
}

// plant is an engine and its notifier over a state file, as iotdash runs
// them; start again on the same file to restart.
type plant struct {
	file   string
	fleet  *devices.Fleet
	engine *alerts.Engine
	stop   func()
}

func startPlant(t *testing.T, file string, fleet *devices.Fleet, webhook, alertmanager string) *plant {
	t.Helper()
	docs, err := sqlite.OpenDocs(file)
	if err != nil {
		t.Fatal(err)
	}
	n := alerts.NewNotifier(alerts.NotifierConfig{Store: docs, Webhooks: map[string][]string{"": {webhook}}, Secret: []byte(secret),
		AlertmanagerURL: alertmanager, ExternalURL: "http://dash.example"})
	e, err := alerts.New(context.Background(), alerts.Config{Store: docs, Fleet: fleet, Notify: n})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); e.Run(ctx) }()
	go func() { defer wg.Done(); n.Run(ctx, func() []alerts.Instance { return e.Alerts(alerts.StateFiring) }) }()
	p := &plant{file: file, fleet: fleet, engine: e}
	p.stop = func() { cancel(); wg.Wait(); docs.Close() }
	t.Cleanup(func() {
		if p.stop != nil {
			p.stop()
		}
	})
	return p
}

func (p *plant) restart(t *testing.T, webhook, alertmanager string) *plant {
	p.stop()
	p.stop = nil
	return startPlant(t, p.file, p.fleet, webhook, alertmanager)
}

func reading(device, metric string, v float64) []devices.Reading {
	return []devices.Reading{{Device: device, Metric: metric, Time: time.Now().UnixMilli(), Value: v}}
}

// amAlerts returns the alerts Alertmanager holds as active, by device.
func amAlerts(t *testing.T, am *testenv.Alertmanager) map[string]map[string]string {
	t.Helper()
	resp, err := http.Get(am.URL + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []struct {
		Labels map[string]string `json:"labels"`
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	json.NewDecoder(resp.Body).Decode(&list)
	out := map[string]map[string]string{}
	for _, a := range list {
		out[a.Labels["device"]] = a.Labels
	}
	return out
}

// TestHysteresisFiresOnceAndResolves: a boiler hovering around its
// threshold fires one alert, not one a crossing; the webhook receiver gets
// it once, signed, in Alertmanager's format, and a real Alertmanager holds
// it; when it cools below the clearing point both get the resolution.
func TestHysteresisFiresOnceAndResolves(t *testing.T) {
	am := testenv.StartAlertmanager(t)
	rx := newReceiver(t)
	p := startPlant(t, filepath.Join(t.TempDir(), "state.db"), devices.NewFleet(nil), rx.URL, am.URL)
	clear := 29.0
	if _, err := p.engine.PutRule(context.Background(), alerts.Rule{Name: "Boiler too hot", Device: "boiler-1", Metric: "temperature",
		Op: ">", Value: 30, Clear: &clear, Severity: "critical", Runbook: "Open valve V3."}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []float64{25, 30.5, 29.5, 30.2, 29.1, 31, 30.1, 29.4} {
		p.engine.Observe(reading("boiler-1", "temperature", v))
	}
	testenv.WaitFor(t, 10*time.Second, "the firing notification", func() bool { return len(rx.statuses()) >= 1 })
	testenv.WaitFor(t, 10*time.Second, "Alertmanager to hold the alert", func() bool { return amAlerts(t, am)["boiler-1"] != nil })
	if labels := amAlerts(t, am)["boiler-1"]; labels["alertname"] != "Boiler too hot" || labels["severity"] != "critical" || labels["metric"] != "temperature" {
		t.Errorf("Alertmanager holds %v", labels)
	}
	if got := p.engine.Alerts(alerts.StateFiring); len(got) != 1 || got[0].Value != 29.4 {
		t.Errorf("firing: %+v, want one instance with the latest value 29.4", got)
	}

	p.engine.Observe(reading("boiler-1", "temperature", 28.5))
	testenv.WaitFor(t, 10*time.Second, "the resolution", func() bool { return len(rx.statuses()) >= 2 })
	testenv.WaitFor(t, 10*time.Second, "Alertmanager to drop the resolved alert", func() bool { return amAlerts(t, am)["boiler-1"] == nil })
	if got := rx.statuses(); strings.Join(got, ",") != "firing,resolved" {
		t.Errorf("the receiver got %v, want firing then resolved, once each", got)
	}
	rx.mu.Lock()
	defer rx.mu.Unlock()
	if len(rx.bad) > 0 {
		t.Errorf("%d bodies with a wrong signature", len(rx.bad))
	}
	first := rx.got[0]
	if first.Version != "4" || len(first.Alerts) != 1 || first.Alerts[0].Labels["device"] != "boiler-1" ||
		first.Alerts[0].Annotations["runbook"] != "Open valve V3." || first.Alerts[0].StartsAt.IsZero() {
		t.Errorf("the firing notification: %+v", first)
	}
	if end := rx.got[1].Alerts[0].EndsAt; end.IsZero() || end.Before(first.Alerts[0].StartsAt) {
		t.Errorf("the resolution ends at %v", end)
	}
}

// TestForAndRestart: a rule with a duration fires when the condition has
// held that long, with no reading to carry it; a restart in the middle of
// the firing alert keeps it firing and sends nothing again; an
// acknowledged alert is not notified again while it fires.
func TestForAndRestart(t *testing.T) {
	rx := newReceiver(t)
	fleet := devices.NewFleet(nil)
	fleet.SetMeta("tank-01", devices.Meta{Kind: "tank"})
	fleet.SetMeta("tank-02", devices.Meta{Kind: "tank"})
	p := startPlant(t, filepath.Join(t.TempDir(), "state.db"), fleet, rx.URL, "")
	if _, err := p.engine.PutRule(context.Background(), alerts.Rule{Name: "Tank low", Kind: "tank", Metric: "level",
		Op: "<", Value: 10, For: alerts.Duration(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	p.engine.Observe(reading("tank-01", "level", 5))
	p.engine.Observe(reading("tank-02", "level", 50))
	if got := p.engine.Alerts(alerts.StatePending); len(got) != 1 || got[0].Device != "tank-01" {
		t.Fatalf("pending: %+v, want tank-01's", got)
	}
	testenv.WaitFor(t, 10*time.Second, "tank-01 to fire after its 300 ms", func() bool { return len(rx.statuses()) == 1 })

	p = p.restart(t, rx.URL, "")
	if got := p.engine.Alerts(alerts.StateFiring); len(got) != 1 || got[0].Device != "tank-01" {
		t.Fatalf("after a restart firing: %+v, want tank-01's still", got)
	}
	p.engine.Observe(reading("tank-01", "level", 4))
	key := p.engine.Alerts(alerts.StateFiring)[0].Key
	if _, err := p.engine.Acknowledge(key, "otto", "valve ordered"); err != nil {
		t.Fatal(err)
	}
	p = p.restart(t, rx.URL, "")
	if got := p.engine.Alerts(alerts.StateFiring); len(got) != 1 || got[0].AckedBy != "otto" {
		t.Fatalf("the acknowledgement did not survive a restart: %+v", got)
	}
	for range 5 {
		p.engine.Observe(reading("tank-01", "level", 3))
	}
	// A second device crossing is notified: waiting for it shows that the
	// queue was delivered, and that nothing else came with it.
	p.engine.Observe(reading("tank-02", "level", 1))
	testenv.WaitFor(t, 10*time.Second, "tank-02's alert", func() bool { return len(rx.statuses()) == 2 })
	if got := rx.statuses(); len(got) != 2 {
		t.Errorf("the receiver got %v: tank-01's alert was notified again", got)
	}
}

// TestQueueSurvivesAReceiverDownAndARestart: notifications wait while the
// receiver is down, across a restart, and arrive, in order, when it is up.
func TestQueueSurvivesAReceiverDownAndARestart(t *testing.T) {
	rx := newReceiver(t)
	rx.down.Store(true)
	fleet := devices.NewFleet(nil)
	fleet.SetMeta("pump-7", devices.Meta{Limits: map[string][2]float64{"flow": {2, 8}}})
	p := startPlant(t, filepath.Join(t.TempDir(), "state.db"), fleet, rx.URL, "")
	// The built-in rule: outside the limits the device declares.
	p.engine.Observe(reading("pump-7", "flow", 9.5))
	p.engine.Observe(reading("pump-7", "flow", 5))
	p = p.restart(t, rx.URL, "")
	rx.down.Store(false)
	testenv.WaitFor(t, 30*time.Second, "both notifications", func() bool { return len(rx.statuses()) == 2 })
	if got := strings.Join(rx.statuses(), ","); got != "firing,resolved" {
		t.Errorf("the receiver got %s, want firing,resolved", got)
	}
	if d, _ := p.engine.Rule(alerts.LimitsRuleID); d.Op != alerts.OpLimits {
		t.Errorf("limits rule: %+v", d)
	}
}

func TestRuleValidation(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	for _, c := range []struct {
		rule alerts.Rule
		want string // in the error; "" for valid
	}{
		{alerts.Rule{Name: "hot", Device: "b-1", Metric: "t", Op: ">", Value: 30}, ""},
		{alerts.Rule{Name: "hot", Pattern: "boiler-*", Metric: "t", Op: ">", Value: 30, Clear: f(29)}, ""},
		{alerts.Rule{Name: "", Device: "b-1", Metric: "t", Op: ">"}, "name"},
		{alerts.Rule{Name: "hot", Metric: "t", Op: ">"}, "which devices"},
		{alerts.Rule{Name: "hot", Device: "b-1", Kind: "boiler", Metric: "t", Op: ">"}, "one at a time"},
		{alerts.Rule{Name: "hot", Device: "b 1", Metric: "t", Op: ">"}, "not a device id"},
		{alerts.Rule{Name: "hot", Device: "b-1", Metric: "t", Op: ">", Value: 30, Clear: f(31)}, "clear 31 is above"},
		{alerts.Rule{Name: "hot", Device: "b-1", Metric: "t", Op: "outside", Low: 5, High: 1}, "low ≤ high"},
		{alerts.Rule{Name: "hot", Device: "b-1", Metric: "t", Op: "=="}, "op"},
		{alerts.Rule{Name: "hot", Device: "b-1", Metric: "t", Op: ">", Severity: "panic"}, "severity"},
		{alerts.Rule{Name: "hot", Device: "b-1", Metric: "t", Op: ">", Webhook: "ftp://x"}, "webhook"},
		{alerts.Rule{Name: "hot", Device: "b-1", Metric: "t", Op: ">", For: alerts.Duration(48 * time.Hour)}, "for"},
	} {
		err := c.rule.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v", c.rule, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || devices.ErrorKind(err) != devices.EInvalid):
			t.Errorf("%+v: %v, want an invalid error naming %q", c.rule, err, c.want)
		}
	}
}
