package influx

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"iotdash/devices"
	"iotdash/store"
)

// Readings calls fn with the readings of q's series with From <= t < To, in
// time order, at most store.ReadingsChunk at a time; q's Step and Agg are
// ignored. fn must not keep the slice: it is reused. An error from fn stops
// the query and is returned. Errors: EInvalid when q is invalid;
// EUnavailable when InfluxDB cannot answer; EInternal otherwise.
//
// It reads InfluxDB's CSV answer as it arrives, so memory stays flat however
// many readings there are, and only the context bounds how long it runs.
func (s *Store) Readings(ctx context.Context, q store.Query, fn func([]store.Point) error) error {
	q.Step, q.Agg = 0, ""
	if err := q.Validate(); err != nil {
		return err
	}
	from, to := max(q.From, minTime), min(q.To, maxTime)
	if from >= to {
		return nil
	}
	return s.fluxCSV(ctx, fluxQuery(s.bucket, q.Device, q.Metric, from, to, 0, "", 0), from, to, fn)
}

// fluxCSV runs a Flux query whose tables have _time and _value columns,
// reading the plain CSV answer line by line, and passes fn the points with
// from <= time < to in chunks.
func (s *Store) fluxCSV(ctx context.Context, flux string, from, to int64, fn func([]store.Point) error) error {
	body, err := json.Marshal(map[string]any{
		"query":   flux,
		"type":    "flux",
		"dialect": map[string]any{"header": true, "annotations": []string{}, "delimiter": ","},
	})
	if err != nil {
		return devices.Wrap(err, devices.EInternal, "influx: query")
	}
	u := s.url + "/api/v2/query"
	if s.org != "" {
		u += "?" + url.Values{"org": {s.org}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return devices.Wrap(err, devices.EInternal, "influx: query")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/csv")
	// Go's transport would ask for gzip, and InfluxDB would then spend
	// more time compressing the answer than sending it: on loopback and
	// LANs a raw read runs at half the speed.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := s.do(s.stream, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return statusError(resp)
	}
	r := bufio.NewReaderSize(resp.Body, 64<<10)
	buf := make([]store.Point, 0, store.ReadingsChunk)
	tCol, vCol := -1, -1
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return devices.Errorf(devices.EInternal, "influx: a line of more than 64 KiB in the answer")
		}
		if err != nil && !errors.Is(err, io.EOF) {
			if ctx.Err() != nil {
				return devices.Wrap(ctx.Err(), devices.EUnavailable, "InfluxDB did not answer in time")
			}
			return devices.Wrap(err, devices.EUnavailable, "InfluxDB's answer broke off")
		}
		eof := err != nil
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			// Tables are separated by an empty line; each starts with a
			// header.
			tCol = -1
		case tCol < 0:
			tCol, vCol = -1, -1
			for i, name := range bytes.Split(line, []byte(",")) {
				switch string(name) {
				case "_time":
					tCol = i
				case "_value":
					vCol = i
				case "error":
					msg, _ := r.ReadString('\n')
					return devices.Errorf(devices.EInternal, "InfluxDB query failed: %s", bytes.TrimSpace([]byte(msg)))
				}
			}
			if tCol < 0 || vCol < 0 {
				return devices.Errorf(devices.EInternal, "influx: an answer without _time and _value: %q", line)
			}
		default:
			p, ok := parseRow(line, tCol, vCol)
			if !ok {
				return devices.Errorf(devices.EInternal, "influx: cannot read the answer's line %q", line)
			}
			if p.T < from || p.T >= to {
				break
			}
			buf = append(buf, p)
			if len(buf) == cap(buf) {
				if err := fn(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		if eof {
			break
		}
	}
	if len(buf) > 0 {
		return fn(buf)
	}
	return nil
}

// statusError reads InfluxDB's error answer and gives it its kind.
func statusError(resp *http.Response) error {
	cause := fmt.Errorf("HTTP %d: %s", resp.StatusCode, answerMessage(resp))
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return devices.Wrap(cause, devices.EUnavailable, "InfluxDB cannot answer now")
	}
	return devices.Wrap(cause, devices.EInternal, "InfluxDB query failed")
}

// parseRow reads the time and value columns of a CSV line. The answer's
// fields are numbers, times and names, none quoted.
func parseRow(line []byte, tCol, vCol int) (store.Point, bool) {
	var p store.Point
	var tOK, vOK bool
	for i := 0; ; i++ {
		j := bytes.IndexByte(line, ',')
		field := line
		if j >= 0 {
			field = line[:j]
		}
		switch i {
		case tCol:
			p.T, tOK = parseTime(field)
		case vCol:
			v, err := strconv.ParseFloat(string(field), 64)
			p.V, vOK = v, err == nil
		}
		if j < 0 || (i >= tCol && i >= vCol) {
			break
		}
		line = line[j+1:]
	}
	return p, tOK && vOK
}

// parseTime reads an RFC 3339 UTC time as Flux writes it
// (2026-01-01T00:00:01.5Z) into Unix milliseconds, without the cost of
// time.Parse for the common form.
func parseTime(b []byte) (int64, bool) {
	n := len(b)
	if n < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[n-1] != 'Z' {
		return parseTimeSlow(b)
	}
	num := func(s []byte) (int64, bool) {
		var v int64
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int64(c-'0')
		}
		return v, true
	}
	y, ok1 := num(b[0:4])
	mo, ok2 := num(b[5:7])
	d, ok3 := num(b[8:10])
	h, ok4 := num(b[11:13])
	mi, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || mo < 1 || mo > 12 || d < 1 || d > 31 {
		return parseTimeSlow(b)
	}
	var ms int64
	if frac := b[19 : n-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return parseTimeSlow(b)
		}
		digits := frac[1:]
		for i := range 3 {
			ms *= 10
			if i < len(digits) {
				c := digits[i]
				if c < '0' || c > '9' {
					return parseTimeSlow(b)
				}
				ms += int64(c - '0')
			}
		}
	}
	// Days from the civil date (Howard Hinnant's algorithm).
	if mo <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (mo + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	days := era*146097 + doe - 719468
	return ((days*24+h)*60+mi)*60000 + sec*1000 + ms, true
}

func parseTimeSlow(b []byte) (int64, bool) {
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return 0, false
	}
	// Floor to the millisecond, before the epoch too.
	ms := t.UnixMilli()
	if t.UnixNano()%1e6 < 0 {
		ms--
	}
	return ms, true
}

// answerMessage reads what InfluxDB says in an error answer: the message of
// 2.x's {"code":…,"message":…} or 1.8's {"error":…}, else the body.
func answerMessage(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e struct{ Code, Message, Error string }
	if json.Unmarshal(b, &e) == nil && (e.Message != "" || e.Error != "") {
		return strings.TrimSpace(e.Code + " " + e.Message + e.Error)
	}
	return string(bytes.TrimSpace(b))
}

// do sends req through c with the Store's token, if it has one. Errors:
// EUnavailable when InfluxDB cannot be reached.
func (s *Store) do(c *http.Client, req *http.Request) (*http.Response, error) {
	if s.token != "" {
		req.Header.Set("Authorization", "Token "+s.token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, devices.Wrap(err, devices.EUnavailable, "InfluxDB cannot be reached")
	}
	return resp, nil
}
