package views

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"iotdash/devices"
	"iotdash/store"
	"iotdash/store/sqlite"
)

var _ History = (*sqlite.Store)(nil)

// kinds are the metrics the test fleets' devices report, with units and limits.
var kinds = []struct {
	metric, unit string
	lo, hi       float64
}{{"temperature", "°C", 5, 30}, {"humidity", "%", 20, 80}, {"pressure", "hPa", 950, 1050}}

// historyFleet is n devices with three metrics each that have reported
// every 2 s for the last 16 minutes: in the fleet, and in a real embedded
// store.
func historyFleet(t testing.TB, n int, end time.Time) (*devices.Fleet, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "iotdash.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := devices.NewFleet(nil)
	var all []devices.Reading
	for i := range n {
		id := fmt.Sprintf("device-%03d", i)
		meta := devices.Meta{Name: fmt.Sprintf("Device %d", i), Kind: "sensor", Location: fmt.Sprintf("Room %d", i%7), Units: map[string]string{}, Limits: map[string][2]float64{}}
		for _, k := range kinds {
			meta.Units[k.metric] = k.unit
			meta.Limits[k.metric] = [2]float64{k.lo, k.hi}
		}
		f.SetMeta(id, meta)
		var last []devices.Reading
		for ms := end.Add(-16 * time.Minute).UnixMilli(); ms < end.UnixMilli(); ms += 2000 {
			last = last[:0]
			for j, k := range kinds {
				v := (k.lo+k.hi)/2 + (k.hi-k.lo)/3*math.Sin(float64(ms)/60000+float64(i+j))
				last = append(last, devices.Reading{Device: id, Metric: k.metric, Time: ms + int64(i), Value: math.Round(v*100) / 100})
			}
			all = append(all, last...)
		}
		f.Seen(id, last)
	}
	if err := st.Append(context.Background(), all); err != nil {
		t.Fatal(err)
	}
	return f, st
}

// historyRoutes mounts the pages with history, as cmd/iotdash should.
func historyRoutes(f Fleet, h History) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", OverviewWithHistory(f, Options{History: h}))
	mux.Handle("GET /devices/{id}", DevicePageWithHistory(f, Options{History: h}))
	mux.Handle("/", NotFound())
	return mux
}

func TestPagesEmbedHistory(t *testing.T) {
	f, st := historyFleet(t, 3, time.Now())
	h := historyRoutes(f, st)

	// The overview: a point a minute of the last 15 minutes, per metric.
	_, doc := get(t, h, "/")
	if _, ok := doc.Find("body").Attr("data-history"); !ok {
		t.Error("the page does not say it embeds history")
	}
	doc.Find(`canvas[data-testid="sparkline"]`).Each(func(_ int, s *goquery.Selection) {
		pts := flat(t, s.AttrOr("data-points", "[]"))
		if n := len(pts) / 2; n < 15 || n > 16 {
			t.Errorf("a sparkline of %d points, want 15 or 16 (one a minute)", n)
		}
		if !strings.HasPrefix(s.AttrOr("aria-label", ""), s.Closest("[data-metric]").AttrOr("data-metric", "")+" over the last 15 minutes: from ") {
			t.Errorf("sparkline label %q", s.AttrOr("aria-label", ""))
		}
	})
	if n := doc.Find(`canvas[data-testid="sparkline"][data-points]`).Length(); n != 9 {
		t.Errorf("%d sparklines with history, want 9", n)
	}

	// Cards the filter hides are not read: the script asks for them when
	// it shows them.
	_, doc = get(t, h, "/?q=device-001")
	if n := doc.Find(`canvas[data-testid="sparkline"][data-points]`).Length(); n != 3 {
		t.Errorf("filtered to one device: %d sparklines with history, want 3", n)
	}

	// The device page: every reading of the last 15 minutes.
	_, doc = get(t, h, "/devices/device-001")
	fig := doc.Find(`figure[data-chart="temperature"]`)
	pts := flat(t, fig.AttrOr("data-points", "[]"))
	if n := len(pts) / 2; n < 440 || n > 451 || fig.AttrOr("data-step", "") != "0" {
		t.Errorf("15 min chart: %d points at step %s, want every reading (450)", n, fig.AttrOr("data-step", ""))
	}
	if _, ok := fig.Attr("data-band"); ok {
		t.Error("raw readings carry a band")
	}
	if got := text(fig.Find(`[data-testid="chart-summary"]`)); !strings.Contains(got, "the last 15 min: from ") || !strings.Contains(got, " readings; expected 5–30 °C") {
		t.Errorf("summary %q", got)
	}

	// An hour: buckets that fit the chart, with their min and max.
	_, doc = get(t, h, "/devices/device-001?range=1h")
	fig = doc.Find(`figure[data-chart="humidity"]`)
	pts, band := flat(t, fig.AttrOr("data-points", "[]")), flat(t, fig.AttrOr("data-band", "[]"))
	if fig.AttrOr("data-step", "") != "5000" || len(pts) == 0 || len(band) != len(pts)/2*3 {
		t.Fatalf("1 h chart: step %s, %d numbers of points and %d of band", fig.AttrOr("data-step", ""), len(pts), len(band))
	}
	for i := 0; i < len(pts)/2; i++ {
		if band[3*i] != pts[2*i] || band[3*i+1] > pts[2*i+1] || band[3*i+2] < pts[2*i+1] {
			t.Fatalf("bucket %v: mean %v outside its band %v..%v", pts[2*i], pts[2*i+1], band[3*i+1], band[3*i+2])
		}
	}
	if _, ok := doc.Find(`input[name="range"][value="1h"]`).Attr("checked"); !ok {
		t.Error("the range shown is not the one checked")
	}
}

