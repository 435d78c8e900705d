package api_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"iotdash/api"
	"iotdash/devices"
	"iotdash/internal/testenv"
	"iotdash/store"
	"iotdash/store/influx"
	"iotdash/store/sqlite"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// backend is a store the history API reads and the tests write to.
type backend interface {
	api.Reader
	Append(ctx context.Context, rs []devices.Reading) error
}

var (
	_ backend = (*sqlite.Store)(nil)
	_ backend = (*influx.Store)(nil)
)

func openSQLite(t testing.TB) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "iotdash.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openInflux(t testing.TB) *influx.Store {
	t.Helper()
	db := testenv.StartInfluxDB(t)
	s, err := influx.New(influx.Config{URL: db.URL, Bucket: db.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// eachStore runs f against a new, empty embedded store and InfluxDB.
func eachStore(t *testing.T, f func(t *testing.T, st backend)) {
	t.Run("sqlite", func(t *testing.T) { f(t, openSQLite(t)) })
	t.Run("influx", func(t *testing.T) { f(t, openInflux(t)) })
}

// quiet is a logger for tests that cause the errors it would log.
var quiet = slog.New(slog.DiscardHandler)

// t0 is 2026-01-01T00:00:00Z.
const t0 = int64(1767225600000)

func appendAll(t testing.TB, st backend, rs []devices.Reading) {
	t.Helper()
	for len(rs) > 0 {
		n := min(len(rs), 5000)
		if err := st.Append(context.Background(), rs[:n]); err != nil {
			t.Fatal(err)
		}
		rs = rs[n:]
	}
}

// get asks h for path and returns the status and body.
func get(t *testing.T, h http.Handler, path string) (int, http.Header, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Header(), rec.Body.String()
}

func query(v url.Values) string { return "/api/v1/query?" + v.Encode() }

// TestQueryAnswers asks both stores the same questions through the API and
// checks the answers, their shapes and formats against values worked out
// here from the readings written.
func TestQueryAnswers(t *testing.T) {
	eachStore(t, func(t *testing.T, st backend) {
		// dev-a: temperature 0..17 and humidity 100..117 every 10 s;
		// dev-b: temperature 0, -1, ... -8 every 20 s from 5 s.
		var rs []devices.Reading
		for i := range 18 {
			rs = append(rs,
				devices.Reading{Device: "dev-a", Metric: "temperature", Time: t0 + int64(i)*10000, Value: float64(i)},
				devices.Reading{Device: "dev-a", Metric: "humidity", Time: t0 + int64(i)*10000, Value: float64(100 + i)})
		}
		for i := range 9 {
			rs = append(rs, devices.Reading{Device: "dev-b", Metric: "temperature", Time: t0 + 5000 + int64(i)*20000, Value: -float64(i)})
		}
		appendAll(t, st, rs)
		h := api.Query(st, api.QueryOptions{MaxPoints: 30})
		rng := url.Values{"from": {fmt.Sprint(t0)}, "to": {fmt.Sprint(t0 + 180000)}}
		with := func(kv ...string) url.Values {
			v := url.Values{}
			for k, vs := range rng {
				v[k] = vs
			}
			for i := 0; i < len(kv); i += 2 {
				v.Add(kv[i], kv[i+1])
			}
			return v
		}
		for _, c := range []struct {
			name string
			q    url.Values
			want string // the JSON answer
		}{
			{"mean", with("device", "dev-a", "metric", "temperature", "step", "1m"),
				`{"device":"dev-a","metric":"temperature","from":1767225600000,"to":1767225780000,"step_ms":60000,"agg":"mean","points":[[1767225600000,2.5],[1767225660000,8.5],[1767225720000,14.5]]}`},
			{"minmax", with("device", "dev-a", "metric", "temperature", "step", "1m", "agg", "minmax"),
				`{"device":"dev-a","metric":"temperature","from":1767225600000,"to":1767225780000,"step_ms":60000,"agg":"minmax","points":[[1767225600000,0,5],[1767225660000,6,11],[1767225720000,12,17]]}`},
			{"raw", url.Values{"device": {"dev-a"}, "metric": {"humidity"}, "from": {fmt.Sprint(t0)}, "to": {fmt.Sprint(t0 + 30000)}, "step": {"raw"}},
				`{"device":"dev-a","metric":"humidity","from":1767225600000,"to":1767225630000,"step_ms":0,"points":[[1767225600000,100],[1767225610000,101],[1767225620000,102]]}`},
			{"several", with("device", "dev-a,dev-b", "metric", "temperature", "metric", "pressure", "step", "1m", "agg", "count"),
				`{"from":1767225600000,"to":1767225780000,"step_ms":60000,"agg":"count","series":[` +
					`{"device":"dev-a","metric":"temperature","points":[[1767225600000,6],[1767225660000,6],[1767225720000,6]]},` +
					`{"device":"dev-a","metric":"pressure","points":[]},` +
					`{"device":"dev-b","metric":"temperature","points":[[1767225600000,3],[1767225660000,3],[1767225720000,3]]},` +
					`{"device":"dev-b","metric":"pressure","points":[]}]}`},
			{"several raw", url.Values{"device": {"dev-b"}, "metric": {"temperature,humidity"}, "from": {fmt.Sprint(t0)}, "to": {fmt.Sprint(t0 + 30000)}, "step": {"raw"}},
				`{"from":1767225600000,"to":1767225630000,"step_ms":0,"series":[{"device":"dev-b","metric":"temperature","points":[[1767225605000,0],[1767225625000,-1]]},{"device":"dev-b","metric":"humidity","points":[]}]}`},
			{"bucket before from", url.Values{"device": {"dev-a"}, "metric": {"temperature"}, "from": {fmt.Sprint(t0 + 50000)}, "to": {fmt.Sprint(t0 + 70001)}, "step": {"1m"}, "agg": {"sum"}},
				`{"device":"dev-a","metric":"temperature","from":1767225650000,"to":1767225670001,"step_ms":60000,"agg":"sum","points":[[1767225600000,5],[1767225660000,13]]}`},
		} {
			code, hdr, body := get(t, h, query(c.q))
			if code != http.StatusOK || hdr.Get("Content-Type") != "application/json" {
				t.Errorf("%s: %d %s %s", c.name, code, hdr.Get("Content-Type"), body)
				continue
			}
			if !sameJSON(t, body, c.want) {
				t.Errorf("%s:\n got %s\nwant %s", c.name, body, c.want)
			}
		}

		// More readings than one response may hold: a 400 that says to
		// narrow the range or export.
		code, _, body := get(t, h, query(url.Values{"device": {"dev-a"}, "metric": {"temperature,humidity"}, "from": {fmt.Sprint(t0)}, "to": {fmt.Sprint(t0 + 180000)}, "step": {"raw"}}))
		if code != http.StatusBadRequest || !strings.Contains(body, "more than 30 readings") || !strings.Contains(body, "format=csv") {
			t.Errorf("raw over the limit: %d %s", code, body)
		}

		// CSV: a step's points, time-ordered across series.
		code, hdr, body := get(t, h, query(with("device", "dev-a,dev-b", "metric", "temperature", "step", "1m", "agg", "minmax", "format", "csv")))
		want := "time,unix_ms,device,metric,min,max\n" +
			"2026-01-01T00:00:00.000Z,1767225600000,dev-a,temperature,0,5\n" +
			"2026-01-01T00:00:00.000Z,1767225600000,dev-b,temperature,-2,0\n" +
			"2026-01-01T00:01:00.000Z,1767225660000,dev-a,temperature,6,11\n" +
			"2026-01-01T00:01:00.000Z,1767225660000,dev-b,temperature,-5,-3\n" +
			"2026-01-01T00:02:00.000Z,1767225720000,dev-a,temperature,12,17\n" +
			"2026-01-01T00:02:00.000Z,1767225720000,dev-b,temperature,-8,-6\n"
		if code != http.StatusOK || body != want {
			t.Errorf("minmax CSV: %d\n got %s\nwant %s", code, body, want)
		}
		if got, want := hdr.Get("Content-Disposition"), `attachment; filename="iotdash_2-series_20260101T000000Z_20260101T000300Z_1m-minmax.csv"`; got != want {
			t.Errorf("Content-Disposition: got %s, want %s", got, want)
		}
		if got := hdr.Get("Content-Type"); got != "text/csv; charset=utf-8" {
			t.Errorf("Content-Type: %s", got)
		}

		// CSV: every reading of two series, merged in time order.
		code, hdr, body = get(t, h, query(with("device", "dev-b,dev-a", "metric", "temperature", "step", "raw", "format", "csv")))
		rows := readCSV(t, body)
		if code != http.StatusOK || len(rows) != 1+18+9 {
			t.Fatalf("raw CSV: %d, %d rows:\n%s", code, len(rows), body)
		}
		if got := strings.Join(rows[0], ","); got != "time,unix_ms,device,metric,value" {
			t.Errorf("raw CSV header: %s", got)
		}
		if rows[1][2] != "dev-a" || rows[2][2] != "dev-b" || rows[2][1] != fmt.Sprint(t0+5000) {
			t.Errorf("raw CSV starts %v %v, want dev-a at t0, then dev-b at t0+5s", rows[1], rows[2])
		}
		checkTimeOrder(t, rows[1:], []string{"dev-b", "dev-a"})
		if got, want := hdr.Get("Content-Disposition"), `attachment; filename="iotdash_2-series_20260101T000000Z_20260101T000300Z_raw.csv"`; got != want {
			t.Errorf("Content-Disposition: got %s, want %s", got, want)
		}
	})
}

// sameJSON compares two JSON texts by value.
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("%v in %s", err, a)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	return reflect.DeepEqual(x, y)
}

func readCSV(t testing.TB, body string) [][]string {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v", err)
	}
	return rows
}

