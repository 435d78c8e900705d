package api_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"iotdash/api"
	"iotdash/store/storetest"
)

// loadWeek writes storetest.Week of storetest.BenchDays.
func loadWeek(b *testing.B, st backend) (from, to int64) {
	b.Helper()
	rs, q := storetest.Week(storetest.BenchDays())
	appendAll(b, st, rs)
	return q.From, q.To
}

// eachStoreB runs f against each store, loaded with benchDays of readings.
func eachStoreB(b *testing.B, f func(b *testing.B, h http.Handler, from, to int64)) {
	for _, s := range []struct {
		name string
		open func(testing.TB) backend
	}{
		{"sqlite", func(t testing.TB) backend { return openSQLite(t) }},
		{"influx", func(t testing.TB) backend { return openInflux(t) }},
	} {
		b.Run(fmt.Sprintf("store=%s/days=%d", s.name, storetest.BenchDays()), func(b *testing.B) {
			st := s.open(b)
			from, to := loadWeek(b, st)
			f(b, api.Query(st, api.QueryOptions{}), from, to)
		})
	}
}

// discard is a ResponseWriter that keeps nothing, as a client reading at
// full speed.
type discard struct {
	h     http.Header
	code  int
	bytes int64
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(code int)        { d.code = code }
func (d *discard) Write(b []byte) (int, error) { d.bytes += int64(len(b)); return len(b), nil }

// peakHeap samples the bytes of live and unswept heap objects until stop
// is called, and returns the largest seen.
func peakHeap() (stop func() uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// BenchmarkExportCSV streams every reading of a week (a day without
// IOTDASH_BENCH_BIG=1) of one metric as CSV through the handler, and
// reports the rate, the bytes and the peak heap of the process while it
// ran.
func BenchmarkExportCSV(b *testing.B) {
	eachStoreB(b, func(b *testing.B, h http.Handler, from, to int64) {
		path := query(url.Values{"device": {"dev-00"}, "metric": {"temperature"}, "from": {fmt.Sprint(from)}, "to": {fmt.Sprint(to)}, "step": {"raw"}, "format": {"csv"}})
		req := httptest.NewRequest("GET", path, nil)
		runtime.GC()
		stop := peakHeap()
		var w *discard
		for b.Loop() {
			w = &discard{h: http.Header{}}
			h.ServeHTTP(w, req)
		}
		peak := stop()
		if w.code != 0 && w.code != http.StatusOK {
			b.Fatalf("export: %d", w.code)
		}
		readings := (to - from) / 1000
		b.ReportMetric(float64(readings)*float64(b.N)/b.Elapsed().Seconds(), "readings/s")
		b.ReportMetric(float64(w.bytes), "csv-bytes")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	})
}

// BenchmarkQuery1000Points asks the handler for 1,000 points of the week
// (a day without IOTDASH_BENCH_BIG=1), as JSON.
func BenchmarkQuery1000Points(b *testing.B) {
	eachStoreB(b, func(b *testing.B, h http.Handler, from, to int64) {
		for _, agg := range []string{"mean", "minmax"} {
			b.Run("agg="+agg, func(b *testing.B) {
				path := query(url.Values{"device": {"dev-00"}, "metric": {"temperature"}, "from": {fmt.Sprint(from)}, "to": {fmt.Sprint(to)}, "step": {fmt.Sprintf("%dms", (to-from)/1000)}, "agg": {agg}})
				req := httptest.NewRequest("GET", path, nil)
				for b.Loop() {
					w := &discard{h: http.Header{}}
					h.ServeHTTP(w, req)
					if w.code != 0 && w.code != http.StatusOK {
						b.Fatalf("query: %d", w.code)
					}
				}
			})
		}
	})
}
