// Package boards holds the Board, a titled grid of panels that operators
// compose, and what is done with one: its validation, its storage with
// every earlier version kept, its export and import as JSON, and the
// resolution of its series against the fleet, so that a panel of "every
// thermostat" follows the fleet as it grows.
//
// It is not the pages that show or edit a board (views), and it reads no
// history: it says which device × metric pairs a panel shows, and the
// pages read them. It keeps boards behind Store, the small document
// interface the state several instances will share sits behind.
package boards

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"iotdash/devices"
	"iotdash/internal/jsondoc"
)

// Panel types.
const (
	TimeSeries = "timeseries" // a chart of each series over the board's range
	Stat       = "stat"       // each series' latest value, coloured by thresholds, with a sparkline
	Gauge      = "gauge"      // each series' latest value on a scale from Min to Max
	Table      = "table"      // a row per device: status, last seen, the series' metrics
)

// Types are the panel types, in the order an editor offers them, with the
// words people read.
var Types = []struct{ Value, Label string }{
	{TimeSeries, "Time series"},
	{Stat, "Stat"},
	{Gauge, "Gauge"},
	{Table, "Device table"},
}

// Threshold levels: a value at or above a threshold's Value takes its
// Level, up to the next threshold.
var Levels = []string{"ok", "warn", "alert"}

// Columns is the width of the board's grid: a panel is 1 to Columns wide.
const Columns = 12

// MaxHeight is the most rows a panel may be tall.
const MaxHeight = 6

// Limits bound a board, so that one document cannot make a page or the
// state file heavy. The zero value of a field means its default.
type Limits struct {
	Panels    int // panels on a board (DefaultLimits: 50)
	Series    int // series in a panel (20)
	Resolved  int // device × metric pairs a panel shows once its selectors are resolved (50)
	TitleLen  int // characters in a board's or a panel's title (100)
	Bytes     int // bytes of a board's JSON (256 KiB)
	Versions  int // earlier versions kept per board (50)
	Boards    int // boards in all (500)
	Threshold int // thresholds per panel (5)
	Variables int // variables of a board (5)
}

// DefaultLimits are the limits a zero Limits stands for.
var DefaultLimits = Limits{Panels: 50, Series: 20, Resolved: 50, TitleLen: 100, Bytes: 256 << 10, Versions: 50, Boards: 500, Threshold: 5, Variables: 5}

func (l Limits) orDefault() Limits {
	d := DefaultLimits
	pick := func(v, def int) int {
		if v > 0 {
			return v
		}
		return def
	}
	return Limits{Panels: pick(l.Panels, d.Panels), Series: pick(l.Series, d.Series), Resolved: pick(l.Resolved, d.Resolved),
		TitleLen: pick(l.TitleLen, d.TitleLen), Bytes: pick(l.Bytes, d.Bytes), Versions: pick(l.Versions, d.Versions),
		Boards: pick(l.Boards, d.Boards), Threshold: pick(l.Threshold, d.Threshold), Variables: pick(l.Variables, d.Variables)}
}

// maxUnitLen bounds a panel's unit ("°C", "m³/h").
const maxUnitLen = 16

// MaxDepth is how deeply a board's JSON may nest: a board's own shape
// (board, panels, a panel, its series, a series) is 5 deep; anything
// deeper is refused before it is decoded.
const MaxDepth = 8

// What a refused board is a case of, behind the message: errors.Is finds
// them in what Validate, Decode and the methods of Boards return.
var (
	// ErrLimit: the board, or the boards in all, would pass one of Limits.
	ErrLimit = errors.New("past a limit on boards")
	// ErrConflict: the board was saved by someone else after the version
	// a change was made to.
	ErrConflict = errors.New("saved since")
)

// overLimit is an EInvalid error that says which limit a board passes.
func overLimit(format string, args ...any) error {
	return devices.Wrap(ErrLimit, devices.EInvalid, format, args...)
}

// within says where in a board err was found ("panel 2: …"), keeping what
// it is a case of.
func within(err error, where string) error {
	e := &devices.Error{Kind: devices.EInvalid, Message: where + ": " + devices.ErrorMessage(err)}
	if errors.Is(err, ErrLimit) {
		e.Cause = ErrLimit
	}
	return e
}

// Board is a titled grid of panels: the document that is stored,
// exported and imported.
type Board struct {
	// ID names the board in its URL; given by Create.
	ID    string `json:"id,omitempty"`
	Title string `json:"title"`
	// Panels are in reading order: left to right, then down. The grid
	// flows them into rows of Columns, each as wide as its W.
	Panels []Panel `json:"panels"`
	// Variables let one board serve many devices: each is a device picked
	// on the page from those of a kind.
	Variables []Variable `json:"variables,omitempty"`
	// Version counts the board's saves, from 1; Saved is when the last was
	// and SavedBy who made it.
	Version int       `json:"version,omitempty"`
	Saved   time.Time `json:"saved,omitzero"`
	SavedBy string    `json:"saved_by,omitempty"`
}

