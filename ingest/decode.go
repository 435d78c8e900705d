package ingest

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"iotdash/devices"
)

// MaxPayload is the largest payload accepted; a telemetry message of a few
// dozen metrics is well under 4 KiB.
const MaxPayload = 64 << 10

// Reasons a message, or one metric in it, is rejected. They are the values of
// the reason label of iotdash_rejected_total.
const (
	ReasonTopic     = "topic"        // not devices/{id}/{telemetry|meta|status}
	ReasonDeviceID  = "device_id"    // id not 1-64 of [A-Za-z0-9._-]
	ReasonTooLarge  = "too_large"    // payload over MaxPayload
	ReasonJSON      = "invalid_json" // not a flat JSON object (includes NaN, Infinity, invalid UTF-8)
	ReasonNotNumber = "not_number"   // a metric whose value is not a number
	ReasonRange     = "out_of_range" // a number that does not fit a float64
	ReasonMetric    = "metric_name"  // a metric name not 1-64 of [A-Za-z0-9._-]
	ReasonTimestamp = "timestamp"    // ts neither Unix ms nor RFC 3339, or implausible
	ReasonFuture    = "future"       // ts further ahead of the server's clock than Config.MaxAhead
	ReasonPast      = "past"         // ts further behind the server's clock than Config.MaxBehind
	ReasonEmpty     = "empty"        // no metrics at all
	ReasonMeta      = "meta"         // a meta payload that does not decode
	ReasonStatus    = "status"       // a status payload other than online/offline

	// The fleet's limits (devices.Limits): a message of a new device when
	// the fleet is full, or a reading of a new metric of a device that has
	// its most, or of a new series past the rate of new series.
	ReasonTooManyDevices = "too_many_devices"
	ReasonTooManyMetrics = "too_many_metrics"
	ReasonNewSeries      = "new_series_rate"
)

// Kind is which of a device's topics a message came on.
type Kind int

// The topics of a device.
const (
	KindTelemetry Kind = iota + 1
	KindMeta
	KindStatus
)

// Rejection is why a message, or one metric of it, was not taken.
type Rejection struct {
	Reason string
	Detail string
}

func (r *Rejection) Error() string { return r.Reason + ": " + r.Detail }

func reject(reason, detail string) *Rejection { return &Rejection{reason, detail} }

// tooLarge is the rejection of a payload over MaxPayload.
func tooLarge() *Rejection {
	return reject(ReasonTooLarge, "payload larger than "+strconv.Itoa(MaxPayload)+" bytes")
}

// ParseTopic splits devices/{id}/{telemetry|meta|status}.
func ParseTopic(topic string) (id string, kind Kind, err *Rejection) {
	rest, ok := strings.CutPrefix(topic, "devices/")
	if !ok {
		return "", 0, reject(ReasonTopic, "topic is not under devices/")
	}
	id, sub, ok := strings.Cut(rest, "/")
	if !ok {
		return "", 0, reject(ReasonTopic, "topic has no kind after the device id")
	}
	switch sub {
	case "telemetry":
		kind = KindTelemetry
	case "meta":
		kind = KindMeta
	case "status":
		kind = KindStatus
	default:
		return "", 0, reject(ReasonTopic, "topic kind is not telemetry, meta or status")
	}
	if !devices.ValidName(id) {
		return "", 0, reject(ReasonDeviceID, "device id is not 1 to 64 characters of [A-Za-z0-9._-]")
	}
	return id, kind, nil
}

// parseMeta decodes a meta payload with devices.ParseMeta, once it is sure
// the payload is valid UTF-8 and a JSON object: encoding/json would take
// invalid UTF-8 (turned into U+FFFD) and a JSON null (as no meta at all)
// without an error, letting such junk through uncounted.
func parseMeta(b []byte) (devices.Meta, error) {
	if !utf8.Valid(b) {
		return devices.Meta{}, devices.Errorf(devices.EInvalid, "meta is not valid UTF-8")
	}
	if p := bytes.TrimLeft(b, " \t\r\n"); len(p) == 0 || p[0] != '{' {
		return devices.Meta{}, devices.Errorf(devices.EInvalid, "meta is not a JSON object")
	}
	return devices.ParseMeta(b)
}

