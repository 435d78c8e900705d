package simulator

import (
	"math"
	"strconv"
	"strings"
	"time"

	"iotdash/devices"
)

// Metric is one quantity a kind of device measures.
type Metric struct {
	Name string
	Unit string
	// Min and Max bound what is physically possible: the model never
	// reports a value outside them.
	Min, Max float64
	// Lo and Hi are the range the value should stay in; a reading outside it
	// is worth an alarm. A counter has none.
	Lo, Hi float64
	// Counter marks an ever-rising total, such as energy: it never goes down.
	Counter bool
	// Decimals is how many decimal places a reading carries.
	Decimals int
}

// Kind is a kind of device: what it measures and how its signals move.
type Kind struct {
	Name    string // e.g. "power-meter"; device ids are built from it
	Title   string // e.g. "Power meter"; device names are built from it
	Metrics []Metric
	// Hot is the metric an "overheat" incident drives up, "" if none.
	Hot string

	places []string
	sample func(g gen, ms int64, v []float64)
}

// Metric returns the index of the named metric in k.Metrics, or -1.
func (k *Kind) Metric(name string) int {
	for i, m := range k.Metrics {
		if m.Name == name {
			return i
		}
	}
	return -1
}

// Kinds returns every kind of device the simulator knows, in a fixed order.
func Kinds() []*Kind { return kinds }

// KindNamed returns the kind called name, or false.
func KindNamed(name string) (*Kind, bool) {
	for _, k := range kinds {
		if k.Name == name {
			return k, true
		}
	}
	return nil, false
}

// Model is the pure signal model of one simulated device: its readings are a
// function of its kind, the seed, its index in the fleet and the time, and of
// nothing else, so a run is reproducible to the reading and can be tested
// without a broker or a clock.
type Model struct {
	kind *Kind
	g    gen
}

// NewModel returns the model of device number index of kind under seed.
func NewModel(kind *Kind, seed int64, index int) *Model {
	return &Model{kind: kind, g: gen{seed: uint64(seed), index: uint64(index)}}
}

// Kind returns the model's kind.
func (m *Model) Kind() *Kind { return m.kind }

// Sample is one reading of every metric of a device at one instant.
type Sample struct {
	// Time is in Unix milliseconds.
	Time    int64
	Metrics []Metric
	// Values are in the order of Metrics. A metric whose sensor has dropped
	// out has the value NaN and is left out of the payload.
	Values []float64
}

// Value returns the value of the named metric, and false if the sample has
// none (no such metric, or a dropout).
func (s Sample) Value(metric string) (float64, bool) {
	for i, m := range s.Metrics {
		if m.Name == metric && !math.IsNaN(s.Values[i]) {
			return s.Values[i], true
		}
	}
	return 0, false
}

// AppendJSON appends the sample as a telemetry payload: a flat JSON object
// of "ts" (Unix ms) and each metric's value, e.g.
// {"ts":1764000000123,"temperature":21.5,"humidity":40.2}. It is written
// by hand, in the metrics' order, because iotload sends one per device a
// second: BenchmarkPayload finds it some fifteen times faster than
// encoding/json from a map, without allocating. Names and values are
// written by devices.AppendString and devices.AppendNumber.
func (s Sample) AppendJSON(b []byte) []byte {
	b = append(b, `{"ts":`...)
	b = strconv.AppendInt(b, s.Time, 10)
	for i, m := range s.Metrics {
		v := s.Values[i]
		if math.IsNaN(v) {
			continue
		}
		b = devices.AppendString(append(b, ','), m.Name)
		b = devices.AppendNumber(append(b, ':'), v)
	}
	return append(b, '}')
}

// At returns the device's reading at t.
func (m *Model) At(t time.Time) Sample {
	ms := t.UnixMilli()
	k := m.kind
	v := make([]float64, len(k.Metrics))
	k.sample(m.g, ms, v)
	for i, mt := range k.Metrics {
		v[i] = clamp(round(v[i], mt.Decimals), mt.Min, mt.Max)
	}
	// A sensor drops out now and then for up to a minute: one metric goes
	// missing from the payload while the others carry on.
	const bucket = 15 * 60 * 1000
	b := floorDiv(ms, bucket)
	if m.g.u(saltDropout, uint64(b)) < 0.04 {
		length := int64(20_000 + m.g.u(saltDropout+1, uint64(b))*40_000)
		start := b*bucket + int64(m.g.u(saltDropout+2, uint64(b))*float64(bucket-length))
		if ms >= start && ms < start+length {
			v[int(m.g.u(saltDropout+3, uint64(b))*float64(len(v)))] = math.NaN()
		}
	}
	return Sample{Time: ms, Metrics: k.Metrics, Values: v}
}

