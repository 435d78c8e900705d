package views

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"time"

	"iotdash/auth"
)

// Theme is a browser's choice of colours, kept in a cookie so that the
// first paint of every page has them (a wall in kiosk mode included).
type Theme string

// The themes: ThemeAuto, the default, follows the system's setting.
const (
	ThemeAuto  Theme = "auto"
	ThemeLight Theme = "light"
	ThemeDark  Theme = "dark"
)

// themes are the choices in the order the header offers them.
var themes = []Theme{ThemeAuto, ThemeLight, ThemeDark}

const (
	themeCookie = "theme"
	// themeLifetime is as long as browsers keep a cookie (400 days).
	themeLifetime = 400 * 24 * time.Hour
)

// themeOf is the theme the request's cookie chose; ThemeAuto without one.
func themeOf(r *http.Request) Theme {
	if c, err := r.Cookie(themeCookie); err == nil {
		if t := Theme(c.Value); t.valid() {
			return t
		}
	}
	return ThemeAuto
}

func (t Theme) valid() bool { return slices.Contains(themes, t) }

// darkMedia is the media of the link to the dark palette (static/dark.css):
// the system's setting decides for ThemeAuto; the dark palette always
// applies for ThemeDark and never for ThemeLight. The one place that maps
// a choice to the stylesheets: the page hands it to theme.js on each
// choice's button.
func (t Theme) darkMedia() string {
	switch t {
	case ThemeDark:
		return "all"
	case ThemeLight:
		return "not all"
	}
	return "(prefers-color-scheme: dark)"
}

// colorScheme is the page's color-scheme meta for the theme, so that the
// browser's own parts (scroll bars, form controls, the canvas before the
// stylesheet arrives) agree with it.
func (t Theme) colorScheme() string {
	switch t {
	case ThemeDark:
		return "dark"
	case ThemeLight:
		return "light"
	}
	return "light dark"
}

// label is the choice's name on its button.
func (t Theme) label() string {
	switch t {
	case ThemeDark:
		return "Dark"
	case ThemeLight:
		return "Light"
	}
	return "Auto"
}

// chrome is what the shared layout takes from the request rather than from
// the page's model: the theme, and the page's own URL to come back to
// after choosing another.
type chrome struct {
	theme Theme
	here  string
}

type chromeKey struct{}

func withChrome(ctx context.Context, r *http.Request) context.Context {
	here := r.URL.RequestURI()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// A page that answers a form's POST (one refused, say) comes back
		// to the page the form was on: its path may take no GET.
		here = "/"
		if ref, err := url.Parse(r.Referer()); err == nil && ref.Host == r.Host {
			here = ref.RequestURI()
		}
	}
	return context.WithValue(ctx, chromeKey{}, chrome{theme: themeOf(r), here: here})
}

// chromeOf is the request's chrome; a component rendered outside a
// request follows the system and comes back to the overview.
func chromeOf(ctx context.Context) chrome {
	if c, ok := ctx.Value(chromeKey{}).(chrome); ok {
		return c
	}
	return chrome{theme: ThemeAuto, here: "/"}
}

// ThemeChoice serves the header's theme control (POST theme=auto|light|dark,
// back=the page's path): it keeps the choice in a cookie and sends the
// browser back to the page, or answers 400 to another theme.
func ThemeChoice() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := Theme(r.PostFormValue("theme"))
		if !t.valid() {
			http.Error(w, "The theme is auto, light or dark.", http.StatusBadRequest)
			return
		}
		keepTheme(w, r, t)
		http.Redirect(w, r, auth.SafeNext(r.PostFormValue("back")), http.StatusSeeOther)
	})
}

// keepTheme sets the theme's cookie for themeLifetime from now.
func keepTheme(w http.ResponseWriter, r *http.Request, t Theme) {
	http.SetCookie(w, &http.Cookie{Name: themeCookie, Value: string(t), Path: "/", MaxAge: int(themeLifetime / time.Second),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
}
