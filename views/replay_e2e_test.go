package views

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"iotdash/internal/testenv"
)

// postBoard stores a board through the API, as the admin, and returns
// its id.
func (d *dashboard) postBoard(t *testing.T, board string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", d.URL+"/api/v1/boards", strings.NewReader(board))
	req.SetBasicAuth("admin", adminPassword)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b struct{ ID, Error string }
	if err := json.NewDecoder(res.Body).Decode(&b); err != nil {
		t.Fatalf("POST /api/v1/boards: %v", err)
	}
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/v1/boards = %s: %s", res.Status, b.Error)
	}
	return b.ID
}

// TestBoardReplayAndFollowEndToEnd, in Chromium against the binary:
//
// Replay: an hour of known readings (one a minute, each a whole number
// one more than the last) is recorded; the board opened at a moment of
// that hour shows the value history holds then; a step forward shows the
// next, a step back the one before; played, it moves on; paused, it stays.
//
// Follow: a board of every device of a kind, open in the browser, shows
// a device of the kind that appears after it was loaded, without a
// reload (-board-follow 1s), and subscribes to it.
func TestBoardReplayAndFollowEndToEnd(t *testing.T) {
	d := startDashboard(t, "-board-follow", "1s")

	dev := newDevice(t, d.Broker, "replay-boiler", `{"name":"Replayed boiler","kind":"replayed","location":"Lab","units":{"temperature":"°C"}}`)
	start := time.Now().Truncate(time.Minute).Add(-time.Hour)
	for i := range 60 {
		dev.publish("telemetry", false, fmt.Sprintf(`{"ts":%d,"temperature":%d}`, start.Add(time.Duration(i)*time.Minute).UnixMilli(), 100+i))
	}
	var hist struct{ Points [][2]float64 }
	testenv.WaitFor(t, 30*time.Second, "the hour to be stored", func() bool {
		d.getJSON(t, "/api/v1/query?device=replay-boiler&metric=temperature&from=-2h&step=raw", &hist)
		return len(hist.Points) == 60
	})
	id := d.postBoard(t, `{"title":"Replay","panels":[
		{"title":"Now","type":"stat","series":[{"device":"replay-boiler","metric":"temperature"}]},
		{"title":"Hour","type":"timeseries","series":[{"device":"replay-boiler","metric":"temperature"}]},
		{"type":"table","series":[{"device":"replay-boiler","metric":"temperature"}]}]}`)

	t.Run("replay", func(t *testing.T) {
		// 20 min 30 s into the hour: the 21st reading, 120.
		moment := start.Add(20*time.Minute + 30*time.Second)
		ctx := page(t, d.URL+"/boards/"+id+"?replay="+url.QueryEscape(moment.Format(time.RFC3339))+"&speed=60")
		errs := consoleErrors(t, ctx)
		value := `document.querySelector('[data-testid="stat"] [data-value]').textContent`
		if got := eval[string](t, ctx, value); got != "120" {
			t.Errorf("the replay at %v shows %s, want 120, what history holds then", moment, got)
		}
		if got := pageText(t, ctx, `[data-testid="replay-label"]`); !strings.HasPrefix(got, "REPLAY — ") {
			t.Errorf("the bar says %q", got)
		}
		until(t, ctx, "the replay's controls", `!document.querySelector('[data-testid="replay-play"]').hidden`)
		// Ages are from the moment: the reading shown is 30 s older.
		until(t, ctx, "the table's age from the moment", `document.querySelector('[data-testid="device-table"] time .rel').textContent === '30 s ago'`)
		chartTo := `document.querySelector('figure[data-lines] canvas').drawing.to`
		to := eval[float64](t, ctx, chartTo)

		click(t, ctx, `[data-testid="replay-forward"]`)
		until(t, ctx, "the next value after a step", value+` === '121'`)
		// The table's last seen moves with the moment, both ways.
		seen := `Number(document.querySelector('[data-testid="device-table"] time[data-testid="last-seen"]').dataset.ms)`
		until(t, ctx, "the table's last seen a step on", fmt.Sprintf(`%s === %d`, seen, start.Add(21*time.Minute).UnixMilli()))
		until(t, ctx, "the chart's window a step on", fmt.Sprintf(`%s === %v`, chartTo, to+60000))
		until(t, ctx, "the moment in the URL", fmt.Sprintf(`new URL(location.href).searchParams.get('replay') === %q`, moment.Add(time.Minute).UTC().Format(time.RFC3339)))
		click(t, ctx, `[data-testid="replay-back"]`)
		until(t, ctx, "the value before, a step back", value+` === '120'`)
		until(t, ctx, "the table's last seen a step back", fmt.Sprintf(`%s === %d`, seen, start.Add(20*time.Minute).UnixMilli()))

		click(t, ctx, `[data-testid="replay-play"]`)
		until(t, ctx, "the replay to move on while playing", `Number(`+value+`) >= 122`)
		click(t, ctx, `[data-testid="replay-play"]`)
		until(t, ctx, "the replay paused", `document.getElementById('replay-bar').dataset.playing === 'false'`)
		paused := eval[string](t, ctx, value)
		label := pageText(t, ctx, `[data-testid="replay-time"]`)
		// Paused, the moment stays: a second and a half at 60× would be 90 s.
		still, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`new Promise(r => setTimeout(r, 1500)).then(() => %s === %q && document.querySelector('[data-testid="replay-time"]').textContent === %q)`, value, paused, label), chromedp.EvalAwaitPromise))
		if err != nil || !still {
			t.Errorf("the paused replay moved on from %s at %s: now %s at %s (%v)", paused, label, eval[string](t, ctx, value), pageText(t, ctx, `[data-testid="replay-time"]`), err)
		}
		// A link shows the same: the page loaded from the URL now.
		if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
		until(t, ctx, "the same value after a reload", value+` === `+fmt.Sprintf("%q", paused))
		checkAccessible(t, ctx)
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}); err != nil {
			t.Fatal(err)
		}
		checkAccessible(t, ctx)
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844)); err != nil {
			t.Fatal(err)
		}
		until(t, ctx, "no sideways scrolling at phone width", `document.documentElement.scrollWidth <= window.innerWidth`)
		screenshot(t, ctx, "board-replay-phone-dark.png")

		// A moment after the boiler first reported, while the event log
		// says it was online: online then, and unknown a step before (the
		// log holds nothing of it before).
		var episodes []struct {
			Status string
			From   time.Time
		}
		d.getJSON(t, "/api/v1/events?device=replay-boiler&kind=presence", &episodes)
		if len(episodes) == 0 || episodes[len(episodes)-1].Status != "online" {
			t.Fatalf("the boiler's presence: %+v, want online first", episodes)
		}
		online := episodes[len(episodes)-1].From.Add(time.Millisecond)
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(d.URL+"/boards/"+id+"?replay="+strconv.FormatInt(online.UnixMilli(), 10))); err != nil {
			t.Fatal(err)
		}
		status := `document.querySelector('[data-testid="stat"]').dataset.status`
		until(t, ctx, "the boiler online at the moment", status+` === 'online'`)
		until(t, ctx, "the replay's controls", `!document.querySelector('[data-testid="replay-play"]').hidden`)
		click(t, ctx, `[data-testid="replay-back"]`)
		until(t, ctx, "the boiler unknown a step before", status+` === 'unknown'`)
		click(t, ctx, `[data-testid="replay-forward"]`)
		until(t, ctx, "the boiler online again", status+` === 'online'`)
		for _, e := range errs() {
			t.Errorf("console: %s", e)
		}
	})

	t.Run("follow", func(t *testing.T) {
		first := newDevice(t, d.Broker, "follow-1", `{"kind":"followed","units":{"level":"%"}}`)
		first.publish("telemetry", false, `{"level":40}`)
		testenv.WaitFor(t, 30*time.Second, "the first device", func() bool {
			var one struct{ Latest map[string]any }
			d.getJSON(t, "/api/v1/devices/follow-1", &one)
			return len(one.Latest) > 0
		})
		board := d.postBoard(t, `{"title":"Every followed","panels":[{"type":"timeseries","series":[{"kind":"followed","metric":"level"}]}]}`)
		ctx := page(t, d.URL+"/boards/"+board)
		until(t, ctx, "the board live", connected)
		eval[bool](t, ctx, `window.notReloaded = true`)
		line := `document.querySelector('[data-line][data-device="follow-2"]')`
		if eval[bool](t, ctx, `!!`+line) {
			t.Fatal("the board shows follow-2 before it exists")
		}
		second := newDevice(t, d.Broker, "follow-2", `{"kind":"followed","units":{"level":"%"}}`)
		second.publish("telemetry", false, `{"level":60}`)
		until(t, ctx, "a line of the new device", `!!`+line)
		until(t, ctx, "a subscription to it", `document.body.dataset.subscribed.split(' ').includes('follow-2')`)
		second.publish("telemetry", false, `{"level":61}`)
		until(t, ctx, "its live readings on the chart", `document.querySelector('figure[data-lines] canvas').drawing.lines.find(l => l.device === 'follow-2')?.series.pts.some(p => p.v === 61)`)
		if !eval[bool](t, ctx, `window.notReloaded === true`) {
			t.Error("the page was reloaded")
		}
	})
}
