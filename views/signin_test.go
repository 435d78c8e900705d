package views

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"iotdash/internal/testenv"
)

// consoleErrors collects what a tab writes to its console at the error
// level (a script's exception, a Content-Security-Policy refusal, a failed
// load) until the test ends.
func consoleErrors(t *testing.T, ctx context.Context) func() []string {
	messages := chromedp.Console(ctx)
	var mu sync.Mutex
	var errs []string
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == "error" {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("%s [%s] %s", m.Type, m.Source, m.Text))
				mu.Unlock()
			}
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), errs...)
	}
}

// at waits until the tab has loaded path (and query), through any
// navigation a form's POST starts.
func at(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	settle(t, ctx, "the browser at "+path, fmt.Sprintf(`location.pathname + location.search === %q && document.readyState === "complete"`, path))
}

// settle waits until expr holds in the tab, through navigations (which
// fail an evaluation while the page changes).
func settle(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, what, func() bool {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		return err == nil && ok
	})
}

func pageText(t *testing.T, ctx context.Context, selector string) string {
	t.Helper()
	return eval[string](t, ctx, fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, selector))
}

// TestSignInEndToEnd: a person signs in on the form (after a wrong
// password), reaches the admin page, makes an API token, signs out; a
// viewer signs in and is refused the admin page. Every page works under
// the Content-Security-Policy, with nothing on the console at the error
// level but the refused admin page's own 403.
func TestSignInEndToEnd(t *testing.T) {
	d := startDashboard(t)
	// The admin adds a viewer, as a script would: HTTP Basic.
	req, _ := http.NewRequest("POST", d.URL+"/admin/users", strings.NewReader(url.Values{"username": {"vera"}, "role": {"viewer"}, "password": {"vera-password"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("admin", adminPassword)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("adding a viewer: %v %v", res, err)
	}

	ctx := browser(t)
	errs := consoleErrors(t, ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate(d.URL+"/admin")); err != nil {
		t.Fatal(err)
	}
	at(t, ctx, "/login?next=%2Fadmin")

	signInAs := func(user, password string) {
		if err := chromedp.Do(ctx,
			chromedp.SetValue(chromedp.ID("username"), user),
			chromedp.SetValue(chromedp.ID("password"), password),
			chromedp.Submit(chromedp.ID("password")),
		); err != nil {
			t.Fatal(err)
		}
	}
	wrongAt := len(errs())
	signInAs("admin", "not-the-password")
	settle(t, ctx, "the form to say the password was wrong", `(document.querySelector('[data-testid="login-error"]')||{}).textContent === "Wrong user name or password."`)
	if got := eval[string](t, ctx, `document.getElementById("username").value`); got != "admin" {
		t.Errorf("after a wrong password the form holds user %q, want admin kept", got)
	}
	checkAccessible(t, ctx)

	signInAs("admin", adminPassword)
	at(t, ctx, "/admin")
	if who := pageText(t, ctx, ".who"); !strings.Contains(who, "admin") || !strings.Contains(who, "(admin)") {
		t.Errorf("the top bar says %q, want the admin signed in", who)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('[data-testid="users"] tbody tr').length`); n != 2 {
		t.Errorf("the admin page lists %d people, want admin and vera", n)
	}

	// An API token, made on the page, shown once, works with the API.
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("token-name"), "wall screen script"),
		chromedp.Submit(chromedp.ID("token-name")),
	); err != nil {
		t.Fatal(err)
	}
	settle(t, ctx, "the new token", `!!document.querySelector('[data-testid="new-token"] .secret-value')`)
	token := pageText(t, ctx, `[data-testid="new-token"] .secret-value`)
	checkAccessible(t, ctx)
	req, _ = http.NewRequest("GET", d.URL+"/api/v1/devices", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Errorf("the API with the token made on the admin page: %v %v", res, err)
	}

	// Signing out ends the session: the fleet page asks to sign in again.
	if err := chromedp.Do(ctx, chromedp.Click(`[data-testid="sign-out"]`)); err != nil {
		t.Fatal(err)
	}
	at(t, ctx, "/login")
	if err := chromedp.Do(ctx, chromedp.Navigate(d.URL+"/")); err != nil {
		t.Fatal(err)
	}
	at(t, ctx, "/login?next=%2F")

	// A viewer sees the fleet, no admin link, and is refused the admin page.
	signInAs("vera", "vera-password")
	at(t, ctx, "/")
	until(t, ctx, "the fleet live", connected)
	if eval[bool](t, ctx, `!!document.querySelector('a[href="/admin"]')`) {
		t.Error("a viewer is shown the admin link")
	}

	// She reads times in her own zone, chosen on her account page.
	if err := chromedp.Do(ctx, chromedp.Click(`a.who`)); err != nil {
		t.Fatal(err)
	}
	at(t, ctx, "/account")
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.ID("zone"), "Asia/Kolkata"), chromedp.Submit(chromedp.ID("zone"))); err != nil {
		t.Fatal(err)
	}
	at(t, ctx, "/account?saved=zone")
	if err := chromedp.Do(ctx, chromedp.Navigate(d.URL+"/")); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the fleet live", connected)
	if foot := pageText(t, ctx, "footer"); !strings.Contains(foot, "times in Asia/Kolkata") {
		t.Errorf("after choosing Asia/Kolkata the footer says %q", foot)
	}
	if abs := pageText(t, ctx, `[data-testid="last-seen"] .abs`); !strings.Contains(abs, "+05:30") {
		t.Errorf("a last-seen time reads %q, want it in +05:30", abs)
	}

	// She changes her password: signed out, and in again with the new one.
	if err := chromedp.Do(ctx, chromedp.Navigate(d.URL+"/account"),
		chromedp.SetValue(chromedp.ID("current"), "vera-password"),
		chromedp.SetValue(chromedp.ID("new-password"), "vera-new-password"),
		chromedp.Submit(chromedp.ID("new-password"))); err != nil {
		t.Fatal(err)
	}
	at(t, ctx, "/login?next=%2Faccount")
	signInAs("vera", "vera-new-password")
	at(t, ctx, "/account")

	before := len(errs())
	if err := chromedp.Do(ctx, chromedp.Navigate(d.URL+"/admin")); err != nil {
		t.Fatal(err)
	}
	if body := pageText(t, ctx, "body"); !strings.Contains(body, "needs the admin role") {
		t.Errorf("a viewer at /admin sees %q, want a refusal that names the role", body)
	}

	for i, e := range errs() {
		switch {
		case i == wrongAt && strings.Contains(e, "status of 401"):
			// the refused sign-in's own answer
		case i == before && strings.Contains(e, "status of 403"):
			// the refused admin page's own answer
		default:
			t.Errorf("console: %s", e)
		}
	}
}
