package views

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/a-h/templ"
	"golang.org/x/sync/errgroup"

	"iotdash/alerts"
	"iotdash/auth"
	"iotdash/devices"
	"iotdash/store"
)

// Fleet is what the pages read: the devices known now. *devices.Fleet
// satisfies it.
type Fleet interface {
	// List returns every known device, ordered by id.
	List() []devices.Device
	// Get returns the device with id, and false if it is not known.
	Get(id string) (devices.Device, bool)
}

var _ Fleet = (*devices.Fleet)(nil)

// History is the store the pages read recent history from, to embed it in
// the page: the overview's sparklines and the device page's charts.
// *sqlite.Store and *influx.Store satisfy it.
type History interface {
	// Query answers q (see store.Query). It returns EInvalid for a query it
	// cannot answer and EUnavailable when the store cannot be reached.
	Query(ctx context.Context, q store.Query) ([]store.Point, error)
}

// Bounds on the history a page embeds, so that a slow store delays a page
// by a little and never breaks it: what is not read in time is left for the
// script to fetch from the history API.
const (
	// historyWait is the most a page waits for its history.
	historyWait = 2 * time.Second
	// historyWorkers is how many queries of one page run at once.
	historyWorkers = 4
	// sparkSpan and sparkStep are what a card's sparkline shows.
	sparkSpan = 15 * time.Minute
	sparkStep = time.Minute
	// chartWidth is the chart width, in pixels, the server assumes when it
	// picks a step (store.FitStep); the script asks the history API for the
	// width it has (step=fit).
	chartWidth = 1000
	// maxEmbedSpan is the longest span whose history the device page
	// embeds; a longer custom range is fetched by the script.
	maxEmbedSpan = 7 * 24 * time.Hour
)

// Overview serves the fleet overview at /, without sparkline history. Any
// other path gets the 404 page, so the handler may also be mounted as the
// catch-all "/".
func Overview(f Fleet) http.Handler { return OverviewWithHistory(f, Options{}) }

// Options are what the pages are rendered with.
type Options struct {
	// History is the store recent history is read from, to embed it in
	// the pages; nil embeds none.
	History History
	// Zone is the plant's time zone, every time's (nil: UTC).
	Zone *time.Location
	// Logger gets what could not be read or rendered (nil: nowhere).
	Logger *slog.Logger
	// Alerts, if not nil, gives the alerts the device page draws on its
	// charts.
	Alerts AlertSource
	// RawRetention is how long the store keeps raw readings (0: for
	// ever), which the device page says beside its range.
	RawRetention time.Duration
	// Events, if not nil, is the event log the device page's availability
	// strip is read from.
	Events EventLog
	// BoardFollow is how often a board whose series select devices by
	// kind or pattern fetches its grid again (0: DefaultBoardFollow).
	BoardFollow time.Duration
}

// AlertSource lists alerts by state ("" for all): alerts.Engine.
type AlertSource interface {
	Alerts(state string) []alerts.Instance
}

// addAlerts puts each of the device's alerts that fired on its metric's
// chart, as a span from when it fired to when it cleared.
func addAlerts(m *DeviceModel, src AlertSource, now time.Time) {
	if src == nil {
		return
	}
	for _, in := range src.Alerts("") {
		if in.Device != m.Device.ID || in.FiredAt == 0 {
			continue
		}
		for i := range m.Charts {
			if m.Charts[i].Metric.Name != in.Metric {
				continue
			}
			m.Charts[i].Alerts = append(m.Charts[i].Alerts, alertSpan(in, now))
		}
	}
}

// alertSpan is when in fired and, if it has, cleared.
func alertSpan(in alerts.Instance, now time.Time) AlertSpan {
	span := AlertSpan{Name: in.Name, Severity: in.Severity, From: in.FiredAt, Fired: formatAt(in.FiredAt, now.Location())}
	if in.State == alerts.StateResolved {
		span.To, span.Cleared = in.ResolvedAt, formatAt(in.ResolvedAt, now.Location())
	}
	return span
}

