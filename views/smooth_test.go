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

// TestBrowserKeepsUp measures, in Chromium, what the issue of live push
// asks the pages to hold: the overview of 500 devices (three metrics and a
// sparkline each) taking 780 and then 10,000 readings a second, and a
// device page whose device sends 1,000 readings a second, 10 s each: the
// frames drawn, the long tasks (over 50 ms) and the share of the time the
// page's thread was idle. It asserts nothing about them; it runs only with
// IOTDASH_BENCH_BROWSER=1.
func TestBrowserKeepsUp(t *testing.T) {
	if os.Getenv("IOTDASH_BENCH_BROWSER") != "1" {
		t.Skip("set IOTDASH_BENCH_BROWSER=1 to measure the pages in Chromium under load (40 s)")
	}
	f, st := historyFleet(t, 500, time.Now())
	hub := push.NewHub(push.Options{})
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", OverviewWithHistory(f, Options{History: st}))
	mux.Handle("GET /devices/{id}", DevicePageWithHistory(f, Options{History: st}))
	mux.Handle("GET /static/", Static())
	mux.Handle("GET /ws", hub)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { hub.Close(); srv.Close() })

	for _, c := range []struct {
		page    string
		devices int // how many devices the readings go to, in turn
		rate    int // readings a second
	}{
		{"/", 500, 780},
		{"/", 500, 10_000},
		{"/devices/device-007", 1, 1_000},
	} {
		ctx := browser(t)
		start := time.Now()
		if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+c.page)); err != nil {
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
		const seconds, tick = 10, 20 * time.Millisecond
		n, sent := 0, 0
		// Messages (of a reading of each kind) are sent as they fall due,
		// so that the rate holds however long a tick's sleep and sending
		// take.
		began := time.Now()
		for end := began.Add(seconds * time.Second); time.Now().Before(end); time.Sleep(tick) {
			var rs []devices.Reading
			for due := int(time.Since(began).Seconds() * float64(c.rate) / float64(len(kinds))); n < due; {
				id := fmt.Sprintf("device-%03d", n%c.devices)
				if c.devices == 1 {
					id = "device-007"
				}
				n++
				for _, k := range kinds {
					rs = append(rs, devices.Reading{Device: id, Metric: k.metric, Time: time.Now().UnixMilli(), Value: (k.lo+k.hi)/2 + float64(n%10)})
				}
			}
			sent += len(rs)
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
		t.Logf("%s: page live %v after navigating; %d readings a second for %d s: %.0f frames/s, long tasks %v ms, main thread idle %.0f%%",
			c.page, loaded.Round(time.Millisecond), sent/seconds, seconds, float64(frames)/seconds, long, 100*float64(idle)/float64(max(total, 1)))
	}
}
