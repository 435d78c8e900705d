package views

// The wall: a board in kiosk mode, in Chromium against the built binary,
// left alone while what it depends on fails and comes back.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"iotdash/internal/testenv"
)

// wall is a kiosk showing the board generated for one simulated device's
// kind, picked for that device: its stat, its chart and the kind's table.
type wall struct {
	ctx            context.Context
	device, metric string
}

// openWall opens the kiosk at base (iotdash, or a way to it) once every
// simulated device reports, and waits until it is live.
func openWall(t *testing.T, d *dashboard, base string) wall {
	t.Helper()
	id, kind, metric := firstDevice(t, d)
	w := wall{device: id, metric: metric}
	w.ctx = page(t, fmt.Sprintf("%s/boards/kind.%s?var-device=%s&kiosk", base, kind, w.device))
	until(t, w.ctx, "the kiosk live", connected)
	return w
}

// stillKiosk fails the test if the page has left kiosk mode.
func stillKiosk(t *testing.T, ctx context.Context) {
	t.Helper()
	if !eval[bool](t, ctx, `new URLSearchParams(location.search).has('kiosk')`) {
		t.Errorf("the wall left kiosk mode: it is at %s", eval[string](t, ctx, `location.href`))
	}
}

// stat is the time of the reading the wall's stat shows (Unix ms).
func (w wall) stat() string {
	return fmt.Sprintf(`Number(document.querySelector('[data-testid="stat"][data-device=%q] [data-metric=%q]')?.dataset.t || 0)`, w.device, w.metric)
}

// line is the wall's chart line of its device and metric.
func (w wall) line() string {
	return fmt.Sprintf(`document.querySelector('#board-grid figure[data-lines] canvas').drawing.lines.find(l => l.device === %q && l.metric === %q)`, w.device, w.metric)
}

// newerThan waits until the wall's stat and chart show a reading from
// after ms.
func (w wall) newerThan(t *testing.T, what string, ms int64) {
	t.Helper()
	until(t, w.ctx, what+" on the stat", fmt.Sprintf(`%s > %d`, w.stat(), ms))
	until(t, w.ctx, what+" on the chart", fmt.Sprintf(`(%s)?.series.last()?.t > %d`, w.line(), ms))
}

// TestKioskSurvivesBrokerRestart: iotdash reads a Mosquitto of the
// user's, through which the simulated devices publish. The broker dies
// (SIGKILL) and is started again on the same port a few seconds later.
// The wall, untouched and connected to iotdash throughout, says the
// broker is gone while it is, and shows readings from after its restart.
func TestKioskSurvivesBrokerRestart(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	d := startDashboard(t, "-mqtt", mq.URL, "-simulate", strconv.Itoa(simulated))
	w := openWall(t, d, d.URL)
	w.newerThan(t, "a live reading", eval[int64](t, w.ctx, w.stat()))
	banner := `document.getElementById('notice-banner')`
	if eval[bool](t, w.ctx, `!`+banner+`.hidden`) {
		t.Fatalf("the wall shows a warning before the broker is stopped: %s", pageText(t, w.ctx, "#notice-banner"))
	}

	mq.Kill()
	until(t, w.ctx, "the wall to say the broker is gone", banner+`.textContent.includes('MQTT broker cannot be reached') && !`+banner+`.hidden`)
	screenshot(t, w.ctx, "kiosk-broker-down.png")
	// Down for a few seconds: the devices and iotdash try again meanwhile.
	time.Sleep(3 * time.Second)
	if !eval[bool](t, w.ctx, connected) {
		t.Error("the wall lost iotdash while only the broker was down")
	}
	mq.Start(t)
	up := time.Now().UnixMilli()
	until(t, w.ctx, "the warning gone once the broker is back", banner+`.hidden`)
	w.newerThan(t, "a reading from after the broker's restart", up)
	stillKiosk(t, w.ctx)
}

// cable is a TCP proxy between a browser and iotdash that a test cuts,
// as a network drop does, and mends.
type cable struct {
	URL    string // http://127.0.0.1:port, the way to iotdash through it
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener // nil while cut
	conns  map[net.Conn]bool
}

