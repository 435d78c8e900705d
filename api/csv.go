package api

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"iotdash/devices"
	"iotdash/internal/limit"
	"iotdash/store"
)

// csvFlushAt is how much CSV is gathered before it is written out. Until
// the first write the response is not committed, so a store that fails at
// once still gets a proper error response.
const csvFlushAt = 64 << 10

// csvWriter writes a CSV answer: the header row, then one row per point
// (the long layout), or one row per time with a column per series (wide).
type csvWriter struct {
	w       http.ResponseWriter
	req     Request
	qs      []store.Query // the series, in the order asked
	buf     []byte
	started bool  // the response's header has been sent
	err     error // the first write error
	day     int64 // the day whose date is in date
	date    []byte
	// decimals are the decimals each series' meta declares, -1 where it
	// declares none (nil: none declares any).
	decimals []int

	// The wide layout's row being gathered: its time and each series'
	// point, if it has one.
	at    int64
	cells []store.Point
	has   []bool
}

func newCSVWriter(w http.ResponseWriter, req Request) *csvWriter {
	c := &csvWriter{w: w, req: req, qs: req.Series(), buf: make([]byte, 0, csvFlushAt+512), day: math.MinInt64, at: math.MinInt64}
	c.buf = append(c.buf, "time,unix_ms"...)
	if req.Layout == LayoutWide {
		c.cells, c.has = make([]store.Point, len(c.qs)), make([]bool, len(c.qs))
		for _, q := range c.qs {
			name := q.Metric
			if len(req.Devices) > 1 {
				name = q.Device + "/" + q.Metric
			}
			c.buf = append(c.buf, ',')
			c.buf = appendCSVName(c.buf, name)
			if req.Step > 0 && req.Agg == store.AggMinMax {
				c.buf = append(c.buf, "_min,"...)
				c.buf = appendCSVName(c.buf, name)
				c.buf = append(c.buf, "_max"...)
			}
		}
		c.buf = append(c.buf, '\n')
		return c
	}
	c.buf = append(c.buf, ",device,metric,"...)
	switch {
	case req.Step == 0:
		c.buf = append(c.buf, "value"...)
	case req.Agg == store.AggMinMax:
		c.buf = append(c.buf, "min,max"...)
	default:
		c.buf = append(c.buf, req.Agg...)
	}
	c.buf = append(c.buf, '\n')
	return c
}

// appendCSVName appends a device id or metric name (devices.ValidName: no
// quote, comma or line end to escape) as a cell a spreadsheet keeps as
// text: one that begins with '-' (which it would take for a formula) is led
// by a quote mark, as the device page's own CSV does.
func appendCSVName(b []byte, name string) []byte {
	if name != "" && (name[0] == '-' || name[0] == '=' || name[0] == '+' || name[0] == '@') {
		b = append(b, '\'')
	}
	return append(b, name...)
}

// row adds point p of series i; it returns the first error writing met.
// Points come in time order.
func (c *csvWriter) row(i int, p store.Point) error {
	if c.cells != nil {
		if p.T != c.at {
			c.endRow()
			c.at = p.T
		}
		c.cells[i], c.has[i] = p, true
		return c.err
	}
	b := c.appendTime(c.buf, p.T)
	b = append(b, ',')
	b = strconv.AppendInt(b, p.T, 10)
	b = append(b, ',')
	b = appendCSVName(b, c.qs[i].Device)
	b = append(b, ',')
	b = appendCSVName(b, c.qs[i].Metric)
	b = append(b, ',')
	b = c.appendValue(b, i, p)
	c.buf = append(b, '\n')
	if len(c.buf) >= csvFlushAt {
		c.flush()
	}
	return c.err
}

