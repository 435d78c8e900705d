package api

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"iotdash/devices"
	"iotdash/store/sqlite"
)

// TestCSVWideAndRounded: layout=wide gives a row per time and a column per
// series (an empty cell where one has no point), and aggregates reach the
// CSV rounded to 12 significant digits, while raw readings stay exact.
func TestCSVWideAndRounded(t *testing.T) {
	const t0 = 1767225600000
	st := storeWith(t, []devices.Reading{
		{Device: "boiler-1", Metric: "temperature", Time: t0, Value: 55.1},
		{Device: "boiler-1", Metric: "temperature", Time: t0 + 1000, Value: 55.2},
		{Device: "boiler-1", Metric: "pressure", Time: t0 + 1000, Value: 1.015},
		{Device: "boiler-1", Metric: "temperature", Time: t0 + 60000, Value: 40240.648123},
	})
	h := Query(st, QueryOptions{Logger: slog.New(slog.DiscardHandler)})
	q := "/?device=boiler-1&metric=temperature,pressure&from=1767225600000&to=1767225720000&format=csv&tz=UTC"
	for _, tc := range []struct{ query, want string }{
		{"&step=raw&layout=wide", "time,unix_ms,temperature,pressure\n" +
			"2026-01-01T00:00:00.000Z,1767225600000,55.1,\n" +
			"2026-01-01T00:00:01.000Z,1767225601000,55.2,1.015\n" +
			"2026-01-01T00:01:00.000Z,1767225660000,40240.648123,\n"},
		{"&step=1m&layout=wide", "time,unix_ms,temperature,pressure\n" +
			"2026-01-01T00:00:00.000Z,1767225600000,55.15,1.015\n" +
			"2026-01-01T00:01:00.000Z,1767225660000,40240.648123,\n"},
		{"&step=1m&agg=minmax&layout=wide", "time,unix_ms,temperature_min,temperature_max,pressure_min,pressure_max\n" +
			"2026-01-01T00:00:00.000Z,1767225600000,55.1,55.2,1.015,1.015\n" +
			"2026-01-01T00:01:00.000Z,1767225660000,40240.648123,40240.648123,,\n"},
		{"&step=1m", "time,unix_ms,device,metric,mean\n" +
			"2026-01-01T00:00:00.000Z,1767225600000,boiler-1,temperature,55.15\n" +
			"2026-01-01T00:00:00.000Z,1767225600000,boiler-1,pressure,1.015\n" +
			"2026-01-01T00:01:00.000Z,1767225660000,boiler-1,temperature,40240.648123\n"},
	} {
		a := serve(t, h, q+tc.query)
		if a.code != 200 || string(a.body) != tc.want {
			t.Errorf("%s: %d\n%s\nwant\n%s", tc.query, a.code, a.body, tc.want)
		}
	}
	if a := serve(t, h, "/?device=boiler-1&metric=temperature&format=csv&layout=tall"); a.code != 400 || !strings.Contains(string(a.body), "long or wide") {
		t.Errorf("layout=tall: %d %s, want a 400", a.code, a.body)
	}
}

// TestCSVDeclaredDecimals: an aggregate of a metric whose meta declares
// decimals reaches the CSV rounded to them; its raw readings stay exact,
// and a metric that declares none keeps 12 significant digits.
func TestCSVDeclaredDecimals(t *testing.T) {
	const t0 = 1767225600000
	rs := []devices.Reading{
		{Device: "boiler-1", Metric: "temperature", Time: t0, Value: 20},
		{Device: "boiler-1", Metric: "temperature", Time: t0 + 1000, Value: 20.33},
		{Device: "boiler-1", Metric: "pressure", Time: t0, Value: 1.015},
		{Device: "boiler-1", Metric: "pressure", Time: t0 + 1000, Value: 1.0161},
	}
	st := storeWith(t, rs)
	f := devices.NewFleet(nil)
	f.SetMeta("boiler-1", devices.Meta{Decimals: map[string]int{"temperature": 1}})
	f.Seen("boiler-1", rs)
	h := Query(st, QueryOptions{Logger: slog.New(slog.DiscardHandler), Fleet: f})
	q := "/?device=boiler-1&metric=temperature,pressure&from=1767225600000&to=1767225660000&format=csv&tz=UTC&layout=wide"
	for _, tc := range []struct{ query, want string }{
		{"&step=1m", "time,unix_ms,temperature,pressure\n" +
			"2026-01-01T00:00:00.000Z,1767225600000,20.2,1.01555\n"},
		{"&step=1m&agg=minmax", "time,unix_ms,temperature_min,temperature_max,pressure_min,pressure_max\n" +
			"2026-01-01T00:00:00.000Z,1767225600000,20,20.3,1.015,1.0161\n"},
		{"&step=raw", "time,unix_ms,temperature,pressure\n" +
			"2026-01-01T00:00:00.000Z,1767225600000,20,1.015\n" +
			"2026-01-01T00:00:01.000Z,1767225601000,20.33,1.0161\n"},
	} {
		if a := serve(t, h, q+tc.query); a.code != 200 || string(a.body) != tc.want {
			t.Errorf("%s: %d\n%s\nwant\n%s", tc.query, a.code, a.body, tc.want)
		}
	}
}

// TestJSONAggregatesWithoutNoise: the JSON answer's means are rounded to
// 12 significant digits, as the CSV's are, so that the device page's CSV
// of what its charts show has no float noise either.
func TestJSONAggregatesWithoutNoise(t *testing.T) {
	const t0 = 1767225600000
	st := storeWith(t, []devices.Reading{
		{Device: "boiler-1", Metric: "temperature", Time: t0, Value: 55.1},
		{Device: "boiler-1", Metric: "temperature", Time: t0 + 1000, Value: 55.2},
	})
	h := Query(st, QueryOptions{Logger: slog.New(slog.DiscardHandler)})
	q := "/?device=boiler-1&metric=temperature&from=1767225600000&to=1767225660000&tz=UTC"
	for _, tc := range []struct{ query, want string }{
		{"&step=1m", `"points":[[1767225600000,55.15]]`},
		{"&step=raw", `"points":[[1767225600000,55.1],[1767225601000,55.2]]`},
	} {
		if a := serve(t, h, q+tc.query); a.code != 200 || !strings.Contains(string(a.body), tc.want) {
			t.Errorf("%s: %d %s, want %s", tc.query, a.code, a.body, tc.want)
		}
	}
}

// storeWith is an embedded store in the test's directory holding rs.
func storeWith(t *testing.T, rs []devices.Reading) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "iotdash.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Append(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	return st
}
