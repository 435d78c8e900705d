package simulator

import (
	"bytes"
	"cmp"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"iotdash/devices"
)

// Scenario scripts a demo: which devices of which kinds, at what interval,
// and incidents at given times after the start. It is read from YAML:
//
//	name: Boiler room
//	interval: 2s
//	devices:
//	  - kind: thermostat
//	    count: 4
//	    ids: boiler-%d
//	incidents:
//	  - {at: 2m, device: boiler-3, do: overheat, for: 3m}
//	  - {at: 5m, device: boiler-3, do: offline}
type Scenario struct {
	Name  string `yaml:"name"`
	About string `yaml:"about"`
	// Interval is the mean telemetry interval of groups that set none; zero
	// leaves it to Config.Interval.
	Interval  time.Duration `yaml:"interval"`
	Devices   []Group       `yaml:"devices"`
	Incidents []Incident    `yaml:"incidents"`
}

// Group is a number of devices of one kind.
type Group struct {
	Kind  string `yaml:"kind"`
	Count int    `yaml:"count"`
	// IDs is a printf format with one %d (counting from 1) for the device
	// ids, e.g. "boiler-%d"; by default "{kind}-%02d".
	IDs      string        `yaml:"ids"`
	Interval time.Duration `yaml:"interval"`
	// Location replaces the location the model picks for each device.
	Location string `yaml:"location"`
}

// What an incident does.
const (
	DoOverheat   = "overheat"   // the kind's hot metric climbs above its limit
	DoHigh       = "high"       // Metric climbs above its limit
	DoLow        = "low"        // Metric falls below its limit
	DoOffline    = "offline"    // the connection is cut: the Last Will fires
	DoDisconnect = "disconnect" // the device says offline and disconnects
	DoOnline     = "online"     // the device comes back
)

// Incident is something that happens to a device At a time after the start,
// and lasts For a while (zero: to the end).
type Incident struct {
	At     time.Duration `yaml:"at"`
	Device string        `yaml:"device"`
	Do     string        `yaml:"do"`
	// Metric is the metric of high and low; by default the kind's hot
	// metric, else its first.
	Metric string        `yaml:"metric"`
	For    time.Duration `yaml:"for"`

	metric int // index in the device's kind, for high, low and overheat
}

//go:embed scenarios/*.yaml
var examples embed.FS

// ExampleScenarios returns the names of the scenarios shipped with the
// simulator, which ReadScenario accepts in place of a path.
func ExampleScenarios() []string {
	ents, _ := fs.ReadDir(examples, "scenarios")
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	return names
}

// ReadScenario reads and checks the scenario in the file at path, or the
// example scenario of that name. Its errors are of kind devices.EInvalid.
func ReadScenario(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !strings.ContainsAny(path, "/.") {
		b, err = examples.ReadFile("scenarios/" + path + ".yaml")
		if err != nil {
			return nil, devices.Errorf(devices.EInvalid, "scenario %q is neither a file nor one of the examples %s", path, strings.Join(ExampleScenarios(), ", "))
		}
	}
	if err != nil {
		return nil, devices.Errorf(devices.EInvalid, "reading scenario: %v", err)
	}
	s, err := ParseScenario(b)
	if err != nil {
		return nil, devices.Errorf(devices.EInvalid, "scenario %s: %v", path, err)
	}
	return s, nil
}

// ParseScenario decodes and checks a scenario. Its errors are of kind
// devices.EInvalid and say what is wrong.
func ParseScenario(b []byte) (*Scenario, error) {
	var s Scenario
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, devices.Errorf(devices.EInvalid, "scenario is not valid YAML of name, about, interval, devices, incidents: %v", err)
	}
	if _, err := s.plan(time.Second); err != nil {
		return nil, err
	}
	return &s, nil
}

// deviceSpec is one device of a fleet as planned: who it is and what is
// scripted for it.
type deviceSpec struct {
	id        string
	index     int
	kind      *Kind
	interval  time.Duration
	location  string
	incidents []Incident
}

// defaultScenario is a fleet of n devices, the kinds taken in turn.
func defaultScenario(n int) *Scenario {
	s := &Scenario{}
	for i, k := range kinds {
		c := n / len(kinds)
		if i < n%len(kinds) {
			c++
		}
		if c > 0 {
			s.Devices = append(s.Devices, Group{Kind: k.Name, Count: c})
		}
	}
	return s
}