// Panel is one tile of a board.
type Panel struct {
	Title string `json:"title"`
	Type  string `json:"type"`
	// W is the width in columns (1 to Columns) and H the height in rows
	// (1 to MaxHeight); 0 means the type's default.
	W      int      `json:"w,omitempty"`
	H      int      `json:"h,omitempty"`
	Series []Series `json:"series"`
	// Thresholds colour a stat or gauge by the level of its value, in
	// ascending order of Value.
	Thresholds []Threshold `json:"thresholds,omitempty"`
	// Unit replaces the devices' own units, when set.
	Unit string `json:"unit,omitempty"`
	// Decimals replaces the metric's own precision, when set (0 to 9).
	Decimals *int `json:"decimals,omitempty"`
	// Min and Max are a gauge's scale (else the metric's limits, else 0–100).
	Min *float64 `json:"min,omitempty"`
	Max *float64 `json:"max,omitempty"`
}

// Variable is a device picked on the board's page from the devices of
// Kind; a series names it as its Device "$Name", and the page's URL holds
// the choice (?var-Name=id), so that a link shows what its sender saw.
type Variable struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
}

// Param is the URL parameter that holds v's choice.
func (v Variable) Param() string { return "var-" + v.Name }

// Series is what a panel shows: the metric of the devices its selector
// picks (one device, or every device of a kind, or whose id or location
// matches a pattern); a Device of "$name" is the device variable name
// picks.
type Series struct {
	devices.Selector
	Metric string `json:"metric"`
}

// Threshold is where a level begins.
type Threshold struct {
	Value float64 `json:"value"`
	Level string  `json:"level"`
}

// Size is p's width in columns and height in rows, its type's default
// where not set: half the width and two rows for a chart or a table, a
// quarter and one row for a stat or a gauge.
func (p Panel) Size() (w, h int) {
	w, h = 3, 1
	if p.Type == TimeSeries || p.Type == Table {
		w, h = 6, 2
	}
	if p.W > 0 {
		w = p.W
	}
	if p.H > 0 {
		h = p.H
	}
	return w, h
}

// Level is the level of v by p's thresholds: that of the highest
// threshold v reaches, "" below them all or without any.
func (p Panel) Level(v float64) string {
	level := ""
	for _, t := range p.Thresholds {
		if v >= t.Value {
			level = t.Level
		}
	}
	return level
}

// Validate says what is wrong with b within l, naming the panel and the
// field, as a devices.EInvalid error; nil if nothing is.
func (b Board) Validate(l Limits) error {
	l = l.orDefault()
	if err := checkTitle("the board's title", b.Title, l, true); err != nil {
		return err
	}
	if len(b.Panels) > l.Panels {
		return overLimit("a board has at most %d panels; this one has %d", l.Panels, len(b.Panels))
	}
	if len(b.Variables) > l.Variables {
		return overLimit("a board has at most %d variables", l.Variables)
	}
	vars := map[string]bool{}
	for i, v := range b.Variables {
		switch {
		case !devices.ValidName(v.Name):
			return devices.Errorf(devices.EInvalid, "variable %d: name %q is not 1 to 64 characters of [A-Za-z0-9._-]", i+1, v.Name)
		case vars[v.Name]:
			return devices.Errorf(devices.EInvalid, "variable %d: %q is named twice", i+1, v.Name)
		case v.Kind == "" || len(v.Kind) > devices.MaxNameLen || !utf8.ValidString(v.Kind):
			return devices.Errorf(devices.EInvalid, "variable %d: kind must be 1 to %d bytes", i+1, devices.MaxNameLen)
		}
		vars[v.Name] = true
	}
	for i, p := range b.Panels {
		if err := p.validate(l, vars); err != nil {
			return within(err, fmt.Sprintf("panel %d", i+1))
		}
	}
	return nil
}

func checkTitle(what, s string, l Limits, required bool) error {
	switch {
	case !utf8.ValidString(s):
		return devices.Errorf(devices.EInvalid, "%s is not valid UTF-8", what)
	case required && strings.TrimSpace(s) == "":
		return devices.Errorf(devices.EInvalid, "%s is empty", what)
	case utf8.RuneCountInString(s) > l.TitleLen:
		return overLimit("%s is longer than %d characters", what, l.TitleLen)
	case strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return devices.Errorf(devices.EInvalid, "%s has a control character", what)
	}
	return nil
}