// failing is a store that cannot be reached.
type failing struct{}

func (failing) Query(context.Context, store.Query) ([]store.Point, error) {
	return nil, devices.Errorf(devices.EUnavailable, "the store is down")
}

func TestPagesWithoutTheirHistory(t *testing.T) {
	f, _ := historyFleet(t, 2, time.Now())
	h := historyRoutes(f, failing{})
	for _, path := range []string{"/", "/devices/device-000"} {
		res, doc := get(t, h, path)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s with the store down: %d, want the page without history", path, res.StatusCode)
		}
		if n := doc.Find(`[data-points]`).Length(); n != 0 {
			t.Errorf("GET %s: %d series with points from a store that is down", path, n)
		}
		if n := doc.Find(`[data-testid="value"]`).Length(); n == 0 {
			t.Errorf("GET %s: no values", path)
		}
	}
}

func TestPagesAreGzipped(t *testing.T) {
	f, st := historyFleet(t, 3, time.Now())
	h := historyRoutes(f, st)
	for _, path := range []string{"/", "/devices/device-000", "/nope"} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Accept-Encoding", "br;q=1.0, gzip;q=0.8")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		if res.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(res.Header.Get("Vary"), "Accept-Encoding") {
			t.Errorf("GET %s: Content-Encoding %q, Vary %q", path, res.Header.Get("Content-Encoding"), res.Header.Get("Vary"))
			continue
		}
		if got, want := res.Header.Get("Content-Length"), fmt.Sprint(rec.Body.Len()); got != want {
			t.Errorf("GET %s: Content-Length %s of a %s-byte body", path, got, want)
		}
		zr, err := gzip.NewReader(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(zr)
		if !bytes.HasPrefix(page, []byte("<!doctype html>")) {
			t.Errorf("GET %s: gunzipped %.40q", path, page)
		}
	}
	// Refused with q=0, or not asked for: as is.
	for _, ae := range []string{"", "gzip;q=0", "identity"} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Accept-Encoding", ae)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if got := rec.Result().Header.Get("Content-Encoding"); got != "" {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q", ae, got)
		}
	}
}

// pageWeight is the overview of n devices as sent to a browser that takes
// gzip: its bytes, and its bytes once unzipped.
func pageWeight(t testing.TB, h http.Handler) (wire, raw int) {
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Accept-Encoding", "gzip, deflate, br")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Result().Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("GET /: %d, %q", rec.Code, rec.Result().Header.Get("Content-Encoding"))
	}
	wire = rec.Body.Len()
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(zr)
	return wire, len(b)
}

// TestOverviewPageWeight holds the overview of 50 devices, with their
// sparklines, under 100 KB over the wire, scripts and stylesheet included.
func TestOverviewPageWeight(t *testing.T) {
	f, st := historyFleet(t, 50, time.Now())
	wire, raw := pageWeight(t, historyRoutes(f, st))
	assets := 0
	for _, sf := range statics {
		assets += len(sf.gz)
	}
	t.Logf("overview of 50 devices: %d bytes gzipped (%d unzipped); scripts and stylesheet %d bytes gzipped", wire, raw, assets)
	if wire+assets > 100_000 {
		t.Errorf("the overview of 50 devices weighs %d bytes over the wire with its scripts and stylesheet, more than 100 KB", wire+assets)
	}
}

// BenchmarkOverview is the overview of 50 devices with 3 metrics each,
// rendered and gzipped, with the sparklines' history read from the
// embedded store (150 queries) or without history.
func BenchmarkOverview(b *testing.B) {
	f, st := historyFleet(b, 50, time.Now())
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"history", historyRoutes(f, st)},
		{"no-history", historyRoutes(f, nil)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			wire, raw := pageWeight(b, bc.h)
			for b.Loop() {
				req := httptest.NewRequest("GET", "/", nil)
				req.Header.Set("Accept-Encoding", "gzip")
				rec := httptest.NewRecorder()
				bc.h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatal(rec.Code)
				}
			}
			b.ReportMetric(float64(wire), "wire-bytes")
			b.ReportMetric(float64(raw), "html-bytes")
		})
	}
}
