// Package influx stores readings in InfluxDB and answers history queries
// from it with Flux. It works with InfluxDB 2.x (a token, an org and a
// bucket) and with InfluxDB 1.8 with Flux enabled (token "" or "user:pass",
// org ignored, bucket "database/retention-policy"). On 1.x it downsamples
// with InfluxQL instead, as 1.8's Flux windows are some 40 times slower.
// Every Flux answer is read as plain CSV, line by line as it arrives, by
// the package's own reader rather than InfluxDB's client library (see
// fluxCSV for the measurement); queries are cut to the years a reading may
// have (devices.MinTime to devices.MaxTime).
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
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	http   *http.Client
	stream *http.Client // for Readings: no overall timeout, the context ends it
	url    string       // without a trailing slash
	write  string       // the write endpoint's URL, with its query
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
	hc := &http.Client{Timeout: cfg.Timeout, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	return &Store{
		http:   hc,
		stream: &http.Client{Transport: hc.Transport},
		write:  writeURL(cfg.URL, cfg.Org, cfg.Bucket),
		url:    strings.TrimSuffix(cfg.URL, "/"),
		token:  cfg.Token,
		org:    cfg.Org,
		bucket: cfg.Bucket,
		batch:  cfg.BatchSize,
	}, nil
}

// Close releases the Store's connections.
func (s *Store) Close() {
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
		resp, err := s.do(s.http, req)
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

// Ping reports whether the server answers (GET /ping, on 1.8 and 2.x). It
// checks neither the token nor the bucket. Errors: EUnavailable.
func (s *Store) Ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/ping", nil)
	if err != nil {
		return devices.Wrap(err, devices.EInternal, "influx: ping")
	}
	resp, err := s.do(s.http, req)
	if err != nil {
		return devices.Wrap(err, devices.EUnavailable, "InfluxDB does not answer")
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return devices.Wrap(statusError(resp), devices.EUnavailable, "InfluxDB does not answer")
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
	out := []store.Point{}
	q, ok := q.Storable()
	if !ok {
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
	fn := fluxFn[q.Agg]
	if first := q.BucketStart(q.From); first < 0 || q.Step > devices.MaxTime-devices.MinTime {
		// A bucket that starts before the epoch, which InfluxDB 1.8's Flux
		// (v0.65) drops and InfluxQL cannot start, or a step longer than
		// the years a reading may have, whose windows would end past
		// InfluxDB's last nanosecond. Either way the step is more than 15
		// years, so the range holds at most eight buckets: fn over each
		// one's part of it.
		for b := first; b < q.To; {
			end := q.To
			if b < q.To-q.Step {
				end = b + q.Step
			}
			from := max(q.From, b)
			var err error
			if out, err = s.run(ctx, out, fluxQuery(s.bucket, q.Device, q.Metric, from, end, 0, fn, 0), func(int64) int64 { return b }, b, end); err != nil {
				return nil, err
			}
			b = end
		}
		return out, nil
	}
	if s.isV1(ctx) {
		return s.influxQL(ctx, q)
	}
	// With timeSrc "_start" a point's time is its window's start, cut to
	// the range's start for the first window: BucketStart puts it back on
	// the bucket's.
	flux := fluxQuery(s.bucket, q.Device, q.Metric, q.From, q.To, q.Step, fn, q.Offset)
	return s.run(ctx, out, flux, q.BucketStart, q.BucketStart(q.From), q.To)
}

// run runs a Flux query whose tables have _time and _value columns, maps
// each time with at if not nil, and appends the points with
// lo <= time < hi to out, sorted by time. The bounds only guard: the
// query's range and filter already keep to them.
func (s *Store) run(ctx context.Context, out []store.Point, flux string, at func(int64) int64, lo, hi int64) ([]store.Point, error) {
	n := len(out)
	err := s.points(ctx, s.http, flux, at, lo, hi, func(ps []store.Point) error {
		out = append(out, ps...)
		return nil
	})
	if err != nil {
		return nil, err
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
	byID := map[string]*devices.Device{}
	err := s.fluxCSV(ctx, s.http, flux, []string{DeviceTag, "_field", "_time", "_value"}, func(f [][]byte) error {
		if f == nil || f[0] == nil || f[1] == nil || f[2] == nil || f[3] == nil {
			return nil
		}
		id, field := string(f[0]), string(f[1])
		t, tOK := parseTime(f[2])
		v, err := strconv.ParseFloat(string(f[3]), 64)
		if !devices.ValidName(id) || !devices.ValidName(field) || !tOK || err != nil {
			return nil
		}
		d := byID[id]
		if d == nil {
			d = &devices.Device{ID: id, Status: devices.StatusUnknown, Latest: map[string]devices.Value{}}
			byID[id] = d
		}
		d.Latest[field] = devices.Value{T: t, V: v}
		d.LastSeen = max(d.LastSeen, t)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]devices.Device, 0, len(byID))
	for _, d := range byID {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b devices.Device) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