func (p Panel) validate(l Limits, vars map[string]bool) error {
	if err := checkTitle("the title", p.Title, l, false); err != nil {
		return err
	}
	if !slices.ContainsFunc(Types, func(t struct{ Value, Label string }) bool { return t.Value == p.Type }) {
		return devices.Errorf(devices.EInvalid, "type %q is none of timeseries, stat, gauge, table", p.Type)
	}
	if p.W < 0 || p.W > Columns {
		return devices.Errorf(devices.EInvalid, "w (width) must be 1 to %d columns", Columns)
	}
	if p.H < 0 || p.H > MaxHeight {
		return devices.Errorf(devices.EInvalid, "h (height) must be 1 to %d rows", MaxHeight)
	}
	if len(p.Series) == 0 {
		return devices.Errorf(devices.EInvalid, "it has no series; give it at least one device or selector × metric")
	}
	if len(p.Series) > l.Series {
		return overLimit("a panel has at most %d series; this one has %d", l.Series, len(p.Series))
	}
	for i, s := range p.Series {
		if err := s.validate(vars); err != nil {
			return within(err, fmt.Sprintf("series %d", i+1))
		}
	}
	if len(p.Thresholds) > l.Threshold {
		return overLimit("a panel has at most %d thresholds", l.Threshold)
	}
	for i, t := range p.Thresholds {
		switch {
		case math.IsNaN(t.Value) || math.IsInf(t.Value, 0):
			return devices.Errorf(devices.EInvalid, "threshold %d is not a finite number", i+1)
		case !slices.Contains(Levels, t.Level):
			return devices.Errorf(devices.EInvalid, "threshold %d: level %q is none of %s", i+1, t.Level, strings.Join(Levels, ", "))
		case i > 0 && t.Value <= p.Thresholds[i-1].Value:
			return devices.Errorf(devices.EInvalid, "thresholds must be in ascending order of value")
		}
	}
	if !utf8.ValidString(p.Unit) || utf8.RuneCountInString(p.Unit) > maxUnitLen || strings.ContainsFunc(p.Unit, func(r rune) bool { return r < ' ' }) {
		return devices.Errorf(devices.EInvalid, "unit must be at most %d characters of text", maxUnitLen)
	}
	if p.Decimals != nil && (*p.Decimals < 0 || *p.Decimals > devices.MaxDecimals) {
		return devices.Errorf(devices.EInvalid, "decimals must be 0 to %d", devices.MaxDecimals)
	}
	for _, v := range []*float64{p.Min, p.Max} {
		if v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
			return devices.Errorf(devices.EInvalid, "min and max must be finite numbers")
		}
	}
	if p.Min != nil && p.Max != nil && !(*p.Min < *p.Max) {
		return devices.Errorf(devices.EInvalid, "min must be less than max")
	}
	return nil
}

func (s Series) validate(vars map[string]bool) error {
	sel := s.Selector
	if name, isVar := strings.CutPrefix(s.Device, "$"); isVar {
		if !vars[name] {
			return devices.Errorf(devices.EInvalid, "device %q names no variable of the board", s.Device)
		}
		sel.Device = "variable" // any device the variable picks
	}
	if err := sel.Validate(); err != nil {
		return err
	}
	if !devices.ValidName(s.Metric) {
		return devices.Errorf(devices.EInvalid, "metric %q is not 1 to 64 characters of [A-Za-z0-9._-]", s.Metric)
	}
	return nil
}

// Picks reports whether s selects d (whether or not d has the metric),
// with the devices chosen for the board's variables by name.
func (s Series) Picks(d devices.Device, chosen map[string]string) bool {
	if name, isVar := strings.CutPrefix(s.Device, "$"); isVar {
		return d.ID == chosen[name]
	}
	return s.Selector.Picks(d)
}

// Target is one device × metric a panel shows.
type Target struct {
	Device devices.Device
	Metric string
}

// Resolve returns what p shows of the fleet ds (ordered by id), with the
// devices chosen for the board's variables (see Board.Choose): for each
// series in turn, the devices it picks that have its metric (a named
// device even before it has), each pair once, at most l.Resolved of them;
// more says how many were left out.
func (p Panel) Resolve(ds []devices.Device, l Limits, chosen map[string]string) (ts []Target, more int) {
	l = l.orDefault()
	seen := map[[2]string]bool{}
	for _, s := range p.Series {
		for _, d := range ds {
			if !s.Picks(d, chosen) {
				continue
			}
			if _, has := d.Latest[s.Metric]; !has && s.Device == "" {
				continue
			}
			k := [2]string{d.ID, s.Metric}
			if seen[k] {
				continue
			}
			seen[k] = true
			if len(ts) == l.Resolved {
				more++
				continue
			}
			ts = append(ts, Target{Device: d, Metric: s.Metric})
		}
	}
	return ts, more
}

