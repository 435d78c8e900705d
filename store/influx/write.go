package influx

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"iotdash/devices"
)

// writeURL is the URL of the v2 write endpoint (which 1.8 serves too) for
// org and bucket, in milliseconds.
func writeURL(base, org, bucket string) string {
	return strings.TrimSuffix(base, "/") + "/api/v2/write?" +
		url.Values{"org": {org}, "bucket": {bucket}, "precision": {"ms"}}.Encode()
}

// Append writes rs, at most BatchSize points per request. The readings of
// one device at one time that follow each other become one point; of two
// readings of the same device, metric and time the later one wins. A batch
// holding an invalid reading is rejected whole with EInvalid. Errors:
// EInvalid when a reading is invalid or InfluxDB says the data is bad;
// EUnavailable when InfluxDB cannot be reached, is failing (5xx, 429) or
// refuses the request (wrong token, no such bucket). After an error some
// requests may have been written: writing rs again is safe.
//
// The readings are encoded as line protocol once, straight into the
// request's body, a buffer reused from one Append to the next: nothing is
// allocated for each reading.
func (s *Store) Append(ctx context.Context, rs []devices.Reading) error {
	for _, r := range rs {
		if err := r.Validate(); err != nil {
			return err
		}
		if !devices.ValidTime(r.Time) {
			return devices.Errorf(devices.EInvalid, "reading time %d ms is outside the years 2000 to 2100", r.Time)
		}
	}
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer s.bufs.Put(bp)
	for len(rs) > 0 {
		var n int
		*bp, n = appendLines((*bp)[:0], rs, s.batch)
		if err := s.post(ctx, *bp); err != nil {
			return err
		}
		rs = rs[n:]
	}
	if cap(*bp) > 4<<20 {
		*bp = nil // one huge batch need not hold its memory for ever
	}
	return nil
}

// appendLines appends to b the line protocol of the readings of rs, as
// many as make at most points lines, and returns b and how many readings it
// took. Readings of one device and time that follow each other share a
// line, one field each:
//
//	telemetry,device=th-1 temperature=21.5,humidity=40 1767225600000
//
// Device ids and metric names are [A-Za-z0-9._-] (devices.ValidName), so
// nothing needs escaping.
func appendLines(b []byte, rs []devices.Reading, points int) ([]byte, int) {
	lines := 0
	i := 0
	for ; i < len(rs); i++ {
		r := &rs[i]
		if i > 0 && r.Device == rs[i-1].Device && r.Time == rs[i-1].Time {
			// Another field of the point: step back over " <time>\n".
			b = b[:len(b)-1]
			b = b[:bytes.LastIndexByte(b, ' ')]
			b = append(b, ',')
		} else {
			if lines == points {
				break
			}
			lines++
			b = append(b, Measurement+","+DeviceTag+"="...)
			b = append(b, r.Device...)
			b = append(b, ' ')
		}
		b = append(b, r.Metric...)
		b = append(b, '=')
		b = strconv.AppendFloat(b, r.Value, 'g', -1, 64)
		b = append(b, ' ')
		b = strconv.AppendInt(b, r.Time, 10)
		b = append(b, '\n')
	}
	return b, i
}

// post sends one write request of line protocol.
func (s *Store) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.write, bytes.NewReader(body))
	if err != nil {
		return devices.Wrap(err, devices.EInternal, "influx: write")
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := s.do(s.http, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		io.Copy(io.Discard, resp.Body) // lets the connection be reused
		return nil
	}
	return writeError(resp)
}

// badData are the phrases with which InfluxDB (1.8 and 2.x) says that
// written data is wrong; another 4xx is a matter of configuration (token,
// org, bucket) and is worth retrying once that is fixed.
var badData = []string{"unable to parse", "partial write", "field type conflict", "beyond retention", "invalid"}

// writeError gives a failed write its kind, from its status and message.
func writeError(resp *http.Response) error {
	msg := answerMessage(resp)
	code := resp.StatusCode
	cause := fmt.Errorf("HTTP %d: %s", code, msg)
	switch {
	case code == http.StatusTooManyRequests || code >= 500:
		return devices.Wrap(cause, devices.EUnavailable, "InfluxDB is failing (HTTP %d)", code)
	case code == http.StatusBadRequest || code == http.StatusUnprocessableEntity || code == http.StatusRequestEntityTooLarge:
		lower := strings.ToLower(msg)
		for _, p := range badData {
			if strings.Contains(lower, p) {
				return devices.Wrap(cause, devices.EInvalid, "InfluxDB rejected the data (HTTP %d)", code)
			}
		}
	}
	return devices.Wrap(cause, devices.EUnavailable, "InfluxDB refused the write (HTTP %d): check its token, org and bucket", code)
}
