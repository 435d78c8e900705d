package views

import (
	"cmp"
	"context"
	"log/slog"
	"net/url"
	"strconv"
	"time"

	"github.com/a-h/templ"

	"iotdash/boards"
	"iotdash/devices"
	"iotdash/store"
)

// Replay is a board shown as of a past moment and played forward from
// it (?replay=2026-11-28T03:00&speed=10): the server renders the board as
// it was at At, and board.js plays it on from history, Speed times as fast
// as the clock, a Step at a time when stepped.
type Replay struct {
	At    int64 // the moment shown (Unix ms)
	Speed int
	// Step is how far a step moves the moment: a sixtieth of the charts'
	// range, at least replayMinStep.
	Step time.Duration
	// Label is the moment in the reader's zone, as the bar says it.
	Label string
	// Back and Forward are the board a step before and after At (links
	// that work without scripts); Live is the board now.
	Back, Forward, Live string
}

// ReplaySpeeds are the speeds a replay plays at: seconds of history a
// second.
var ReplaySpeeds = []int{1, 2, 5, 10, 30, 60}

const (
	// replayMinStep is the least a step moves a replay.
	replayMinStep = time.Minute
	// replayChunk is how much history the page fetches at once ahead of a
	// replay's moment, for each series (a whole number of the series'
	// steps: chunks start at multiples of it, so that the same chunk is the
	// same URL for every viewer, and cacheable).
	replayChunk = 15 * time.Minute
	// replayLookback is how far before a replay's moment a stat looks for
	// the latest value.
	replayLookback = 24 * time.Hour
	// replayFind is the bucket in which a stat's latest value before a
	// replay's moment is found, and then read as it was (at most this
	// much of one series' raw readings).
	replayFind = 15 * time.Minute
)

// parseReplay reads a replay from the URL's parameters, as of now: nil
// when there is none; an EInvalid error names a mistake in them.
func parseReplay(q url.Values, now time.Time) (*Replay, error) {
	s := q.Get("replay")
	if s == "" && !q.Has("speed") {
		return nil, nil
	}
	at, ok := parseInstant(s, now.Location())
	if !ok {
		return nil, devices.Errorf(devices.EInvalid, "replay %q is not a date and time, such as %s", s, now.Add(-time.Hour).Format("2006-01-02T15:04"))
	}
	if at >= now.UnixMilli() {
		return nil, devices.Errorf(devices.EInvalid, "replay %s is not in the past; a board replays what happened before now", formatAt(at, now.Location()))
	}
	rp := &Replay{At: at, Speed: 1}
	if sp := q.Get("speed"); sp != "" {
		n, err := strconv.Atoi(sp)
		if err != nil || n < ReplaySpeeds[0] || n > ReplaySpeeds[len(ReplaySpeeds)-1] {
			return nil, devices.Errorf(devices.EInvalid, "speed %q is not a whole number from %d to %d (times as fast as the clock)", sp, ReplaySpeeds[0], ReplaySpeeds[len(ReplaySpeeds)-1])
		}
		rp.Speed = n
	}
	rp.Label = formatAt(at, now.Location())
	return rp, nil
}

// links sets the replay's step, and its links to the board a step before
// and after, and to the board live, keeping the other parameters of q.
func (rp *Replay) links(id string, q url.Values, r Range) {
	rp.Step = max(replayMinStep, (time.Duration(r.To-r.From) * time.Millisecond / 60).Round(time.Minute))
	at := func(ms int64) string {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Set("replay", strconv.FormatInt(ms, 10))
		return boardURL(id, false) + "?" + v.Encode()
	}
	rp.Back, rp.Forward = at(rp.At-rp.Step.Milliseconds()), at(rp.At+rp.Step.Milliseconds())
	live := url.Values{}
	for k, vs := range q {
		if k != "replay" && k != "speed" {
			live[k] = vs
		}
	}
	rp.Live = boardURL(id, false)
	if len(live) > 0 {
		rp.Live += "?" + live.Encode()
	}
}

// replayAttrs are what board.js plays a replay by: the moment, the speed,
// the step, the speeds and how much history to fetch at once.
func replayAttrs(rp *Replay) templ.Attributes {
	speeds := ""
	for i, s := range ReplaySpeeds {
		if i > 0 {
			speeds += " "
		}
		speeds += strconv.Itoa(s)
	}
	return templ.Attributes{"data-replay": int64s(rp.At), "data-speed": strconv.Itoa(rp.Speed), "data-step": int64s(rp.Step.Milliseconds()),
		"data-chunk": int64s(replayChunk.Milliseconds()), "data-speeds": speeds}
}

// notReplay are ps but a replay's moment and speed, for the replay's own
// form, which sets them.
func notReplay(ps []Param) []Param {
	var out []Param
	for _, p := range ps {
		if p.Name != "replay" && p.Name != "speed" {
			out = append(out, p)
		}
	}
	return out
}

