package views

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
)

// TestThemeCookie: each choice posted is kept in the cookie and the
// browser sent back to its page (never off the site); a page follows the
// cookie in its first paint, the dark palette's link and the color-scheme
// meta saying the choice, and renews a choice of light or dark.
func TestThemeCookie(t *testing.T) {
	choose := ThemeChoice()
	for _, tc := range []struct {
		theme, back string
		status      int
		cookie, to  string
	}{
		{"dark", "/devices/boiler-1?range=1h", http.StatusSeeOther, "dark", "/devices/boiler-1?range=1h"},
		{"light", "/boards/kind.tank?kiosk", http.StatusSeeOther, "light", "/boards/kind.tank?kiosk"},
		{"auto", "/", http.StatusSeeOther, "auto", "/"},
		{"dark", "//elsewhere.example/", http.StatusSeeOther, "dark", "/"},
		{"dark", "https://elsewhere.example/", http.StatusSeeOther, "dark", "/"},
		{"sepia", "/", http.StatusBadRequest, "", ""},
		{"", "/", http.StatusBadRequest, "", ""},
	} {
		req := httptest.NewRequest("POST", "/theme", strings.NewReader(url.Values{"theme": {tc.theme}, "back": {tc.back}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		choose.ServeHTTP(rec, req)
		res := rec.Result()
		if res.StatusCode != tc.status {
			t.Errorf("theme %q: status %d, want %d", tc.theme, res.StatusCode, tc.status)
			continue
		}
		var got string
		for _, c := range res.Cookies() {
			if c.Name == themeCookie {
				got = c.Value
			}
		}
		if got != tc.cookie {
			t.Errorf("theme %q: cookie %q, want %q", tc.theme, got, tc.cookie)
		}
		if loc := res.Header.Get("Location"); loc != tc.to {
			t.Errorf("theme %q back %q: sent to %q, want %q", tc.theme, tc.back, loc, tc.to)
		}
	}

	h := routes(testFleet())
	for _, tc := range []struct {
		cookie        string // none when empty
		media, scheme string
	}{
		{"", "(prefers-color-scheme: dark)", "light dark"},
		{"auto", "(prefers-color-scheme: dark)", "light dark"},
		{"dark", "all", "dark"},
		{"light", "not all", "light"},
		{"sepia", "(prefers-color-scheme: dark)", "light dark"},
	} {
		for _, path := range []string{"/", "/devices/boiler-1", "/no/such/page"} {
			req := httptest.NewRequest("GET", path, nil)
			if tc.cookie != "" {
				req.AddCookie(&http.Cookie{Name: themeCookie, Value: tc.cookie})
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var renewed string
			for _, c := range rec.Result().Cookies() {
				if c.Name == themeCookie && c.MaxAge == int(themeLifetime.Seconds()) {
					renewed = c.Value
				}
			}
			if want := map[string]string{"dark": "dark", "light": "light"}[tc.cookie]; renewed != want {
				t.Errorf("cookie %q, %s: renewed as %q, want %q", tc.cookie, path, renewed, want)
			}
			doc, err := goquery.NewDocumentFromReader(rec.Result().Body)
			if err != nil {
				t.Fatal(err)
			}
			link := doc.Find(`link#theme-dark[rel="stylesheet"]`)
			if href, _ := link.Attr("href"); href != staticURL("dark.css") {
				t.Errorf("cookie %q, %s: the dark palette's link is %q, want %q", tc.cookie, path, href, staticURL("dark.css"))
			}
			if media, _ := link.Attr("media"); media != tc.media {
				t.Errorf("cookie %q, %s: the dark palette's media is %q, want %q", tc.cookie, path, media, tc.media)
			}
			if scheme, _ := doc.Find(`meta[name="color-scheme"]`).Attr("content"); scheme != tc.scheme {
				t.Errorf("cookie %q, %s: color-scheme %q, want %q", tc.cookie, path, scheme, tc.scheme)
			}
		}
	}
}

// TestThemeComesBack: the theme control sends the browser back to the page
// it is on; a page that answers a form's POST, to the page of the form.
func TestThemeComesBack(t *testing.T) {
	for _, tc := range []struct {
		method, target, referer, want string
	}{
		{"GET", "/devices/boiler-1?range=1h", "", "/devices/boiler-1?range=1h"},
		{"POST", "/admin/users", "http://example.com/admin?x=1", "/admin?x=1"},
		{"POST", "/admin/users", "http://elsewhere.example/admin", "/"},
		{"POST", "/admin/users", "", "/"},
	} {
		req := httptest.NewRequest(tc.method, "http://example.com"+tc.target, nil)
		if tc.referer != "" {
			req.Header.Set("Referer", tc.referer)
		}
		if got := chromeOf(withChrome(req.Context(), req)).here; got != tc.want {
			t.Errorf("%s %s from %q: back to %q, want %q", tc.method, tc.target, tc.referer, got, tc.want)
		}
	}
}
