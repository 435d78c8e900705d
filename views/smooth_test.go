package views

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/profiler"
	"github.com/chromedp/chromedp"

	"iotdash/devices"
	"iotdash/push"
)

// TestOverviewWith500Devices measures, in Chromium, the overview of 500
// devices (three metrics and a sparkline each) taking 750 readings a
// second for 10 s: the frames drawn, the long tasks (over 50 ms) and the
// share of the time the page's thread was idle. It asserts nothing about
// them; it runs only with IOTDASH_BENCH_BROWSER=1.
func TestOverviewWith500Devices(t *testing.T) {
	if os.Getenv("IOTDASH_BENCH_BROWSER") != "1" {
		t.Skip("set IOTDASH_BENCH_BROWSER=1 to measure the overview of 500 devices in Chromium (20 s)")
	}
	f, st := historyFleet(t, 500, time.Now())
	hub := push.NewHub(push.Options{})
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", OverviewWithHistory(f, Options{History: st}))
	mux.Handle("GET /static/", Static())
	mux.Handle("GET /ws", hub)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { hub.Close(); srv.Close() })

	ctx := browser(t)
	start := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the live connection", connected)
	loaded := time.Since(start)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`
		window.longTasks = [];
		new PerformanceObserver((l) => { for (const e of l.getEntries()) window.longTasks.push(Math.round(e.duration)); }).observe({ type: 'longtask' });
		window.frameCount = 0;
		(function count() { window.frameCount++; requestAnimationFrame(count); })();`)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, profiler.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, profiler.Start, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	const seconds = 10
	n := 0
	for end := time.Now().Add(seconds * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		var rs []devices.Reading
		for range 13 { // 13 devices × 3 metrics every 50 ms: 780 readings a second
			id := fmt.Sprintf("device-%03d", n%500)
			n++
			for _, k := range kinds {
				rs = append(rs, devices.Reading{Device: id, Metric: k.metric, Time: time.Now().UnixMilli(), Value: (k.lo+k.hi)/2 + float64(n%10)})
			}
		}
		hub.Publish(rs)
	}
	prof, err := chromedp.Call(ctx, profiler.Stop, cdp.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	var idle, total int64
	for _, node := range prof.Profile.Nodes {
		total += node.HitCount
		if node.CallFrame.FunctionName == "(idle)" {
			idle += node.HitCount
		}
	}
	frames := eval[int](t, ctx, `window.frameCount`)
	long := eval[[]int](t, ctx, `window.longTasks`)
	t.Logf("500 devices: page live %v after navigating; %d readings in %d s: %.0f frames/s, long tasks %v ms, main thread idle %.0f%%",
		loaded.Round(time.Millisecond), 3*n, seconds, float64(frames)/seconds, long, 100*float64(idle)/float64(max(total, 1)))
}