// replayInput is a moment as a datetime-local field shows it.
func replayInput(ms int64, loc *time.Location) string {
	return time.UnixMilli(ms).In(loc).Format("2006-01-02T15:04:05")
}

// asOf is the fleet ds as board b showed it at the moment at: the latest
// value, at or before at, of each device and metric its stats, gauges and
// tables show, read from h (none when there was none then; a device's
// other metrics are as they are now, which no panel shows but selectors
// pick by), and a device last seen at the latest of those values, in
// the presence the event log held for it then (unknown without one).
func asOf(ctx context.Context, h History, events EventLog, b boards.Board, ds []devices.Device, l boards.Limits, chosen map[string]string, at time.Time, log *slog.Logger) []devices.Device {
	type key struct{ device, metric string }
	found := map[key]devices.Value{}
	var want []key
	for _, p := range b.Panels {
		if p.Type == boards.TimeSeries {
			continue
		}
		ts, _ := p.Resolve(ds, l, chosen)
		for _, t := range ts {
			k := key{t.Device.ID, t.Metric}
			if _, ok := found[k]; !ok {
				found[k] = devices.Value{}
				want = append(want, k)
			}
		}
	}
	out := make([]devices.Device, len(ds))
	copy(out, ds)
	if h == nil {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, historyWait)
	defer cancel()
	fail := historyFailed(log, "/boards/"+b.ID)
	values := make([]devices.Value, len(want))
	var jobs []func(context.Context)
	for i, k := range want {
		jobs = append(jobs, func(ctx context.Context) {
			v, err := latestAt(ctx, h, k.device, k.metric, at.UnixMilli())
			if err != nil {
				fail(err)
				return
			}
			values[i] = v
		})
	}
	// Each shown device's presence then: the episode of the event log
	// that holds the moment, unknown without one.
	shown := map[string]devices.Status{}
	for _, k := range want {
		shown[k.device] = devices.StatusUnknown
	}
	statuses := make([]devices.Status, len(out))
	for i, d := range out {
		if _, ok := shown[d.ID]; !ok || events == nil {
			continue
		}
		jobs = append(jobs, func(ctx context.Context) {
			es, err := events.Events(ctx, devices.EventQuery{Device: d.ID, Kind: devices.EventPresence, From: at.UnixMilli(), To: at.UnixMilli() + 1, Limit: 1})
			if err != nil {
				fail(err)
				return
			}
			if len(es) > 0 {
				statuses[i] = es[0].Status
			}
		})
	}
	queries(ctx, jobs)
	for i, k := range want {
		found[k] = values[i]
	}
	for i, d := range out {
		if _, ok := shown[d.ID]; ok {
			d.Status = cmp.Or(statuses[i], devices.StatusUnknown)
		}
		latest := make(map[string]devices.Value, len(d.Latest))
		for m, v := range d.Latest {
			latest[m] = v
		}
		d.LastSeen = 0
		for k, v := range found {
			switch {
			case k.device != d.ID:
			case v.T == 0:
				delete(latest, k.metric)
			default:
				latest[k.metric] = v
				d.LastSeen = max(d.LastSeen, v.T)
			}
		}
		d.Latest = latest
		out[i] = d
	}
	return out
}

// latestAt is the latest reading of device's metric at or before at (Unix
// ms) within replayLookback: the last bucket of replayFind that has one,
// then that bucket's readings (so that its time is the reading's). A zero
// Value when there is none.
func latestAt(ctx context.Context, h History, device, metric string, at int64) (devices.Value, error) {
	to := at + 1
	step := replayFind.Milliseconds()
	q := store.Query{Device: device, Metric: metric, From: to - replayLookback.Milliseconds(), To: to, Step: step, Offset: (step - to%step) % step, Agg: store.AggLast}
	pts, err := h.Query(ctx, q)
	if err != nil || len(pts) == 0 {
		return devices.Value{}, err
	}
	last := pts[len(pts)-1]
	raw, err := h.Query(ctx, store.Query{Device: device, Metric: metric, From: last.T, To: to})
	if err != nil {
		return devices.Value{}, err
	}
	if len(raw) == 0 { // kept as summaries only
		return devices.Value{T: last.T, V: last.V}, nil
	}
	p := raw[len(raw)-1]
	return devices.Value{T: p.T, V: p.V}, nil
}

// stepWords says a replay's step as chart.js's span says a chart's: 1 min,
// 6 min, 2 h.
func stepWords(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + " s"
	case d < time.Hour:
		return strconv.FormatFloat(d.Minutes(), 'f', -1, 64) + " min"
	}
	return strconv.FormatFloat(d.Hours(), 'f', -1, 64) + " h"
}

// isoMs is an instant in RFC 3339, for a <time>'s datetime.
func isoMs(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) }
