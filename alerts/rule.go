// Package alerts raises alerts from the live stream of readings: rules
// (a threshold with hysteresis, held for a duration, a rise or fall within
// a window, or silence for a duration, on one device or on every device a
// selector picks, and the limits devices declare) are evaluated on every
// reading as it is stored, and silence on a tick, each device its own
// instance, pending, firing, then resolved. Firing and resolving are
// notified once each, through a queue that survives a restart, to webhooks
// in Alertmanager's webhook format and to a Prometheus Alertmanager, where
// an acknowledged alert is also silenced. Each firing is kept as an
// episode of the history.
//
// Rules, instances, episodes and the queue are documents in a Store, the
// one small interface iotdash's shared state sits behind. It is not a
// query engine over stored history: it sees readings once, as they come.
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
	// OpNoData fires when a device has sent nothing (of Metric, or of
	// anything when Metric is "") for For, offline or not; its next
	// reading clears it.
	OpNoData = "nodata"
	// OpRises fires when the metric has risen by more than Value within
	// Window, clears when the rise within Window is at most Clear.
	OpRises = "rises"
	// OpFalls fires when the metric has fallen by more than Value within
	// Window, clears when the fall within Window is at most Clear.
	OpFalls = "falls"
)

// Ops lists every op, as the API documents them.
var Ops = []string{OpAbove, OpBelow, OpOutside, OpLimits, OpNoData, OpRises, OpFalls}

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
	Window   Duration `json:"window,omitempty"` // rises and falls: the span the change is measured over
	Severity string   `json:"severity"`
	Runbook  string   `json:"runbook,omitempty"`
	Webhook  string   `json:"webhook,omitempty"`
	Disabled bool     `json:"disabled,omitempty"`
}

// Duration is a time.Duration written as "10s", "2m".
type Duration time.Duration

// MarshalJSON writes "10s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// String writes d as time.Duration does, without its trailing zero units:
// "2m", "1h", "1h30m".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

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
	maxWindow  = 24 * time.Hour
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
	switch {
	case r.Op == OpNoData && r.Metric == "":
	case r.Op != OpLimits && !devices.ValidName(r.Metric):
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
	if r.Window != 0 && r.Op != OpRises && r.Op != OpFalls {
		return bad("window is for rises and falls only, not %s", r.Op)
	}
	switch r.Op {
	case OpAbove, OpBelow, OpRises, OpFalls:
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
		if r.Op == OpRises || r.Op == OpFalls {
			if r.Value <= 0 {
				return bad("%s takes a value above 0: how much the metric changes within the window", r.Op)
			}
			if *r.Clear < 0 || *r.Clear > r.Value {
				return bad("an alert on a change of more than %v clears at a change between 0 and it: clear %v is not", r.Value, *r.Clear)
			}
			if r.Window <= 0 || time.Duration(r.Window) > maxWindow {
				return bad("%s takes a window between 0 and %s, such as \"10m\": the span the change is measured over", r.Op, maxWindow)
			}
		}
	case OpNoData:
		if r.For <= 0 {
			return bad("nodata takes for: how long a device may send nothing before it fires, such as \"5m\"")
		}
		if r.Value != 0 || r.Clear != nil || r.Low != 0 || r.High != 0 {
			return bad("nodata takes no value, clear, low or high: only for")
		}
	case OpOutside:
		if !finite(r.Low, r.High) || r.Low > r.High {
			return bad("outside takes low ≤ high")
		}
	case OpLimits:
	default:
		return bad("op %q is none of %s", r.Op, strings.Join(Ops, ", "))
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
	case OpAbove, OpRises, OpFalls:
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
	case OpAbove, OpRises, OpFalls:
		return v <= *r.Clear
	case OpBelow:
		return v >= *r.Clear
	}
	return !r.breached(v, limits)
}

// worse reports whether v is further into the rule's condition than was,
// for an alert's peak.
func (r *Rule) worse(v, was float64, limits [2]float64) bool {
	beyond := func(v, low, high float64) float64 { return max(low-v, v-high) }
	switch r.Op {
	case OpBelow:
		return v < was
	case OpOutside:
		return beyond(v, r.Low, r.High) > beyond(was, r.Low, r.High)
	case OpLimits:
		return beyond(v, limits[0], limits[1]) > beyond(was, limits[0], limits[1])
	}
	return v > was
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
	case OpRises:
		return fmt.Sprintf("%s rose more than %v within %s", metric, r.Value, r.Window)
	case OpFalls:
		return fmt.Sprintf("%s fell more than %v within %s", metric, r.Value, r.Window)
	case OpNoData:
		if metric == "" {
			return fmt.Sprintf("nothing sent for %s", r.For)
		}
		return fmt.Sprintf("no %s sent for %s", metric, r.For)
	}
	if limits == [2]float64{} {
		return fmt.Sprintf("%s outside its declared limits", metric)
	}
	return fmt.Sprintf("%s outside its limits %v–%v", metric, limits[0], limits[1])
}

// Condition says in words when the rule fires, for the pages.
func (r Rule) Condition() string {
	metric := r.Metric
	if r.Op == OpLimits {
		metric = "a metric"
	}
	s := r.describe(metric, [2]float64{})
	if r.Clear != nil && *r.Clear != r.Value {
		s += fmt.Sprintf(", clears at %v", *r.Clear)
	}
	if r.For > 0 && r.Op != OpNoData {
		s += " for " + r.For.String()
	}
	return s
}
