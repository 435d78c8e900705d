package simulator

import (
	"strings"
	"testing"
	"time"

	"iotdash/devices"
	"iotdash/internal/testenv"
)

func TestExampleScenariosAreValid(t *testing.T) {
	names := ExampleScenarios()
	if len(names) < 2 {
		t.Fatalf("got example scenarios %v, want at least two", names)
	}
	for _, name := range names {
		s, err := ReadScenario(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.Name == "" || len(s.Devices) == 0 || len(s.Incidents) == 0 {
			t.Errorf("%s: got %+v, want a name, devices and incidents", name, s)
		}
	}
	if _, err := ReadScenario("no-such-scenario"); devices.ErrorKind(err) != devices.EInvalid {
		t.Errorf("ReadScenario of an unknown name: got %v, want an invalid error", err)
	}
}

func TestScenarioErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"devices: [{kind: toaster, count: 1}]", `kind "toaster"`},
		{"devices: [{kind: tank, count: 0}]", "count 0"},
		{"devices: [{kind: tank, count: 2, ids: tank}]", "one %d"},
		{"devices: [{kind: tank, count: 2, ids: 'tank one %d'}]", "is not 1 to 64"},
		{"devices: [{kind: tank, count: 1}, {kind: tank, count: 1}]", "used twice"},
		{"devices: []", "no devices"},
		{"devices: [{kind: tank, count: 1}]\nincidents: [{at: 1m, device: tank-02, do: offline}]", `no device "tank-02"`},
		{"devices: [{kind: air-quality, count: 1}]\nincidents: [{at: 1m, device: air-quality-01, do: overheat}]", "cannot overheat"},
		{"devices: [{kind: power-meter, count: 1}]\nincidents: [{at: 1m, device: power-meter-01, do: high, metric: energy}]", `no metric "energy"`},
		{"devices: [{kind: tank, count: 1}]\nincidents: [{at: 1m, device: tank-01, do: explode}]", `do "explode"`},
		{"devices: [{kind: tank, count: 1}]\nincidents: [{at: soon, device: tank-01, do: offline}]", "not valid YAML"},
		{"devices: [{kind: tank, count: 1, colour: red}]", "not valid YAML"},
	} {
		_, err := ParseScenario([]byte(tc.yaml))
		if devices.ErrorKind(err) != devices.EInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseScenario(%q): got %v, want an invalid error about %s", tc.yaml, err, tc.want)
		}
	}
}

const boilerScenario = `
name: test boilers
interval: 2s
devices:
  - {kind: thermostat, count: 3, ids: boiler-%d}
  - {kind: vibration, count: 1, ids: pump-%d}
incidents:
  - {at: 2m, device: boiler-3, do: overheat}
  - {at: 5m, device: boiler-3, do: offline}
`

// The script's timeline, without a broker or a clock.
func TestIncidentTimeline(t *testing.T) {
	sc, err := ParseScenario([]byte(boilerScenario + "  - {at: 8m, device: boiler-3, do: online}\n  - {at: 9m, device: boiler-2, do: disconnect, for: 30s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := sc.plan(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b3, b2 := specs[2], specs[1]
	for _, tc := range []struct {
		spec     deviceSpec
		at       time.Duration
		up       bool
		how      string
		next     time.Duration
		overheat bool
	}{
		{b3, 0, true, "", 5 * time.Minute, false},
		{b3, 2*time.Minute - time.Millisecond, true, "", 5 * time.Minute, false},
		{b3, 2*time.Minute + incidentRamp, true, "", 5 * time.Minute, true},
		{b3, 5 * time.Minute, false, DoOffline, 8 * time.Minute, true},
		{b3, 8 * time.Minute, true, "", -1, true},
		{b2, 9*time.Minute + time.Second, false, DoDisconnect, 9*time.Minute + 30*time.Second, false},
		{b2, 9*time.Minute + 30*time.Second, true, "", -1, false},
	} {
		up, how, next := presence(tc.spec.incidents, tc.at)
		if up != tc.up || how != tc.how || next != tc.next {
			t.Errorf("%s at +%v: got up %v how %q next %v, want %v %q %v", tc.spec.id, tc.at, up, how, next, tc.up, tc.how, tc.next)
		}
		m := NewModel(tc.spec.kind, 1, tc.spec.index)
		s := m.At(day0.Add(tc.at))
		plain, _ := s.Value("temperature")
		applyIncidents(tc.spec.incidents, tc.at, s)
		got, _ := s.Value("temperature")
		hot := got > tc.spec.kind.Metrics[0].Hi
		if hot != tc.overheat || (!tc.overheat && got != plain) {
			t.Errorf("%s at +%v: temperature %v (model %v), want overheated %v", tc.spec.id, tc.at, got, plain, tc.overheat)
		}
	}
}

// The boiler scenario on a clock 60 times faster than real time against a
// real broker: boiler-3's readings are the model's own until +2m, overheated
// after +2m plus the ramp, and stop at +5m when its Last Will says offline.
func TestScenarioIncidentsHappenOnTime(t *testing.T) {
	broker := testenv.StartMosquitto(t)
	w := watch(t, broker.URL)
	sc, err := ParseScenario([]byte(boilerScenario))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2025, 6, 2, 9, 0, 0, 0, time.UTC)
	clock := NewFastClock(t0, 60)
	s, err := New(Config{Broker: broker.URL, Scenario: sc, Seed: 3, Clock: clock, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	model := s.byID["boiler-3"].model
	hi := model.Kind().Metrics[0].Hi
	stop := start(t, s)
	ms := w.waitFor(t, 20*time.Second, "boiler-3 goes offline", func(ms []message) bool {
		return lastStatus(ms, "boiler-3") == "offline"
	})
	stop()

	// The run's origin is a moment after t0: how long it took Run to read
	// the clock, times 60.
	const slack = 10 * time.Second
	at := func(d time.Duration) float64 { return float64(t0.Add(d).UnixMilli()) }
	var before, after int
	var last float64
	for _, r := range telemetry(t, ms, "boiler-3") {
		ts := r["ts"]
		last = max(last, ts)
		temp, ok := r["temperature"]
		if !ok {
			continue // a dropout
		}
		want, _ := model.At(time.UnixMilli(int64(ts))).Value("temperature")
		switch {
		case ts < at(2*time.Minute):
			before++
			if temp != want {
				t.Errorf("at +%v before the incident: got %v, want the model's %v", time.Duration(ts-at(0))*time.Millisecond, temp, want)
			}
		case ts >= at(2*time.Minute+incidentRamp+slack) && ts < at(5*time.Minute):
			after++
			if temp <= hi {
				t.Errorf("at +%v, overheating: got %v, want over %v", time.Duration(ts-at(0))*time.Millisecond, temp, hi)
			}
		}
	}
	if before < 20 || after < 20 {
		t.Errorf("got %d readings before the incident and %d during it, want at least 20 of each", before, after)
	}
	if last >= at(5*time.Minute+slack) || last < at(5*time.Minute-30*time.Second) {
		t.Errorf("boiler-3's last reading at +%v, want it just before +5m", time.Duration(last-at(0))*time.Millisecond)
	}
	if got := lastStatus(ms, "boiler-1"); got != "online" {
		t.Errorf("boiler-1 status: got %q, want online", got)
	}
	if n := len(telemetry(t, ms, "pump-1")); n < 100 {
		t.Errorf("pump-1 sent %d readings in 5 simulated minutes at 2s, want about 150", n)
	}
}
