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
	"net/url"
	"path/filepath"
	"slices"
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

func TestDurationIsWrittenShort(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 10 * time.Second: "10s", 2 * time.Minute: "2m", time.Hour: "1h",
		90 * time.Minute: "1h30m", 90 * time.Second: "1m30s", 1500 * time.Millisecond: "1.5s"} {
		if got := alerts.Duration(d).String(); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
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
		{alerts.Rule{Name: "quiet", Kind: "meter", Op: "nodata", For: alerts.Duration(time.Minute)}, ""},
		{alerts.Rule{Name: "quiet", Kind: "meter", Op: "nodata"}, "nodata takes for"},
		{alerts.Rule{Name: "quiet", Kind: "meter", Op: "nodata", For: alerts.Duration(time.Minute), Value: 3}, "no value"},
		{alerts.Rule{Name: "fast", Device: "b-1", Metric: "t", Op: "rises", Value: 5, Window: alerts.Duration(10 * time.Minute)}, ""},
		{alerts.Rule{Name: "fast", Device: "b-1", Metric: "t", Op: "rises", Value: 5}, "takes a window"},
		{alerts.Rule{Name: "fast", Device: "b-1", Metric: "t", Op: "falls", Value: -2, Window: alerts.Duration(time.Minute)}, "value above 0"},
		{alerts.Rule{Name: "fast", Device: "b-1", Metric: "t", Op: "falls", Value: 2, Clear: f(3), Window: alerts.Duration(time.Minute)}, "clear 3"},
		{alerts.Rule{Name: "hot", Device: "b-1", Metric: "t", Op: ">", Window: alerts.Duration(time.Minute)}, "window is for rises and falls"},
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

// clock is a time the test moves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// startClocked is an engine without notifications on a clock the test
// moves (its ticks, every 250 ms, read that clock), over the state file
// (a new one if ""), as cfg says otherwise; stop ends it, as a restart
// does.
func startClocked(t *testing.T, cfg alerts.Config, file string) (e *alerts.Engine, clk *clock, stop func()) {
	t.Helper()
	if file == "" {
		file = filepath.Join(t.TempDir(), "state.db")
	}
	docs, err := sqlite.OpenDocs(file)
	if err != nil {
		t.Fatal(err)
	}
	clk = &clock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	cfg.Store, cfg.Now = docs, clk.Now
	if cfg.Fleet == nil {
		cfg.Fleet = devices.NewFleet(nil)
	}
	if e, err = alerts.New(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done; docs.Close() }) }
	t.Cleanup(stop)
	return e, clk, stop
}

func firingDevices(e *alerts.Engine) map[string]alerts.Instance {
	out := map[string]alerts.Instance{}
	for _, in := range e.Alerts(alerts.StateFiring) {
		out[in.Device] = in
	}
	return out
}

// TestNoData: a nodata rule fires for each device it picks that has sent
// nothing for its For (one that never sent, from when the rule began; one
// that went offline, saying so) and not for one that keeps sending; the
// device's next reading resolves its alert.
func TestNoData(t *testing.T) {
	fleet := devices.NewFleet(nil)
	for _, id := range []string{"meter-1", "meter-2", "meter-3"} {
		fleet.SetMeta(id, devices.Meta{Kind: "meter"})
	}
	fleet.SetMeta("pump-1", devices.Meta{Kind: "pump"})
	e, clk, _ := startClocked(t, alerts.Config{Fleet: fleet}, "")
	rule, err := e.PutRule(context.Background(), alerts.Rule{Name: "Meter silent", Kind: "meter", Op: alerts.OpNoData,
		For: alerts.Duration(5 * time.Minute), Severity: "critical"})
	if err != nil {
		t.Fatal(err)
	}
	clk.add(3 * time.Minute)
	e.Observe(reading("meter-1", "energy", 1))
	e.Presence("meter-3", devices.StatusOffline)
	clk.add(3 * time.Minute) // meter-2 and meter-3 silent for 6 min, meter-1 for 3
	testenv.WaitFor(t, 10*time.Second, "meter-2 and meter-3 to fire", func() bool { return len(firingDevices(e)) == 2 })
	got := firingDevices(e)
	if _, ok := got["meter-1"]; ok {
		t.Errorf("meter-1, which sent 3 minutes ago, fired: %+v", got)
	}
	if in := got["meter-3"]; !strings.Contains(in.Summary, "offline") || in.Rule != rule.ID || in.Value < 360 {
		t.Errorf("meter-3's alert: %+v, want one that says it is offline, silent for 360 s", in)
	}
	if _, ok := got["pump-1"]; ok {
		t.Errorf("pump-1, not a meter, fired")
	}

	e.Observe(reading("meter-2", "energy", 7))
	if got := firingDevices(e); len(got) != 1 || got["meter-3"].Device == "" {
		t.Errorf("after meter-2's reading firing: %v, want meter-3 only", got)
	}
	clk.add(3 * time.Minute) // meter-1 silent for 6 min now
	testenv.WaitFor(t, 10*time.Second, "meter-1 to fire", func() bool { _, ok := firingDevices(e)["meter-1"]; return ok })
}