// checkTimeOrder checks that rows are in time order, ties in the order of
// the series asked for, and that each row's time columns agree.
func checkTimeOrder(t testing.TB, rows [][]string, order []string) {
	t.Helper()
	prevT, prevI := int64(-1<<63), -1
	for _, r := range rows {
		ms, err := strconv.ParseInt(r[1], 10, 64)
		if err != nil {
			t.Fatalf("row %v: %v", r, err)
		}
		if tm, err := time.Parse(time.RFC3339Nano, r[0]); err != nil || tm.UnixMilli() != ms {
			t.Fatalf("row %v: time %s is not %d ms", r, r[0], ms)
		}
		i := 0
		for i < len(order) && !strings.HasPrefix(r[2]+"/"+r[3], order[i]) {
			i++
		}
		if ms < prevT || (ms == prevT && i <= prevI) {
			t.Fatalf("row %v comes after time %d of series %d", r, prevT, prevI)
		}
		prevT, prevI = ms, i
	}
}

// TestExportIsWholeAndOrdered exports more readings than several chunks of
// several series, from both stores.
func TestExportIsWholeAndOrdered(t *testing.T) {
	eachStore(t, func(t *testing.T, st backend) {
		n := 2*store.ReadingsChunk + 300
		var rs []devices.Reading
		for i := range n {
			// Three series with readings at times that interleave and
			// sometimes coincide.
			rs = append(rs,
				devices.Reading{Device: "pump-1", Metric: "flow", Time: t0 + int64(i)*1000, Value: float64(i)},
				devices.Reading{Device: "pump-1", Metric: "rpm", Time: t0 + int64(i)*1500, Value: float64(i) / 3},
				devices.Reading{Device: "pump-2", Metric: "flow", Time: t0 + int64(i)*700 + 1, Value: -float64(i)})
		}
		appendAll(t, st, rs)
		srv := httptest.NewServer(api.Query(st, api.QueryOptions{}))
		defer srv.Close()
		resp, err := http.Get(srv.URL + query(url.Values{"device": {"pump-1,pump-2"}, "metric": {"flow,rpm"}, "from": {fmt.Sprint(t0)}, "to": {fmt.Sprint(t0 + 2*int64(n)*1000)}, "step": {"raw"}, "format": {"csv"}}))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("export: %d %v", resp.StatusCode, err)
		}
		rows := readCSV(t, string(b))
		if len(rows) != 1+3*n {
			t.Fatalf("export has %d rows, want %d", len(rows), 1+3*n)
		}
		checkTimeOrder(t, rows[1:], []string{"pump-1/flow", "pump-1/rpm", "pump-2/flow"})
		// Every value is the one written.
		sum := map[string]float64{}
		for _, r := range rows[1:] {
			v, _ := strconv.ParseFloat(r[4], 64)
			sum[r[2]+"/"+r[3]] += v
		}
		tri := float64(n*(n-1)) / 2
		if want := map[string]float64{"pump-1/flow": tri, "pump-1/rpm": tri / 3, "pump-2/flow": -tri}; fmt.Sprint(sum) != fmt.Sprint(want) {
			t.Errorf("sums of exported values: got %v, want %v", sum, want)
		}
	})
}

