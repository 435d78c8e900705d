// Package devices holds the types every part of iotdash speaks in (a device
// id, a reading, a presence status, a device's metadata) with their
// validation, and the Fleet: what is known of each device right now
// (metadata, presence, last seen, latest values).
//
// It is the domain package: it imports nothing of iotdash and nothing
// outside the standard library. It is not a store of history; that is the
// store packages' job.
package devices

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// MaxNameLen is the longest device id or metric name accepted.
const MaxNameLen = 64

// ValidName reports whether s may be used as a device id or a metric name:
// 1 to 64 characters of [A-Za-z0-9._-].
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// The times a reading may have, in Unix milliseconds: from MinTime,
// 2000-01-01T00:00:00Z, to MaxTime, 2100-01-01T00:00:00Z, both included.
// Ingest rejects a reading outside them and a history query is clamped to
// them (store.Query.Storable), so that no store is ever asked about a time
// it cannot hold: InfluxDB's nanoseconds end in 2262, and Flux on InfluxDB
// 1.8 has no windows before 1970.
const (
	MinTime = 946684800000
	MaxTime = 4102444800000
)

// ValidTime reports whether t (Unix ms) is a time a reading may have.
func ValidTime(t int64) bool { return t >= MinTime && t <= MaxTime }

// Reading is one value of one metric of one device at one instant.
// Time is in Unix milliseconds. Two readings with the same Device, Metric and
// Time are the same reading: stores keep one of them.
type Reading struct {
	Device string  `json:"d"`
	Metric string  `json:"m"`
	Time   int64   `json:"t"`
	Value  float64 `json:"v"`
}

// Validate says what is wrong with r, or returns nil.
func (r Reading) Validate() error {
	switch {
	case !ValidName(r.Device):
		return Errorf(EInvalid, "device id %q is not 1 to 64 characters of [A-Za-z0-9._-]", r.Device)
	case !ValidName(r.Metric):
		return Errorf(EInvalid, "metric name %q is not 1 to 64 characters of [A-Za-z0-9._-]", r.Metric)
	case math.IsNaN(r.Value) || math.IsInf(r.Value, 0):
		return Errorf(EInvalid, "metric %q is not a finite number", r.Metric)
	}
	return nil
}

// Status is a device's presence as the dashboard shows it.
type Status string

// The presence statuses. Online and Offline are what a device reports on its
// status topic; Stale is derived: an online device that has been silent for
// longer than three of its usual intervals.
const (
	StatusUnknown Status = "unknown"
	StatusOnline  Status = "online"
	StatusStale   Status = "stale"
	StatusOffline Status = "offline"
)

// Statuses are every status a device may have.
var Statuses = []Status{StatusUnknown, StatusOnline, StatusStale, StatusOffline}

// ParseStatus reads a status payload as devices publish it: online or offline.
func ParseStatus(b []byte) (Status, error) {
	switch string(b) {
	case "online":
		return StatusOnline, nil
	case "offline":
		return StatusOffline, nil
	}
	return "", Errorf(EInvalid, "status must be online or offline")
}

// Meta is what a device says about itself on its retained meta topic.
type Meta struct {
	Name     string `json:"name,omitempty"`
	Kind     string `json:"kind,omitempty"`
	Location string `json:"location,omitempty"`
	// Units maps a metric name to its unit, e.g. "temperature": "°C".
	Units map[string]string `json:"units,omitempty"`
	// Limits maps a metric name to the [low, high] range it should stay in.
	Limits map[string][2]float64 `json:"limits,omitempty"`
	// Decimals maps a metric name to the decimals its values are shown
	// with (0 to 9), where the device knows its own resolution.
	Decimals map[string]int `json:"decimals,omitempty"`
	// Labels maps a metric name to the name people read, e.g. "co2": "CO₂".
	Labels map[string]string `json:"labels,omitempty"`
	// Interval is how often the device means to publish, in seconds; it
	// goes stale after StaleAfter of them without a word. Without it, the
	// interval is learnt from its messages.
	Interval float64 `json:"interval,omitempty"`
}

