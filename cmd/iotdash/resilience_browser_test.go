package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"iotdash/internal/testenv"
)

// TestResilienceStalledBrowser runs the built iotdash under load with many
// healthy browsers and one that stops reading (its socket's receive buffer
// made tiny). The healthy ones keep receiving every reading they subscribed
// to, without a gap; the stalled one is gapped, then closed (counted in
// /metrics); and while it is stalled iotdash's live heap (after a garbage
// collection) does not grow with what is published: over the stall it grows
// by less than half of what keeping the readings dropped for the stalled
// browser would take. The healthy browsers' delays before and during the
// stall are logged, not asserted.
//
// IOTDASH_HEALTHY_CLIENTS sets how many healthy browsers (default 100: two
// watch all 100 devices of the load, the rest one device's page each). The
// stalled browser watches every device, including a "firehose" device of
// 20,000 readings a second that no healthy browser watches: so its kernel
// buffers (megabytes on loopback, whatever its receive buffer) fill within
// seconds, and what it misses is large next to the heap's noise (a MiB or
// two), while the healthy browsers' queues of 4,096 readings last them long
// enough on this loaded machine.
func TestResilienceStalledBrowser(t *testing.T) {
	t.Parallel()
	const (
		rate     = 500 // load messages/s
		readings = 4   // a load message
		stallFor = 10 * time.Second
	)
	healthy := envInt(t, "IOTDASH_HEALTHY_CLIENTS", 100)
	mq := testenv.StartMosquitto(t, keepQueued)
	p := startBinary(t, buildBinary(t), "-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-mqtt", mq.URL,
		"-mqtt-client-id", "stall-iotdash", "-data", t.TempDir(), "-log-level", "error", "-pprof",
		"-max-metrics-per-device", "200", // the firehose device's
		"-max-websockets-per-addr", fmt.Sprint(healthy+1)) // every browser here is on 127.0.0.1

	// The load's devices are stall-000 to stall-099.
	var fleet []string
	for i := range 100 {
		fleet = append(fleet, fmt.Sprintf("stall-%03d", i))
	}
	var overview, pages []*watcher
	for i := range healthy {
		if i < 2 {
			overview = append(overview, watch(t, p.URL, true, fleet...))
		} else {
			pages = append(pages, watch(t, p.URL, false, fleet[i%100]))
		}
	}
	heap0, rss0 := liveHeap(t, p.URL)
	l := startLoad(t, loadConfig{Broker: mq.URL, Rate: rate, Prefix: "stall", Metrics: readings})
	firehose := startLoad(t, loadConfig{Broker: mq.URL, Rate: 100, Devices: 1, Conns: 1, Prefix: "firehose", Metrics: 200})
	l.waitAcked(t, 2*rate)
	heap1, _ := liveHeap(t, p.URL)
	for _, w := range overview {
		w.mark()
	}
	stalledAt := time.Now()
	stallClient(t, p.URL)

	// The load goes on. Once the stalled browser's queue is full, measure
	// the heap over stallFor.
	maxRSS := rss0
	testenv.WaitFor(t, 2*time.Minute, "the stalled browser to be gapped", func() bool {
		m := mustScrape(t, p.URL)
		maxRSS = max(maxRSS, m["process_resident_memory_bytes"])
		return m["iotdash_websocket_dropped_readings_total"] > 0
	})
	gapped := time.Since(stalledAt)
	heapA, _ := liveHeap(t, p.URL)
	droppedA := mustScrape(t, p.URL)["iotdash_websocket_dropped_readings_total"]
	for measured := time.Now(); time.Since(measured) < stallFor; time.Sleep(200 * time.Millisecond) {
		maxRSS = max(maxRSS, mustScrape(t, p.URL)["process_resident_memory_bytes"])
	}
	// What the stalled browser would keep stays; the healthy browsers'
	// queues come and go with the machine's load: the least of three
	// samples is the first without the second.
	heapB := math.Inf(1)
	for range 3 {
		h, _ := liveHeap(t, p.URL)
		heapB = min(heapB, h)
		time.Sleep(300 * time.Millisecond)
	}
	droppedB := mustScrape(t, p.URL)["iotdash_websocket_dropped_readings_total"]
	testenv.WaitFor(t, 2*time.Minute, "the stalled browser to be closed", func() bool {
		return mustScrape(t, p.URL)["iotdash_websocket_slow_closed_total"] > 0
	})
	closed := time.Since(stalledAt)
	res := l.Stop(t)
	fres := firehose.Stop(t)
	accepted := res.Accepted()
	all := len(accepted) * readings
	testenv.WaitFor(t, time.Minute, "every accepted reading stored", func() bool {
		return mustScrape(t, p.URL)["iotdash_readings_stored_total"] >= float64(all+len(fres.Accepted())*len(fres.Metrics))
	})
	heap2, rss2 := liveHeap(t, p.URL)

	// Every healthy browser got every reading of its devices, and no gap.
	perDevice := map[string]int{}
	for _, msg := range accepted {
		perDevice[msg.device] += readings
	}
	for _, w := range overview {
		testenv.WaitFor(t, 30*time.Second, "an overview browser to receive every reading", func() bool { return w.received() >= all || w.gaps() > 0 })
		tl, _ := res.compare(w.series())
		if tl.Missing > 0 || tl.Duplicates > 0 || tl.Unexpected > 0 || w.gaps() > 0 {
			t.Errorf("a healthy overview browser got: %v, %d gaps", tl, w.gaps())
		}
	}
	for _, w := range pages {
		want := perDevice[w.devices[0]]
		testenv.WaitFor(t, 30*time.Second, "a device page to receive every reading of "+w.devices[0], func() bool { return w.received() >= want || w.gaps() > 0 })
		if got := w.received(); got != want || w.gaps() > 0 {
			t.Errorf("the page of %s received %d readings and %d gaps, want %d and none", w.devices[0], got, w.gaps(), want)
		}
	}
	// Kept rather than dropped, a reading would take at least the 48 bytes
	// of a devices.Reading.
	keeping := (droppedB - droppedA) * 48
	if grew := heapB - heapA; grew > keeping/2 {
		t.Errorf("iotdash's live heap grew by %.1f MiB over %v of a stalled browser; keeping what it dropped for it would take %.1f MiB: want less than half that",
			grew/(1<<20), stallFor, keeping/(1<<20))
	}
	var before, during []time.Duration
	for _, w := range overview {
		b, d := w.delays()
		before, during = append(before, b...), append(during, d...)
	}
	figures(t, "stalled-browser", "%d healthy browsers (%d watching all 100 devices, %d on device pages) and 1 stalled watching everything, %d msg/s of %d readings plus a firehose device of %d readings/s, for %v: every healthy browser received all of its %d readings, no gaps; the stalled one was gapped after %v and closed after %v (%.0f readings dropped for it); live heap after GC %.1f MiB before the load, %.1f MiB before the stall, %.1f MiB → %.1f MiB over %v of it while %.0f readings (%.1f MiB as devices.Reading) were dropped for it, %.1f MiB at the end; RSS %.0f MiB before, at most %.0f MiB, %.0f MiB at the end; delay of the browsers watching all devices p50/p99 %v/%v before the stall, %v/%v during it",
		healthy, len(overview), len(pages), rate, readings, 100*len(fres.Metrics), res.Elapsed.Round(100*time.Millisecond), all, gapped.Round(10*time.Millisecond), closed.Round(10*time.Millisecond), droppedB,
		heap0/(1<<20), heap1/(1<<20), heapA/(1<<20), heapB/(1<<20), stallFor, droppedB-droppedA, keeping/(1<<20), heap2/(1<<20),
		rss0/(1<<20), maxRSS/(1<<20), rss2/(1<<20), pct(before, 50), pct(before, 99), pct(during, 50), pct(during, 99))
}

func mustScrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	m, err := scrape(base)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// liveHeap makes iotdash collect its garbage (through the profiler's heap
// endpoint, -pprof) and returns its heap in use and its resident memory, in
// bytes.
func liveHeap(t *testing.T, base string) (heap, rss float64) {
	t.Helper()
	resp, err := http.Get(base + "/debug/pprof/heap?gc=1")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	m, err := scrape(base)
	if err != nil {
		t.Fatal(err)
	}
	return m["go_memstats_heap_alloc_bytes"], m["process_resident_memory_bytes"]
}

// stallClient opens /ws with a receive buffer of a few KiB, subscribes to
// every device, and never reads again.
func stallClient(t *testing.T, base string) {
	t.Helper()
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, wsURL(base), &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}})
	if err != nil {
		t.Fatalf("dial /ws: %v", err)
	}
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"subscribe":{"devices":["*"]}}`)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
}

func wsURL(base string) string { return strings.Replace(base, "http://", "ws://", 1) + "/ws" }

// watcher is a healthy browser on /ws: it counts what it receives and,
// if asked, keeps every reading and its delay from the reading's time.
type watcher struct {
	devices    []string
	keep       bool
	conn       *websocket.Conn
	subscribed chan struct{} // closed once the subscription is in force
	once       sync.Once

	mu     sync.Mutex
	count  int
	gapN   int
	seen   series
	marked bool
	before []time.Duration
	after  []time.Duration
}

func watch(t *testing.T, base string, keep bool, devices ...string) *watcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, wsURL(base), nil)
	if err != nil {
		t.Fatalf("dial /ws: %v", err)
	}
	conn.SetReadLimit(1 << 24)
	sub, _ := json.Marshal(map[string]any{"subscribe": map[string]any{"devices": devices}})
	if err := conn.Write(ctx, websocket.MessageText, sub); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	w := &watcher{devices: devices, keep: keep, conn: conn, subscribed: make(chan struct{}), seen: series{}}
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			w.frame(b)
		}
	}()
	t.Cleanup(func() { conn.Close(websocket.StatusNormalClosure, "") })
	select {
	case <-w.subscribed:
	case <-ctx.Done():
		t.Fatalf("no subscription confirmed on /ws: %v", ctx.Err())
	}
	return w
}

func (w *watcher) frame(b []byte) {
	var f struct {
		Subscribed *struct{}   `json:"subscribed"`
		Readings   []wsReading `json:"readings"`
		Gap        *struct{}   `json:"gap"`
	}
	if json.Unmarshal(b, &f) != nil {
		return
	}
	if f.Subscribed != nil {
		w.once.Do(func() { close(w.subscribed) })
	}
	now := time.Now().UnixMilli()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.count += len(f.Readings)
	if f.Gap != nil {
		w.gapN++
	}
	if !w.keep {
		return
	}
	for _, r := range f.Readings {
		w.seen[r.D+"/"+r.M] = append(w.seen[r.D+"/"+r.M], r.T)
		d := time.Duration(now-r.T) * time.Millisecond
		if w.marked {
			w.after = append(w.after, d)
		} else {
			w.before = append(w.before, d)
		}
	}
}

// mark starts the second period of delays.
func (w *watcher) mark() {
	w.mu.Lock()
	w.marked = true
	w.mu.Unlock()
}

func (w *watcher) received() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.count
}

func (w *watcher) gaps() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gapN
}

func (w *watcher) series() series {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := series{}
	for k, v := range w.seen {
		out[k] = slices.Clone(v)
	}
	return out
}

func (w *watcher) delays() (before, after []time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.before), slices.Clone(w.after)
}

// pct returns the p-th percentile of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
