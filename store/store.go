// Package store defines what a history query is (Query, Agg, Point) for the
// storage backends under it and the HTTP API above them, and the one policy
// for the step a series is read at when no one names it (AutoStep, FitStep:
// the API's step=auto and step=fit, and the pages' charts).
//
// Every backend answers a Query in two ways: Query returns the points of one
// series at once (raw or downsampled, bounded by the caller's limits), and
// Readings streams the raw readings of one series in time order, a chunk at
// a time, for exports whose size has no bound.
//
// The backends each wrap one outside thing: sqlite is the embedded store the
// self-contained mode uses, influx writes to and queries InfluxDB, and
// journal is the durable on-disk buffer in front of InfluxDB. sqlite keeps
// its write-ahead log in a journal too (it imports journal, the one import
// between them); otherwise none imports another, and cmd/iotdash picks one.
package store

import (
	"iotdash/devices"
)

// Agg is how the readings in one step are combined into one point.
type Agg string

// The aggregates a query may ask for.
const (
	AggMean  Agg = "mean"
	AggMin   Agg = "min"
	AggMax   Agg = "max"
	AggFirst Agg = "first"
	AggLast  Agg = "last"
	AggCount Agg = "count"
	AggSum   Agg = "sum"
	// AggMinMax gives two values per step, the least and the greatest: a
	// Point's V and Max. It draws a chart's band.
	AggMinMax Agg = "minmax"
)

// Aggs lists every aggregate, in the order the API documents them.
var Aggs = []Agg{AggMean, AggMin, AggMax, AggFirst, AggLast, AggCount, AggSum, AggMinMax}

// ParseAgg returns the aggregate named s, or an EInvalid error that lists
// the ones there are.
func ParseAgg(s string) (Agg, error) {
	for _, a := range Aggs {
		if string(a) == s {
			return a, nil
		}
	}
	return "", devices.Errorf(devices.EInvalid, "agg %q is not one of mean, min, max, first, last, count, sum, minmax", s)
}

// Query asks for the readings of one metric of one device with
// From <= Time < To (Unix milliseconds). With Step > 0 the range is cut into
// buckets aligned to whole multiples of Step since the Unix epoch (UTC)
// shifted back by Offset (so that with Step a day and Offset an hour, a
// bucket starts at 23:00 UTC, midnight at UTC+1), and each bucket that
// holds a reading gives one Point: its start and the Agg of its readings.
// With Step == 0 every reading is a Point (Agg and Offset are ignored).
// LocalBuckets cuts a range into such queries for a time zone's days and
// hours.
type Query struct {
	Device string
	Metric string
	From   int64
	To     int64
	Step   int64
	Offset int64 // 0 <= Offset < Step
	Agg    Agg
}

// Validate says what is wrong with q, or returns nil.
func (q Query) Validate() error {
	switch {
	case !devices.ValidName(q.Device):
		return devices.Errorf(devices.EInvalid, "device %q is not 1 to 64 characters of [A-Za-z0-9._-]", q.Device)
	case !devices.ValidName(q.Metric):
		return devices.Errorf(devices.EInvalid, "metric %q is not 1 to 64 characters of [A-Za-z0-9._-]", q.Metric)
	case q.From >= q.To:
		return devices.Errorf(devices.EInvalid, "from must be before to")
	case q.Step < 0:
		return devices.Errorf(devices.EInvalid, "step must not be negative")
	case q.Step > 0 && (q.Offset < 0 || q.Offset >= q.Step):
		return devices.Errorf(devices.EInvalid, "a bucket's offset is at least 0 and less than its step")
	}
	if q.Step > 0 {
		if _, err := ParseAgg(string(q.Agg)); err != nil {
			return err
		}
	}
	return nil
}

// Storable returns q with its range cut to the times a reading may have
// (devices.MinTime to devices.MaxTime), and false if nothing of the range
// is left: a query for that can only answer nothing. Buckets keep their
// places, so a point's time may still be before devices.MinTime.
func (q Query) Storable() (Query, bool) {
	q.From, q.To = max(q.From, devices.MinTime), min(q.To, devices.MaxTime+1)
	return q, q.From < q.To
}

// BucketStart returns the start of the Step-wide bucket that holds t.
func (q Query) BucketStart(t int64) int64 {
	return FloorTo(t+q.Offset, q.Step) - q.Offset
}

// FloorTo returns the greatest multiple of step at or before t (step > 0),
// for negative t too.
func FloorTo(t, step int64) int64 {
	b := t - t%step
	if t < 0 && t%step != 0 {
		b -= step
	}
	return b
}

// Point is one point of a query's answer: a time in Unix milliseconds and a
// value. With AggMinMax, V is the step's least value and Max its greatest;
// otherwise Max is 0.
type Point struct {
	T   int64
	V   float64
	Max float64
}

// ReadingsChunk is the most readings a backend's Readings passes in one call
// of its function.
const ReadingsChunk = 4096
