package influx

import (
	"context"
	"testing"
	"time"

	"iotdash/internal/testenv"
	"iotdash/store"
	"iotdash/store/storetest"
)

// TestConformanceFlux runs the conformance suite with every downsample in
// Flux, as on InfluxDB 2.x; TestConformance, on the 1.8 test server, has
// InfluxQL do most of them.
func TestConformanceFlux(t *testing.T) {
	storetest.Run(t, storetest.LastWriteWins, func(t *testing.T) storetest.Store {
		db := testenv.StartInfluxDB(t)
		s, err := New(Config{URL: db.URL, Bucket: db.Bucket})
		if err != nil {
			t.Fatal(err)
		}
		s.server.Store(serverFlux)
		t.Cleanup(s.Close)
		return s
	})
}

func TestServerIsV1(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	s, err := New(Config{URL: db.URL + "/", Bucket: db.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.isV1(context.Background()) {
		t.Errorf("isV1 = false for the InfluxDB 1.8 test server")
	}
}

func TestInfluxQLQueryText(t *testing.T) {
	got := influxQLQuery("db/autogen", "pump-1", "temperature", 1767225600000, 1767225660000, 10000, "mean", 0)
	want := `SELECT mean("temperature") FROM "db"."autogen"."telemetry" WHERE "device" = 'pump-1' AND time >= 1767225600000ms AND time < 1767225660000ms GROUP BY time(10000ms) fill(none)`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	got = influxQLQuery("db", `it's`, `a"b\c`, 0, 1, 1, "max", 0)
	want = `SELECT max("a\"b\\c") FROM "db".."telemetry" WHERE "device" = 'it\'s' AND time >= 0ms AND time < 1ms GROUP BY time(1ms) fill(none)`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestHostileStringsInInfluxQL runs InfluxQL statements whose device or
// metric is an InfluxQL fragment (bypassing the validation Query does
// first) against the real server: each must run and match nothing, or be
// refused, though the database holds data the fragment, were it code,
// would select.
func TestHostileStringsInInfluxQL(t *testing.T) {
	s, now := storeWithOneReading(t)
	ctx := context.Background()
	q := store.Query{Device: "d", Metric: "m", From: now - 1000, To: now + 1000, Step: 1000, Agg: store.AggCount}
	if got, err := s.influxQL(ctx, q); err != nil || len(got) != 1 {
		t.Fatalf("the plain query: got %v, %v; want 1 point", got, err)
	}
	for _, hostile := range []string{
		`d' OR "device" != '`,
		`d' OR 1=1 --`,
		`d'; DROP DATABASE x; SELECT '`,
		`d" OR "device" != "`,
		"d'\nOR \"device\" != '",
		`d\`,
		`d\' OR "device" != \'`,
		`m") FROM "telemetry" --`,
	} {
		for _, q := range []store.Query{
			{Device: hostile, Metric: "m", From: now - 1000, To: now + 1000, Step: 1000, Agg: store.AggCount},
			{Device: "d", Metric: hostile, From: now - 1000, To: now + 1000, Step: 1000, Agg: store.AggCount},
		} {
			got, err := s.influxQL(ctx, q)
			if err == nil && len(got) != 0 {
				t.Errorf("%q matched %v\n%s", hostile, got, influxQLQuery(s.bucket, q.Device, q.Metric, now-1000, now+1000, 1000, "count", 0))
			}
		}
	}
	// The database is still there.
	if got, err := s.influxQL(ctx, q); err != nil || len(got) != 1 {
		t.Fatalf("the plain query after: got %v, %v; want 1 point", got, err)
	}
}

func TestParseTime(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"1970-01-01T00:00:00Z", 0},
		{"2026-01-01T00:00:00Z", 1767225600000},
		{"2026-01-01T00:00:01.5Z", 1767225601500},
		{"2026-01-01T00:00:01.123456789Z", 1767225601123},
		{"2024-02-29T23:59:59.999Z", time.Date(2024, 2, 29, 23, 59, 59, 999e6, time.UTC).UnixMilli()},
		{"1969-12-31T23:59:59.999Z", -1},
		{"1969-12-31T23:59:58.5Z", -1500},
		{"1677-09-21T00:12:43.145224194Z", -9223372036855},
		{"2262-04-11T23:47:16.854Z", 9223372036854},
		{"2026-01-01T01:00:00+01:00", 1767225600000},
	} {
		got, ok := parseTime([]byte(c.in))
		if !ok || got != c.want {
			t.Errorf("parseTime(%s) = %d, %v; want %d", c.in, got, ok, c.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:0xZ"} {
		if got, ok := parseTime([]byte(bad)); ok {
			t.Errorf("parseTime(%q) = %d, want failure", bad, got)
		}
	}
}
