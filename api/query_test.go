package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"iotdash/api"
)

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestParseQuery(t *testing.T) {
	hour := now.Add(-time.Hour).UnixMilli()
	for _, tc := range []struct {
		query string
		want  api.Request
	}{
		{"device=d&metric=m", api.Request{Devices: []string{"d"}, Metrics: []string{"m"}, From: hour, To: now.UnixMilli(), Step: 5000, Agg: "mean", Format: "json"}},
		{"device=d&metric=m&from=-15m&to=now&step=1m&agg=max", api.Request{Devices: []string{"d"}, Metrics: []string{"m"}, From: now.Add(-15 * time.Minute).UnixMilli(), To: now.UnixMilli(), Step: 60000, Agg: "max", Format: "json"}},
		{"device=d&metric=m&from=2026-01-01T00:00:00Z&to=1767312000000&step=1d&agg=count", api.Request{Devices: []string{"d"}, Metrics: []string{"m"}, From: 1767225600000, To: 1767312000000, Step: 86400000, Agg: "count", Format: "json"}},
		{"device=d&metric=m&from=-7d&step=auto", api.Request{Devices: []string{"d"}, Metrics: []string{"m"}, From: now.Add(-7 * 24 * time.Hour).UnixMilli(), To: now.UnixMilli(), Step: 15 * 60000, Agg: "mean", Format: "json"}},
		{"device=d&metric=m&step=raw", api.Request{Devices: []string{"d"}, Metrics: []string{"m"}, From: hour, To: now.UnixMilli(), Step: 0, Agg: "mean", Format: "json"}},
		{"device=d&metric=m&step=1500ms&agg=minmax&format=csv", api.Request{Devices: []string{"d"}, Metrics: []string{"m"}, From: hour, To: now.UnixMilli(), Step: 1500, Agg: "minmax", Format: "csv"}},
		// Several devices and metrics, repeated or separated by commas;
		// repeats are dropped, the order kept.
		{"device=b,a&device=c&metric=x&metric=y,x&step=1m", api.Request{Devices: []string{"b", "a", "c"}, Metrics: []string{"x", "y"}, From: hour, To: now.UnixMilli(), Step: 60000, Agg: "mean", Format: "json"}},
		// step=auto keeps every series within 10,000 points: 15 minutes
		// give each of 12 or 14 series 672 points, 15 series need 30.
		{"device=a,b,c,d,e,f&metric=x,y&from=-7d", api.Request{Devices: []string{"a", "b", "c", "d", "e", "f"}, Metrics: []string{"x", "y"}, From: now.Add(-7 * 24 * time.Hour).UnixMilli(), To: now.UnixMilli(), Step: 15 * 60000, Agg: "mean", Format: "json"}},
		{"device=a,b,c,d,e,f,g,h,i,j,k,l&metric=x&from=-7d", api.Request{Devices: strings.Split("a,b,c,d,e,f,g,h,i,j,k,l", ","), Metrics: []string{"x"}, From: now.Add(-7 * 24 * time.Hour).UnixMilli(), To: now.UnixMilli(), Step: 15 * 60000, Agg: "mean", Format: "json"}},
		{"device=a,b,c,d,e,f,g,h,i,j,k,l,m,n,o&metric=x&from=-7d", api.Request{Devices: strings.Split("a,b,c,d,e,f,g,h,i,j,k,l,m,n,o", ","), Metrics: []string{"x"}, From: now.Add(-7 * 24 * time.Hour).UnixMilli(), To: now.UnixMilli(), Step: 30 * 60000, Agg: "mean", Format: "json"}},
	} {
		v, _ := url.ParseQuery(tc.query)
		got, err := api.ParseQuery(v, now, api.QueryOptions{})
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseQuery(%s) = %+v, %v; want %+v", tc.query, got, err, tc.want)
		}
	}
}

