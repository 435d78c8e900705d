package simulator

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"iotdash/devices"
)

var day0 = time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC) // a Monday

func TestSameSeedSameReadings(t *testing.T) {
	for _, k := range Kinds() {
		a, b := NewModel(k, 42, 3), NewModel(k, 42, 3)
		other := NewModel(k, 43, 3)
		differs := false
		for i := range 500 {
			at := day0.Add(time.Duration(i) * 7919 * time.Millisecond)
			sa, sb := a.At(at), b.At(at)
			if string(sa.AppendJSON(nil)) != string(sb.AppendJSON(nil)) {
				t.Fatalf("%s at %v: got %s and %s from the same seed", k.Name, at, sa.AppendJSON(nil), sb.AppendJSON(nil))
			}
			if string(sa.AppendJSON(nil)) != string(other.At(at).AppendJSON(nil)) {
				differs = true
			}
		}
		if !differs {
			t.Errorf("%s: seeds 42 and 43 gave the same 500 readings", k.Name)
		}
	}
}

// A week of readings every 20 s for a handful of devices of each kind: every
// value within its physical bounds, counters never down, and the signals
// alive (they move, they cross their limits only now and then).
func TestValuesStayPhysicalOverAWeek(t *testing.T) {
	const step = 20 * time.Second
	const n = 7 * 24 * time.Hour / step
	for _, k := range Kinds() {
		for idx := range 4 {
			m := NewModel(k, int64(idx)*1000+7, idx)
			prev := make([]float64, len(k.Metrics))
			lo := make([]float64, len(k.Metrics))
			hi := make([]float64, len(k.Metrics))
			outside := make([]int, len(k.Metrics))
			dropped := 0
			for i := range lo {
				lo[i], hi[i], prev[i] = math.Inf(1), math.Inf(-1), math.Inf(-1)
			}
			for i := range int(n) {
				s := m.At(day0.Add(time.Duration(i) * step))
				for j, mt := range k.Metrics {
					v := s.Values[j]
					if math.IsNaN(v) {
						dropped++
						continue
					}
					if math.IsInf(v, 0) || v < mt.Min || v > mt.Max {
						t.Fatalf("%s #%d %s = %v at step %d, outside [%v, %v]", k.Name, idx, mt.Name, v, i, mt.Min, mt.Max)
					}
					if mt.Counter && v < prev[j] {
						t.Fatalf("%s #%d counter %s went down from %v to %v at step %d", k.Name, idx, mt.Name, prev[j], v, i)
					}
					prev[j] = v
					lo[j], hi[j] = min(lo[j], v), max(hi[j], v)
					if !mt.Counter && (v < mt.Lo || v > mt.Hi) {
						outside[j]++
					}
				}
			}
			for j, mt := range k.Metrics {
				if hi[j] <= lo[j] {
					t.Errorf("%s #%d %s never moved from %v", k.Name, idx, mt.Name, lo[j])
				}
				if frac := float64(outside[j]) / float64(n); frac > 0.2 {
					t.Errorf("%s #%d %s outside its limits [%v, %v] %.0f%% of the week (range %v..%v)", k.Name, idx, mt.Name, mt.Lo, mt.Hi, 100*frac, lo[j], hi[j])
				}
			}
			if dropped == 0 || dropped > int(n)/20 {
				t.Errorf("%s #%d: %d of %d readings had a dropout, want some but under 5%%", k.Name, idx, dropped, n)
			}
		}
	}
}

func TestDailyCycle(t *testing.T) {
	// A thermostat is warmer in the afternoon than before dawn, on average
	// over a week.
	th, _ := KindNamed("thermostat")
	m := NewModel(th, 1, 0)
	var afternoon, night float64
	for d := range 7 {
		for mi := range 60 {
			at := day0.Add(time.Duration(d)*24*time.Hour + time.Duration(mi)*time.Minute)
			a, _ := m.At(at.Add(15 * time.Hour)).Value("temperature")
			n, _ := m.At(at.Add(3 * time.Hour)).Value("temperature")
			afternoon += a
			night += n
		}
	}
	if afternoon <= night {
		t.Errorf("got afternoon mean %.2f <= night mean %.2f, want warmer afternoons", afternoon/420, night/420)
	}
}

func TestPayloadAndMetaFollowTheContract(t *testing.T) {
	for _, k := range Kinds() {
		m := NewModel(k, 5, 1)
		at := day0.Add(10*time.Hour + 123*time.Millisecond)
		var obj map[string]float64
		payload := m.At(at).AppendJSON(nil)
		if err := json.Unmarshal(payload, &obj); err != nil {
			t.Fatalf("%s payload %s: %v", k.Name, payload, err)
		}
		if got, want := int64(obj["ts"]), at.UnixMilli(); got != want {
			t.Errorf("%s ts: got %d, want %d", k.Name, got, want)
		}
		for name := range obj {
			if name != "ts" && k.Metric(name) < 0 {
				t.Errorf("%s payload has unknown metric %q", k.Name, name)
			}
		}
		b, _ := json.Marshal(m.Meta(k.Name + "-07"))
		meta, err := devices.ParseMeta(b)
		if err != nil {
			t.Fatalf("%s meta %s: %v", k.Name, b, err)
		}
		if meta.Kind != k.Name || meta.Name == "" || meta.Location == "" || len(meta.Units) != len(k.Metrics) {
			t.Errorf("%s meta: got %+v", k.Name, meta)
		}
		for _, mt := range k.Metrics {
			if !devices.ValidName(mt.Name) {
				t.Errorf("%s metric name %q is not valid", k.Name, mt.Name)
			}
			if _, ok := meta.Limits[mt.Name]; ok == mt.Counter {
				t.Errorf("%s %s: limits present %v, counter %v; want limits on all but counters", k.Name, mt.Name, ok, mt.Counter)
			}
		}
	}
}
