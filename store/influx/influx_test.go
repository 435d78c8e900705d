package influx_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"iotdash/devices"
	"iotdash/internal/testenv"
	"iotdash/store"
	"iotdash/store/influx"
	"iotdash/store/storetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var _ storetest.Store = (*influx.Store)(nil)

// open returns a Store on a new, empty database of the test InfluxDB.
func open(t testing.TB, batch int) (*influx.Store, *testenv.InfluxDB) {
	t.Helper()
	db := testenv.StartInfluxDB(t)
	s, err := influx.New(influx.Config{URL: db.URL, Bucket: db.Bucket, BatchSize: batch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.LastWriteWins, func(t *testing.T) storetest.Store {
		s, _ := open(t, 0)
		return s
	})
}

// base is a fixed recent instant, 2026-01-01T00:00:00Z.
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// writeCounter is a reverse proxy in front of the real server that counts
// write requests and the lines (points) each carried.
type writeCounter struct {
	mu    sync.Mutex
	lines []int
}

func (c *writeCounter) proxy(t *testing.T, target string) string {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/write") {
			body, _ := io.ReadAll(r.Body)
			c.mu.Lock()
			c.lines = append(c.lines, strings.Count(strings.TrimSpace(string(body)), "\n")+1)
			c.mu.Unlock()
			r.Body = io.NopCloser(strings.NewReader(string(body)))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func (c *writeCounter) requests() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.lines...)
}

