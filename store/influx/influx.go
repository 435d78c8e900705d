// Package influx stores readings in InfluxDB and answers history queries
// from it with Flux. It works with InfluxDB 2.x (a token, an org and a
// bucket) and with InfluxDB 1.8 with Flux enabled (token "" or "user:pass",
// org ignored, bucket "database/retention-policy"). On 1.x it downsamples
// with InfluxQL instead, as 1.8's Flux windows are some 40 times slower;
// raw readings are read as Flux's CSV, line by line as it arrives.
//
// Data model: measurement "telemetry", tag "device", one float field per
// metric, millisecond timestamps. The readings of one device at one instant
// written by one Append (what one MQTT message carries) become one point
// with several fields. Writing a reading again overwrites its value, so
// writing a batch twice is harmless.
//
// It is not a buffer: Append writes once, blocking, and returns the error.
// Retrying and surviving an outage is store/journal's job, which sits in
// front of this package.
package influx

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	influxhttp "github.com/influxdata/influxdb-client-go/v2/api/http"

	"iotdash/devices"
	"iotdash/store"
)

// Measurement and DeviceTag are where readings live in InfluxDB.
const (
	Measurement = "telemetry"
	DeviceTag   = "device"
)

// Defaults for a Config's zero values.
const (
	DefaultBatchSize = 5000
	DefaultTimeout   = 10 * time.Second
)

// Config says which InfluxDB to use and how.
type Config struct {
	// URL is the server's base URL, e.g. http://localhost:8086.
	URL string
	// Token is an API token for InfluxDB 2.x; for 1.8 it is "" or
	// "user:pass".
	Token string
	// Org is the organization (InfluxDB 2.x); 1.8 ignores it.
	Org string
	// Bucket is the bucket (2.x) or "database/retention-policy" (1.8).
	Bucket string
	// BatchSize is the most points written in one HTTP request
	// (DefaultBatchSize if 0).
	BatchSize int
	// Timeout bounds each HTTP request (DefaultTimeout if 0).
	Timeout time.Duration
}

// Store writes readings to and queries one InfluxDB bucket. It is safe for
// concurrent use.
type Store struct {
	client influxdb2.Client
	http   *http.Client
	stream *http.Client // for Readings: no overall timeout, the context ends it
	query  api.QueryAPI
	url    string // without a trailing slash
	write  string // the write endpoint's URL, with its query
	bufs   sync.Pool
	token  string
	org    string
	bucket string
	batch  int

	// server is what the server at url is, learnt from its /ping on the
	// first downsampled query: serverV1 gets InfluxQL for what InfluxQL
	// answers faster than Flux.
	server atomic.Int32
}