// now is the time to render r's page at, in the zone its reader reads
// times in: their own, if they chose one, else the plant's.
func (o Options) now(r *http.Request) time.Time {
	if p, ok := auth.From(r.Context()); ok && p.Zone != "" {
		if loc, err := store.Zone(p.Zone); err == nil {
			return time.Now().In(loc)
		}
	}
	if o.Zone == nil {
		return time.Now().UTC()
	}
	return time.Now().In(o.Zone)
}

// OverviewWithHistory serves the fleet overview at /, each card with a
// sparkline of each metric's last 15 minutes read from h (none when h is
// nil). The filter is read from ?q= and ?status=. Any other path gets the
// 404 page.
func OverviewWithHistory(f Fleet, o Options) http.Handler {
	h, log := o.History, orDiscard(o.Logger)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			notFound(w, r, log, "There is no page at "+r.URL.Path+".")
			return
		}
		now := o.now(r)
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		m := NewOverviewPage(f.List(), now, ParseFilter(r.URL.Query().Get), page)
		if h != nil {
			m.History = true
			addSparklines(r.Context(), h, &m, now, log)
		}
		render(w, r, log, http.StatusOK, OverviewPage(m))
	})
}

// DevicePage serves /devices/{id}: one device's metadata, latest values and
// charts, without embedded history (the script fetches it). An unknown id
// gets the 404 page.
func DevicePage(f Fleet) http.Handler { return DevicePageWithHistory(f, Options{}) }

// DevicePageWithHistory serves /devices/{id} with each chart's history read
// from h (none when h is nil) for the range in ?range= (15m, 1h, 6h, 24h,
// 7d) or ?from=&to=. An unknown id gets the 404 page.
func DevicePageWithHistory(f Fleet, o Options) http.Handler {
	h, log := o.History, orDiscard(o.Logger)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		d, ok := f.Get(id)
		if !devices.ValidName(id) || !ok {
			notFound(w, r, log, "There is no device with the id “"+id+"”.")
			return
		}
		now := o.now(r)
		m := NewDevice(d, now)
		m.SetRange(ParseRange(r.URL.Query().Get, now))
		m.SetKept(o.RawRetention)
		if h != nil {
			m.History = true
			addCharts(r.Context(), h, &m, log)
		}
		addAlerts(&m, o.Alerts, now)
		addAvailability(r.Context(), o.Events, &m, d, now, log)
		render(w, r, log, http.StatusOK, DeviceView(m))
	})
}

// NotFound serves the 404 page.
func NotFound() http.Handler {
	log := orDiscard(nil) // a static page: nothing to log
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		notFound(w, r, log, "There is no page at "+r.URL.Path+".")
	})
}

func notFound(w http.ResponseWriter, r *http.Request, log *slog.Logger, msg string) {
	render(w, r, log, http.StatusNotFound, NotFoundPage(NotFoundModel{Page: Page{Title: "Not found"}, Message: msg}))
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log.With("component", "views")
}

