// Package alerts raises alerts from the live stream of readings: rules
// (a threshold with hysteresis, held for a duration, on one device or on
// every device a selector picks, and the limits devices declare) are
// evaluated on every reading as it is stored, each device its own
// instance, pending, firing, then resolved. Firing and resolving are
// notified once each, through a queue that survives a restart, to webhooks
// in Alertmanager's webhook format and to a Prometheus Alertmanager.
//
// Rules, instances and the queue are documents in a Store, the one small
// interface iotdash's shared state sits behind.
package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	"iotdash/devices"
)

// Store keeps documents by kind and key (auth.Store's shape; sqlite.Docs).
// Get of a missing document returns a devices.ENotFound error.
type Store interface {
	Get(ctx context.Context, kind, key string) ([]byte, error)
	Put(ctx context.Context, kind, key string, doc []byte) error
	Delete(ctx context.Context, kind, key string) error
	List(ctx context.Context, kind string) ([][]byte, error)
}

// Ops a rule compares with.
const (
	OpAbove   = ">"       // fires above Value, clears at or below Clear
	OpBelow   = "<"       // fires below Value, clears at or above Clear
	OpOutside = "outside" // fires outside [Low, High], clears back inside
	OpLimits  = "limits"  // fires outside the limits each device declares for the metric
)

// Severities, least to most.
var Severities = []string{"info", "warning", "critical"}

// LimitsRuleID is the built-in rule that alerts on every device's declared
// limits; it can be switched off (Disabled) but not removed.
const LimitsRuleID = "limits"

// Rule says when an alert fires. It picks devices by Device (one id), or
// by Kind, Pattern or Location (patterns of ids or locations, with * and
// ?), as a devices.Selector does; it watches
// Metric (any metric with limits, for OpLimits).
type Rule struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Device   string   `json:"device,omitempty"`
	Kind     string   `json:"kind,omitempty"`
	Pattern  string   `json:"pattern,omitempty"`
	Location string   `json:"location,omitempty"`
	Metric   string   `json:"metric,omitempty"`
	Op       string   `json:"op"`
	Value    float64  `json:"value,omitempty"`
	Clear    *float64 `json:"clear,omitempty"`
	Low      float64  `json:"low,omitempty"`
	High     float64  `json:"high,omitempty"`
	For      Duration `json:"for,omitempty"`
	Severity string   `json:"severity"`
	Runbook  string   `json:"runbook,omitempty"`
	Webhook  string   `json:"webhook,omitempty"`
	Disabled bool     `json:"disabled,omitempty"`
}

// Duration is a time.Duration written as "10s", "2m".
type Duration time.Duration

// MarshalJSON writes "10s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "10s" (or a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n float64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("a duration is a string such as \"30s\" or \"2m\"")
		}
		*d = Duration(n * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"30s\" or \"2m\"", s)
	}
	*d = Duration(v)
	return nil
}

// Limits on what a rule may hold.
const (
	maxRules   = 1000
	maxNameLen = 200
	maxFor     = 24 * time.Hour
)

// Validate checks r and fills its defaults (Clear from Value, severity
// warning); a mistake is an EInvalid error that names it.
func (r *Rule) Validate() error {
	bad := func(format string, args ...any) error {
		return devices.Errorf(devices.EInvalid, "rule: "+format, args...)
	}
	r.Name = strings.TrimSpace(r.Name)
	if r.Name == "" || len(r.Name) > maxNameLen {
		return bad("name is 1 to %d characters", maxNameLen)
	}
	if len(r.Runbook) > 2000 {
		return bad("runbook is at most 2000 characters")
	}
	picks := 0
	for _, s := range []string{r.Device, r.Kind, r.Pattern, r.Location} {
		if s != "" {
			picks++
		}
	}
	switch {
	case r.Op == OpLimits:
	case picks == 0:
		return bad("say which devices: device, kind, pattern or location")
	case picks > 1:
		return bad("device, kind, pattern and location go one at a time")
	}
	if r.Device != "" && !devices.ValidName(r.Device) {
		return bad("device %q is not a device id", r.Device)
	}
	if picks == 1 {
		if err := r.selector().Validate(); err != nil {
			return bad("%s", devices.ErrorMessage(err))
		}
	}
	if r.Op != OpLimits && !devices.ValidName(r.Metric) {
		return bad("metric %q is not a metric name", r.Metric)
	}
	finite := func(vs ...float64) bool {
		for _, v := range vs {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return false
			}
		}
		return true
	}
	switch r.Op {
	case OpAbove, OpBelow:
		if r.Clear == nil {
			r.Clear = &r.Value
		}
		if !finite(r.Value, *r.Clear) {
			return bad("value and clear are numbers")
		}
		if r.Op == OpAbove && *r.Clear > r.Value {
			return bad("an alert above %v clears at or below it: clear %v is above", r.Value, *r.Clear)
		}
		if r.Op == OpBelow && *r.Clear < r.Value {
			return bad("an alert below %v clears at or above it: clear %v is below", r.Value, *r.Clear)
		}
	case OpOutside:
		if !finite(r.Low, r.High) || r.Low > r.High {
			return bad("outside takes low ≤ high")
		}
	case OpLimits:
	default:
		return bad("op %q is none of >, <, outside, limits", r.Op)
	}
	if r.For < 0 || time.Duration(r.For) > maxFor {
		return bad("for is between 0 and %s", maxFor)
	}
	if r.Severity == "" {
		r.Severity = "warning"
	}
	if !slices.Contains(Severities, r.Severity) {
		return bad("severity %q is none of info, warning, critical", r.Severity)
	}
	if r.Webhook != "" {
		u, err := url.Parse(r.Webhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("webhook %q is not an http:// or https:// URL", r.Webhook)
		}
	}
	return nil
}

// selector is the devices the rule picks, picked as a board's series
// picks them (a location is a pattern too).
func (r *Rule) selector() devices.Selector {
	return devices.Selector{Device: r.Device, Kind: r.Kind, Pattern: r.Pattern, Location: r.Location}
}

// picks reports whether the rule watches device d.
func (r *Rule) picks(d target) bool {
	s := r.selector()
	if s == (devices.Selector{}) {
		return r.Op == OpLimits
	}
	return s.Picks(devices.Device{ID: d.id, Meta: devices.Meta{Kind: d.kind, Location: d.location}})
}

// breached reports whether v meets the rule's condition, and cleared
// whether it is back past the clearing point (hysteresis).
func (r *Rule) breached(v float64, limits [2]float64) bool {
	switch r.Op {
	case OpAbove:
		return v > r.Value
	case OpBelow:
		return v < r.Value
	case OpOutside:
		return v < r.Low || v > r.High
	case OpLimits:
		return v < limits[0] || v > limits[1]
	}
	return false
}

func (r *Rule) cleared(v float64, limits [2]float64) bool {
	switch r.Op {
	case OpAbove:
		return v <= *r.Clear
	case OpBelow:
		return v >= *r.Clear
	}
	return !r.breached(v, limits)
}

// describe says the condition in words, for notifications and pages.
func (r *Rule) describe(metric string, limits [2]float64) string {
	switch r.Op {
	case OpAbove:
		return fmt.Sprintf("%s above %v", metric, r.Value)
	case OpBelow:
		return fmt.Sprintf("%s below %v", metric, r.Value)
	case OpOutside:
		return fmt.Sprintf("%s outside %v–%v", metric, r.Low, r.High)
	}
	return fmt.Sprintf("%s outside its limits %v–%v", metric, limits[0], limits[1])
}