// New returns a Store for cfg. It does not contact the server; Ping does.
func New(cfg Config) (*Store, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, devices.Errorf(devices.EInvalid, "influx: URL %q is not an http(s) URL", cfg.URL)
	}
	if cfg.Bucket == "" {
		return nil, devices.Errorf(devices.EInvalid, "influx: a bucket is required (database/retention-policy for InfluxDB 1.8)")
	}
	if cfg.BatchSize < 0 || cfg.Timeout < 0 {
		return nil, devices.Errorf(devices.EInvalid, "influx: batch size and timeout must not be negative")
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	// A client of our own: the library's timeout is in whole seconds, and
	// Close can then drop its idle connections.
	hc := &http.Client{Timeout: cfg.Timeout, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	opts := influxdb2.DefaultOptions().
		SetHTTPClient(hc).
		SetPrecision(time.Millisecond).
		// Blocking writes do not retry (influxdb-client-go#235, #239); no
		// gzip: on loopback and LANs it costs more CPU than it saves.
		SetUseGZip(false).
		SetApplicationName("iotdash").
		SetLogLevel(0)
	c := influxdb2.NewClientWithOptions(cfg.URL, cfg.Token, opts)
	return &Store{
		client: c,
		http:   hc,
		stream: &http.Client{Transport: hc.Transport},
		write:  writeURL(cfg.URL, cfg.Org, cfg.Bucket),
		query:  c.QueryAPI(cfg.Org),
		url:    strings.TrimSuffix(cfg.URL, "/"),
		token:  cfg.Token,
		org:    cfg.Org,
		bucket: cfg.Bucket,
		batch:  cfg.BatchSize,
	}, nil
}

// Close releases the Store's connections.
func (s *Store) Close() {
	s.client.Close()
	s.http.CloseIdleConnections()
}

// What a Store knows of its server.
const (
	serverUnknown int32 = iota
	serverV1            // InfluxDB 1.x: InfluxQL downsamples
	serverFlux          // anything else: Flux does everything
)

// isV1 says whether the server is InfluxDB 1.x, asking it until it has an
// answer: by the X-Influxdb-Version header of /ping, which both 1.x and 2.x
// set, or, when that says "unknown" (a build from source), by whether the
// server has 2.x's /api/v2/buckets.
//
// On 1.8, Flux's windows cost about 2.5 µs a reading (7 days at 1 Hz take
// 1.6 s to cut into 1,000 points) where InfluxQL's GROUP BY time takes
// 35 ms; 2.x pushes aggregateWindow down to its storage.
func (s *Store) isV1(ctx context.Context) bool {
	if v := s.server.Load(); v != serverUnknown {
		return v == serverV1
	}
	get := func(path string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := s.http.Do(req)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		return resp, nil
	}
	resp, err := get("/ping")
	if err != nil {
		return false
	}
	v := strings.TrimPrefix(resp.Header.Get("X-Influxdb-Version"), "v")
	switch {
	case strings.HasPrefix(v, "1."):
		s.server.CompareAndSwap(serverUnknown, serverV1)
	case v != "" && v != "unknown":
		s.server.CompareAndSwap(serverUnknown, serverFlux)
	default:
		if resp, err := get("/api/v2/buckets"); err == nil {
			if resp.StatusCode == http.StatusNotFound {
				s.server.CompareAndSwap(serverUnknown, serverV1)
			} else {
				s.server.CompareAndSwap(serverUnknown, serverFlux)
			}
		}
	}
	return s.server.Load() == serverV1
}

// The times InfluxDB can hold, in Unix milliseconds: its nanosecond int64
// range less the two values it reserves at each end.
const (
	minTime = (math.MinInt64 + 2) / int64(time.Millisecond) // rounds toward zero: inside the range
	maxTime = (math.MaxInt64 - 1) / int64(time.Millisecond)
)

// queryError gives a query error its kind: the queries are ours, so a 4xx
// is our fault or the configuration's.
func queryError(err error) error {
	var he *influxhttp.Error
	if errors.As(err, &he) && (he.StatusCode == 0 || he.StatusCode == http.StatusTooManyRequests || he.StatusCode >= 500) {
		return devices.Wrap(err, devices.EUnavailable, "InfluxDB cannot answer now")
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return devices.Wrap(err, devices.EUnavailable, "InfluxDB did not answer in time")
	}
	return devices.Wrap(err, devices.EInternal, "InfluxDB query failed")
}

// Ping reports whether the server answers (GET /ping, on 1.8 and 2.x). It
// checks neither the token nor the bucket. Errors: EUnavailable.
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.client.Ping(ctx); err != nil {
		return devices.Wrap(err, devices.EUnavailable, "InfluxDB does not answer")
	}
	return nil
}

// fluxFn maps an aggregate to the Flux function that computes it.
var fluxFn = map[store.Agg]string{
	store.AggMean: "mean", store.AggMin: "min", store.AggMax: "max",
	store.AggFirst: "first", store.AggLast: "last", store.AggCount: "count", store.AggSum: "sum",
}