// failingAfter reads from a real store and closes it after the first chunk
// of readings, as a disk or a server failing mid-export would.
type failingAfter struct {
	*sqlite.Store
}

func (f failingAfter) Readings(ctx context.Context, q store.Query, fn func([]store.Point) error) error {
	first := true
	return f.Store.Readings(ctx, q, func(ps []store.Point) error {
		if err := fn(ps); err != nil {
			return err
		}
		if first {
			first = false
			f.Store.Close()
		}
		return nil
	})
}

// TestExportCutOnFailure: a store failing after the download began ends the
// response without its last chunk, so the client sees an error rather than
// a short file that looks whole; failing before, it gets a 503.
func TestExportCutOnFailure(t *testing.T) {
	st := openSQLite(t)
	var rs []devices.Reading
	for i := range 3 * store.ReadingsChunk {
		rs = append(rs, devices.Reading{Device: "d", Metric: "m", Time: t0 + int64(i), Value: float64(i)})
	}
	appendAll(t, st, rs)
	srv := httptest.NewServer(api.Query(failingAfter{st}, api.QueryOptions{Logger: quiet}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + query(url.Values{"device": {"d"}, "metric": {"m"}, "from": {fmt.Sprint(t0)}, "to": {fmt.Sprint(t0 + 60000)}, "step": {"raw"}, "format": {"csv"}}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("export failing midway: %d, %d bytes, error %v; want 200 then an unexpected EOF", resp.StatusCode, len(b), err)
	}
	// The store is closed now: the next export fails before it starts.
	resp, err = http.Get(srv.URL + query(url.Values{"device": {"d"}, "metric": {"m"}, "from": {fmt.Sprint(t0)}, "to": {fmt.Sprint(t0 + 60000)}, "step": {"raw"}, "format": {"csv"}}))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), `"error"`) {
		t.Errorf("export from a closed store: %d %s, want 503 with an error", resp.StatusCode, b)
	}
}