// Meta returns what the device called id says of itself on its meta topic:
// name, kind, location, and the unit and limits of each metric.
func (m *Model) Meta(id string) devices.Meta {
	k := m.kind
	meta := devices.Meta{
		Name:     k.Title + " " + strings.TrimPrefix(id, k.Name+"-"),
		Kind:     k.Name,
		Location: k.places[int(m.g.u(saltPlace, 0)*float64(len(k.places)))],
		Units:    make(map[string]string, len(k.Metrics)),
		Limits:   make(map[string][2]float64, len(k.Metrics)),
	}
	for _, mt := range k.Metrics {
		meta.Units[mt.Name] = mt.Unit
		if !mt.Counter {
			meta.Limits[mt.Name] = [2]float64{mt.Lo, mt.Hi}
		}
	}
	return meta
}

// Salts keep the random streams of different purposes apart.
const (
	saltBase    = 1 << 8 // + metric index: a device's own offset of a metric
	saltDrift   = 2 << 8
	saltNoise   = 3 << 8
	saltWhite   = 4 << 8
	saltSpike   = 5 << 8
	saltDropout = 6 << 8
	saltPlace   = 7 << 8
	saltExtra   = 8 << 8
)

// gen draws the deterministic randomness of one device: every number is a
// hash of the seed, the device index, a salt and a time bucket.
type gen struct{ seed, index uint64 }

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// u returns a uniform number in [0, 1).
func (g gen) u(salt, k uint64) float64 {
	h := splitmix(g.seed ^ splitmix(g.index^splitmix(salt^splitmix(k))))
	return float64(h>>11) / (1 << 53)
}

// s returns a uniform number in [-1, 1).
func (g gen) s(salt, k uint64) float64 { return 2*g.u(salt, k) - 1 }

// smooth is value noise in [-1, 1] that wanders over about scale ms: two
// octaves of hashed points joined by smoothstep.
func (g gen) smooth(salt uint64, ms, scale int64) float64 {
	one := func(salt uint64, scale int64) float64 {
		k := floorDiv(ms, scale)
		f := float64(ms-k*scale) / float64(scale)
		f = f * f * (3 - 2*f)
		a, b := g.s(salt, uint64(k)), g.s(salt, uint64(k+1))
		return a + (b-a)*f
	}
	return (2*one(salt, scale) + one(salt+0x80, scale/4+1)) / 3
}

// white is noise in [-1, 1) that changes with every millisecond.
func (g gen) white(salt uint64, ms int64) float64 { return g.s(salt, uint64(ms)) }

// spike is 1 while a spike is on and 0 otherwise: about perHour spikes an
// hour, each lasting width ms.
func (g gen) spike(salt uint64, ms int64, perHour float64, width int64) float64 {
	const bucket = 10 * 60 * 1000
	b := floorDiv(ms, bucket)
	if g.u(salt, uint64(b)) >= perHour/6 {
		return 0
	}
	start := b*bucket + int64(g.u(salt+0x40, uint64(b))*float64(bucket-width))
	if ms >= start && ms < start+width {
		return 1
	}
	return 0
}

// daily is the daily cycle: 1 at peakHour (UTC), -1 twelve hours later.
func daily(ms int64, peakHour float64) float64 {
	const day = 86400_000
	return math.Cos(2 * math.Pi * (float64(ms%day) - peakHour*3600_000) / day)
}