// Query answers q (see store.Query): the points sorted by time, an empty
// slice when there are none. Errors: EInvalid when q is invalid;
// EUnavailable when InfluxDB cannot answer; EInternal otherwise.
func (s *Store) Query(ctx context.Context, q store.Query) ([]store.Point, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	from, to := max(q.From, minTime), min(q.To, maxTime)
	out := []store.Point{}
	if from >= to {
		return out, nil
	}
	if q.Step == 0 {
		err := s.Readings(ctx, q, func(ps []store.Point) error {
			out = append(out, ps...)
			return nil
		})
		if err != nil {
			return nil, err
		}
		return out, nil
	}
	if q.Agg == store.AggMinMax {
		return s.minMax(ctx, q)
	}
	if useInfluxQL(q, from, to) && s.isV1(ctx) {
		return s.influxQL(ctx, q, from, to)
	}
	// Flux v0.65 (InfluxDB 1.8) drops the windows that start before the
	// Unix epoch; the buckets there, if any, are combined here from the
	// raw readings, up to the first bucket that starts at or after it.
	edge := q.BucketStart(0)
	if edge < 0 {
		edge += q.Step
	}
	if from < edge {
		raw, err := s.run(ctx, nil, fluxQuery(s.bucket, q.Device, q.Metric, from, min(to, edge), 0, "", 0), nil, from, min(to, edge))
		if err != nil {
			return nil, err
		}
		out = aggregate(out, raw, q)
	}
	if to <= edge {
		return out, nil
	}
	from = max(from, edge)
	fn := fluxFn[q.Agg]
	// A window ending after the last time InfluxDB can hold overflows
	// Flux's nanoseconds, and InfluxDB 1.8 then never answers: the last
	// bucket, if it is such, is combined by fn over the range without
	// windows.
	end := to
	if last := q.BucketStart(to - 1); last > maxTime-q.Step {
		end = max(from, last)
		flux := fluxQuery(s.bucket, q.Device, q.Metric, end, to, 0, fn, 0)
		var err error
		if out, err = s.run(ctx, out, flux, func(int64) int64 { return last }, last, to); err != nil {
			return nil, err
		}
	}
	if from < end {
		// With timeSrc "_start" a point's time is its window's start, cut
		// to the range's start for the first window: BucketStart puts it
		// back on the bucket's.
		flux := fluxQuery(s.bucket, q.Device, q.Metric, from, end, q.Step, fn, q.Offset)
		var err error
		if out, err = s.run(ctx, out, flux, q.BucketStart, q.BucketStart(from), end); err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(out, func(a, b store.Point) int { return cmp.Compare(a.T, b.T) })
	return out, nil
}

// run runs a Flux query whose tables have _time and _value columns, maps
// each time with at if not nil, and appends the points with
// lo <= time < hi to out, sorted by time. The bounds only guard: the
// query's range and filter already keep to them.
func (s *Store) run(ctx context.Context, out []store.Point, flux string, at func(int64) int64, lo, hi int64) ([]store.Point, error) {
	res, err := s.query.Query(ctx, flux)
	if err != nil {
		return nil, queryError(err)
	}
	defer res.Close()
	n := len(out)
	for res.Next() {
		rec := res.Record()
		t := rec.Time().UnixMilli()
		if at != nil {
			t = at(t)
		}
		if t < lo || t >= hi {
			continue
		}
		var v float64
		switch x := rec.Value().(type) {
		case float64:
			v = x
		case int64: // count
			v = float64(x)
		case uint64:
			v = float64(x)
		default:
			return nil, devices.Errorf(devices.EInternal, "influx: a value of type %T in the answer", x)
		}
		out = append(out, store.Point{T: t, V: v})
	}
	if err := res.Err(); err != nil {
		return nil, queryError(err)
	}
	slices.SortStableFunc(out[n:], func(a, b store.Point) int { return cmp.Compare(a.T, b.T) })
	return out, nil
}

// minMax answers a query for AggMinMax with two queries side by side, for
// the min and for the max of each step, and pairs their points. A step that
// only one of them saw (a reading written between the two) is left out.
func (s *Store) minMax(ctx context.Context, q store.Query) ([]store.Point, error) {
	var lo, hi []store.Point
	var loErr, hiErr error
	qlo, qhi := q, q
	qlo.Agg, qhi.Agg = store.AggMin, store.AggMax
	var wg sync.WaitGroup
	wg.Go(func() { hi, hiErr = s.Query(ctx, qhi) })
	lo, loErr = s.Query(ctx, qlo)
	wg.Wait()
	if err := cmp.Or(loErr, hiErr); err != nil {
		return nil, err
	}
	out := lo[:0]
	for i, j := 0, 0; i < len(lo) && j < len(hi); {
		switch {
		case lo[i].T < hi[j].T:
			i++
		case lo[i].T > hi[j].T:
			j++
		default:
			out = append(out, store.Point{T: lo[i].T, V: lo[i].V, Max: hi[j].V})
			i++
			j++
		}
	}
	return out, nil
}

// aggregate combines raw points, sorted by time, per q's buckets and
// appends the results to out.
func aggregate(out, raw []store.Point, q store.Query) []store.Point {
	for i := 0; i < len(raw); {
		b := q.BucketStart(raw[i].T)
		j := i
		for j < len(raw) && q.BucketStart(raw[j].T) == b {
			j++
		}
		vs := raw[i:j]
		var v float64
		switch q.Agg {
		case store.AggFirst:
			v = vs[0].V
		case store.AggLast:
			v = vs[len(vs)-1].V
		case store.AggCount:
			v = float64(len(vs))
		case store.AggMin:
			v = vs[0].V
			for _, p := range vs[1:] {
				v = min(v, p.V)
			}
		case store.AggMax:
			v = vs[0].V
			for _, p := range vs[1:] {
				v = max(v, p.V)
			}
		default: // mean, sum; minmax never gets here
			for _, p := range vs {
				v += p.V
			}
			if q.Agg == store.AggMean {
				v /= float64(len(vs))
			}
		}
		out = append(out, store.Point{T: b, V: v})
		i = j
	}
	return out
}

// fluxQuery returns the Flux query for one metric of one device with
// from <= _time < to (Unix ms): with step > 0, fn applied per step-wide
// window aligned to the epoch shifted back by offset (store.Query's
// Offset), each point at its window's start; else fn
// applied to the whole range, or the raw points if fn is "". fn must be a
// Flux aggregate or selector name. Every
// string is quoted with fluxString and every time and duration is an
// integer, so no argument can change the query's meaning.
func fluxQuery(bucket, device, metric string, from, to, step int64, fn string, offset int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "from(bucket: %s)\n", fluxString(bucket))
	// InfluxDB 1.8 includes a range's stop, 2.x excludes it: a stop 1 ns
	// before to gives from <= _time < to on both, times being whole ms.
	const ms = int64(time.Millisecond)
	start, stop := from*ms, to*ms-1
	fmt.Fprintf(&b, "  |> range(start: %s, stop: %s)\n", fluxTime(start), fluxTime(stop))
	fmt.Fprintf(&b, "  |> filter(fn: (r) => r._measurement == %s and r.%s == %s and r._field == %s",
		fluxString(Measurement), DeviceTag, fluxString(device), fluxString(metric))
	if start <= 0 || stop <= 0 {
		// InfluxDB 1.8 takes a bound at or before the epoch for no bound
		// at all. Only then, as it would keep 2.x from pushing the
		// aggregate down to its storage, the filter holds the range too.
		fmt.Fprintf(&b, " and r._time >= %s and r._time < %s", fluxTime(start), fluxTime(to*ms))
	}
	b.WriteString(")\n")
	switch {
	case step > 0 && offset > 0:
		// Flux shifts windows forward from the epoch: back by offset is
		// forward by step - offset. aggregateWindow takes no offset on
		// InfluxDB 1.8 (Flux v0.65); window does, and each point then
		// takes its window's start as aggregateWindow's timeSrc would.
		fmt.Fprintf(&b, "  |> window(every: %dms, offset: %dms)\n  |> %s()\n  |> duplicate(column: \"_start\", as: \"_time\")\n", step, step-offset, fn)
	case step > 0:
		fmt.Fprintf(&b, "  |> aggregateWindow(every: %dms, fn: %s, createEmpty: false, timeSrc: \"_start\")\n", step, fn)
	case fn != "":
		fmt.Fprintf(&b, "  |> %s()\n", fn)
	}
	b.WriteString(`  |> keep(columns: ["_time", "_value"])`)
	return b.String()
}