// appendValue writes p of series i, its value or its min and max: a
// reading exactly, an aggregate rounded to the decimals the metric's meta
// declares, else to 12 significant digits, so that its float noise
// (55.150000000000006, a mean's last bits) does not reach a spreadsheet.
func (c *csvWriter) appendValue(b []byte, i int, p store.Point) []byte {
	if c.req.Step == 0 {
		return appendCSVNumber(b, p.V)
	}
	dec := -1
	if c.decimals != nil {
		dec = c.decimals[i]
	}
	b = appendCSVNumber(b, roundAggregate(p.V, dec))
	if c.req.Agg == store.AggMinMax {
		b = append(b, ',')
		b = appendCSVNumber(b, roundAggregate(p.Max, dec))
	}
	return b
}

// roundAggregate is v to decimals decimals, or to 12 significant digits
// when decimals is negative.
func roundAggregate(v float64, decimals int) float64 {
	s := strconv.FormatFloat(v, 'g', 12, 64)
	if decimals >= 0 {
		s = strconv.FormatFloat(v, 'f', decimals, 64)
	}
	r, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return v
	}
	return r
}

// declaredDecimals are the decimals the meta of each series of qs
// declares, -1 where it declares none; nil when none does or f is nil.
func declaredDecimals(f Fleet, qs []store.Query) []int {
	if f == nil {
		return nil
	}
	var out []int
	for i, q := range qs {
		d, _ := f.Get(q.Device)
		dec, ok := d.Meta.Decimals[q.Metric]
		if !ok {
			continue
		}
		if out == nil {
			out = slices.Repeat([]int{-1}, len(qs))
		}
		out[i] = dec
	}
	return out
}

// endRow writes the wide layout's row being gathered, if any.
func (c *csvWriter) endRow() {
	if c.at == math.MinInt64 {
		return
	}
	b := c.appendTime(c.buf, c.at)
	b = append(b, ',')
	b = strconv.AppendInt(b, c.at, 10)
	for i, p := range c.cells {
		b = append(b, ',')
		if c.has[i] {
			b = c.appendValue(b, i, p)
		} else if c.req.Step > 0 && c.req.Agg == store.AggMinMax {
			b = append(b, ',')
		}
		c.has[i] = false
	}
	c.buf = append(b, '\n')
	c.at = math.MinInt64
	if len(c.buf) >= csvFlushAt {
		c.flush()
	}
}

// finish writes what is gathered and flushes; it returns the first error
// writing met.
func (c *csvWriter) finish() error {
	if c.cells != nil {
		c.endRow()
	}
	c.flush()
	return c.err
}

func (c *csvWriter) flush() {
	if c.err != nil {
		return
	}
	if !c.started {
		c.started = true
		h := c.w.Header()
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Disposition", `attachment; filename="`+c.req.filename()+`"`)
		h.Set("X-Content-Type-Options", "nosniff")
	}
	_, c.err = c.w.Write(c.buf)
	c.buf = c.buf[:0]
}

// appendTime writes t as RFC 3339 with milliseconds: in UTC (computing the
// date only when the day changes), or in the request's zone with its
// offset.
func (c *csvWriter) appendTime(b []byte, t int64) []byte {
	if c.req.Zone != nil && c.req.Zone != time.UTC {
		return time.UnixMilli(t).In(c.req.Zone).AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	}
	day := store.FloorTo(t, 86400000) / 86400000
	if day != c.day {
		c.day = day
		c.date = time.UnixMilli(day*86400000).UTC().AppendFormat(c.date[:0], "2006-01-02T")
	}
	b = append(b, c.date...)
	ms := t - day*86400000
	h, m, s, frac := ms/3600000, ms/60000%60, ms/1000%60, ms%1000
	b = append(b, byte('0'+h/10), byte('0'+h%10), ':', byte('0'+m/10), byte('0'+m%10), ':', byte('0'+s/10), byte('0'+s%10),
		'.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10), 'Z')
	return b
}

// filename names the download after what it holds:
// iotdash_pump-1_temperature_20260101T000000Z_20260108T000000Z_raw.csv.
func (r Request) filename() string {
	name := "iotdash_"
	if r.single() {
		name += r.Devices[0] + "_" + r.Metrics[0]
	} else {
		name += strconv.Itoa(len(r.Devices)*len(r.Metrics)) + "-series"
	}
	name += "_" + fileStamp(r.From) + "_" + fileStamp(r.To)
	if r.Layout == LayoutWide {
		name += "_wide"
	}
	if r.Step == 0 {
		return name + "_raw.csv"
	}
	return name + "_" + formatSpan(r.Step) + "-" + string(r.Agg) + ".csv"
}

// fileStamp is ms as a download's file name holds it: 20260101T000000Z.
func fileStamp(ms int64) string { return time.UnixMilli(ms).UTC().Format("20060102T150405Z") }

// appendCSVNumber writes f as devices.AppendNumber does, and nothing if it
// is not finite.
func appendCSVNumber(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b
	}
	return devices.AppendNumber(b, f)
}