func newCable(t *testing.T, target string) *cable {
	t.Helper()
	c := &cable{addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), target: strings.TrimPrefix(target, "http://"), conns: map[net.Conn]bool{}}
	c.URL = "http://" + c.addr
	c.mend(t)
	t.Cleanup(c.cut)
	return c
}

// mend listens again: new connections go through.
func (c *cable) mend(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		t.Fatalf("the cable cannot listen again on %s: %v", c.addr, err)
	}
	c.mu.Lock()
	c.ln = ln
	c.mu.Unlock()
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go c.carry(in)
		}
	}()
}

// carry joins in to a new connection to the target until either ends or
// the cable is cut.
func (c *cable) carry(in net.Conn) {
	out, err := net.Dial("tcp", c.target)
	if err != nil {
		in.Close()
		return
	}
	c.mu.Lock()
	if c.ln == nil { // cut meanwhile
		c.mu.Unlock()
		in.Close()
		out.Close()
		return
	}
	c.conns[in], c.conns[out] = true, true
	c.mu.Unlock()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	wg.Add(2)
	go pipe(out, in)
	go pipe(in, out)
	wg.Wait()
	c.mu.Lock()
	delete(c.conns, in)
	delete(c.conns, out)
	c.mu.Unlock()
}

// cut closes every connection through the cable and refuses new ones.
func (c *cable) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		c.ln.Close()
		c.ln = nil
	}
	for conn := range c.conns {
		conn.Close()
	}
}

// TestKioskSurvivesNetworkDrop: the network between the wall and iotdash
// drops (every connection closed, new ones refused) while the devices go
// on reporting, then comes back, slow. The wall, untouched and not
// reloaded, reconnects by itself, and its chart has every reading stored
// while it was cut off and since.
func TestKioskSurvivesNetworkDrop(t *testing.T) {
	d := startDashboard(t)
	c := newCable(t, d.URL)
	w := openWall(t, d, c.URL)
	w.newerThan(t, "a live reading", eval[int64](t, w.ctx, w.stat()))
	// A mark that a reload would take away.
	eval[bool](t, w.ctx, `window.untouched = true`)
	// A slow network: a fresh copy of the page reaches the script 2 s
	// after the server rendered it, while live readings go on arriving.
	eval[bool](t, w.ctx, `(() => {
		const fetch = window.fetch;
		window.slowCopies = 0;
		window.fetch = async (...args) => {
			const res = await fetch(...args);
			if (String(args[0]) === location.href) {
				await new Promise((ok) => setTimeout(ok, 2000));
				window.slowCopies++;
			}
			return res;
		};
		return true;
	})()`)

	cutAt := time.Now().UnixMilli()
	c.cut()
	until(t, w.ctx, "the wall to say it is disconnected", `document.body.dataset.liveState === 'disconnected' && !document.getElementById('conn-banner').hidden`)
	screenshot(t, w.ctx, "kiosk-network-down.png")
	// Cut off while the device's readings go on being stored, a few of them.
	raw := func(from, to int64) [][2]float64 {
		var h struct{ Points [][2]float64 }
		d.getJSON(t, fmt.Sprintf("/api/v1/query?device=%s&metric=%s&from=%d&to=%d&step=raw", w.device, w.metric, from, to), &h)
		return h.Points
	}
	testenv.WaitFor(t, 30*time.Second, "readings stored while the wall is cut off", func() bool {
		return len(raw(cutAt+1, time.Now().UnixMilli())) >= 4
	})
	c.mend(t)
	until(t, w.ctx, "the wall live again by itself", connected+` && document.getElementById('conn-banner').hidden`)
	until(t, w.ctx, "the wall's fresh copy of its grid", `window.slowCopies > 0`)
	back := time.Now().UnixMilli()
	w.newerThan(t, "a reading from after the drop", back)

	// Every reading stored from before the cut until the fresh copy is
	// shown is on the chart: the wall filled what it missed, and kept
	// what came live while the copy was on its way.
	stored := raw(cutAt-2000, back)
	during := slices.IndexFunc(stored, func(p [2]float64) bool { return int64(p[0]) > cutAt })
	if during < 0 {
		t.Fatal("no reading stored while the wall was cut off")
	}
	times, _ := json.Marshal(stored)
	missing := fmt.Sprintf(`(ts => { const have = new Set((%s).series.pts.map(p => p.t)); return ts.filter(([t]) => !have.has(t)).map(([t]) => t); })(%s)`, w.line(), times)
	for deadline := time.Now().Add(20 * time.Second); ; {
		gone := eval[[]int64](t, w.ctx, missing)
		if len(gone) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the chart misses %d of the %d readings stored from before the drop until its fresh copy: %v", len(gone), len(stored), gone)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !eval[bool](t, w.ctx, `window.untouched === true`) {
		t.Error("the wall was reloaded to come back")
	}
	stillKiosk(t, w.ctx)
	screenshot(t, w.ctx, "kiosk-network-back.png")
}

