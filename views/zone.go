package views

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The plant's time zone: every time a page shows, a custom range's inputs
// and the browser's CSV are in it, in one 24-hour form with the zone's UTC
// offset ("2025-11-24 16:00:00 +01:00", or "… UTC" when the zone is UTC).
// Handlers render in the zone of the now they are given (time.Now().In of
// the zone); the page hands its IANA name to the scripts (data-tz), which
// format the same way.

// LoadZone loads the IANA time zone name, or the machine's own zone for ""
// (named from $TZ or /etc/localtime, UTC if neither says).
func LoadZone(name string) (*time.Location, error) {
	if name == "" {
		name = machineZone()
	}
	return time.LoadLocation(name)
}

func machineZone() string {
	if tz := strings.TrimPrefix(os.Getenv("TZ"), ":"); tz != "" {
		return tz
	}
	if target, err := os.Readlink("/etc/localtime"); err == nil {
		if _, name, ok := strings.Cut(target, "zoneinfo/"); ok {
			return name
		}
	}
	if b, err := os.ReadFile("/etc/timezone"); err == nil {
		if name := strings.TrimSpace(string(b)); name != "" {
			return name
		}
	}
	return "UTC"
}

// zoneName is loc's IANA name as the scripts take it.
func zoneName(loc *time.Location) string {
	if n := loc.String(); n != "" && n != "Local" {
		return n
	}
	return filepath.ToSlash(machineZone())
}

// isUTC reports whether loc keeps UTC all year.
func isUTC(loc *time.Location) bool {
	switch loc.String() {
	case "UTC", "Etc/UTC", "Etc/GMT", "GMT", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu":
		return true
	}
	return false
}

// formatAt is ms in loc as every page shows a time: 2006-01-02 15:04:05
// and the UTC offset, or UTC.
func formatAt(ms int64, loc *time.Location) string {
	t := time.UnixMilli(ms).In(loc)
	if isUTC(loc) {
		return t.Format("2006-01-02 15:04:05") + " UTC"
	}
	return t.Format("2006-01-02 15:04:05 -07:00")
}
