package devices

import (
	"path"
	"unicode/utf8"
)

// Selector picks devices: one by its id (Device), or every device of a
// Kind, or whose id (Pattern) or location (Location) matches a pattern of
// text, * and ? as in shell patterns (a pattern without either matches
// exactly). Exactly one field is set. A board's series and an alert rule
// (package alerts) pick devices with it.
type Selector struct {
	Device   string `json:"device,omitempty"`
	Kind     string `json:"kind,omitempty"`
	Pattern  string `json:"pattern,omitempty"`
	Location string `json:"location,omitempty"`
}

// Validate says what is wrong with s as an EInvalid error, or returns nil.
func (s Selector) Validate() error {
	set := 0
	for _, v := range []string{s.Device, s.Kind, s.Pattern, s.Location} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return Errorf(EInvalid, "give exactly one of device, kind, pattern (of ids) and location")
	}
	if s.Device != "" && !ValidName(s.Device) {
		return Errorf(EInvalid, "device %q is not 1 to %d characters of [A-Za-z0-9._-]", s.Device, MaxNameLen)
	}
	for _, p := range []struct{ name, v string }{{"kind", s.Kind}, {"pattern", s.Pattern}, {"location", s.Location}} {
		if len(p.v) > MaxNameLen || !utf8.ValidString(p.v) {
			return Errorf(EInvalid, "the %s is longer than %d bytes", p.name, MaxNameLen)
		}
	}
	for _, p := range []struct{ name, v string }{{"pattern", s.Pattern}, {"location", s.Location}} {
		if _, err := path.Match(p.v, ""); err != nil {
			return Errorf(EInvalid, "the %s %q is not a pattern of text, * and ?", p.name, p.v)
		}
	}
	return nil
}

// Picks reports whether s picks d.
func (s Selector) Picks(d Device) bool {
	switch {
	case s.Device != "":
		return d.ID == s.Device
	case s.Kind != "":
		return d.Meta.Kind == s.Kind
	case s.Pattern != "":
		ok, _ := path.Match(s.Pattern, d.ID)
		return ok
	case s.Location != "":
		ok, _ := path.Match(s.Location, d.Meta.Location)
		return ok
	}
	return false
}
