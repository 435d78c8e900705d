package ingest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"iotdash/devices"
)

const now = 1764000000000

func TestParseTopic(t *testing.T) {
	for _, tc := range []struct {
		topic  string
		id     string
		kind   Kind
		reason string
	}{
		{"devices/dev-1/telemetry", "dev-1", KindTelemetry, ""},
		{"devices/a.b_C-9/meta", "a.b_C-9", KindMeta, ""},
		{"devices/x/status", "x", KindStatus, ""},
		{"devices/x/other", "", 0, ReasonTopic},
		{"devices/x/telemetry/extra", "", 0, ReasonTopic},
		{"devices/x", "", 0, ReasonTopic},
		{"sensors/x/telemetry", "", 0, ReasonTopic},
		{"devices//telemetry", "", 0, ReasonDeviceID},
		{"devices/a b/telemetry", "", 0, ReasonDeviceID},
		{"devices/" + strings.Repeat("a", 65) + "/telemetry", "", 0, ReasonDeviceID},
		{"devices/\xff/telemetry", "", 0, ReasonDeviceID},
	} {
		id, kind, rej := ParseTopic(tc.topic)
		if tc.reason != "" {
			if rej == nil || rej.Reason != tc.reason {
				t.Errorf("ParseTopic(%q) = %v, want rejection %s", tc.topic, rej, tc.reason)
			}
			continue
		}
		if rej != nil || id != tc.id || kind != tc.kind {
			t.Errorf("ParseTopic(%q) = %q, %v, %v; want %q, %v", tc.topic, id, kind, rej, tc.id, tc.kind)
		}
	}
}

