package simulator

import "time"

// Clock tells the simulation's time. Devices stamp readings with it and wait
// on it, so a test can run a scenario's minutes in seconds.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d of this clock's time has
	// passed.
	After(d time.Duration) <-chan time.Time
}

// WallClock is real time.
type WallClock struct{}

// Now returns time.Now().
func (WallClock) Now() time.Time { return time.Now() }

// After is time.After.
func (WallClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// FastClock is a clock that runs faster than real time, to play a
// scenario's minutes in seconds.
type FastClock struct {
	start time.Time
	real  time.Time
	speed float64
}

// NewFastClock returns a clock that reads start now and runs speed times
// faster than real time.
func NewFastClock(start time.Time, speed float64) *FastClock {
	return &FastClock{start: start, real: time.Now(), speed: speed}
}

// Now returns the clock's time.
func (c *FastClock) Now() time.Time {
	return c.start.Add(time.Duration(float64(time.Since(c.real)) * c.speed))
}

// After returns a channel that receives (the real time) once d of the
// clock's time, d/speed of real time, has passed.
func (c *FastClock) After(d time.Duration) <-chan time.Time {
	return time.After(time.Duration(float64(d) / c.speed))
}
