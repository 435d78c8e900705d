package views

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The page's background in each palette (--bg of style.css and dark.css),
// as getComputedStyle says it.
const (
	background = `getComputedStyle(document.body).backgroundColor`
	lightBg    = "rgb(246, 247, 249)"
	darkBg     = "rgb(18, 20, 23)"
)

// sparkPalette says in which palette's chart line (--chart-line) the
// first sparkline is drawn: "light", "dark", "both" or "none".
const sparkPalette = `(() => {
	const c = document.querySelector('canvas.spark');
	if (!c || !c.width) return 'none';
	const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
	let light = 0, dark = 0;
	for (let i = 0; i < d.length; i += 4) {
		if (d[i + 3] < 200) continue;
		const near = (r, g, b) => Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 60;
		if (near(11, 87, 208)) light++;
		else if (near(138, 180, 248)) dark++;
	}
	return light && dark ? 'both' : light ? 'light' : dark ? 'dark' : 'none';
})()`

// systemScheme sets the system's setting the tab sees.
func systemScheme(t *testing.T, ctx context.Context, scheme string) {
	t.Helper()
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
		t.Fatal(err)
	}
}

// looks waits until the tab's page has the background bg.
func looks(t *testing.T, ctx context.Context, what, bg string) {
	t.Helper()
	until(t, ctx, what, fmt.Sprintf(`document.readyState === 'complete' && %s === %q`, background, bg))
}

