package api

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"iotdash/devices"
	"iotdash/store"
)

// QueryOptions bound what one history query may cost.
type QueryOptions struct {
	// MaxPoints is the most points one response may hold (default 10,000).
	MaxPoints int
	// Timeout bounds one query (default 10s).
	Timeout time.Duration
	Logger  *slog.Logger
	// Now gives the time that relative times count from (default time.Now).
	Now func() time.Time
}

// AutoPoints is the most points step=auto gives.
const AutoPoints = 1000

// niceSteps are the steps step=auto picks from.
var niceSteps = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour,
}

// queryJSON is the answer of /api/v1/query.
type queryJSON struct {
	Device string       `json:"device"`
	Metric string       `json:"metric"`
	From   int64        `json:"from"`
	To     int64        `json:"to"`
	StepMS int64        `json:"step_ms"`
	Agg    store.Agg    `json:"agg,omitempty"`
	Points [][2]float64 `json:"points"`
}

// Query serves GET /api/v1/query?device=ID&metric=M&from=-1h&to=now&step=1m&agg=mean.
func Query(st Reader, opts QueryOptions) http.Handler {
	if opts.MaxPoints <= 0 {
		opts.MaxPoints = 10000
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseQuery(r.URL.Query(), opts.Now(), opts.MaxPoints)
		if err != nil {
			writeError(w, r, opts.Logger, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), opts.Timeout)
		defer cancel()
		pts, err := st.Query(ctx, q)
		if err != nil {
			if ctx.Err() == context.DeadlineExceeded {
				err = devices.Errorf(devices.EUnavailable, "query took longer than %v; narrow the range or use a larger step", opts.Timeout)
			}
			writeError(w, r, opts.Logger, err)
			return
		}
		if len(pts) > opts.MaxPoints {
			writeError(w, r, opts.Logger, devices.Errorf(devices.EInvalid,
				"the answer has %d points, more than the limit of %d; narrow the range or use a larger step", len(pts), opts.MaxPoints))
			return
		}
		out := queryJSON{Device: q.Device, Metric: q.Metric, From: q.From, To: q.To, StepMS: q.Step, Points: make([][2]float64, len(pts))}
		if q.Step > 0 {
			out.Agg = q.Agg
		}
		for i, p := range pts {
			out.Points[i] = [2]float64{float64(p.T), p.V}
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// ParseQuery reads a history query from URL parameters, with relative times
// counted from now. It returns EInvalid errors that name the parameter.
func ParseQuery(v url.Values, now time.Time, maxPoints int) (store.Query, error) {
	q := store.Query{Device: v.Get("device"), Metric: v.Get("metric")}
	if q.Device == "" {
		return q, devices.Errorf(devices.EInvalid, "device is required")
	}
	if q.Metric == "" {
		return q, devices.Errorf(devices.EInvalid, "metric is required")
	}
	var err error
	if q.From, err = ParseTime(v.Get("from"), "-1h", now); err != nil {
		return q, devices.Errorf(devices.EInvalid, "from: %v", err)
	}
	if q.To, err = ParseTime(v.Get("to"), "now", now); err != nil {
		return q, devices.Errorf(devices.EInvalid, "to: %v", err)
	}
	if q.From >= q.To {
		return q, devices.Errorf(devices.EInvalid, "from must be before to")
	}
	agg := v.Get("agg")
	if agg == "" {
		agg = string(store.AggMean)
	}
	if q.Agg, err = store.ParseAgg(agg); err != nil {
		return q, err
	}
	switch step := v.Get("step"); step {
	case "", "auto":
		q.Step = AutoStep(q.To - q.From)
	case "raw":
		q.Step = 0
	default:
		d, err := ParseDuration(step)
		if err != nil || d <= 0 {
			return q, devices.Errorf(devices.EInvalid, "step %q is not auto, raw, or a positive duration such as 10s, 1m, 1h or 1d", step)
		}
		if d < time.Millisecond || d%time.Millisecond != 0 {
			return q, devices.Errorf(devices.EInvalid, "step must be a whole number of milliseconds")
		}
		q.Step = d.Milliseconds()
		if n := (q.To - q.From + q.Step - 1) / q.Step; n > int64(maxPoints) {
			return q, devices.Errorf(devices.EInvalid, "step %s over this range gives up to %d points, more than the limit of %d; use a larger step or step=auto", step, n, maxPoints)
		}
	}
	return q, q.Validate()
}

// AutoStep picks the smallest nice step that cuts a span of ms milliseconds
// into at most AutoPoints buckets.
func AutoStep(span int64) int64 {
	for _, s := range niceSteps {
		if span/s.Milliseconds() < AutoPoints {
			return s.Milliseconds()
		}
	}
	days := span/AutoPoints/86400000 + 1
	return days * 86400000
}

// ParseTime reads a time given as RFC 3339, Unix milliseconds, "now", or a
// duration relative to now such as -15m or -7d. An empty s means def.
func ParseTime(s, def string, now time.Time) (int64, error) {
	if s == "" {
		s = def
	}
	if s == "now" {
		return now.UnixMilli(), nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixMilli(), nil
	}
	if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
		if d, err := ParseDuration(s[1:]); err == nil {
			if s[0] == '-' {
				d = -d
			}
			return now.Add(d).UnixMilli(), nil
		}
	}
	return 0, devices.Errorf(devices.EInvalid, "%q is not RFC 3339, Unix milliseconds, now, or a relative duration such as -15m", s)
}

// ParseDuration reads a Go duration, allowing d for days (7d, 1d12h).
func ParseDuration(s string) (time.Duration, error) {
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 || n > 100000 {
			return 0, devices.Errorf(devices.EInvalid, "bad duration %q", s)
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	return days + d, nil
}