// TestQueryTimeout: a query or export past its time limit gets a 503 that
// names the limit.
func TestQueryTimeout(t *testing.T) {
	st := openSQLite(t)
	appendAll(t, st, []devices.Reading{{Device: "d", Metric: "m", Time: t0, Value: 1}})
	h := api.Query(st, api.QueryOptions{Timeout: time.Nanosecond, ExportTimeout: time.Nanosecond, Logger: quiet})
	for _, c := range []struct{ step, format, mention string }{
		{"1m", "json", "-query-timeout"},
		{"raw", "json", "-query-timeout"},
		{"1m", "csv", "-query-timeout"},
		{"raw", "csv", "-export-timeout"},
	} {
		code, _, body := get(t, h, query(url.Values{"device": {"d"}, "metric": {"m"}, "from": {fmt.Sprint(t0)}, "to": {fmt.Sprint(t0 + 60000)}, "step": {c.step}, "format": {c.format}}))
		if code != http.StatusServiceUnavailable || !strings.Contains(body, c.mention) {
			t.Errorf("step=%s format=%s: %d %s, want 503 mentioning %s", c.step, c.format, code, body, c.mention)
		}
	}
}

// TestHostileValuesThroughAPI sends quotes, Flux, InfluxQL and SQL
// fragments and newlines in every parameter to the API in front of
// InfluxDB: each is refused with a 400, never run, and the data is intact.
func TestHostileValuesThroughAPI(t *testing.T) {
	st := openInflux(t)
	appendAll(t, st, []devices.Reading{
		{Device: "d", Metric: "m", Time: t0, Value: 1},
		{Device: "victim", Metric: "m", Time: t0, Value: 666},
		{Device: "victim", Metric: "secret", Time: t0, Value: 667},
	})
	h := api.Query(st, api.QueryOptions{})
	base := url.Values{"device": {"d"}, "metric": {"m"}, "from": {fmt.Sprint(t0)}, "to": {fmt.Sprint(t0 + 1000)}, "step": {"raw"}}
	plain := `{"device":"d","metric":"m","from":1767225600000,"to":1767225601000,"step_ms":0,"points":[[1767225600000,1]]}`
	hostile := []string{
		`d" or r.device != "`,
		`d") |> drop(columns: ["device"]) |> yield(name: "x`,
		`${r.device}`,
		`d' OR "device" != '`,
		`d'; DROP DATABASE x; --`,
		`d" OR 1=1 --`,
		"d\nvictim",
		"d\r\nvictim",
		`d\`,
		`d\" or r.device != \"`,
		"d\x00",
		`*`,
		`/.*/`,
		`d victim`,
	}
	for _, param := range []string{"device", "metric", "from", "to", "step", "agg", "format"} {
		for _, bad := range hostile {
			v := url.Values{}
			for k, vs := range base {
				v[k] = vs
			}
			v.Set(param, bad)
			code, _, body := get(t, h, query(v))
			if code != http.StatusBadRequest || strings.Contains(body, "666") || strings.Contains(body, "667") {
				t.Errorf("%s=%q: %d %s, want a 400", param, bad, code, body)
			}
		}
	}
	// Names that are valid but look like syntax are plain values: they
	// match no other series.
	for _, odd := range []string{"..", "--", "d.", "_", "-d", "d-", "m.m"} {
		for _, param := range []string{"device", "metric"} {
			v := url.Values{}
			for k, vs := range base {
				v[k] = vs
			}
			v.Set(param, odd)
			v.Set("step", "1ms")
			v.Set("agg", "count")
			code, _, body := get(t, h, query(v))
			if code != http.StatusOK || !strings.Contains(body, `"points":[]`) {
				t.Errorf("%s=%q: %d %s, want 200 without points", param, odd, code, body)
			}
		}
	}
	code, _, body := get(t, h, query(base))
	if code != http.StatusOK || !sameJSON(t, body, plain) {
		t.Errorf("after: %d %s, want %s", code, body, plain)
	}
	base.Set("device", "victim")
	base.Set("metric", "m,secret")
	if code, _, body := get(t, h, query(base)); code != http.StatusOK || !strings.Contains(body, "666") || !strings.Contains(body, "667") {
		t.Errorf("the victim's data after: %d %s", code, body)
	}
}