// DecodeTelemetry decodes a telemetry payload of device id: a flat JSON
// object of metric name to number, with an optional ts (Unix ms, or RFC 3339)
// that defaults to now (Unix ms). It appends the readings to dst and returns
// it, with the rejections of single metrics (the other metrics still count).
// A payload that is not a flat JSON object, or whose ts is bad, gives no
// readings and one rejection in err.
func DecodeTelemetry(dst []devices.Reading, id string, payload []byte, now int64) (_ []devices.Reading, skipped []*Rejection, err *Rejection) {
	if len(payload) > MaxPayload {
		return dst, nil, tooLarge()
	}
	start := len(dst)
	ts := now
	p := parser{b: payload}
	p.ws()
	if !p.eat('{') {
		return dst, nil, reject(ReasonJSON, "payload is not a JSON object")
	}
	p.ws()
	if !p.eat('}') {
		for {
			p.ws()
			key, ok := p.key()
			if !ok {
				return dst[:start], nil, reject(ReasonJSON, "bad object key")
			}
			p.ws()
			if !p.eat(':') {
				return dst[:start], nil, reject(ReasonJSON, "missing ':' after a key")
			}
			p.ws()
			switch c := p.peek(); {
			case c == '"':
				s, ok := p.str()
				if !ok {
					return dst[:start], nil, reject(ReasonJSON, "bad string")
				}
				if key == "ts" {
					t, err := time.Parse(time.RFC3339Nano, s)
					if err != nil {
						return dst[:start], nil, reject(ReasonTimestamp, "ts is neither Unix milliseconds nor RFC 3339")
					}
					ts = t.UnixMilli()
				} else {
					skipped = append(skipped, reject(ReasonNotNumber, "metric value is a string"))
				}
			case c == '-' || (c >= '0' && c <= '9'):
				lit, ok := p.number()
				if !ok {
					return dst[:start], nil, reject(ReasonJSON, "bad number")
				}
				v, perr := parseNumber(lit)
				if key == "ts" {
					if perr != nil || v != math.Trunc(v) {
						return dst[:start], nil, reject(ReasonTimestamp, "ts is not a whole number of milliseconds")
					}
					ts = int64(v)
				} else if perr != nil || math.IsInf(v, 0) {
					skipped = append(skipped, reject(ReasonRange, "metric value does not fit a 64-bit float"))
				} else if !devices.ValidName(key) {
					skipped = append(skipped, reject(ReasonMetric, "metric name is not 1 to 64 characters of [A-Za-z0-9._-]"))
				} else {
					dst = append(dst, devices.Reading{Device: id, Metric: key, Value: v})
				}
			default:
				if !p.skipValue() {
					return dst[:start], nil, reject(ReasonJSON, "bad value")
				}
				if key == "ts" {
					return dst[:start], nil, reject(ReasonTimestamp, "ts is neither Unix milliseconds nor RFC 3339")
				}
				skipped = append(skipped, reject(ReasonNotNumber, "metric value is not a number"))
			}
			p.ws()
			if p.eat(',') {
				continue
			}
			if p.eat('}') {
				break
			}
			return dst[:start], nil, reject(ReasonJSON, "missing ',' or '}'")
		}
	}
	p.ws()
	if p.i != len(p.b) {
		return dst[:start], nil, reject(ReasonJSON, "data after the object")
	}
	if !devices.ValidTime(ts) {
		return dst[:start], nil, reject(ReasonTimestamp, "ts is not between 2000 and 2100")
	}
	dst = dst[:start+len(lastWins(dst[start:]))]
	for i := start; i < len(dst); i++ {
		dst[i].Time = ts
	}
	if len(dst) == start && len(skipped) == 0 {
		return dst, nil, reject(ReasonEmpty, "payload has no metrics")
	}
	return dst, skipped, nil
}

// lastWins keeps one reading per metric of one message, with the value
// named last, as encoding/json does with a repeated key: otherwise the two
// would reach the stores as the same reading with two values (the embedded
// store keeps the first, InfluxDB the last) and the live push would send
// both. It works in place and returns the prefix of rs it kept.
func lastWins(rs []devices.Reading) []devices.Reading {
	out := rs[:0]
	if len(rs) <= 16 {
	next:
		for _, r := range rs {
			for i := range out {
				if out[i].Metric == r.Metric {
					out[i].Value = r.Value
					continue next
				}
			}
			out = append(out, r)
		}
		return out
	}
	at := make(map[string]int, len(rs))
	for _, r := range rs {
		if i, ok := at[r.Metric]; ok {
			out[i].Value = r.Value
			continue
		}
		at[r.Metric] = len(out)
		out = append(out, r)
	}
	return out
}