// MaxDecimals is the most decimals a value is shown with.
const MaxDecimals = 9

// Label is the name people read for metric: its label from the meta, else
// the metric's own name.
func (m Meta) Label(metric string) string {
	if l := m.Labels[metric]; l != "" {
		return l
	}
	return metric
}

// maxMetaLen bounds a meta payload; real ones are a few hundred bytes.
const maxMetaLen = 16 << 10

// ParseMeta decodes and validates a meta payload.
func ParseMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) > maxMetaLen {
		return m, Errorf(EInvalid, "meta payload of %d bytes is larger than %d", len(b), maxMetaLen)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, Errorf(EInvalid, "meta is not a JSON object of name, kind, location, units, limits: %v", err)
	}
	for k := range m.Units {
		if !ValidName(k) {
			return Meta{}, Errorf(EInvalid, "meta units name metric %q, which is not a valid metric name", k)
		}
	}
	for k, l := range m.Limits {
		if !ValidName(k) || !(l[0] <= l[1]) {
			return Meta{}, Errorf(EInvalid, "meta limits for %q must be a valid metric name with [low, high], low <= high", k)
		}
	}
	if m.Interval < 0 || m.Interval > 7*24*3600 {
		return Meta{}, Errorf(EInvalid, "meta interval must be 0 to 604800 seconds")
	}
	for k, d := range m.Decimals {
		if !ValidName(k) || d < 0 || d > MaxDecimals {
			return Meta{}, Errorf(EInvalid, "meta decimals for %q must be a valid metric name with 0 to %d", k, MaxDecimals)
		}
	}
	for k, l := range m.Labels {
		if !ValidName(k) || l == "" || len(l) > MaxNameLen || !utf8.ValidString(l) {
			return Meta{}, Errorf(EInvalid, "meta labels for %q must be a valid metric name with 1 to %d bytes of text", k, MaxNameLen)
		}
	}
	return m, nil
}

// Error kinds a caller can act on.
const (
	EInvalid     = "invalid"     // the caller's input is wrong; the message says how
	ENotFound    = "not_found"   // the thing asked for does not exist
	EUnavailable = "unavailable" // a service behind this one is down; try again
	EInternal    = "internal"    // a fault of ours; details are in the log
)

// Error is an error with a kind the caller can act on, a message fit to
// show the caller, and the cause behind it, for the log only: a driver's
// text, an address, a path. Error() gives both; ErrorMessage only the
// message.
type Error struct {
	Kind    string
	Message string
	Cause   error
}

func (e *Error) Error() string {
	if e.Cause == nil {
		return e.Message
	}
	return e.Message + ": " + e.Cause.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// Errorf returns an *Error of the given kind.
func Errorf(kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error of the given kind with cause behind its message.
func Wrap(cause error, kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...), Cause: cause}
}

// ErrorMessage returns what a caller may be told of err: the message of its
// first *Error, or "internal error" for any other error, whose text is for
// the log.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// ErrorKind returns the kind of err's first *Error, or EInternal.
func ErrorKind(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return EInternal
}

// AppendString appends s as a JSON string, exactly as encoding/json writes
// it: every string iotdash hands a browser or an integrator in JSON goes
// through here. A string of printable ASCII that needs no escape (every
// device id and metric name) is copied as it is; anything else is left to
// encoding/json. BenchmarkAppendString: the copy is two to four times as fast
// as json.Marshal and allocates nothing, on the push hot path.
func AppendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// AppendNumber appends v as every number iotdash hands to a browser or an
// integrator is written (JSON, CSV, pages): the shortest form that reads
// back as exactly v, in encoding/json's notation (1234567.891, 4.6e-7),
// -0 as 0, and null for NaN and ±Inf, which JSON cannot hold. Size is won
// by sending fewer numbers, never by changing them.
func AppendNumber(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	if v == 0 {
		v = 0 // -0 too: a spreadsheet would show it as such
	}
	format := byte('f')
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, v, format, -1, 64)
	if format == 'e' {
		// e-07 → e-7, as encoding/json writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