// fluxTime writes a Unix ns time as a Flux time literal (RFC 3339, UTC).
func fluxTime(ns int64) string {
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

// fluxString quotes s as a Flux string literal: backslash, double quote and
// the "${" that would start an interpolation are escaped, and so are the
// control characters Flux has escapes for.
func fluxString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '$':
			if i+1 < len(s) && s[i+1] == '{' {
				b.WriteString(`\$`)
			} else {
				b.WriteByte('$')
			}
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Devices returns every device InfluxDB holds readings of, each with the
// latest reading of each of its metrics and, as its last seen time, the
// newest of them, so that a device known from history is listed even when
// nothing else remembers it. Its status is unknown. It reads all of
// history's last points once (Flux last(), on 1.8 and 2.x alike): call it
// at start, not per request.
func (s *Store) Devices(ctx context.Context) ([]devices.Device, error) {
	flux := fmt.Sprintf("from(bucket: %s)\n  |> range(start: 1970-01-01T00:00:00Z)\n  |> filter(fn: (r) => r._measurement == %s)\n  |> last()\n  |> keep(columns: [%s, \"_field\", \"_time\", \"_value\"])",
		fluxString(s.bucket), fluxString(Measurement), fluxString(DeviceTag))
	res, err := s.query.Query(ctx, flux)
	if err != nil {
		return nil, queryError(err)
	}
	defer res.Close()
	byID := map[string]*devices.Device{}
	for res.Next() {
		rec := res.Record()
		id, _ := rec.ValueByKey(DeviceTag).(string)
		v, ok := rec.Value().(float64)
		if !devices.ValidName(id) || !devices.ValidName(rec.Field()) || !ok {
			continue
		}
		d := byID[id]
		if d == nil {
			d = &devices.Device{ID: id, Status: devices.StatusUnknown, Latest: map[string]devices.Value{}}
			byID[id] = d
		}
		t := rec.Time().UnixMilli()
		d.Latest[rec.Field()] = devices.Value{T: t, V: v}
		d.LastSeen = max(d.LastSeen, t)
	}
	if err := res.Err(); err != nil {
		return nil, queryError(err)
	}
	out := make([]devices.Device, 0, len(byID))
	for _, d := range byID {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b devices.Device) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