func TestDecodeTelemetry(t *testing.T) {
	r := func(m string, ts int64, v float64) devices.Reading {
		return devices.Reading{Device: "d", Metric: m, Time: ts, Value: v}
	}
	for _, tc := range []struct {
		name    string
		payload string
		want    []devices.Reading
		skipped []string
		reason  string
	}{
		{"example", `{"ts":1764000000123,"temperature":21.5,"humidity":40.2}`,
			[]devices.Reading{r("temperature", 1764000000123, 21.5), r("humidity", 1764000000123, 40.2)}, nil, ""},
		{"no ts means receive time", `{"t":-1.5e2}`, []devices.Reading{r("t", now, -150)}, nil, ""},
		{"ts after metrics", ` { "a" : 1 , "ts" : 1764000000001 } `, []devices.Reading{r("a", 1764000000001, 1)}, nil, ""},
		{"rfc3339 ts", `{"ts":"2025-11-24T16:00:00.5Z","a":0}`, []devices.Reading{r("a", 1764000000500, 0)}, nil, ""},
		{"escaped key", `{"\u0061":1}`, []devices.Reading{r("a", now, 1)}, nil, ""},
		{"string value skipped, rest kept", `{"a":"hot","b":2}`, []devices.Reading{r("b", now, 2)}, []string{ReasonNotNumber}, ""},
		{"bool and null skipped", `{"a":true,"b":null,"c":3}`, []devices.Reading{r("c", now, 3)}, []string{ReasonNotNumber, ReasonNotNumber}, ""},
		{"nested skipped", `{"a":{"b":[1,{"c":2}]},"d":4}`, []devices.Reading{r("d", now, 4)}, []string{ReasonNotNumber}, ""},
		{"bad metric name skipped", `{"a b":1,"ok":2}`, []devices.Reading{r("ok", now, 2)}, []string{ReasonMetric}, ""},
		{"out of range skipped", `{"a":1e999,"b":1}`, []devices.Reading{r("b", now, 1)}, []string{ReasonRange}, ""},
		{"repeated metric: the last value wins", `{"a":1,"b":2,"a":3}`, []devices.Reading{r("a", now, 3), r("b", now, 2)}, nil, ""},
		{"NaN", `{"a":NaN}`, nil, nil, ReasonJSON},
		{"Infinity", `{"a":Infinity}`, nil, nil, ReasonJSON},
		{"negative Infinity", `{"a":-Infinity}`, nil, nil, ReasonJSON},
		{"not an object", `[1,2]`, nil, nil, ReasonJSON},
		{"truncated", `{"a":1`, nil, nil, ReasonJSON},
		{"trailing garbage", `{"a":1}x`, nil, nil, ReasonJSON},
		{"leading zero", `{"a":01}`, nil, nil, ReasonJSON},
		{"invalid utf-8 key", "{\"\xff\":1}", nil, nil, ReasonJSON},
		{"empty", ``, nil, nil, ReasonJSON},
		{"empty object", `{}`, nil, nil, ReasonEmpty},
		{"bad ts string", `{"ts":"yesterday","a":1}`, nil, nil, ReasonTimestamp},
		{"fractional ts", `{"ts":1.5,"a":1}`, nil, nil, ReasonTimestamp},
		{"ts in seconds", `{"ts":1764000000,"a":1}`, nil, nil, ReasonTimestamp},
		{"ts object", `{"ts":{},"a":1}`, nil, nil, ReasonTimestamp},
		{"deep nesting", `{"a":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`, nil, nil, ReasonTooLarge},
		{"nesting within size", `{"a":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `,"b":1}`, []devices.Reading{r("b", now, 1)}, []string{ReasonNotNumber}, ""},
		{"nesting deeper than JSON decoders allow", `{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `,"b":1}`, nil, nil, ReasonJSON},
		{"huge", `{"a":"` + strings.Repeat("x", 1<<20) + `"}`, nil, nil, ReasonTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, skipped, rej := DecodeTelemetry(nil, "d", []byte(tc.payload), now)
			if tc.reason != "" {
				if rej == nil || rej.Reason != tc.reason {
					t.Fatalf("rejection = %v, want %s", rej, tc.reason)
				}
				if len(got) != 0 {
					t.Fatalf("rejected payload gave readings %v", got)
				}
				return
			}
			if rej != nil {
				t.Fatalf("unexpected rejection %v", rej)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("reading %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
			var reasons []string
			for _, s := range skipped {
				reasons = append(reasons, s.Reason)
			}
			if strings.Join(reasons, ",") != strings.Join(tc.skipped, ",") {
				t.Errorf("skipped %v, want %v", reasons, tc.skipped)
			}
		})
	}
}

// FuzzDecodeTelemetry checks that decoding never panics, that every reading
// it gives is valid, and that it agrees with encoding/json on what the
// numbers of a valid object are.
func FuzzDecodeTelemetry(f *testing.F) {
	for _, s := range []string{`{"ts":1764000000123,"temperature":21.5}`, `{"a":"x","b":[1,{}],"c":-0.5e3}`, `{"\u0041":1}`, `{"a":NaN}`, "{\"\xff\":1}", `{"ts":"2025-11-24T16:00:00Z","a":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, _, rej := DecodeTelemetry(nil, "d", payload, now)
		for _, r := range got {
			if err := r.Validate(); err != nil {
				t.Fatalf("invalid reading %+v: %v", r, err)
			}
		}
		var obj map[string]any
		if json.Unmarshal(payload, &obj) != nil {
			if rej == nil {
				t.Fatalf("accepted %q, which encoding/json rejects", payload)
			}
			return
		}
		if rej != nil {
			return // valid JSON with a bad ts, or nothing to take
		}
		want := map[string]float64{}
		for k, v := range obj {
			if n, ok := v.(float64); ok && k != "ts" && devices.ValidName(k) && !math.IsInf(n, 0) {
				want[k] = n
			}
		}
		gotM := map[string]float64{}
		for _, r := range got {
			gotM[r.Metric] = r.Value // JSON's last duplicate key wins, as here
		}
		if len(gotM) != len(want) {
			t.Fatalf("%q: got %v, want %v", payload, gotM, want)
		}
		for k, v := range want {
			if gotM[k] != v {
				t.Fatalf("%q: metric %s = %v, want %v", payload, k, gotM[k], v)
			}
		}
	})
}

func BenchmarkDecodeTelemetry(b *testing.B) {
	payload := []byte(`{"ts":1764000000123,"temperature":21.53,"humidity":40.2,"battery":3.71}`)
	var dst []devices.Reading
	b.ReportAllocs()
	for b.Loop() {
		dst, _, _ = DecodeTelemetry(dst[:0], "thermostat-01", payload, now)
	}
}

// TestRepeatedMetricAmongMany: past the few metrics compared one by one, a
// repeated metric still keeps only its last value.
func TestRepeatedMetricAmongMany(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range 20 {
		fmt.Fprintf(&b, `"m%d":%d,`, i, i)
	}
	b.WriteString(`"m3":-1}`)
	got, _, rej := DecodeTelemetry(nil, "d", []byte(b.String()), now)
	if rej != nil || len(got) != 20 {
		t.Fatalf("got %d readings, %v; want 20", len(got), rej)
	}
	for i, r := range got {
		want := float64(i)
		if i == 3 {
			want = -1
		}
		if r.Metric != fmt.Sprintf("m%d", i) || r.Value != want {
			t.Errorf("reading %d = %+v, want m%d = %v", i, r, i, want)
		}
	}
}

// FuzzParseTopic checks that topic parsing never panics, that what it takes
// is exactly devices/{a valid id}/{telemetry|meta|status}, and that what it
// refuses has a reason iotdash counts.
func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{"devices/dev-1/telemetry", "devices/a.b/meta", "devices/x/status", "devices//telemetry", "devices/a/b/telemetry", "devices/\xff/status", "devices/" + strings.Repeat("a", 65) + "/meta", "sensors/x/telemetry"} {
		f.Add(s)
	}
	kinds := map[Kind]string{KindTelemetry: "telemetry", KindMeta: "meta", KindStatus: "status"}
	f.Fuzz(func(t *testing.T, topic string) {
		id, kind, rej := ParseTopic(topic)
		if rej != nil {
			if rej.Reason != ReasonTopic && rej.Reason != ReasonDeviceID {
				t.Fatalf("ParseTopic(%q) rejected with reason %q", topic, rej.Reason)
			}
			return
		}
		if !devices.ValidName(id) || kinds[kind] == "" || topic != "devices/"+id+"/"+kinds[kind] {
			t.Fatalf("ParseTopic(%q) = %q, %v: not devices/{id}/{kind}", topic, id, kind)
		}
	})
}

// TestParseNumber: the quick way through a number gives exactly the float
// strconv.ParseFloat gives, for the literals it takes and those it leaves.
func TestParseNumber(t *testing.T) {
	lits := []string{"0", "-0", "0.0", "-0.0", "1", "-1", "21.53", "0.1", "0.3", "1764000000123", "9007199254740991",
		"9007199254740992", "9007199254740993", "12345678901234567890", "1e3", "1.5E-7", "0.0000000000000000000001",
		"0.00000000000000000000001", "123456.789012345678", "3.141592653589793", "1.7976931348623157e308", "1e999", "4.9e-324"}
	rnd := rand.New(rand.NewPCG(3, 4))
	for range 200_000 {
		// Digits before and after the point in every mix of lengths.
		lit := strconv.FormatUint(rnd.Uint64N(1<<uint(rnd.IntN(64))), 10)
		if rnd.IntN(2) == 0 {
			lit += "." + strconv.FormatUint(rnd.Uint64N(1<<uint(rnd.IntN(64))), 10)
		}
		if rnd.IntN(2) == 0 {
			lit = "-" + lit
		}
		lits = append(lits, lit)
	}
	for _, lit := range lits {
		got, gerr := parseNumber([]byte(lit))
		want, werr := strconv.ParseFloat(lit, 64)
		if math.Float64bits(got) != math.Float64bits(want) || (gerr == nil) != (werr == nil) {
			t.Fatalf("parseNumber(%q) = %v, %v; ParseFloat: %v, %v", lit, got, gerr, want, werr)
		}
	}
}
