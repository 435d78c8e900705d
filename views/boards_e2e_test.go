package views

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// setField sets a field of the board editor as a person does: its value,
// then the change event of leaving it.
func setField(t *testing.T, ctx context.Context, id, value string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(
		`(e => { e.value = %q; e.dispatchEvent(new Event('change', {bubbles: true})); return true })(document.getElementById(%q))`, value, id))); err != nil {
		t.Fatalf("setting #%s: %v", id, err)
	}
}

func click(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Click(sel)); err != nil {
		t.Fatalf("clicking %s: %v", sel, err)
	}
}

// exportOf is board id's export, fetched by the signed-in browser.
func exportOf(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`fetch('/boards/%s/export').then(r => r.text())`, id), chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestBoardEndToEnd: an operator makes a board of three panels in the
// browser's editor (typing, choosing from the fleet, reordering, an
// undo), saves it, and finds it after a reload, live; exports it,
// deletes it, imports the file, and gets the same board. Every page
// passes axe-core's WCAG rules.
func TestBoardEndToEnd(t *testing.T) {
	d := startDashboard(t)
	d.fleet(t)
	type dev struct {
		ID, Kind, Location string
		Latest             map[string]any
	}
	var list []dev
	d.getJSON(t, "/api/v1/devices", &list)
	first := list[0]
	var metrics []string
	for m := range first.Latest {
		metrics = append(metrics, m)
	}
	slices.Sort(metrics)
	metric := metrics[0]

	ctx := page(t, d.URL+"/boards")
	errs := consoleErrors(t, ctx)
	if eval[string](t, ctx, `document.querySelector('nav[aria-label="Main"] a[href="/boards"]').textContent`) != "Boards" {
		t.Error("no Boards in the top bar")
	}
	checkAccessible(t, ctx)

	// A new board opens in its editor.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("board-title"), "Boiler room"), chromedp.Submit(chromedp.ID("board-title"))); err != nil {
		t.Fatal(err)
	}
	settle(t, ctx, "the new board's editor", `location.search === "?edit" && !!document.querySelector('[data-testid="board-editor"]')`)
	id := strings.TrimPrefix(eval[string](t, ctx, `location.pathname`), "/boards/")
	until(t, ctx, "the fleet's devices to pick from", fmt.Sprintf(`!!document.querySelector('#dl-device option[value=%q]')`, first.ID))

	// Three panels. The first title is typed, and the click on "Add
	// panel" that ends the typing adds the next.
	click(t, ctx, `[data-testid="add-panel"]`)
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("p0-title"), "Every "+first.Kind)); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, `[data-testid="add-panel"]`)
	click(t, ctx, `[data-testid="add-panel"]`)
	until(t, ctx, "three panels in the editor", `document.querySelectorAll('[data-testid="editor-panel"]').length === 3`)
	if got := eval[string](t, ctx, `document.getElementById('p0-title').value`); got != "Every "+first.Kind {
		t.Errorf("the typed title reads %q", got)
	}
	// 1: a time series of every device of the first device's kind.
	setField(t, ctx, "p0-s0-by", "kind")
	setField(t, ctx, "p0-s0-what", first.Kind)
	setField(t, ctx, "p0-s0-metric", metric)
	setField(t, ctx, "p0-w", "8")
	// 2: the first device's table, by location.
	setField(t, ctx, "p1-type", "table")
	setField(t, ctx, "p1-title", "Where "+first.ID+" is")
	setField(t, ctx, "p1-s0-by", "location")
	setField(t, ctx, "p1-s0-what", first.Location)
	setField(t, ctx, "p1-s0-metric", metric)
	// 3: a stat of the first device, with a threshold and a unit.
	setField(t, ctx, "p2-type", "stat")
	setField(t, ctx, "p2-title", "Now")
	setField(t, ctx, "p2-s0-what", first.ID)
	setField(t, ctx, "p2-s0-metric", metric)
	setField(t, ctx, "p2-unit", "u")
	click(t, ctx, `[data-testid="editor-panel"]:nth-child(3) [data-action="add-threshold"]`)
	setField(t, ctx, "p2-t0-value", "-1000000")
	setField(t, ctx, "p2-t0-level", "ok")
	// The stat moves first; a change of type is undone.
	click(t, ctx, `[data-testid="editor-panel"]:nth-child(3) [data-action="move-up"]`)
	click(t, ctx, `[data-testid="editor-panel"]:nth-child(2) [data-action="move-up"]`)
	setField(t, ctx, "p1-type", "gauge")
	until(t, ctx, "the gauge's scale fields", `!!document.getElementById('p1-min')`)
	click(t, ctx, `[data-testid="undo"]`)
	until(t, ctx, "the undone type", `document.getElementById('p1-type').value === 'timeseries' && !document.getElementById('p1-min')`)
	checkAccessible(t, ctx)

	click(t, ctx, `[data-testid="save-board"]`)
	settle(t, ctx, "the board saved, or why not", `location.search === "" || document.querySelector('[data-testid="editor-status"]').textContent.startsWith('Not saved')`)
	if s := pageText(t, ctx, `[data-testid="editor-status"]`); s != "" && s != "Saving…" {
		t.Fatalf("saving the board: %s", s)
	}
	at(t, ctx, "/boards/"+id)
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the board live", connected)
	types := eval[[]string](t, ctx, `[...document.querySelectorAll('[data-testid="panel"]')].map(p => p.dataset.type)`)
	if got := strings.Join(types, " "); got != "stat timeseries table" {
		t.Fatalf("after a reload the board's panels are %q, want stat timeseries table", got)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('[data-testid="panel"]:nth-child(2) figure[data-lines] [data-line]').length`); n < 1 {
		t.Errorf("the time series of every %s has %d lines; the board:\n%s", first.Kind, n, exportOf(t, ctx, id))
	}
	stat := fmt.Sprintf(`document.querySelector('[data-testid="stat"][data-device=%q] [data-metric=%q]')`, first.ID, metric)
	if eval[string](t, ctx, stat+`.closest('.stat').className`) != "stat level-ok" {
		t.Errorf("the stat's class is %q, want its level ok", eval[string](t, ctx, stat+`.closest('.stat').className`))
	}
	if u := eval[string](t, ctx, stat+`.querySelector('[data-testid="unit"]').textContent`); u != "u" {
		t.Errorf("the stat's unit is %q, want the panel's", u)
	}
	// A live value changes on it, and on the table and the chart.
	t0 := eval[string](t, ctx, stat+`.dataset.t`)
	until(t, ctx, "a newer value on the stat", fmt.Sprintf(`%s.dataset.t > %q`, stat, t0))
	until(t, ctx, "the table's value too", fmt.Sprintf(`document.querySelector('[data-testid="device-table"] tr[data-device=%q] [data-metric=%q]').dataset.t >= %s.dataset.t`, first.ID, metric, stat))
	until(t, ctx, "the chart drawn with points", `document.querySelector('figure[data-lines] canvas').drawing.lines.every(l => l.series.pts.length > 0)`)
	for _, theme := range []string{"light", "dark"} {
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: theme}}}); err != nil {
			t.Fatal(err)
		}
		checkAccessible(t, ctx)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844)); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "no sideways scrolling at phone width", `document.documentElement.scrollWidth <= window.innerWidth`)
	screenshot(t, ctx, "board-phone-dark.png")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "board-dark.png")

	// Export, delete, import: the same board.
	exported := exportOf(t, ctx, id)
	if !strings.Contains(exported, `"title": "Boiler room"`) || strings.Contains(exported, id) {
		t.Errorf("the export:\n%s", exported)
	}
	click(t, ctx, `[data-testid="edit-board"]`)
	at(t, ctx, "/boards/"+id+"?edit")
	// The editor is built first: the button moves down when it is.
	until(t, ctx, "the editor", `!!document.querySelector('[data-testid="board-editor"]')`)
	click(t, ctx, `[data-testid="delete-board"]`)
	at(t, ctx, "/boards")
	until(t, ctx, "no boards", `!!document.querySelector('[data-testid="no-boards"]')`)
	file := filepath.Join(t.TempDir(), "boiler-room.json")
	if err := os.WriteFile(file, []byte(exported), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("board-file"), file), chromedp.Submit(chromedp.ID("board-file"))); err != nil {
		t.Fatal(err)
	}
	settle(t, ctx, "the imported board", `location.pathname.startsWith('/boards/') && document.querySelectorAll('[data-testid="panel"]').length === 3`)
	again := strings.TrimPrefix(eval[string](t, ctx, `location.pathname`), "/boards/")
	if got := exportOf(t, ctx, again); got != exported {
		t.Errorf("export, delete, import, export differs:\n%s\nwas\n%s", got, exported)
	}
	for _, e := range errs() {
		t.Errorf("console: %s", e)
	}
}

// TestBoardVariableAndKiosk: an operator gives a board a variable in the
// editor; a viewer of the board picks a device with it, the URL holds the
// choice, and a link with ?kiosk shows the same board without the chrome.
func TestBoardVariableAndKiosk(t *testing.T) {
	d := startDashboard(t)
	d.fleet(t)
	type dev struct{ ID, Kind string }
	var list []dev
	d.getJSON(t, "/api/v1/devices", &list)
	kind := list[0].Kind
	var ofKind []string
	for _, x := range list {
		if x.Kind == kind {
			ofKind = append(ofKind, x.ID)
		}
	}
	if len(ofKind) < 2 {
		t.Fatalf("the simulated fleet has %d devices of kind %s, want 2 or more", len(ofKind), kind)
	}

	ctx := page(t, d.URL+"/boards")
	// The board generated for the kind: a device picked from it.
	click(t, ctx, fmt.Sprintf(`[data-testid="kind-boards"] a[href="/boards/kind.%s"]`, kind))
	at(t, ctx, "/boards/kind."+kind)
	until(t, ctx, "the generated board live", connected)
	if got := eval[string](t, ctx, `document.getElementById('var-device').value`); got != ofKind[0] {
		t.Errorf("the generated board shows %q, want %s", got, ofKind[0])
	}
	checkAccessible(t, ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate(d.URL+"/boards")); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("board-title"), "One device"), chromedp.Submit(chromedp.ID("board-title"))); err != nil {
		t.Fatal(err)
	}
	settle(t, ctx, "the editor", `!!document.querySelector('[data-testid="board-editor"]')`)
	id := strings.TrimPrefix(eval[string](t, ctx, `location.pathname`), "/boards/")
	click(t, ctx, `[data-action="add-variable"]`)
	setField(t, ctx, "v0-name", "dev")
	setField(t, ctx, "v0-kind", kind)
	click(t, ctx, `[data-testid="add-panel"]`)
	setField(t, ctx, "p0-type", "stat")
	setField(t, ctx, "p0-s0-what", "$dev")
	setField(t, ctx, "p0-s0-metric", "*")
	click(t, ctx, `[data-testid="save-board"]`)
	settle(t, ctx, "a refusal that names the metric", `document.querySelector('[data-testid="editor-status"]').textContent.includes('metric "*" is not')`)
	var one struct{ Latest map[string]any }
	d.getJSON(t, "/api/v1/devices/"+ofKind[1], &one)
	metric := ""
	for m := range one.Latest {
		if metric == "" || m < metric {
			metric = m
		}
	}
	setField(t, ctx, "p0-s0-metric", metric)
	click(t, ctx, `[data-testid="save-board"]`)
	at(t, ctx, "/boards/"+id)

	// The first device of the kind, until another is picked.
	stat := `document.querySelector('[data-testid="stat"]').dataset.device`
	if got := eval[string](t, ctx, stat); got != ofKind[0] {
		t.Errorf("the variable shows %s at first, want %s", got, ofKind[0])
	}
	setField(t, ctx, "var-dev", ofKind[1])
	at(t, ctx, "/boards/"+id+"?var-dev="+ofKind[1])
	until(t, ctx, "the picked device", fmt.Sprintf(`%s === %q`, stat, ofKind[1]))
	until(t, ctx, "the board live", connected)
	if got := eval[string](t, ctx, `document.body.dataset.subscribed`); got != ofKind[1] {
		t.Errorf("the page subscribes to %q, want only %s", got, ofKind[1])
	}

	// The wall: the same board without the chrome.
	if err := chromedp.Do(ctx, chromedp.Navigate(d.URL+"/boards/"+id+"?var-dev="+ofKind[1]+"&kiosk")); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the kiosk live", connected)
	if eval[bool](t, ctx, `!!document.querySelector('header.top:not([hidden]), footer:not([hidden]), nav.crumbs, [data-testid="edit-board"]:not([hidden] *)')`) {
		t.Error("the kiosk shows navigation chrome")
	}
	if got := eval[string](t, ctx, stat); got != ofKind[1] {
		t.Errorf("the kiosk shows %s, want %s", got, ofKind[1])
	}
	if got := eval[string](t, ctx, `[...new FormData(document.querySelector('[data-testid="board-vars"]')).keys()].join(' ')`); got != "var-dev kiosk" {
		t.Errorf("the variable's form sends %q, want var-dev and kiosk kept", got)
	}
	checkAccessible(t, ctx)

	// A 4K wall: no sideways scrolling, light or dark.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(3840, 2160)); err != nil {
		t.Fatal(err)
	}
	for _, theme := range []string{"light", "dark"} {
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: theme}}}); err != nil {
			t.Fatal(err)
		}
		until(t, ctx, "no sideways scrolling on a 4K wall, "+theme, `document.documentElement.scrollWidth <= window.innerWidth`)
	}

	// iotdash restarts; nobody touches the wall: it comes back live.
	shown := `Number(document.querySelector('[data-testid="stat"] [data-metric]')?.dataset.t || 0)`
	before := eval[float64](t, ctx, shown)
	d.stop(t)
	until(t, ctx, "the kiosk to see the server gone", `!(`+connected+`)`)
	d.start(t)
	until(t, ctx, "the kiosk live again after the restart", connected)
	until(t, ctx, "a reading from after the restart on the kiosk", fmt.Sprintf(`%s > %d`, shown, int64(before)))
	stillKiosk(t, ctx)
}