// TestRisesAndFalls: a rule on the change within a window fires when the
// metric rose by more than its value within the window, whatever the
// level, and clears when the change within the window is back under its
// clearing point; the alert keeps its peak change.
func TestRisesAndFalls(t *testing.T) {
	e, clk, _ := startClocked(t, alerts.Config{}, "")
	ctx := context.Background()
	if _, err := e.PutRule(ctx, alerts.Rule{Name: "Heating fast", Device: "oven-1", Metric: "temperature", Op: alerts.OpRises,
		Value: 5, Window: alerts.Duration(10 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutRule(ctx, alerts.Rule{Name: "Leak", Device: "tank-1", Metric: "level", Op: alerts.OpFalls,
		Value: 10, Window: alerts.Duration(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []float64{100, 102, 104, 103} { // a slow rise: 4 within 10 min
		e.Observe(reading("oven-1", "temperature", v))
		clk.add(2 * time.Minute)
	}
	e.Observe(reading("oven-1", "temperature", 107)) // 7 above 100, 8 minutes ago
	e.Observe(reading("oven-1", "temperature", 108))
	e.Observe(reading("tank-1", "level", 80))
	clk.add(30 * time.Minute)
	e.Observe(reading("tank-1", "level", 75)) // fell 5 within the hour: not yet
	got := firingDevices(e)
	if in := got["oven-1"]; in.Value != 8 || in.Peak != 8 {
		t.Errorf("oven-1's alert: %+v, want a rise of 8 (its peak)", in)
	}
	if _, ok := got["tank-1"]; ok {
		t.Errorf("tank-1 fired on a fall of 5")
	}
	e.Observe(reading("oven-1", "temperature", 108)) // 30 min on: no rise within 10 min
	e.Observe(reading("tank-1", "level", 65))        // 15 below 80, 30 minutes ago
	got = firingDevices(e)
	if _, ok := got["oven-1"]; ok {
		t.Errorf("oven-1 still fires, steady for 30 min")
	}
	if in := got["tank-1"]; in.Value != 15 || !strings.Contains(in.Summary, "fell more than 10 within 1h") {
		t.Errorf("tank-1's alert: %+v, want a fall of 15", in)
	}
	if r := e.Alerts(alerts.StateResolved); len(r) != 1 || r[0].Device != "oven-1" || r[0].Peak != 8 {
		t.Errorf("resolved: %+v, want oven-1's, peak 8", r)
	}
}

// TestHistory: each firing of an alert is an episode, kept with its peak
// and who acknowledged it, across a restart; the oldest go beyond the
// bound; a query picks them by device, rule, severity and time.
func TestHistory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state.db")
	e, clk, stop := startClocked(t, alerts.Config{MaxHistory: 3}, file)
	ctx := context.Background()
	hot, err := e.PutRule(ctx, alerts.Rule{Name: "Hot", Pattern: "boiler-*", Metric: "temperature", Op: ">", Value: 30, Severity: "critical"})
	if err != nil {
		t.Fatal(err)
	}
	start := clk.Now()
	episode := func(device string, peak float64, ack bool) {
		e.Observe(reading(device, "temperature", 31))
		e.Observe(reading(device, "temperature", peak))
		if ack {
			key := firingDevices(e)[device].Key
			if _, err := e.Acknowledge(key, "otto", "on it"); err != nil {
				t.Fatal(err)
			}
		}
		clk.add(time.Hour)
		e.Observe(reading(device, "temperature", 20))
	}
	episode("boiler-1", 35, true)
	episode("boiler-2", 33, false)
	episode("boiler-1", 40, false)
	testenv.WaitFor(t, 10*time.Second, "three episodes", func() bool { return len(e.History(alerts.HistoryQuery{})) == 3 })
	stop()

	e, clk, _ = startClocked(t, alerts.Config{MaxHistory: 3}, file)
	got := e.History(alerts.HistoryQuery{Device: "boiler-1"})
	if len(got) != 2 || got[0].Peak != 40 || got[1].Peak != 35 || got[1].AckedBy != "otto" || got[1].AckComment != "on it" ||
		got[1].Rule != hot.ID || got[1].ResolvedAt-got[1].FiredAt != time.Hour.Milliseconds() {
		t.Fatalf("boiler-1's episodes after a restart: %+v, want the peak-40 one, then the peak-35 one otto acknowledged, an hour long", got)
	}
	if got := e.History(alerts.HistoryQuery{Severity: "warning"}); len(got) != 0 {
		t.Errorf("warnings: %+v, want none", got)
	}
	// The first hour: boiler-1's first episode only.
	if got := e.History(alerts.HistoryQuery{From: start.UnixMilli(), To: start.Add(30 * time.Minute).UnixMilli()}); len(got) != 1 || got[0].Peak != 35 {
		t.Errorf("the first half hour: %+v, want boiler-1's first episode", got)
	}
	clk.add(5 * time.Hour)
	e.Observe(reading("boiler-3", "temperature", 50))
	testenv.WaitFor(t, 10*time.Second, "boiler-3's episode", func() bool { return len(e.History(alerts.HistoryQuery{Device: "boiler-3"})) == 1 })
	if got := e.History(alerts.HistoryQuery{}); len(got) != 3 || got[len(got)-1].Device != "boiler-2" {
		t.Errorf("episodes: %+v, want three, the oldest (boiler-1's first) gone", got)
	}
}

// amSilences returns the states of the silences iotdash made in
// Alertmanager, by the device they match.
func amSilences(t *testing.T, am *testenv.Alertmanager) map[string][]string {
	t.Helper()
	resp, err := http.Get(am.URL + "/api/v2/silences")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []struct {
		CreatedBy string `json:"createdBy"`
		Matchers  []struct {
			Name, Value string
		} `json:"matchers"`
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	json.NewDecoder(resp.Body).Decode(&list)
	out := map[string][]string{}
	for _, s := range list {
		if !strings.HasPrefix(s.CreatedBy, "iotdash") {
			continue
		}
		for _, m := range s.Matchers {
			if m.Name == "device" {
				out[m.Value] = append(out[m.Value], s.Status.State)
			}
		}
	}
	return out
}

// amState returns the state Alertmanager gives device's alert (active,
// suppressed), "" if it holds none.
func amState(t *testing.T, am *testenv.Alertmanager, device string) string {
	t.Helper()
	resp, err := http.Get(am.URL + "/api/v2/alerts?filter=" + url.QueryEscape(`device="`+device+`"`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []struct {
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	json.NewDecoder(resp.Body).Decode(&list)
	if len(list) == 0 {
		return ""
	}
	return list[0].Status.State
}

// TestAcknowledgeSilencesAlertmanager: acknowledging an alert silences it
// in Alertmanager (which then holds it suppressed, and pages no one about
// it) until it resolves; withdrawing the acknowledgement expires the
// silence at once.
func TestAcknowledgeSilencesAlertmanager(t *testing.T) {
	am := testenv.StartAlertmanager(t)
	rx := newReceiver(t)
	p := startPlant(t, filepath.Join(t.TempDir(), "state.db"), devices.NewFleet(nil), rx.URL, am.URL)
	if _, err := p.engine.PutRule(context.Background(), alerts.Rule{Name: "Boiler too hot", Pattern: "boiler-*", Metric: "temperature", Op: ">", Value: 30}); err != nil {
		t.Fatal(err)
	}
	p.engine.Observe(reading("boiler-1", "temperature", 35))
	p.engine.Observe(reading("boiler-2", "temperature", 35))
	testenv.WaitFor(t, 10*time.Second, "Alertmanager to hold both alerts", func() bool {
		return amState(t, am, "boiler-1") == "active" && amState(t, am, "boiler-2") == "active"
	})
	keys := map[string]string{}
	for _, in := range p.engine.Alerts(alerts.StateFiring) {
		keys[in.Device] = in.Key
	}
	if _, err := p.engine.Acknowledge(keys["boiler-1"], "otto", "valve ordered"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "boiler-1's alert suppressed by a silence", func() bool {
		return amState(t, am, "boiler-1") == "suppressed" && slices.Equal(amSilences(t, am)["boiler-1"], []string{"active"})
	})
	if got := amState(t, am, "boiler-2"); got != "active" {
		t.Errorf("boiler-2's alert, not acknowledged, is %s in Alertmanager", got)
	}

	if _, err := p.engine.Acknowledge(keys["boiler-2"], "otto", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := p.engine.Unacknowledge(keys["boiler-2"]); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "boiler-2's silence expired", func() bool {
		s := amSilences(t, am)["boiler-2"]
		return len(s) > 0 && !slices.Contains(s, "active") && !slices.Contains(s, "pending")
	})

	p.engine.Observe(reading("boiler-1", "temperature", 20))
	testenv.WaitFor(t, 10*time.Second, "boiler-1's silence expired when it resolved", func() bool {
		return slices.Equal(amSilences(t, am)["boiler-1"], []string{"expired"})
	})
	testenv.WaitFor(t, 10*time.Second, "boiler-1's resolution at the webhook", func() bool { return len(rx.statuses()) >= 3 })
	if got := strings.Join(rx.statuses(), ","); got != "firing,firing,resolved" {
		t.Errorf("the webhook got %s, want two firings and boiler-1's resolution", got)
	}
}