// render writes c whole, gzipped if the client takes it, or a plain 500 if
// it fails to render.
func render(w http.ResponseWriter, r *http.Request, log *slog.Logger, status int, c templ.Component) {
	buf := getBuffer()
	defer putBuffer(buf)
	ctx := withChrome(r.Context(), r)
	if err := c.Render(ctx, buf); err != nil {
		if r.Context().Err() == nil {
			log.Error("render page", "path", r.URL.Path, "error", err)
		}
		http.Error(w, "The page could not be shown; the server's log says why.", http.StatusInternalServerError)
		return
	}
	if t := chromeOf(ctx).theme; t != ThemeAuto {
		// Each page renews a choice, so that a wall that loads its board
		// now and then keeps it for good.
		keepTheme(w, r, t)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store") // the values are live
	h.Add("Vary", "Accept-Encoding")
	body := buf.Bytes()
	if acceptsGzip(r) {
		zbuf := getBuffer()
		defer putBuffer(zbuf)
		gzipInto(zbuf, body)
		body = zbuf.Bytes()
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer() *bytes.Buffer { return buffers.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > 4<<20 {
		return // one huge page should not pin its buffer
	}
	b.Reset()
	buffers.Put(b)
}

// queries runs jobs with at most historyWorkers at once, until they are
// done or ctx ends; a job that has not started by then does not run.
func queries(ctx context.Context, jobs []func(context.Context)) {
	var g errgroup.Group
	g.SetLimit(historyWorkers)
	for _, job := range jobs {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error { job(ctx); return nil })
	}
	g.Wait()
}

// historyFailed logs, once per page, that some history could not be read;
// the page is shown without it.
func historyFailed(log *slog.Logger, path string) func(error) {
	var once sync.Once
	return func(err error) {
		once.Do(func() {
			log.Warn("page shown without some of its history", "path", path, "error", err)
		})
	}
}

// addSparklines reads the last 15 minutes of every metric of the cards the
// filter shows, one point a minute.
func addSparklines(ctx context.Context, h History, m *OverviewModel, now time.Time, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, historyWait)
	defer cancel()
	to := now.UnixMilli() + 1
	from := to - sparkSpan.Milliseconds()
	fail := historyFailed(log, "/")
	var jobs []func(context.Context)
	for i := range m.Devices {
		c := &m.Devices[i]
		for j := range c.Metrics {
			mt := &c.Metrics[j]
			mt.Recent = Series{From: from, To: to, Step: sparkStep.Milliseconds()}
			if c.Hidden {
				continue
			}
			jobs = append(jobs, func(ctx context.Context) {
				pts, err := h.Query(ctx, store.Query{Device: c.ID, Metric: mt.Name, From: from, To: to, Step: sparkStep.Milliseconds(), Agg: store.AggMean})
				if err != nil {
					fail(err)
					return
				}
				mt.Recent.Points, mt.Recent.Known = pts, true
			})
		}
	}
	queries(ctx, jobs)
}

// addCharts reads each chart's history over the page's range.
func addCharts(ctx context.Context, h History, m *DeviceModel, log *slog.Logger) {
	if time.Duration(m.Range.To-m.Range.From)*time.Millisecond > maxEmbedSpan {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, historyWait)
	defer cancel()
	fail := historyFailed(log, "/devices/"+m.Device.ID)
	jobs := make([]func(context.Context), len(m.Charts))
	for i := range m.Charts {
		c := &m.Charts[i]
		jobs[i] = func(ctx context.Context) {
			s, err := readSeries(ctx, h, m.Device.ID, c.Metric.Name, m.Range.From, m.Range.To)
			if err != nil {
				fail(err)
				return
			}
			c.Series = s
		}
	}
	queries(ctx, jobs)
}

// readSeries reads one metric over [from, to) as store.FitStep has a chart
// read it: every reading if that is few enough for the chart's width, else
// buckets with their mean, min and max.
func readSeries(ctx context.Context, h History, device, metric string, from, to int64) (Series, error) {
	s := Series{From: from, To: to, Step: store.FitStep(to-from, chartWidth)}
	q := store.Query{Device: device, Metric: metric, From: from, To: to, Step: s.Step, Agg: store.AggMean}
	if s.Step == 0 {
		pts, err := h.Query(ctx, q)
		if err != nil {
			return s, err
		}
		if len(pts) <= store.FitRaw(chartWidth) {
			s.Points, s.Known = pts, true
			return s, nil
		}
		s.Step = store.AutoStep(to-from, chartWidth)
		q.Step = s.Step
	}
	mean, err := h.Query(ctx, q)
	if err != nil {
		return s, err
	}
	q.Agg = store.AggMinMax
	band, err := h.Query(ctx, q)
	if err != nil {
		return s, err
	}
	// The two answers were read one after the other; a bucket that gained
	// its first reading meanwhile is in the band and not the mean.
	lohi := make(map[int64]store.Point, len(band))
	for _, p := range band {
		lohi[p.T] = p
	}
	s.Points = mean
	s.Lo, s.Hi = make([]float64, len(mean)), make([]float64, len(mean))
	for i, p := range mean {
		s.Lo[i], s.Hi[i] = p.V, p.V
		if b, ok := lohi[p.T]; ok {
			s.Lo[i], s.Hi[i] = min(b.V, p.V), max(b.Max, p.V)
		}
	}
	s.Known = true
	return s, nil
}