// writeCSV writes the answer of a query with a step: its points in time
// order, the series of one time in the order asked, each rounded to the
// decimals f's meta declares for it.
func writeCSV(w http.ResponseWriter, req Request, series [][]store.Point, f Fleet) {
	type row struct {
		i int
		p store.Point
	}
	var rows []row
	for i, ps := range series {
		for _, p := range ps {
			rows = append(rows, row{i, p})
		}
	}
	slices.SortStableFunc(rows, func(a, b row) int {
		if a.p.T != b.p.T {
			if a.p.T < b.p.T {
				return -1
			}
			return 1
		}
		return a.i - b.i
	})
	c := newCSVWriter(w, req)
	c.decimals = declaredDecimals(f, c.qs)
	for _, r := range rows {
		if c.row(r.i, r.p) != nil {
			return
		}
	}
	c.finish()
}

// export streams every reading of req's series as CSV in time order (the
// series of one time in the order asked), with memory bounded by the
// number of series, not by the range. An error before the first write
// gets an error response; after it, the connection is cut so the client
// sees an incomplete download rather than a short file that looks whole.
func export(w http.ResponseWriter, r *http.Request, st Reader, req Request, opts QueryOptions) {
	ctx, cancel := context.WithTimeout(r.Context(), opts.ExportTimeout)
	defer cancel()
	// The server's write timeout is for ordinary responses; an export may
	// stream for up to its own timeout.
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(opts.ExportTimeout + 5*time.Second))
	c := newCSVWriter(w, req)
	qs := req.Series()
	var err error
	if q, ok := qs[0].Storable(); len(qs) == 1 && ok {
		err = st.Readings(ctx, q, func(ps []store.Point) error {
			for _, p := range ps {
				if err := c.row(0, p); err != nil {
					return err
				}
			}
			return nil
		})
	} else if len(qs) > 1 {
		err = merge(ctx, st, qs, c.row)
	}
	if err == nil {
		err = c.finish()
	}
	if err == nil {
		return
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = devices.Errorf(devices.EUnavailable, "the export took longer than %v, the limit (-export-timeout); export a shorter range or fewer series at a time", opts.ExportTimeout)
	}
	if !c.started {
		writeError(w, r, opts.Logger, err)
		return
	}
	if r.Context().Err() != nil {
		return // the client left
	}
	opts.Logger.Warn("raw export broke off", "path", r.URL.Path, "query", r.URL.RawQuery, "error", err)
	panic(http.ErrAbortHandler)
}

// Why an export is refused: the values of the reason label of
// iotdash_exports_refused_total.
const (
	RefusedExports          = "too_many"            // MaxExports streaming already
	RefusedExportsPerClient = "too_many_per_client" // MaxExportsPerClient of one client streaming already
)

