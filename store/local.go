package store

import "time"

// LocalBuckets cuts q into queries whose buckets follow loc's wall clock:
// a day runs from local midnight to local midnight (23 or 25 hours on the
// days the clock changes), an hour from one local hour to the next (in a
// zone half an hour off UTC, from :30 to :30). Each query covers a run of
// buckets of one length, with the Offset that aligns them; their answers,
// in order, are q's. Steps of whole minutes that divide a day, and whole
// days (counted from 1970-01-01 on loc's calendar), follow the wall clock;
// any other step, Step 0, or UTC gives q as it is. Where the clock goes
// back, the hour that repeats is one bucket of two hours; where it goes
// forward, the hour that does not exist has no bucket.
func LocalBuckets(q Query, loc *time.Location) []Query {
	const minute, day = int64(60_000), int64(86_400_000)
	if q.Step <= 0 || loc == nil || loc == time.UTC || q.Step%minute != 0 ||
		(q.Step < day && day%q.Step != 0) || (q.Step > day && q.Step%day != 0) || q.From >= q.To {
		return []Query{q}
	}
	// A boundary is a civil date and a bucket index within it (sub-day
	// steps) or a civil date alone (steps of days), read in loc.
	perDay := max(day/q.Step, 1)
	days := max(q.Step/day, 1)
	at := func(civil int64, i int64) int64 { // civil: days since 1970-01-01
		d := time.UnixMilli(civil * day).UTC()
		t := time.Date(d.Year(), d.Month(), d.Day(), 0, int(i*(q.Step/minute)), 0, 0, loc)
		// A wall time the clock shows twice is its first showing.
		wall := t.Format("2006-01-02 15:04")
		for _, back := range []time.Duration{2 * time.Hour, time.Hour, 30 * time.Minute} {
			if e := t.Add(-back); e.Format("2006-01-02 15:04") == wall {
				return e.UnixMilli()
			}
		}
		return t.UnixMilli()
	}
	lt := time.UnixMilli(q.From).In(loc)
	civil := time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, time.UTC).UnixMilli() / day
	var i int64
	if days > 1 {
		civil = FloorTo(civil, days)
	} else {
		i = int64(lt.Hour()*60+lt.Minute()) / (q.Step / minute)
	}
	start := at(civil, i)
	for start > q.From { // the wall clock went back: step back a bucket
		if i > 0 {
			i--
		} else {
			civil, i = civil-days, perDay-1
		}
		start = at(civil, i)
	}
	var out []Query
	for start < q.To {
		// The next boundary after start.
		end := start
		for end <= start {
			if i++; i >= perDay || days > 1 {
				civil, i = civil+days, 0
			}
			end = at(civil, i)
		}
		length := end - start
		if n := len(out); n > 0 && out[n-1].Step == length && out[n-1].To == start {
			out[n-1].To = end
		} else {
			out = append(out, Query{Device: q.Device, Metric: q.Metric, From: start, To: end, Step: length,
				Offset: ((-start)%length + length) % length, Agg: q.Agg})
		}
		start = end
	}
	out[0].From = q.From
	out[len(out)-1].To = q.To
	return out
}