// office is how busy a building is: 0 at night and at weekends, up to 1
// in the early afternoon of a weekday (UTC).
func office(ms int64) float64 {
	const day = 86400_000
	// 1 January 1970 was a Thursday: day 0 is weekday 4 (Sunday is 0).
	wd := (floorDiv(ms, day) + 4) % 7
	if wd == 0 || wd == 6 {
		return 0.05
	}
	h := float64(ms-floorDiv(ms, day)*day) / 3600_000
	if h < 7 || h > 19 {
		return 0
	}
	return math.Sin(math.Pi * (h - 7) / 12)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

func round(v float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(v*p) / p
}

// energyOrigin is when every simulated energy meter started counting.
var energyOrigin = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

var kinds = []*Kind{
	{
		Name: "thermostat", Title: "Thermostat", Hot: "temperature",
		Metrics: []Metric{
			{Name: "temperature", Unit: "°C", Min: -40, Max: 85, Lo: 16, Hi: 27, Decimals: 2},
			{Name: "humidity", Unit: "%", Min: 0, Max: 100, Lo: 30, Hi: 60, Decimals: 1},
		},
		places: []string{"Office 1.04", "Office 2.11", "Meeting room A", "Meeting room B", "Reception", "Server room", "Boiler room", "Lab 3"},
		sample: func(g gen, ms int64, v []float64) {
			base := 20.5 + 2*g.s(saltBase, 0)
			v[0] = base + 1.5*daily(ms, 15) + 0.8*g.smooth(saltDrift, ms, 6*3600_000) +
				0.3*g.smooth(saltNoise, ms, 120_000) + 0.05*g.white(saltWhite, ms) +
				4*g.spike(saltSpike, ms, 0.2, 30_000)
			hb := 45 + 8*g.s(saltBase+1, 0)
			v[1] = hb - 6*daily(ms, 15) + 4*g.smooth(saltDrift+1, ms, 6*3600_000) +
				1.5*g.smooth(saltNoise+1, ms, 120_000) + 0.3*g.white(saltWhite+1, ms) +
				12*g.spike(saltSpike+1, ms, 0.1, 60_000)
		},
	},
	{
		Name: "power-meter", Title: "Power meter", Hot: "power",
		Metrics: []Metric{
			{Name: "voltage", Unit: "V", Min: 0, Max: 300, Lo: 207, Hi: 253, Decimals: 1},
			{Name: "current", Unit: "A", Min: 0, Max: 80, Lo: 0, Hi: 32, Decimals: 2},
			{Name: "power", Unit: "W", Min: 0, Max: 18000, Lo: 0, Hi: 7000, Decimals: 0},
			{Name: "energy", Unit: "kWh", Min: 0, Max: 1e12, Counter: true, Decimals: 3},
		},
		places: []string{"Main panel", "Floor 1 panel", "Floor 2 panel", "Kitchen circuit", "HVAC circuit", "Workshop"},
		sample: func(g gen, ms int64, v []float64) {
			// The mean power follows the day; energy is its exact integral,
			// so it only ever rises (p0 > amp) and matches the power shown.
			p0 := 1200 + 1000*g.u(saltBase, 0)
			amp := 0.6 * p0
			const day = 86400_000.0
			peak := 19 * 3600_000.0
			v[0] = 230 - 3*daily(ms, 19) + 1.5*g.smooth(saltNoise, ms, 60_000) + 0.3*g.white(saltWhite, ms) -
				25*g.spike(saltSpike, ms, 0.1, 4_000)
			v[2] = p0 + amp*daily(ms, 19) + 0.15*p0*g.smooth(saltNoise+2, ms, 90_000) + 20*g.white(saltWhite+2, ms) +
				2500*g.spike(saltSpike+2, ms, 0.4, 8_000)
			v[2] = math.Max(0, v[2])
			v[1] = v[2] / math.Max(v[0], 1)
			e := 5000 * g.u(saltBase+3, 0) // the reading when counting started
			if ms > energyOrigin {
				ws := p0*float64(ms-energyOrigin)/1000 + amp*day/1000/(2*math.Pi)*
					(math.Sin(2*math.Pi*(float64(ms%86400_000)-peak)/day)-math.Sin(2*math.Pi*(float64(energyOrigin%86400_000)-peak)/day))
				e += ws / 3.6e6
			}
			v[3] = e
		},
	},
	{
		Name: "air-quality", Title: "Air quality sensor",
		Metrics: []Metric{
			{Name: "co2", Unit: "ppm", Min: 400, Max: 10000, Lo: 400, Hi: 1000, Decimals: 0},
			{Name: "pm2_5", Unit: "µg/m³", Min: 0, Max: 1000, Lo: 0, Hi: 25, Decimals: 1},
			{Name: "voc", Unit: "ppb", Min: 0, Max: 60000, Lo: 0, Hi: 500, Decimals: 0},
		},
		places: []string{"Open office", "Meeting room A", "Meeting room B", "Canteen", "Classroom 4", "Lobby"},
		sample: func(g gen, ms int64, v []float64) {
			occ := office(ms)
			v[0] = 420 + occ*(350+350*g.u(saltBase, 0)) + 40*g.smooth(saltNoise, ms, 20*60_000) +
				8*g.white(saltWhite, ms) + 500*g.spike(saltSpike, ms, 0.1, 5*60_000)
			v[1] = 7 + 4*g.s(saltBase+1, 0) + 3*daily(ms, 19) + 2*g.smooth(saltNoise+1, ms, 10*60_000) +
				0.4*g.white(saltWhite+1, ms) + 45*g.spike(saltSpike+1, ms, 0.15, 10*60_000)
			v[2] = 130 + 120*occ + 30*g.smooth(saltNoise+2, ms, 10*60_000) + 8*g.white(saltWhite+2, ms) +
				450*g.spike(saltSpike+2, ms, 0.15, 3*60_000)
		},
	},
	{
		Name: "vibration", Title: "Vibration sensor", Hot: "bearing_temperature",
		Metrics: []Metric{
			{Name: "rms", Unit: "mm/s", Min: 0, Max: 100, Lo: 0, Hi: 4.5, Decimals: 2},
			{Name: "peak", Unit: "mm/s", Min: 0, Max: 300, Lo: 0, Hi: 11, Decimals: 2},
			{Name: "bearing_temperature", Unit: "°C", Min: -20, Max: 150, Lo: 0, Hi: 80, Decimals: 1},
		},
		places: []string{"Pump P-101", "Pump P-102", "Fan F-7", "Compressor C-2", "Conveyor line 1", "Mixer M-4"},
		sample: func(g gen, ms int64, v []float64) {
			wear := 0.5 * (g.smooth(saltDrift, ms, 12*3600_000) + 1)
			v[0] = 1.2 + 1.2*g.u(saltBase, 0) + 0.3*daily(ms, 14) + wear + 0.2*g.smooth(saltNoise, ms, 60_000) +
				0.08*g.white(saltWhite, ms) + 4*g.spike(saltSpike, ms, 0.3, 10_000)
			v[0] = math.Max(0.05, v[0])
			// A crest factor of 1.5 to 2 keeps peak above rms, as it is.
			v[1] = v[0] * (1.75 + 0.2*g.smooth(saltNoise+1, ms, 60_000) + 0.05*g.white(saltWhite+1, ms))
			v[2] = 35 + 5*g.s(saltBase+2, 0) + 2.5*v[0] + 3*daily(ms, 15) + 2*g.smooth(saltDrift+2, ms, 6*3600_000) +
				0.4*g.smooth(saltNoise+2, ms, 120_000) + 0.1*g.white(saltWhite+2, ms)
		},
	},
	{
		Name: "tank", Title: "Tank", Hot: "level",
		Metrics: []Metric{
			{Name: "level", Unit: "%", Min: 0, Max: 100, Lo: 10, Hi: 95, Decimals: 1},
			{Name: "flow", Unit: "L/min", Min: 0, Max: 500, Lo: 0, Hi: 120, Decimals: 1},
		},
		places: []string{"Rainwater tank", "Cooling water", "Fuel tank T1", "Process water", "Fire reserve"},
		sample: func(g gen, ms int64, v []float64) {
			// The tank fills and drains over a cycle of four to eight hours;
			// the flow is how fast.
			period := (4 + 4*g.u(saltBase, 0)) * 3600_000
			phase := 2*math.Pi*float64(ms)/period + 2*math.Pi*g.u(saltExtra, 0)
			v[0] = 55 + 35*math.Sin(phase) + 2*g.smooth(saltNoise, ms, 10*60_000) + 0.15*g.white(saltWhite, ms)
			v[1] = 30 + 25*math.Cos(phase) + 3*g.smooth(saltNoise+1, ms, 120_000) + 0.5*g.white(saltWhite+1, ms) +
				60*g.spike(saltSpike+1, ms, 0.2, 60_000)
		},
	},
}
