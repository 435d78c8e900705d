package influx

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"iotdash/devices"
	"iotdash/store"
)

// influxQL answers a downsampling query on InfluxDB 1.x with InfluxQL's
// GROUP BY time, whose buckets are aligned to the epoch like store.Query's
// and whose rows carry their bucket's start. q's range is storable and its
// first bucket starts at or after the epoch.
func (s *Store) influxQL(ctx context.Context, q store.Query) ([]store.Point, error) {
	stmt := influxQLQuery(s.bucket, q.Device, q.Metric, q.From, q.To, q.Step, fluxFn[q.Agg], q.Offset)
	db, _, _ := strings.Cut(s.bucket, "/")
	form := url.Values{"db": {db}, "q": {stmt}, "epoch": {"ms"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, devices.Wrap(err, devices.EInternal, "influx: query")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user, pass, ok := strings.Cut(s.token, ":"); ok {
		req.SetBasicAuth(user, pass)
	}
	resp, err := s.do(s.http, req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp)
	}
	var ans struct {
		Error   string
		Results []struct {
			Error   string
			Partial bool
			Series  []struct {
				Values [][]json.Number
			}
		}
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(&ans); err != nil {
		return nil, devices.Wrap(err, devices.EUnavailable, "InfluxDB's answer broke off")
	}
	if ans.Error != "" {
		return nil, devices.Errorf(devices.EInternal, "InfluxDB query failed: %s", ans.Error)
	}
	out := []store.Point{}
	for _, r := range ans.Results {
		if r.Error != "" {
			return nil, devices.Errorf(devices.EInternal, "InfluxDB query failed: %s", r.Error)
		}
		if r.Partial {
			return nil, devices.Errorf(devices.EUnavailable, "InfluxDB cut its answer short (its max-row-limit); use a larger step")
		}
		for _, ser := range r.Series {
			for _, row := range ser.Values {
				if len(row) != 2 {
					return nil, devices.Errorf(devices.EInternal, "influx: a row of %d columns in the answer", len(row))
				}
				t, err := row[0].Int64()
				if err != nil {
					return nil, devices.Errorf(devices.EInternal, "influx: time %q in the answer", row[0])
				}
				v, err := row[1].Float64()
				if err != nil {
					return nil, devices.Errorf(devices.EInternal, "influx: value %q in the answer", row[1])
				}
				out = append(out, store.Point{T: t, V: v})
			}
		}
	}
	return out, nil
}

// influxQLQuery returns the InfluxQL statement for fn of one metric of one
// device per step-wide bucket with from <= time < to (Unix ms). Names are
// quoted with influxQLQuote and times and steps are integers, so no
// argument can change the statement's meaning.
func influxQLQuery(bucket, device, metric string, from, to, step int64, fn string, offset int64) string {
	db, rp, _ := strings.Cut(bucket, "/")
	group := fmt.Sprintf("%dms", step)
	if offset > 0 {
		// InfluxQL shifts buckets forward from the epoch: back by offset
		// is forward by step - offset.
		group += fmt.Sprintf(", %dms", step-offset)
	}
	return fmt.Sprintf("SELECT %s(%s) FROM %s.%s.%s WHERE %s = %s AND time >= %dms AND time < %dms GROUP BY time(%s) fill(none)",
		fn, influxQLQuote(metric, '"'), influxQLQuote(db, '"'), influxQLQuote(rp, '"'), influxQLQuote(Measurement, '"'),
		influxQLQuote(DeviceTag, '"'), influxQLQuote(device, '\''), from, to, group)
}

// influxQLQuote quotes s as an InfluxQL identifier (q '"') or string
// literal (q '\”): InfluxQL's scanner knows the escapes \\, \", \' and \n,
// and ends a quoted text at a raw newline. An empty identifier stays empty
// (db..measurement takes the default retention policy).
func influxQLQuote(s string, q byte) string {
	if s == "" && q == '"' {
		return ""
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte(q)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '"', '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(q)
	return b.String()
}
