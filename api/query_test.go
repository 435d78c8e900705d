package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"iotdash/api"
	"iotdash/store"
)

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestParseQuery(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  store.Query
	}{
		{"device=d&metric=m", store.Query{Device: "d", Metric: "m", From: now.Add(-time.Hour).UnixMilli(), To: now.UnixMilli(), Step: 5000, Agg: "mean"}},
		{"device=d&metric=m&from=-15m&to=now&step=1m&agg=max", store.Query{Device: "d", Metric: "m", From: now.Add(-15 * time.Minute).UnixMilli(), To: now.UnixMilli(), Step: 60000, Agg: "max"}},
		{"device=d&metric=m&from=2026-01-01T00:00:00Z&to=1767312000000&step=1d&agg=count", store.Query{Device: "d", Metric: "m", From: 1767225600000, To: 1767312000000, Step: 86400000, Agg: "count"}},
		{"device=d&metric=m&from=-7d&step=auto", store.Query{Device: "d", Metric: "m", From: now.Add(-7 * 24 * time.Hour).UnixMilli(), To: now.UnixMilli(), Step: 15 * 60000, Agg: "mean"}},
		{"device=d&metric=m&step=raw", store.Query{Device: "d", Metric: "m", From: now.Add(-time.Hour).UnixMilli(), To: now.UnixMilli(), Step: 0, Agg: "mean"}},
	} {
		v, _ := url.ParseQuery(tc.query)
		got, err := api.ParseQuery(v, now, 10000)
		if err != nil || got != tc.want {
			t.Errorf("ParseQuery(%s) = %+v, %v; want %+v", tc.query, got, err, tc.want)
		}
	}
}

func TestAutoStepFitsAThousandPoints(t *testing.T) {
	for _, span := range []int64{1, 999, 60_000, 3_600_000, 86_400_000, 7 * 86_400_000, 400 * 86_400_000} {
		step := api.AutoStep(span)
		if span/step >= api.AutoPoints+1 {
			t.Errorf("AutoStep(%d) = %d gives %d points", span, step, span/step)
		}
	}
}

// TestQueryRejects: each mistake in a query gets a 400 whose message names it.
func TestQueryRejects(t *testing.T) {
	h := api.Query(nil, api.QueryOptions{Now: func() time.Time { return now }, MaxPoints: 1000})
	for _, tc := range []struct{ query, mention string }{
		{"metric=m", "device is required"},
		{"device=d", "metric is required"},
		{"device=a%20b&metric=m", "device"},
		{"device=d&metric=m%22)|>drop()", "metric"},
		{"device=d&metric=m&agg=median", "agg"},
		{"device=d&metric=m&step=fast", "step"},
		{"device=d&metric=m&step=-1m", "step"},
		{"device=d&metric=m&step=1ms", "limit of 1000"},
		{"device=d&metric=m&from=yesterday", "from"},
		{"device=d&metric=m&to=later", "to"},
		{"device=d&metric=m&from=-1h&to=-2h", "from must be before to"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/query?"+tc.query, nil))
		var body struct{ Error string }
		json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != http.StatusBadRequest || !strings.Contains(body.Error, tc.mention) {
			t.Errorf("%s: %d %q, want 400 mentioning %q", tc.query, rec.Code, body.Error, tc.mention)
		}
	}
}