// noSideways waits until the tab's page is no wider than the window, and
// fails the test naming what sticks out if it does not come to that.
func noSideways(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	const fits = `document.documentElement.scrollWidth <= window.innerWidth`
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fits))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.body.querySelectorAll('*')]
		.filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5 && ![...e.children].some(c => c.getBoundingClientRect().right > window.innerWidth + 0.5))
		.slice(0, 8).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\s+/).join('.') : '') + ' to ' + Math.round(e.getBoundingClientRect().right) + 'px').join('; ')`))
	t.Fatalf("%s: the page scrolls sideways (%d px wide in a window of %d); what sticks out: %s", what,
		eval[int](t, ctx, `document.documentElement.scrollWidth`), eval[int](t, ctx, `window.innerWidth`), out)
}

// choose chooses a theme in the tab's header and waits until the server
// keeps it.
func choose(t *testing.T, ctx context.Context, theme string) {
	t.Helper()
	click(t, ctx, fmt.Sprintf(`[data-testid="theme"] button[value=%q]`, theme))
	until(t, ctx, "the server to keep "+theme, fmt.Sprintf(`document.querySelector('[data-testid="theme"]').dataset.kept === %q`, theme))
}

// goTo opens path in the tab and waits until it has loaded.
func goTo(t *testing.T, ctx context.Context, base, path string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+path)); err != nil {
		t.Fatal(err)
	}
	at(t, ctx, path)
}

// firstDevice is a simulated device once every one reports, its kind and
// the first of its metrics by name.
func firstDevice(t *testing.T, d *dashboard) (id, kind, metric string) {
	t.Helper()
	d.fleet(t)
	var list []struct {
		ID, Kind string
		Latest   map[string]json.RawMessage
	}
	d.getJSON(t, "/api/v1/devices", &list)
	for m := range list[0].Latest {
		if metric == "" || m < metric {
			metric = m
		}
	}
	return list[0].ID, list[0].Kind, metric
}

// TestThemeEndToEnd, in Chromium against the built binary, the system
// set light: dark chosen in the header turns the page dark at once, its
// sparklines redrawn in the dark palette, without leaving the page; it
// stays dark after a reload, on another page (one without live scripts)
// and on a kiosk board, which has no header. Auto follows the system
// again, both ways. Without scripts, the same form (a plain POST with the
// session) keeps the choice and comes back to the page.
func TestThemeEndToEnd(t *testing.T) {
	d := startDashboard(t)
	id, kind, _ := firstDevice(t, d)
	ctx := page(t, d.URL+"/")
	systemScheme(t, ctx, "light")
	looks(t, ctx, "the overview light, as the system", lightBg)
	until(t, ctx, "a sparkline in the light palette", sparkPalette+` === 'light'`)

	stay := `window.themeTestMark === 1`
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.themeTestMark = 1`)); err != nil {
		t.Fatal(err)
	}
	choose(t, ctx, "dark")
	looks(t, ctx, "the overview dark once dark is chosen", darkBg)
	until(t, ctx, "the sparkline redrawn in the dark palette", sparkPalette+` === 'dark'`)
	if !eval[bool](t, ctx, stay) {
		t.Error("choosing a theme reloaded the page; with scripts it switches in place")
	}
	if got := eval[string](t, ctx, `[...document.querySelectorAll('[data-testid="theme"] [aria-pressed="true"]')].map(b => b.value).join(' ')`); got != "dark" {
		t.Errorf("pressed: %q, want dark", got)
	}
	if got := eval[string](t, ctx, `document.querySelector('meta[name="color-scheme"]').content`); got != "dark" {
		t.Errorf("color-scheme %q, want dark", got)
	}

	// The choice sticks: the cookie the background POST set.
	goTo(t, ctx, d.URL, "/")
	looks(t, ctx, "the overview dark after a reload", darkBg)
	goTo(t, ctx, d.URL, "/alerts")
	looks(t, ctx, "the alerts page dark", darkBg)
	wall := fmt.Sprintf("/boards/kind.%s?var-device=%s&kiosk", kind, id)
	goTo(t, ctx, d.URL, wall)
	looks(t, ctx, "the kiosk board dark", darkBg)
	if eval[bool](t, ctx, `!!document.querySelector('header.top:not([hidden])')`) {
		t.Error("the kiosk shows the header")
	}

	// Auto follows the system again, which the charts follow too.
	goTo(t, ctx, d.URL, "/devices/"+id)
	choose(t, ctx, "auto")
	looks(t, ctx, "the device page light again, as the system", lightBg)
	goTo(t, ctx, d.URL, "/")
	looks(t, ctx, "the overview light after a reload", lightBg)
	until(t, ctx, "a sparkline in the light palette", sparkPalette+` === 'light'`)
	systemScheme(t, ctx, "dark")
	looks(t, ctx, "the overview dark as the system turns dark", darkBg)
	until(t, ctx, "the sparkline redrawn in the dark palette", sparkPalette+` === 'dark'`)

	// Light chosen while the system is dark.
	choose(t, ctx, "light")
	looks(t, ctx, "the overview light once light is chosen", lightBg)
	goTo(t, ctx, d.URL, wall)
	looks(t, ctx, "the kiosk board light", lightBg)

	// Without scripts: the form's POST, as a browser without them sends it.
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.PostForm(d.URL+"/login", url.Values{"username": {"admin"}, "password": {adminPassword}, "next": {"/"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("signing in: %s", res.Status)
	}
	darkLink := func(path string) string {
		t.Helper()
		res, err := client.Get(d.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		doc, err := goquery.NewDocumentFromReader(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		media, _ := doc.Find(`link#theme-dark`).Attr("media")
		return media
	}
	if got, want := darkLink("/events"), "(prefers-color-scheme: dark)"; got != want {
		t.Errorf("before a choice, the dark palette's media is %q, want %q", got, want)
	}
	res, err = client.PostForm(d.URL+"/theme", url.Values{"theme": {"dark"}, "back": {"/events?device=" + id}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got, want := res.Header.Get("Location"), "/events?device="+id; res.StatusCode != http.StatusSeeOther || got != want {
		t.Errorf("POST /theme: %s to %q, want 303 to %q", res.Status, got, want)
	}
	if got := darkLink("/events"); got != "all" {
		t.Errorf("after choosing dark, the dark palette's media is %q, want all", got)
	}
}

// TestEveryPageFitsEveryScreen, in Chromium against the built binary and
// its simulated fleet, signed in as an admin: every page fits a 360 px
// phone, a 390 px one and a 4K wall without sideways scrolling (a wide
// table scrolls in its own box), with the system light, the system dark,
// and dark chosen on the page while the system is light; and axe-core
// finds nothing on a page in dark and light chosen against the system.
func TestEveryPageFitsEveryScreen(t *testing.T) {
	d := startDashboard(t)
	id, kind, metric := firstDevice(t, d)
	board := d.postBoard(t, fmt.Sprintf(`{"title":"A wall of every kind of panel, with a long title that must wrap on a phone","panels":[
		{"type":"timeseries","title":"Every %[1]s","series":[{"kind":%[1]q,"metric":%[3]q}]},
		{"type":"stat","title":"One","series":[{"device":%[2]q,"metric":%[3]q}]},
		{"type":"gauge","title":"Gauge","series":[{"device":%[2]q,"metric":%[3]q}]},
		{"type":"table","title":"Table","series":[{"kind":%[1]q,"metric":%[3]q}]}]}`, kind, id, metric))
	pages := []string{
		"/", "/?view=table", "/?group=location", "/?view=table&group=kind",
		"/devices/" + id, "/devices/" + id + "?range=24h",
		"/boards", "/boards/kind." + kind + "?var-device=" + id, "/boards/kind." + kind + "?var-device=" + id + "&kiosk",
		"/boards/" + board, "/boards/" + board + "?kiosk", "/boards/" + board + "/versions",
		"/alerts", "/events", "/account", "/admin", "/no/such/page",
	}
	sizes := []struct{ w, h int64 }{{360, 740}, {390, 844}, {3840, 2160}}
	ctx := pageIn(t, browserFor(t, 10*time.Minute), d.URL+"/")
	fits := func(how string, schemes ...string) {
		t.Helper()
		for _, path := range pages {
			goTo(t, ctx, d.URL, path)
			until(t, ctx, path+" live, if it is a live page", `!document.body.dataset.live || `+connected)
			for _, s := range sizes {
				if err := chromedp.Do(ctx, chromedp.EmulateViewport(s.w, s.h)); err != nil {
					t.Fatal(err)
				}
				for _, scheme := range schemes {
					systemScheme(t, ctx, scheme)
					want := lightBg
					if scheme == "dark" || how == "dark chosen" {
						want = darkBg
					}
					what := fmt.Sprintf("%s at %d×%d, system %s, %s", path, s.w, s.h, scheme, how)
					looks(t, ctx, what+": its palette", want)
					noSideways(t, ctx, what)
				}
			}
		}
	}
	fits("auto", "light", "dark")

	choose(t, ctx, "dark")
	looks(t, ctx, "dark chosen", darkBg)
	fits("dark chosen", "light")

	// Axe on a page dark against a light system, and light against a dark one.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatal(err)
	}
	goTo(t, ctx, d.URL, "/devices/"+id)
	systemScheme(t, ctx, "light")
	looks(t, ctx, "the device page dark, chosen", darkBg)
	checkAccessible(t, ctx)
	choose(t, ctx, "light")
	systemScheme(t, ctx, "dark")
	looks(t, ctx, "the device page light, chosen", lightBg)
	checkAccessible(t, ctx)

	// The sign-in page fits too, and follows the choice a browser made.
	signedOut := browser(t)
	if _, err := chromedp.Call(signedOut, network.SetCookie, network.SetCookieParams{Name: "theme", Value: "dark", URL: d.URL}); err != nil {
		t.Fatal(err)
	}
	systemScheme(t, signedOut, "light")
	if err := chromedp.Do(signedOut, chromedp.Navigate(d.URL+"/login")); err != nil {
		t.Fatal(err)
	}
	looks(t, signedOut, "the sign-in page dark, chosen", darkBg)
	for _, s := range sizes {
		if err := chromedp.Do(signedOut, chromedp.EmulateViewport(s.w, s.h)); err != nil {
			t.Fatal(err)
		}
		noSideways(t, signedOut, fmt.Sprintf("the sign-in page at %d×%d", s.w, s.h))
	}
}