// Metrics are the API's Prometheus metrics.
type Metrics struct {
	ExportsRefused *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg, if not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{ExportsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "iotdash_exports_refused_total",
		Help: "Raw CSV exports refused because too many were streaming (-max-exports, -max-exports-per-client), by reason."}, []string{"reason"})}
	for _, r := range []string{RefusedExports, RefusedExportsPerClient} {
		m.ExportsRefused.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.ExportsRefused)
	}
	return m
}

// exportSlots counts the raw exports streaming now, in total and by client.
type exportSlots struct {
	limit.Concurrent
	refused *prometheus.CounterVec
}

func newExportSlots(o QueryOptions) *exportSlots {
	return &exportSlots{Concurrent: limit.Concurrent{Max: o.MaxExports, MaxPerClient: o.MaxExportsPerClient}, refused: o.Metrics.ExportsRefused}
}

// take counts one more export of client, or returns why it may not start:
// a message for the caller that names the limit.
func (e *exportSlots) take(client string) string {
	switch e.Acquire(client) {
	case limit.Total:
		e.refused.WithLabelValues(RefusedExports).Inc()
		return fmt.Sprintf("%d raw exports are streaming already, the limit (-max-exports); try again when one has finished", e.Max)
	case limit.PerClient:
		e.refused.WithLabelValues(RefusedExportsPerClient).Inc()
		return fmt.Sprintf("you have %d raw exports streaming already, the limit (-max-exports-per-client); try again when one has finished", e.MaxPerClient)
	}
	return ""
}

// cursor is one series' readings in a merge: the chunk being read and the
// channel the next ones come on.
type cursor struct {
	idx  int
	next chan []store.Point
	free chan []store.Point // chunks read, for the producer to reuse
	cur  []store.Point
	i    int
	err  error // set before next is closed
}

// advance moves c to its next chunk, returning false at its end.
func (c *cursor) advance() bool {
	if c.cur != nil {
		select {
		case c.free <- c.cur:
		default:
		}
	}
	b, ok := <-c.next
	c.cur, c.i = b, 0
	return ok
}

func (c *cursor) less(d *cursor) bool {
	t, u := c.cur[c.i].T, d.cur[d.i].T
	return t < u || (t == u && c.idx < d.idx)
}

// merge reads the series of qs side by side, each in its own goroutine a
// chunk ahead, and calls emit with every reading in time order (ties in
// the order of qs). Each series holds at most three chunks in memory.
func merge(ctx context.Context, st Reader, qs []store.Query, emit func(i int, p store.Point) error) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs := make([]*cursor, len(qs))
	for i, q := range qs {
		c := &cursor{idx: i, next: make(chan []store.Point), free: make(chan []store.Point, 2)}
		cs[i] = c
		wg.Go(func() {
			defer close(c.next)
			q, ok := q.Storable()
			if !ok {
				return
			}
			c.err = st.Readings(ctx, q, func(ps []store.Point) error {
				var b []store.Point
				select {
				case b = <-c.free:
				default:
				}
				b = append(b[:0], ps...)
				select {
				case c.next <- b:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		})
	}
	// A min-heap of the cursors that have a reading, by that reading.
	h := make(cursorHeap, 0, len(cs))
	for _, c := range cs {
		if c.advance() {
			h = append(h, c)
		} else if c.err != nil {
			return c.err
		}
	}
	heap.Init(&h)
	for len(h) > 0 {
		c := h[0]
		if err := emit(c.idx, c.cur[c.i]); err != nil {
			return err
		}
		c.i++
		if c.i == len(c.cur) && !c.advance() {
			if c.err != nil {
				return c.err
			}
			heap.Pop(&h)
			continue
		}
		heap.Fix(&h, 0)
	}
	return nil
}

// cursorHeap orders cursors by their current reading (container/heap).
type cursorHeap []*cursor

func (h cursorHeap) Len() int           { return len(h) }
func (h cursorHeap) Less(i, j int) bool { return h[i].less(h[j]) }
func (h cursorHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *cursorHeap) Push(x any)        { *h = append(*h, x.(*cursor)) }
func (h *cursorHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}
