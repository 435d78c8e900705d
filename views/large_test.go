package views

import (
	"context"
	"fmt"
	"math"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"iotdash/devices"
	"iotdash/store/sqlite"
)

// largeFleet is n devices with three metrics each: in the fleet, with
// their last 15 minutes (a reading a minute) in a real embedded store.
func largeFleet(t testing.TB, n int) (*devices.Fleet, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "iotdash.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := devices.NewFleet(nil)
	now := time.Now()
	var all []devices.Reading
	for i := range n {
		id := fmt.Sprintf("device-%05d", i)
		meta := devices.Meta{Name: fmt.Sprintf("Device %d", i), Kind: "sensor", Location: fmt.Sprintf("Room %d", i%97), Units: map[string]string{}, Limits: map[string][2]float64{}}
		for _, k := range kinds {
			meta.Units[k.metric], meta.Limits[k.metric] = k.unit, [2]float64{k.lo, k.hi}
		}
		f.SetMeta(id, meta)
		var last []devices.Reading
		for m := range 15 {
			last = last[:0]
			for _, k := range kinds {
				last = append(last, devices.Reading{Device: id, Metric: k.metric, Time: now.Add(-time.Duration(15-m) * time.Minute).UnixMilli(), Value: math.Round(((k.lo+k.hi)/2+(k.hi-k.lo)/3*math.Sin(float64(i*15+m)/7))*100) / 100})
			}
			all = append(all, last...)
		}
		f.Seen(id, last)
		if i%10 == 0 {
			f.SetPresence(id, devices.StatusOffline)
		}
	}
	if err := st.Append(context.Background(), all); err != nil {
		t.Fatal(err)
	}
	return f, st
}

// TestOverviewOfTenThousand: at 10,000 devices the overview is a page of
// OverviewCards cards, those needing attention first, under 100 KB over
// the wire with its sparklines; the counts are the whole fleet's; the
// filter works on the server and the next page follows.
func TestOverviewOfTenThousand(t *testing.T) {
	f, st := largeFleet(t, 10_000)
	h := historyRoutes(f, st)
	wire, raw := pageWeight(t, h)
	if wire > 100<<10 {
		t.Errorf("the overview of 10,000 devices is %d bytes over the wire (%d of HTML), want at most 100 KB", wire, raw)
	}
	t.Logf("overview of 10,000 devices: %d bytes over the wire, %d of HTML", wire, raw)

	get := func(path string) *goquery.Document {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		doc, err := goquery.NewDocumentFromReader(rec.Body)
		if err != nil || rec.Code != 200 {
			t.Fatalf("GET %s: %d %v", path, rec.Code, err)
		}
		return doc
	}
	doc := get("/")
	cards := doc.Find(`[data-testid="device-card"]`)
	if cards.Length() != OverviewCards {
		t.Fatalf("%d cards on the first page, want %d", cards.Length(), OverviewCards)
	}
	if s, _ := cards.First().Attr("data-status"); s != "offline" {
		t.Errorf("the first card is %s, want an offline device first", s)
	}
	if n := strings.TrimSpace(doc.Find(`[data-count="offline"] .count-n`).Text()); n != "1000" {
		t.Errorf("the offline count says %q, want the whole fleet's 1000", n)
	}
	if got := doc.Find(`[data-testid="shown"]`).Text(); !strings.Contains(got, fmt.Sprintf("Showing 1–%d of 10000", OverviewCards)) {
		t.Errorf("shown: %q", got)
	}
	next, ok := doc.Find(`[data-testid="next-page"]`).Attr("href")
	if !ok {
		t.Fatal("no next page")
	}
	if id, _ := get(next).Find(`[data-testid="device-card"]`).First().Attr("data-device"); id == "" || id == cards.First().AttrOr("data-device", "") {
		t.Errorf("the next page starts with %q", id)
	}
	doc = get("/?q=device-09999")
	if n := doc.Find(`[data-testid="device-card"]`).Length(); n != 1 {
		t.Errorf("?q=device-09999 shows %d cards, want the one", n)
	}
}

// BenchmarkOverviewOfTenThousand is the server's render of the overview of
// 10,000 devices (a page of cards), with and without sparkline history.
//
//	go test -run '^$' -bench OverviewOfTenThousand ./views
func BenchmarkOverviewOfTenThousand(b *testing.B) {
	f, st := largeFleet(b, 10_000)
	for _, bc := range []struct {
		name string
		h    *sqlite.Store
	}{{"history", st}, {"no-history", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			var h = historyRoutes(f, nil)
			if bc.h != nil {
				h = historyRoutes(f, bc.h)
			}
			wire, _ := pageWeight(b, h)
			for b.Loop() {
				req := httptest.NewRequest("GET", "/", nil)
				req.Header.Set("Accept-Encoding", "gzip")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
			}
			b.ReportMetric(float64(wire), "wire-bytes")
		})
	}
}