// TestKioskReloadsForANewVersion: iotdash is upgraded (stopped, and a
// build of another version started on the same ports and data). The wall,
// untouched, loads itself again from the new version's pages, still a
// kiosk, and is live.
func TestKioskReloadsForANewVersion(t *testing.T) {
	const next = "e2e-next"
	upgrade := testenv.IotdashVersion(t, next) // before the wall opens: a build takes a while
	d := startDashboard(t)
	w := openWall(t, d, d.URL)
	if b := eval[string](t, w.ctx, `document.body.dataset.build`); b == next {
		t.Fatalf("the first build already says it is %s", b)
	}
	eval[bool](t, w.ctx, `window.untouched = true`)

	d.stop(t)
	until(t, w.ctx, "the wall to see iotdash gone", `!(`+connected+`)`)
	d.Bin = upgrade
	d.start(t)
	until(t, w.ctx, "the wall loaded again from the new version", fmt.Sprintf(`document.body.dataset.build === %q && window.untouched === undefined`, next))
	until(t, w.ctx, "the wall live on the new version", connected)
	stillKiosk(t, w.ctx)
	w.newerThan(t, "a reading from the new version", eval[int64](t, w.ctx, w.stat()))
}

// TestKioskCyclesThroughADrop: a kiosk cycling through two boards is due
// to show the next while the network to iotdash is cut. It stays on its
// board, trying again, and shows the next once the network is back,
// instead of leaving for the browser's error page.
func TestKioskCyclesThroughADrop(t *testing.T) {
	d := startDashboard(t)
	c := newCable(t, d.URL)
	d.fleet(t)
	var list []struct{ Kind string }
	d.getJSON(t, "/api/v1/devices", &list)
	var kinds []string
	for _, x := range list {
		if !slices.Contains(kinds, x.Kind) {
			kinds = append(kinds, x.Kind)
		}
	}
	if len(kinds) < 2 {
		t.Fatalf("the simulated fleet has kinds %q, want two or more", kinds)
	}
	first, second := "kind."+kinds[0], "kind."+kinds[1]
	ctx := page(t, fmt.Sprintf("%s/boards/%s?kiosk&cycle=%s,%s&every=10s", c.URL, first, first, second))
	until(t, ctx, "the kiosk live", connected)
	// Count the kiosk's tries to reach the next board.
	eval[bool](t, ctx, fmt.Sprintf(`(() => {
		const fetch = window.fetch;
		window.tries = 0;
		window.fetch = (...args) => {
			if (String(args[0]).startsWith('/boards/%s?')) window.tries++;
			return fetch(...args);
		};
		return true;
	})()`, second))

	c.cut()
	until(t, ctx, "the kiosk to try the next board twice while cut off", `window.tries >= 2`)
	if at := eval[string](t, ctx, `location.pathname`); at != "/boards/"+first {
		t.Fatalf("cut off, the kiosk is at %s, want still /boards/%s", at, first)
	}
	c.mend(t)
	until(t, ctx, "the next board, live", fmt.Sprintf(`location.pathname === '/boards/%s' && %s`, second, connected))
	stillKiosk(t, ctx)
}
