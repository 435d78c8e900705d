package influx

import (
	"context"
	"strings"
	"testing"
	"time"

	"iotdash/devices"
	"iotdash/internal/testenv"
)

func TestFluxString(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", `""`},
		{"pump-1.a_b", `"pump-1.a_b"`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{`\"`, `"\\\""`},
		{"${x}", `"\${x}"`},
		{"$x $ {", `"$x $ {"`},
		{"$${", `"$\${"`},
		{"a\nb\rc\td", `"a\nb\rc\td"`},
		{`") |> drop() |> yield(name: "`, `"\") |> drop() |> yield(name: \""`},
		{"é€", `"é€"`},
	} {
		if got := fluxString(c.in); got != c.want {
			t.Errorf("fluxString(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestFluxQueryText(t *testing.T) {
	for _, c := range []struct {
		name     string
		from, to int64
		step     int64
		fn       string
		want     string
	}{
		{"windows", 1767225600000, 1767225600123, 60000, "mean", `from(bucket: "db/autogen")
  |> range(start: 2026-01-01T00:00:00Z, stop: 2026-01-01T00:00:00.122999999Z)
  |> filter(fn: (r) => r._measurement == "telemetry" and r.device == "pump-1" and r._field == "temperature")
  |> aggregateWindow(every: 60000ms, fn: mean, createEmpty: false, timeSrc: "_start")
  |> keep(columns: ["_time", "_value"])`},
		{"raw", 1767225600000, 1767225600123, 0, "", `from(bucket: "db/autogen")
  |> range(start: 2026-01-01T00:00:00Z, stop: 2026-01-01T00:00:00.122999999Z)
  |> filter(fn: (r) => r._measurement == "telemetry" and r.device == "pump-1" and r._field == "temperature")
  |> keep(columns: ["_time", "_value"])`},
		{"whole range", 1767225600000, 1767225600123, 0, "last", `from(bucket: "db/autogen")
  |> range(start: 2026-01-01T00:00:00Z, stop: 2026-01-01T00:00:00.122999999Z)
  |> filter(fn: (r) => r._measurement == "telemetry" and r.device == "pump-1" and r._field == "temperature")
  |> last()
  |> keep(columns: ["_time", "_value"])`},
	} {
		if got := fluxQuery("db/autogen", "pump-1", "temperature", c.from, c.to, c.step, c.fn, 0); got != c.want {
			t.Errorf("%s: got\n%s\nwant\n%s", c.name, got, c.want)
		}
	}
}

// storeWithOneReading returns a store on a new database of the test server
// that holds one reading, device d, metric m, value 1, at the returned time.
func storeWithOneReading(t *testing.T) (*Store, int64) {
	t.Helper()
	db := testenv.StartInfluxDB(t)
	s, err := New(Config{URL: db.URL, Bucket: db.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	now := time.Now().UnixMilli()
	if err := s.Append(context.Background(), []devices.Reading{{Device: "d", Metric: "m", Time: now, Value: 1}}); err != nil {
		t.Fatal(err)
	}
	return s, now
}

// TestHostileStringsKeepTheirMeaning runs queries whose device is a Flux
// fragment (bypassing the validation Query does first) against the real
// server: each must parse and match nothing, though the bucket holds data
// that the fragment, were it code, would select.
func TestHostileStringsKeepTheirMeaning(t *testing.T) {
	s, now := storeWithOneReading(t)
	ctx := context.Background()
	plain := fluxQuery(s.bucket, "d", "m", now-1000, now+1000, 0, "", 0)
	if got, err := s.run(ctx, nil, plain, nil, now-1000, now+1000); err != nil || len(got) != 1 {
		t.Fatalf("the plain query: got %v, %v; want 1 point", got, err)
	}
	for _, hostile := range []string{
		`d" or r.device != "`,
		`d" or true or "`,
		`") |> drop(columns: ["_value"]) |> yield(name: "x`,
		`${r.device}`,
		`${"d"}`,
		"d\" or\nr._field == \"m",
		`d\`,
		`d\" or r.device != \"`,
	} {
		q := fluxQuery(s.bucket, hostile, "m", now-1000, now+1000, 0, "", 0)
		got, err := s.run(ctx, nil, q, nil, now-1000, now+1000)
		if err != nil {
			t.Errorf("device %q: %v\n%s", hostile, err, q)
			continue
		}
		if len(got) != 0 {
			t.Errorf("device %q matched %v\n%s", hostile, got, q)
		}
		if strings.Count(q, "\n") != strings.Count(plain, "\n") {
			t.Errorf("device %q changed the query's shape:\n%s", hostile, q)
		}
	}
}