// TestQueryFit: step=fit answers what a chart points pixels wide draws:
// every reading while they are few, else buckets, and says which in
// step_ms.
func TestQueryFit(t *testing.T) {
	st := openSQLite(t)
	// Ten readings a second for 50 s.
	var rs []devices.Reading
	for i := range 500 {
		rs = append(rs, devices.Reading{Device: "d", Metric: "m", Time: t0 + int64(i)*100, Value: float64(i % 7)})
	}
	appendAll(t, st, rs)
	h := api.Query(st, api.QueryOptions{})
	for _, c := range []struct {
		name, from, to, points string
		step                   int64
		n                      int
	}{
		{"few readings", "0", "5000", "100", 0, 50},          // 5 s of readings: every one
		{"too many readings", "0", "50000", "100", 1000, 50}, // 500 readings for 100 points: 1 s buckets
		{"wide span", "0", "50000", "20", 5000, 10},          // 1 s buckets would be 50, more than 20
	} {
		from, _ := strconv.ParseInt(c.from, 10, 64)
		to, _ := strconv.ParseInt(c.to, 10, 64)
		code, _, body := get(t, h, query(url.Values{"device": {"d"}, "metric": {"m"}, "step": {"fit"}, "points": {c.points},
			"from": {fmt.Sprint(t0 + from)}, "to": {fmt.Sprint(t0 + to)}}))
		var a struct {
			Step   int64       `json:"step_ms"`
			Points [][]float64 `json:"points"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &a) != nil {
			t.Fatalf("%s: %d %s", c.name, code, body)
		}
		if a.Step != c.step || len(a.Points) != c.n {
			t.Errorf("%s: step %d with %d points, want step %d with %d", c.name, a.Step, len(a.Points), c.step, c.n)
		}
	}
}