// TestQueryRejects: each mistake in a query gets a 400 whose message names
// it, and each limit a 400 that names the limit and how to narrow the query.
func TestQueryRejects(t *testing.T) {
	h := api.Query(nil, api.QueryOptions{Now: func() time.Time { return now }, MaxPoints: 1000, MaxSeries: 6, MaxExportRange: 24 * time.Hour})
	for _, tc := range []struct{ query, mention string }{
		{"metric=m", "device is required"},
		{"device=d", "metric is required"},
		{"device=&metric=m", "device has an empty name"},
		{"device=a,,b&metric=m", "device has an empty name"},
		{"device=a%20b&metric=m", `device "a b" is not 1 to 64 characters`},
		{"device=d&metric=m%22)|>drop()", "metric"},
		{"device=d&metric=" + strings.Repeat("m", 65), "metric"},
		{"device=d&metric=m&agg=median", `agg "median" is not one of mean, min, max, first, last, count, sum, minmax`},
		{"device=d&metric=m&agg=mean&agg=max", "agg is given 2 times"},
		{"device=d&metric=m&step=fast", `step "fast" is not auto, raw, or a positive duration`},
		{"device=d&metric=m&step=-1m", "step"},
		{"device=d&metric=m&step=0s", "step"},
		{"device=d&metric=m&step=1500us", "whole number of milliseconds"},
		{"device=d&metric=m&step=1ms", "limit of 1000 points per response (-max-points); use a larger step"},
		{"device=a,b&metric=x,y&step=10s", "gives up to 1444 points for 4 series"},
		{"device=d&metric=m&from=yesterday", "from: "},
		{"device=d&metric=m&to=later", "to: "},
		{"device=d&metric=m&from=-1h&to=-2h", "from must be before to"},
		{"device=d&metric=m&from=now&to=now", "from must be before to"},
		{"device=d&metric=m&from=-1h&from=-2h", "from is given 2 times"},
		{"device=d&metric=m&from=-9223372036854775808&to=9223372036854775807&step=1s", "from: -9223372036854775808 ms is outside the years 0001 to 9999"},
		{"device=d&metric=m&to=253402300800000", "to: 253402300800000 ms is outside the years 0001 to 9999"},
		{"device=d&metric=m&format=xml", `format "xml" is not json or csv`},
		{"device=d&metric=m&limit=5", `unknown parameter "limit"`},
		{"device=d&metrics=m", `unknown parameter "metrics"`},
		{"device=d&metric=m&from=%zz", "the query string is malformed"},
		{"device=d;x&metric=m", "the query string is malformed"},
		{"device=a,b,c,d&metric=x,y", "8 series, more than the limit of 6 in one query; ask for fewer devices or metrics"},
		{"device=d&metric=m&from=-2d&step=raw&format=csv", "a raw CSV export covers at most 1d (the limit -max-export-range); this one asks for 2d: split it into ranges of at most 1d"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/query?"+tc.query, nil))
		var body struct{ Error string }
		json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != http.StatusBadRequest || !strings.Contains(body.Error, tc.mention) {
			t.Errorf("%s: %d %q, want 400 mentioning %q", tc.query, rec.Code, body.Error, tc.mention)
		}
	}
	// Too many series for step=auto to give each a point.
	h = api.Query(nil, api.QueryOptions{Now: func() time.Time { return now }, MaxPoints: 3})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/query?device=a,b&metric=x,y", nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "4 series cannot each have a point") {
		t.Errorf("4 series, 3 points: %d %s", rec.Code, rec.Body)
	}
}

// TestParseQueryAgreesWithStore: every Request ParseQuery accepts makes
// queries the stores accept.
func TestParseQueryAgreesWithStore(t *testing.T) {
	v, _ := url.ParseQuery("device=a,b&metric=x&step=raw&agg=minmax")
	r, err := api.ParseQuery(v, now, api.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range r.Series() {
		if err := q.Validate(); err != nil || q.Agg != "" {
			t.Errorf("%+v: %v", q, err)
		}
	}
	if got := r.Series(); len(got) != 2 || got[0].Device != "a" || got[1].Device != "b" {
		t.Errorf("Series() = %+v", got)
	}
}
