package devices

import (
	"encoding/json"
	"math"
	"strconv"
	"testing"

	"iotdash/internal/testenv"
)

func TestAppendNumber(t *testing.T) {
	for _, c := range []struct {
		v    float64
		want string
	}{
		{40240.648123, "40240.648123"},
		{1234567.891, "1234567.891"},
		{0.0046, "0.0046"},
		{1.015, "1.015"},
		{1763999100000, "1763999100000"},
		{4.6e-7, "4.6e-7"},
		{1e21, "1e+21"},
		{math.Copysign(0, -1), "0"},
		{math.NaN(), "null"},
		{math.Inf(1), "null"},
	} {
		got := string(AppendNumber(nil, c.v))
		if got != c.want {
			t.Errorf("AppendNumber(%v) = %s, want %s", c.v, got, c.want)
		}
		if back, err := strconv.ParseFloat(got, 64); c.want != "null" && (err != nil || back != c.v) {
			t.Errorf("%s reads back as %v, want %v", got, back, c.v)
		}
	}
}

func TestParseMetaDecimalsAndLabels(t *testing.T) {
	m, err := ParseMeta([]byte(`{"decimals":{"temperature":1},"labels":{"co2":"CO₂"}}`))
	if err != nil || m.Decimals["temperature"] != 1 || m.Label("co2") != "CO₂" || m.Label("temperature") != "temperature" {
		t.Errorf("ParseMeta = %+v, %v", m, err)
	}
	for _, bad := range []string{`{"decimals":{"t":10}}`, `{"decimals":{"t":-1}}`, `{"decimals":{"bad name":1}}`, `{"labels":{"t":""}}`} {
		if _, err := ParseMeta([]byte(bad)); ErrorKind(err) != EInvalid {
			t.Errorf("ParseMeta(%s) = %v, want EInvalid", bad, err)
		}
	}
}

// TestMatches: the fleet's text filter finds a device by its id, name,
// kind, location, and its metrics' names and labels, ignoring case.
func TestMatches(t *testing.T) {
	d := Device{ID: "aq-07", Meta: Meta{Name: "Air in the lab", Kind: "air-quality", Location: "Lab 2",
		Labels: map[string]string{"co2": "CO₂"}}, Latest: map[string]Value{"co2": {T: 1, V: 612}, "humidity": {T: 1, V: 40}}}
	for text, want := range map[string]bool{
		"": true, "AQ-07": true, "the lab": true, "quality": true, "lab 2": true,
		"humid": true, "co₂": true, "CO2": true, "pressure": false, "aq-07\nair": false,
	} {
		if got := d.Matches(text); got != want {
			t.Errorf("Matches(%q) = %v, want %v", text, got, want)
		}
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range testenv.HostileStrings {
		b := AppendString([]byte("x"), s)
		want, _ := json.Marshal(s)
		if string(b[1:]) != string(want) {
			t.Errorf("AppendString(%q) = %s, want %s as encoding/json writes it", s, b[1:], want)
		}
		var back string
		if err := json.Unmarshal(b[1:], &back); err != nil || back != s {
			t.Errorf("AppendString(%q) = %s reads back as %q, %v", s, b[1:], back, err)
		}
	}
}

// BenchmarkAppendString shows what AppendString's copy of a plain name
// saves over encoding/json.
func BenchmarkAppendString(b *testing.B) {
	const name = "boiler-room-3.temperature"
	b.Run("AppendString", func(b *testing.B) {
		buf := make([]byte, 0, 64)
		for b.Loop() {
			buf = AppendString(buf[:0], name)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		buf := make([]byte, 0, 64)
		for b.Loop() {
			q, _ := json.Marshal(name)
			buf = append(buf[:0], q...)
		}
	})
}