// plan lists the scenario's devices, checking everything.
func (s *Scenario) plan(interval time.Duration) ([]deviceSpec, error) {
	if s.Interval != 0 {
		interval = s.Interval
	}
	var specs []deviceSpec
	byID := map[string]int{}
	for gi, g := range s.Devices {
		k, ok := KindNamed(g.Kind)
		if !ok {
			return nil, devices.Errorf(devices.EInvalid, "devices[%d]: kind %q is not one of %s", gi, g.Kind, kindNames())
		}
		if g.Count < 1 || g.Count > 100_000 {
			return nil, devices.Errorf(devices.EInvalid, "devices[%d]: count %d is not between 1 and 100000", gi, g.Count)
		}
		format := g.IDs
		if format == "" {
			format = fmt.Sprintf("%s-%%0%dd", k.Name, max(2, len(fmt.Sprint(g.Count))))
		}
		if strings.Count(format, "%") != 1 || !strings.Contains(format, "d") {
			return nil, devices.Errorf(devices.EInvalid, "devices[%d]: ids %q must be a format with one %%d, like boiler-%%d", gi, format)
		}
		iv := interval
		if g.Interval != 0 {
			iv = g.Interval
		}
		if iv < time.Millisecond {
			return nil, devices.Errorf(devices.EInvalid, "devices[%d]: interval %v is shorter than 1ms", gi, iv)
		}
		for n := 1; n <= g.Count; n++ {
			id := fmt.Sprintf(format, n)
			if !devices.ValidName(id) {
				return nil, devices.Errorf(devices.EInvalid, "devices[%d]: id %q is not 1 to 64 characters of [A-Za-z0-9._-]", gi, id)
			}
			if _, dup := byID[id]; dup {
				return nil, devices.Errorf(devices.EInvalid, "devices[%d]: id %q is used twice", gi, id)
			}
			byID[id] = len(specs)
			specs = append(specs, deviceSpec{id: id, index: len(specs), kind: k, interval: iv, location: g.Location})
		}
	}
	if len(specs) == 0 {
		return nil, devices.Errorf(devices.EInvalid, "the scenario has no devices")
	}
	for i, inc := range s.Incidents {
		di, ok := byID[inc.Device]
		if !ok {
			return nil, devices.Errorf(devices.EInvalid, "incidents[%d]: no device %q", i, inc.Device)
		}
		if inc.At < 0 || inc.For < 0 {
			return nil, devices.Errorf(devices.EInvalid, "incidents[%d]: at and for must not be negative", i)
		}
		k := specs[di].kind
		inc.metric = -1
		switch inc.Do {
		case DoOverheat:
			if k.Hot == "" {
				return nil, devices.Errorf(devices.EInvalid, "incidents[%d]: a %s cannot overheat; use high with a metric", i, k.Name)
			}
			inc.metric = k.Metric(k.Hot)
		case DoHigh, DoLow:
			name := inc.Metric
			if name == "" {
				name = orElse(k.Hot, k.Metrics[0].Name)
			}
			inc.metric = k.Metric(name)
			if inc.metric < 0 || k.Metrics[inc.metric].Counter {
				return nil, devices.Errorf(devices.EInvalid, "incidents[%d]: a %s has no metric %q that can go %s", i, k.Name, name, inc.Do)
			}
		case DoOffline, DoDisconnect, DoOnline:
		default:
			return nil, devices.Errorf(devices.EInvalid, "incidents[%d]: do %q is not one of overheat, high, low, offline, disconnect, online", i, inc.Do)
		}
		specs[di].incidents = append(specs[di].incidents, inc)
	}
	for i := range specs {
		sort.SliceStable(specs[i].incidents, func(a, b int) bool { return specs[i].incidents[a].At < specs[i].incidents[b].At })
	}
	return specs, nil
}

func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func kindNames() string {
	var ns []string
	for _, k := range kinds {
		ns = append(ns, k.Name)
	}
	return strings.Join(ns, ", ")
}

// incidentRamp is how long a metric takes to reach its incident value.
const incidentRamp = 20 * time.Second

// applyIncidents changes the sample as the incidents active at elapsed (time
// since the start) demand: a metric driven high or low moves over
// incidentRamp to a third of its limit range beyond the limit, keeping a
// tenth of its own movement.
func applyIncidents(incs []Incident, elapsed time.Duration, s Sample) {
	for _, inc := range incs {
		if inc.metric < 0 || elapsed < inc.At || (inc.For > 0 && elapsed >= inc.At+inc.For) {
			continue
		}
		m := s.Metrics[inc.metric]
		v := s.Values[inc.metric]
		if math.IsNaN(v) {
			continue
		}
		span := m.Hi - m.Lo
		center := (m.Lo + m.Hi) / 2
		target := m.Hi + span/3
		if inc.Do == DoLow {
			target = m.Lo - span/3
		}
		target += 0.1 * (v - center)
		f := min(1, float64(elapsed-inc.At)/float64(incidentRamp))
		s.Values[inc.metric] = clamp(round(v+(target-v)*f, m.Decimals), m.Min, m.Max)
	}
}

// presence is whether a scripted device is up at elapsed, how it went down
// if not (DoOffline or DoDisconnect), and when that next changes (-1: never).
func presence(incs []Incident, elapsed time.Duration) (up bool, how string, next time.Duration) {
	type change struct {
		at  time.Duration
		how string // "" for up
	}
	var cs []change
	for _, inc := range incs {
		switch inc.Do {
		case DoOffline, DoDisconnect:
			cs = append(cs, change{inc.At, inc.Do})
			if inc.For > 0 {
				cs = append(cs, change{inc.At + inc.For, ""})
			}
		case DoOnline:
			cs = append(cs, change{inc.At, ""})
		}
	}
	slices.SortStableFunc(cs, func(a, b change) int { return cmp.Compare(a.at, b.at) })
	up, next = true, -1
	for _, c := range cs {
		if c.at > elapsed {
			next = c.at
			break
		}
		up, how = c.how == "", c.how
	}
	return up, how, next
}
