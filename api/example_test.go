package api_test

import (
	"fmt"
	"net/url"
	"time"

	"iotdash/api"
)

// A history query names devices and metrics (every pair is a series), a
// range, a step and an aggregate; relative times count from now.
func ExampleParseQuery() {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	v, _ := url.ParseQuery("device=boiler-1,boiler-2&metric=temperature&from=-1h&step=1m&agg=max")
	req, err := api.ParseQuery(v, now, api.QueryOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(time.UnixMilli(req.From).UTC(), "to", time.UnixMilli(req.To).UTC())
	for _, q := range req.Series() {
		fmt.Println(q.Device, q.Metric, q.Step, q.Agg)
	}

	// A mistake is named, with how to put it right.
	v, _ = url.ParseQuery("device=boiler-1&metric=temperature&agg=median")
	_, err = api.ParseQuery(v, now, api.QueryOptions{})
	fmt.Println(err)
	// Output:
	// 2026-01-01 11:00:00 +0000 UTC to 2026-01-01 12:00:00 +0000 UTC
	// boiler-1 temperature 60000 max
	// boiler-2 temperature 60000 max
	// agg "median" is not one of mean, min, max, first, last, count, sum, minmax
}
