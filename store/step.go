package store

import (
	"sync"
	"time"

	"iotdash/devices"
)

// How a series is read when the reader names no step: the one policy the
// history API's step=auto and step=fit, the device page's charts and the
// scripts (through the API) follow.

// Steps are the bucket widths, in ms, a step is picked from: round numbers
// of seconds, minutes and hours that people read at a glance.
var Steps = []int64{
	1_000, 2_000, 5_000, 10_000, 15_000, 30_000,
	60_000, 2 * 60_000, 5 * 60_000, 10 * 60_000, 15 * 60_000, 30 * 60_000,
	3_600_000, 2 * 3_600_000, 3 * 3_600_000, 6 * 3_600_000, 12 * 3_600_000, day, 7 * day,
}

const day = 86_400_000

// AutoStep returns the smallest of Steps that cuts a span of ms into at
// most n buckets (n > 0) wherever the span starts; past the largest, the
// fewest whole days that do.
func AutoStep(span int64, n int) int64 {
	for _, s := range Steps {
		if span/s < int64(n) {
			return s
		}
	}
	return (span/int64(n)/day + 1) * day
}

// FitStep returns the step at which a span of ms is drawn in n points (a
// chart n pixels wide): 0, every reading, while a bucket of the finest step
// would be wider than a point, else AutoStep(span, n). A series read at
// step 0 that holds more than FitRaw(n) readings is read at AutoStep(span,
// n) instead (the finest step): more readings than that do not show.
func FitStep(span int64, n int) int64 {
	if span/Steps[0] < int64(n) {
		return 0
	}
	return AutoStep(span, n)
}

// FitRaw is the most readings a series read at FitStep's step 0 keeps for n
// points.
func FitRaw(n int) int { return 2 * n }

var zones sync.Map // IANA name → *time.Location

// Zone returns the IANA time zone named name (UTC, Europe/Berlin), loaded
// once per name, or an EInvalid error: "" and Local, the machine's zone,
// are not names a reader may give.
func Zone(name string) (*time.Location, error) {
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil || name == "" || name == "Local" {
		return nil, devices.Errorf(devices.EInvalid, "%q is not a time zone such as Europe/Berlin or UTC", name)
	}
	zones.Store(name, loc)
	return loc, nil
}