// influxQL runs a SELECT and returns the first series' columns and rows.
func influxQL(t *testing.T, db *testenv.InfluxDB, q string) ([]string, [][]any) {
	t.Helper()
	resp, err := http.Get(db.URL + "/query?" + url.Values{"db": {db.Database}, "q": {q}, "epoch": {"ms"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct {
			Error  string
			Series []struct {
				Columns []string
				Values  [][]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if len(out.Results) != 1 || out.Results[0].Error != "" {
		t.Fatalf("%s: %+v", q, out)
	}
	if len(out.Results[0].Series) == 0 {
		return nil, nil
	}
	return out.Results[0].Series[0].Columns, out.Results[0].Series[0].Values
}

func TestOnePointPerMessage(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	var c writeCounter
	s, err := influx.New(influx.Config{URL: c.proxy(t, db.URL), Bucket: db.Bucket, BatchSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Four messages of three metrics each, one of them from a second
	// device at the same instant: four points, in two requests of at most
	// three points.
	var rs []devices.Reading
	for i, d := range []string{"pump-1", "pump-1", "pump-2", "pump-1"} {
		tm := base + int64(i/3)*1000 + int64(i%3)*10
		if d == "pump-2" {
			tm = base + 10
		}
		for j, m := range []string{"temperature", "pressure", "flow"} {
			rs = append(rs, devices.Reading{Device: d, Metric: m, Time: tm, Value: float64(10*i + j)})
		}
	}
	if err := s.Append(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	if got := c.requests(); fmt.Sprint(got) != "[3 1]" {
		t.Errorf("points per write request: got %v, want [3 1]", got)
	}
	cols, rows := influxQL(t, db, `SELECT "temperature", "pressure", "flow" FROM "telemetry" WHERE "device" = 'pump-1'`)
	if want := "[time temperature pressure flow]"; fmt.Sprint(cols) != want {
		t.Errorf("columns: got %v, want %s", cols, want)
	}
	want := fmt.Sprint([][]any{
		{float64(base), 0., 1., 2.},
		{float64(base + 10), 10., 11., 12.},
		{float64(base + 1000), 30., 31., 32.},
	})
	if got := fmt.Sprint(rows); got != want {
		t.Errorf("pump-1 rows:\n got %s\nwant %s", got, want)
	}
}

func TestAppendIsIdempotent(t *testing.T) {
	s, db := open(t, 0)
	ctx := context.Background()
	rs := []devices.Reading{
		{Device: "d", Metric: "m", Time: base, Value: 1},
		{Device: "d", Metric: "m", Time: base + 1, Value: 2},
	}
	for range 3 {
		if err := s.Append(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Query(ctx, store.Query{Device: "d", Metric: "m", From: base, To: base + 10})
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.Point{{T: base, V: 1}, {T: base + 1, V: 2}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	_, rows := influxQL(t, db, `SELECT COUNT("m") FROM "telemetry"`)
	if fmt.Sprint(rows) != "[[0 2]]" {
		t.Errorf("count: got %v, want [[0 2]]", rows)
	}
}

func TestHostileNamesRejected(t *testing.T) {
	s, _ := open(t, 0)
	ctx := context.Background()
	for _, bad := range []string{
		`") |> drop()`,
		`d" or r.device != "`,
		"d\nx",
		`${x}`,
		`d\`,
		`d'`,
		strings.Repeat("d", devices.MaxNameLen+1),
	} {
		err := s.Append(ctx, []devices.Reading{{Device: bad, Metric: "m", Time: base, Value: 1}})
		if devices.ErrorKind(err) != devices.EInvalid {
			t.Errorf("Append(device %q) = %v, want %s", bad, err, devices.EInvalid)
		}
		err = s.Append(ctx, []devices.Reading{{Device: "d", Metric: bad, Time: base, Value: 1}})
		if devices.ErrorKind(err) != devices.EInvalid {
			t.Errorf("Append(metric %q) = %v, want %s", bad, err, devices.EInvalid)
		}
		_, err = s.Query(ctx, store.Query{Device: bad, Metric: "m", From: base, To: base + 1})
		if devices.ErrorKind(err) != devices.EInvalid {
			t.Errorf("Query(device %q) = %v, want %s", bad, err, devices.EInvalid)
		}
		_, err = s.Query(ctx, store.Query{Device: "d", Metric: bad, From: base, To: base + 1, Step: 1, Agg: store.AggMean})
		if devices.ErrorKind(err) != devices.EInvalid {
			t.Errorf("Query(metric %q) = %v, want %s", bad, err, devices.EInvalid)
		}
	}
	err := s.Append(ctx, []devices.Reading{{Device: "d", Metric: "m", Time: 1 << 62, Value: 1}})
	if devices.ErrorKind(err) != devices.EInvalid {
		t.Errorf("Append(time after 2262) = %v, want %s", err, devices.EInvalid)
	}
}

func TestUnreachable(t *testing.T) {
	s, err := influx.New(influx.Config{URL: fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)), Bucket: "db/autogen", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Append(ctx, []devices.Reading{{Device: "d", Metric: "m", Time: base, Value: 1}}); devices.ErrorKind(err) != devices.EUnavailable {
		t.Errorf("Append = %v, want %s", err, devices.EUnavailable)
	}
	if _, err := s.Query(ctx, store.Query{Device: "d", Metric: "m", From: base, To: base + 1}); devices.ErrorKind(err) != devices.EUnavailable {
		t.Errorf("Query = %v, want %s", err, devices.EUnavailable)
	}
	if err := s.Ping(ctx); devices.ErrorKind(err) != devices.EUnavailable {
		t.Errorf("Ping = %v, want %s", err, devices.EUnavailable)
	}
}

func TestServerErrorKinds(t *testing.T) {
	s, db := open(t, 0)
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	// Another writer made "m" an integer field: InfluxDB says the data is
	// bad, and retrying will not help.
	resp, err := http.Post(db.URL+"/write?precision=ms&db="+db.Database, "text/plain", strings.NewReader(fmt.Sprintf("telemetry,device=d m=1i %d", base)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	err = s.Append(ctx, []devices.Reading{{Device: "d", Metric: "m", Time: base, Value: 1.5}})
	if devices.ErrorKind(err) != devices.EInvalid {
		t.Errorf("Append(float to an integer field) = %v, want %s", err, devices.EInvalid)
	}
	// No such database: configuration, worth retrying once fixed.
	bad, err := influx.New(influx.Config{URL: db.URL, Bucket: "no_such_db/autogen"})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	err = bad.Append(ctx, []devices.Reading{{Device: "d", Metric: "m", Time: base, Value: 1}})
	if devices.ErrorKind(err) != devices.EUnavailable {
		t.Errorf("Append(to a missing database) = %v, want %s", err, devices.EUnavailable)
	}
}

func TestQueryEdges(t *testing.T) {
	s, _ := open(t, 0)
	ctx := context.Background()
	// The first and last times a reading may have, and nothing outside
	// them.
	rs := []devices.Reading{
		{Device: "d", Metric: "m", Time: devices.MinTime, Value: 1},
		{Device: "d", Metric: "m", Time: devices.MinTime + 1, Value: 2},
		{Device: "d", Metric: "m", Time: base, Value: 4},
		{Device: "d", Metric: "m", Time: devices.MaxTime, Value: 8},
	}
	if err := s.Append(ctx, rs); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []int64{devices.MinTime - 1, devices.MaxTime + 1, -1, 1 << 62} {
		if err := s.Append(ctx, []devices.Reading{{Device: "d", Metric: "m", Time: bad, Value: 1}}); devices.ErrorKind(err) != devices.EInvalid {
			t.Errorf("Append(time %d) = %v, want %s", bad, err, devices.EInvalid)
		}
	}
	const whole = 1<<63 - 1
	for _, c := range []struct {
		q    store.Query
		want string
	}{
		{store.Query{From: -1 << 63, To: whole}, "[{946684800000 1} {946684800001 2} {1767225600000 4} {4102444800000 8}]"},
		{store.Query{From: 0, To: devices.MinTime}, "[]"},
		{store.Query{From: 0, To: devices.MinTime, Step: 1000, Agg: store.AggCount}, "[]"},
		{store.Query{From: devices.MinTime - 1000, To: devices.MinTime + 1}, "[{946684800000 1}]"},
		// Steps longer than the years a reading may have.
		{store.Query{From: -1 << 63, To: whole, Step: whole, Agg: store.AggSum}, "[{0 15}]"},
		{store.Query{From: -1 << 63, To: whole, Step: 1 << 42, Agg: store.AggCount}, "[{0 4}]"},
		{store.Query{From: 1, To: whole, Step: 1 << 62, Agg: store.AggLast}, "[{0 8}]"},
		// A step of some 35 years from the epoch, and one of 70 whose first
		// bucket starts before it.
		{store.Query{From: -1 << 63, To: whole, Step: 1 << 40, Agg: store.AggCount}, "[{0 2} {1099511627776 1} {3298534883328 1}]"},
		{store.Query{From: -1 << 63, To: whole, Step: 1 << 41, Offset: 1 << 40, Agg: store.AggSum}, "[{-1099511627776 3} {1099511627776 4} {3298534883328 8}]"},
		{store.Query{From: -1 << 63, To: whole, Step: 1 << 41, Offset: 1 << 40, Agg: store.AggFirst}, "[{-1099511627776 1} {1099511627776 4} {3298534883328 8}]"},
		{store.Query{From: -1 << 63, To: whole, Step: 3600000, Agg: store.AggLast}, "[{946684800000 2} {1767225600000 4} {4102444800000 8}]"},
	} {
		q := c.q
		q.Device, q.Metric = "d", "m"
		got, err := s.Query(ctx, q)
		if err != nil {
			t.Errorf("Query(%+v): %v", q, err)
			continue
		}
		if pairs(got) != c.want {
			t.Errorf("Query(%+v)\n got %v\nwant %s", q, pairs(got), c.want)
		}
	}
}

// pairs prints points as [{t v} ...].
func pairs(ps []store.Point) string {
	type pair struct {
		T int64
		V float64
	}
	out := make([]pair, len(ps))
	for i, p := range ps {
		out[i] = pair{p.T, p.V}
	}
	return fmt.Sprint(out)
}

// BenchmarkAppend writes messages of four metrics to the real server in
// batches of 500 and 5000 readings.
func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{500, 5000} {
		b.Run(fmt.Sprintf("readings=%d", batch), func(b *testing.B) {
			s, _ := open(b, 0)
			metrics := []string{"temperature", "humidity", "pressure", "battery"}
			rs := make([]devices.Reading, batch)
			tm := base
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				for i := range rs {
					if i%len(metrics) == 0 {
						tm++
					}
					rs[i] = devices.Reading{Device: fmt.Sprintf("dev-%d", i/len(metrics)%50), Metric: metrics[i%len(metrics)], Time: tm, Value: float64(i)}
				}
				if err := s.Append(ctx, rs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "readings/s")
		})
	}
}