// Choose picks each variable's device: the one the URL names (param
// gives a URL parameter's value) if it is of the variable's kind, else the
// first of that kind in ds; "" when the fleet has none.
func (b Board) Choose(ds []devices.Device, param func(string) string) map[string]string {
	chosen := make(map[string]string, len(b.Variables))
	for _, v := range b.Variables {
		want := param(v.Param())
		for _, d := range ds {
			if d.Meta.Kind != v.Kind {
				continue
			}
			if chosen[v.Name] == "" || d.ID == want {
				chosen[v.Name] = d.ID
			}
			if d.ID == want {
				break
			}
		}
	}
	return chosen
}

// Decode reads a board's JSON as exported or posted, strictly: at most
// l.Bytes, no unknown field, nothing after it; then validates it. The
// id, version and save time it carries are kept for the caller to use or
// drop.
func Decode(r io.Reader, l Limits) (Board, error) {
	l = l.orDefault()
	b, err := io.ReadAll(io.LimitReader(r, int64(l.Bytes)+1))
	if err != nil {
		return Board{}, devices.Wrap(err, devices.EInvalid, "the board could not be read")
	}
	if len(b) > l.Bytes {
		return Board{}, overLimit("a board's JSON is at most %d bytes", l.Bytes)
	}
	if depth(b) > MaxDepth {
		return Board{}, overLimit("a board's JSON nests at most %d deep", MaxDepth)
	}
	var bd Board
	if err := jsondoc.Decode(bytes.NewReader(b), l.Bytes, &bd, "a board"); err != nil {
		return Board{}, err
	}
	if bd.Panels == nil {
		bd.Panels = []Panel{}
	}
	return bd, bd.Validate(l)
}

// depth is how deeply doc's arrays and objects nest, counted before it
// is decoded (JSON that is not well formed is the decoder's to refuse).
func depth(doc []byte) int {
	deepest, d, inString, escaped := 0, 0, false, false
	for _, c := range doc {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			d++
			deepest = max(deepest, d)
		case c == ']' || c == '}':
			d--
		}
	}
	return deepest
}

// Export is b as a JSON document to keep or import elsewhere: indented,
// without the id, version and save time, which belong to this instance.
func Export(b Board) []byte {
	b.ID, b.Version, b.Saved, b.SavedBy = "", 0, time.Time{}, ""
	out, _ := json.MarshalIndent(b, "", "  ")
	return append(out, '\n')
}

// KindPrefix starts the id of the board generated for a kind of device
// (KindPrefix + kind): no stored board's id has a dot.
const KindPrefix = "kind."

// ForKind is the board generated for the devices of kind in ds, so that
// there are boards before anyone builds one: a device picked from the
// kind, its latest values and history of each metric the kind has (at
// most l.Series), and a table of every device of the kind. It returns
// false when no device of ds is of kind.
func ForKind(kind string, ds []devices.Device, l Limits) (Board, bool) {
	l = l.orDefault()
	metrics := map[string]bool{}
	for _, d := range ds {
		if d.Meta.Kind == kind {
			for m := range d.Latest {
				metrics[m] = true
			}
		}
	}
	if kind == "" || len(metrics) == 0 {
		return Board{}, false
	}
	names := slices.Sorted(maps.Keys(metrics))
	names = names[:min(len(names), l.Series)]
	b := Board{ID: KindPrefix + kind, Title: "Every " + kind, Variables: []Variable{{Name: "device", Kind: kind}}}
	now := Panel{Title: "Now", Type: Stat, W: Columns}
	history := Panel{Title: "History", Type: TimeSeries, W: Columns}
	table := Panel{Title: "Every " + kind, Type: Table, W: Columns}
	for _, m := range names {
		now.Series = append(now.Series, Series{Selector: devices.Selector{Device: "$device"}, Metric: m})
		history.Series = append(history.Series, Series{Selector: devices.Selector{Device: "$device"}, Metric: m})
		table.Series = append(table.Series, Series{Selector: devices.Selector{Kind: kind}, Metric: m})
	}
	b.Panels = []Panel{now, history, table}
	return b, true
}

// Kinds are the kinds of device in ds that have a metric, in order: those
// ForKind makes a board of.
func Kinds(ds []devices.Device) []string {
	seen := map[string]bool{}
	for _, d := range ds {
		if d.Meta.Kind != "" && len(d.Latest) > 0 {
			seen[d.Meta.Kind] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}
