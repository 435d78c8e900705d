package push

import (
	"encoding/json"
	"testing"

	"iotdash/devices"
	"iotdash/internal/testenv"
)

// TestFramesAreJSON writes every kind of frame with hostile names: each
// must be JSON that encoding/json reads back to the same strings.
func TestFramesAreJSON(t *testing.T) {
	for _, s := range testenv.HostileStrings {
		var readings struct{ Readings []devices.Reading }
		b := appendReadings(nil, []devices.Reading{{Device: s, Metric: s, Time: 1764000000123, Value: 21.5}})
		if err := json.Unmarshal(b, &readings); err != nil || len(readings.Readings) != 1 || readings.Readings[0].Device != s || readings.Readings[0].Metric != s {
			t.Errorf("readings frame of %q: %s reads back as %+v, %v", s, b, readings, err)
		}
		var status struct{ Status []struct{ D, S string } }
		b = appendStatus(nil, map[string]devices.Status{s: devices.Status(s)})
		if err := json.Unmarshal(b, &status); err != nil || len(status.Status) != 1 || status.Status[0].D != s || status.Status[0].S != s {
			t.Errorf("status frame of %q: %s reads back as %+v, %v", s, b, status, err)
		}
		var ack struct{ Subscribed struct{ Devices []string } }
		b = appendAck(nil, []string{s})
		if err := json.Unmarshal(b, &ack); err != nil || len(ack.Subscribed.Devices) != 1 || ack.Subscribed.Devices[0] != s {
			t.Errorf("ack frame of %q: %s reads back as %+v, %v", s, b, ack, err)
		}
		var notice struct{ Notice string }
		b = appendNotice(nil, s)
		if err := json.Unmarshal(b, &notice); err != nil || notice.Notice != s {
			t.Errorf("notice frame of %q: %s reads back as %+v, %v", s, b, notice, err)
		}
	}
}

// BenchmarkReadingsFrame writes a frame of 500 readings by hand, as the
// hub does, and with encoding/json, which would write the same bytes.
func BenchmarkReadingsFrame(b *testing.B) {
	rs := make([]devices.Reading, 0, 500)
	for i := range 125 {
		for _, r := range benchMessage() {
			r.Time = 1764000000000 + int64(i)
			rs = append(rs, r)
		}
	}
	b.Run("appendReadings", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = appendReadings(buf[:0], rs)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			q, _ := json.Marshal(struct {
				Readings []devices.Reading `json:"readings"`
			}{rs})
			buf = append(buf[:0], q...)
		}
	})
}
