package api

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestEventsAPI: /api/v1/events picks by device, kind and time, writes
// JSON or CSV (times in the zone asked for, with their offset; an ongoing
// episode without an end), and names each mistake.
func TestEventsAPI(t *testing.T) {
	s := newAPIServer(t)
	var got []eventJSON
	a := s.get(t, "/api/v1/events?from=2026-01-01T00:00:00Z")
	if err := json.Unmarshal(a.body, &got); err != nil || a.code != 200 {
		t.Fatalf("%d %s: %v", a.code, a.body, err)
	}
	if len(got) != 2 || got[0].Device != "boiler-1" || got[0].Duration != 60 || *got[0].Peak != 95.5 ||
		got[1].Status != "offline" || got[1].To != nil || got[1].Peak != nil {
		t.Errorf("events = %s, want boiler-1's range episode of 60 s, then boiler-2 offline still", a.body)
	}

	a = s.get(t, "/api/v1/events?from=2026-01-01T00:00:00Z&to=2026-01-01T00:10:00Z&kind=range&format=csv&tz=Europe/Berlin")
	want := "from,to,duration_s,device,kind,what,metric,peak,low,high\n" +
		"2026-01-01T01:01:00.000+01:00,2026-01-01T01:02:00.000+01:00,60,boiler-1,range,out of range,temperature,95.5,5,90\n"
	if a.ct != "text/csv" || string(a.body) != want {
		t.Errorf("CSV: %s\n%q\nwant %q", a.ct, a.body, want)
	}
	if cd := a.hdr.Get("Content-Disposition"); !strings.Contains(cd, "iotdash_events_20260101T000000Z_20260101T001000Z.csv") {
		t.Errorf("Content-Disposition = %s", cd)
	}
	a = s.get(t, "/api/v1/events?from=2026-01-01T00:00:00Z&device=boiler-2")
	if !strings.Contains(string(a.body), `"boiler-2"`) || strings.Contains(string(a.body), `"boiler-1"`) {
		t.Errorf("device=boiler-2: %s", a.body)
	}
	// Before either began: none.
	if a = s.get(t, "/api/v1/events?from=2025-01-01T00:00:00Z&to=2025-01-02T00:00:00Z"); strings.TrimSpace(string(a.body)) != "[]" {
		t.Errorf("a day in 2025: %s, want []", a.body)
	}

	for query, want := range map[string]string{
		"kind=alarm":               `kind \"alarm\" is not presence or range`,
		"limit=0":                  "limit",
		"limit=10001":              "limit",
		"format=xml":               "format",
		"tz=Mars/Olympus":          "tz",
		"from=yesterday":           "from",
		"from=now&to=-1h":          "from must be before to",
		"device=a%20b":             "device id",
		"metric=t":                 `unknown parameter \"metric\"`,
		"kind=range&kind=presence": "given 2 times",
	} {
		a := s.get(t, "/api/v1/events?"+query)
		if a.code != 400 || !strings.Contains(string(a.body), want) {
			t.Errorf("%s: %d %s, want 400 with %q", query, a.code, a.body, want)
		}
	}
}
