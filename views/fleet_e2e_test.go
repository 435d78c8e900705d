package views

import (
	"context"
	"fmt"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// fitsAPhone checks the tab's page at 390 px wide in the light and the dark
// theme: no sideways scrolling of the page (a table scrolls in its own
// box), and no violation of axe-core's WCAG 2.1 AA rules.
func fitsAPhone(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844)); err != nil {
		t.Fatal(err)
	}
	for _, theme := range []string{"light", "dark"} {
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: theme}}}); err != nil {
			t.Fatal(err)
		}
		until(t, ctx, "no sideways scrolling at phone width ("+theme+")", `document.documentElement.scrollWidth <= window.innerWidth`)
		checkAccessible(t, ctx)
	}
}

// TestFleetViewsEndToEnd, against the built binary and its simulated
// fleet: the overview grouped by location; the same as a table, chosen on
// the page, sorted by a column's header (kept in the URL, said by
// aria-sort), whose rows take live values and move up when their device
// goes offline; and a device page whose availability strip grows a new
// segment as the device's presence changes.
func TestFleetViewsEndToEnd(t *testing.T) {
	d := startDashboard(t)
	d.fleet(t)
	tank := newDevice(t, d.Broker, "e2e-tank", `{"name":"Yard tank","kind":"tank","location":"Yard","units":{"level":"%"},"limits":{"level":[10,90]}}`)
	tank.publish("status", true, "online")
	tank.publish("telemetry", false, `{"level":42.5}`)

	// Grouped by location: every device under its own location's name.
	ctx := page(t, d.URL+"/?group=location")
	until(t, ctx, "the groups, the test's device in its own", `document.querySelectorAll('[data-testid="group"]').length >= 2 && !!document.querySelector('[data-testid="group"][data-group="Yard"] [data-device="e2e-tank"]')`)
	until(t, ctx, "every device in its location's group", `[...document.querySelectorAll('[data-testid="group"]')].every(g => g.querySelector('h2').textContent.includes(g.dataset.group) && [...g.querySelectorAll('[data-device]')].every(c => c.dataset.location === g.dataset.group))`)
	until(t, ctx, "the live connection", connected)
	fitsAPhone(t, ctx)
	screenshot(t, ctx, "overview-grouped.png")

	// The table, chosen on the page; the grouping stays.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`{ const v = document.getElementById('filter-view'); v.value = 'table'; v.dispatchEvent(new Event('input', {bubbles: true})); }`)); err != nil {
		t.Fatal(err)
	}
	settle(t, ctx, "the table, grouped", `document.readyState === "complete" && location.search === '?view=table&group=location' && !!document.querySelector('[data-testid="fleet-table"] tbody[data-group="Yard"] [data-device="e2e-tank"]')`)
	until(t, ctx, "the live connection", connected)
	row := `document.querySelector('tr[data-device="e2e-tank"]')`
	tank.publish("telemetry", false, `{"level":57.25}`)
	until(t, ctx, "the new value in the row", row+`.querySelector('[data-metric="level"] [data-value]').textContent === '57.25'`)

	// A column's header sorts by it, then the other way round.
	const sortedByName = `[...document.querySelectorAll('[data-testid="fleet-table"] tbody')].every(b => {
		const names = [...b.querySelectorAll('tr[data-device]')].map(r => r.dataset.name.toLowerCase());
		return names.every((n, i) => i === 0 || %s);
	})`
	for _, tc := range []struct{ sort, aria, order string }{
		{"name", "ascending", "names[i-1] <= n"},
		{"-name", "descending", "names[i-1] >= n"},
	} {
		click(t, ctx, `[data-testid="sort-name"]`)
		until(t, ctx, "the table sorted by "+tc.sort, fmt.Sprintf(`new URLSearchParams(location.search).get('sort') === %q && document.querySelector('th[data-col="name"]').getAttribute('aria-sort') === %q && document.querySelectorAll('th[aria-sort]').length === 1 && `+sortedByName, tc.sort, tc.aria, tc.order))
	}
	screenshot(t, ctx, "overview-table-by-name.png")

	// By what needs attention (the default): a device that goes offline
	// moves up among the first.
	if err := chromedp.Do(ctx, chromedp.Navigate(d.URL+"/?view=table")); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the live connection", connected)
	tank.publish("status", true, "offline")
	until(t, ctx, "the offline row among the first", row+`.dataset.status === 'offline' && (() => {
		const rows = [...document.querySelectorAll('tr[data-device]')];
		return rows.slice(0, rows.indexOf(`+row+`)).every(r => r.dataset.status === 'offline');
	})()`)
	fitsAPhone(t, ctx)
	screenshot(t, ctx, "overview-table-phone-dark.png")

	// The device page's strip: a new segment when the device is back.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(d.URL+"/devices/e2e-tank")); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the live connection", connected)
	const last = `[...document.querySelectorAll('[data-testid="strip"] rect')].at(-1)`
	until(t, ctx, "the strip ending offline", last+`?.dataset.status === 'offline'`)
	segments := eval[int](t, ctx, `document.querySelectorAll('[data-testid="strip"] rect').length`)
	tank.publish("status", true, "online")
	tank.publish("telemetry", false, `{"level":58}`)
	until(t, ctx, "a new segment, online and lasting", fmt.Sprintf(`document.querySelectorAll('[data-testid="strip"] rect').length > %d && %s.dataset.status === 'online' && %s.dataset.to === '0' && Number(%s.getAttribute('width')) >= 0`, segments, last, last, last))
	screenshot(t, ctx, "device-strip-live.png")
}