// parser reads the few JSON forms a telemetry payload may hold. Values other
// than numbers and strings (objects, arrays, literals) are skipped without
// recursion, so deep nesting costs nothing.
type parser struct {
	b []byte
	i int
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *parser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// key reads an object's key: as str does, but a short key without
// escapes, as metric names are, is looked up in names rather than copied.
func (p *parser) key() (string, bool) {
	if p.i < len(p.b) && p.b[p.i] == '"' {
		if end := bytes.IndexByte(p.b[p.i+1:], '"'); end >= 0 {
			raw := p.b[p.i+1 : p.i+1+end]
			if len(raw) <= maxNameLen && bytes.IndexByte(raw, '\\') < 0 && ascii(raw) {
				p.i += end + 2
				return names.get(raw), true
			}
		}
	}
	return p.str()
}

// ascii says whether b is printable ASCII, which needs no UTF-8 check.
func ascii(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// names hands out one string for each key seen (metric names repeat with
// every message), so that decoding a message allocates nothing for them.
// It holds at most maxNames of at most maxNameLen bytes (a metric name's
// most, devices.ValidName), 1 MiB at worst; past that, keys are copied
// each time.
var names = nameTable{m: map[string]string{}}

const (
	maxNames   = 16384
	maxNameLen = 64
)

type nameTable struct {
	mu sync.RWMutex
	m  map[string]string
}

func (t *nameTable) get(b []byte) string {
	t.mu.RLock()
	s, ok := t.m[string(b)] // no allocation for the lookup
	t.mu.RUnlock()
	if ok {
		return s
	}
	s = string(b)
	t.mu.Lock()
	if len(t.m) < maxNames {
		t.m[s] = s
	}
	t.mu.Unlock()
	return s
}

// str reads a JSON string. Strings without escapes are not copied twice.
func (p *parser) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start := p.i
	escaped := false
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			raw := p.b[start:p.i]
			p.i++
			if !escaped {
				if !utf8.Valid(raw) {
					return "", false
				}
				return string(raw), true
			}
			var s string
			if !utf8.Valid(raw) || json.Unmarshal(p.b[start-1:p.i], &s) != nil {
				return "", false
			}
			return s, true
		case c == '\\':
			escaped = true
			p.i += 2
		case c < 0x20:
			return "", false
		default:
			p.i++
		}
	}
	return "", false
}

// number reads a JSON number literal per RFC 8259. The slice is p's:
// strconv parses string(lit) without copying it.
func (p *parser) number() ([]byte, bool) {
	start := p.i
	p.eat('-')
	switch {
	case p.eat('0'):
	case p.i < len(p.b) && p.b[p.i] >= '1' && p.b[p.i] <= '9':
		p.digits()
	default:
		return nil, false
	}
	if p.eat('.') {
		if p.digits() == 0 {
			return nil, false
		}
	}
	if p.eat('e') || p.eat('E') {
		if !p.eat('+') {
			p.eat('-')
		}
		if p.digits() == 0 {
			return nil, false
		}
	}
	return p.b[start:p.i], true
}

// exact are the powers of ten parseNumber divides by, all of which a
// float64 holds exactly (up to 1e22 would be).
var exact = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// parseNumber parses a JSON number literal, as strconv.ParseFloat does.
// A sensor's literal (no exponent, at most 19 digits that make an integer
// below 2^53: 21.53, 1764000000123) takes a quicker way that gives the same
// float: that integer and its power of ten are both exact floats, and one
// division of exact floats is rounded correctly, as ParseFloat rounds.
// Anything else goes to ParseFloat.
func parseNumber(lit []byte) (float64, error) {
	i, neg := 0, false
	if len(lit) > 0 && lit[0] == '-' {
		i, neg = 1, true
	}
	var mant uint64
	n, frac, dot := 0, 0, false
	for ; i < len(lit); i++ {
		switch c := lit[i]; {
		case c >= '0' && c <= '9' && n < 19: // 19 digits fit a uint64
			mant = mant*10 + uint64(c-'0')
			n++
			if dot {
				frac++
			}
		case c == '.' && !dot:
			dot = true
		default:
			return strconv.ParseFloat(string(lit), 64)
		}
	}
	if n == 0 || mant >= 1<<53 {
		return strconv.ParseFloat(string(lit), 64)
	}
	v := float64(mant) / exact[frac]
	if neg {
		v = -v
	}
	return v, nil
}

func (p *parser) digits() int {
	n := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

// skipValue skips an object, array or literal, checking that its brackets
// balance and its strings are well formed.
func (p *parser) skipValue() bool {
	switch {
	case p.eat('{'), p.eat('['):
		start := p.i - 1
		depth := 1
		for p.i < len(p.b) && depth > 0 {
			switch c := p.b[p.i]; c {
			case '"':
				if _, ok := p.str(); !ok {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			p.i++
		}
		return depth == 0 && json.Valid(p.b[start:p.i])
	}
	for _, lit := range []string{"true", "false", "null"} {
		if strings.HasPrefix(string(p.b[p.i:min(p.i+5, len(p.b))]), lit) {
			p.i += len(lit)
			return true
		}
	}
	return false
}
