package auth_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"iotdash/auth"
	"iotdash/store/sqlite"
)

// site is a Service in front of three routes, one per role, as iotdash
// mounts its own.
type site struct {
	svc *auth.Service
	srv *httptest.Server
}

func newSite(t *testing.T, cfg auth.Config) *site {
	t.Helper()
	docs, err := sqlite.OpenDocs(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docs.Close() })
	cfg.Store = docs
	svc := auth.New(cfg)
	mux := http.NewServeMux()
	who := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.From(r.Context())
		fmt.Fprintf(w, "%s %s %s", p.Name, p.Role, p.Via)
	})
	mux.Handle("GET /{$}", svc.Require(auth.Viewer, who))
	mux.Handle("GET /api/v1/x", svc.Require(auth.Viewer, who))
	mux.Handle("POST /api/v1/op", svc.Require(auth.Operator, who))
	mux.Handle("GET /admin", svc.Require(auth.Admin, who))
	mux.Handle("/login", svc.Login(func(w http.ResponseWriter, r *http.Request, status int, f auth.LoginForm) {
		w.WriteHeader(status)
		fmt.Fprintf(w, "form next=%s error=%s", f.Next, f.Error)
	}))
	mux.Handle("POST /logout", svc.Require(auth.Viewer, svc.Logout()))
	s := &site{svc: svc, srv: httptest.NewServer(mux)}
	t.Cleanup(s.srv.Close)
	return s
}

func (s *site) do(t *testing.T, c *http.Client, method, path string, set func(*http.Request)) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, s.srv.URL+path, nil)
	if set != nil {
		set(req)
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func basic(user, password string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, password) }
}

func bearer(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

func TestRolesOverBasicAndTokens(t *testing.T) {
	s := newSite(t, auth.Config{})
	ctx := context.Background()
	password, link, err := s.svc.Bootstrap(ctx, "")
	if err != nil || len(password) < auth.MinPasswordLength || !strings.HasPrefix(link, "/login?code=") {
		t.Fatalf("Bootstrap = %q, %q, %v; want a generated password and a sign-in link", password, link, err)
	}
	if again, _, _ := s.svc.Bootstrap(ctx, ""); again != "" {
		t.Fatalf("a second Bootstrap set a password again")
	}
	if err := s.svc.AddUser(ctx, "vera", auth.Viewer, "viewer-password"); err != nil {
		t.Fatal(err)
	}
	if err := s.svc.AddUser(ctx, "otto", auth.Operator, "short"); err == nil {
		t.Fatal("a 5-character password was accepted")
	}
	_, viewerToken, err := s.svc.CreateToken(ctx, "grafana", auth.Viewer, "admin")
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name   string
		method string
		path   string
		set    func(*http.Request)
		want   int
	}{
		{"anonymous API", "GET", "/api/v1/x", nil, 401},
		{"anonymous page", "GET", "/admin", nil, 401}, // not a browser: no Accept: text/html
		{"viewer reads", "GET", "/api/v1/x", basic("vera", "viewer-password"), 200},
		{"viewer may not operate", "POST", "/api/v1/op", basic("vera", "viewer-password"), 403},
		{"viewer may not administer", "GET", "/admin", basic("vera", "viewer-password"), 403},
		{"admin administers", "GET", "/admin", basic("admin", password), 200},
		{"wrong password", "GET", "/api/v1/x", basic("vera", "not-her-password"), 401},
		{"unknown user", "GET", "/api/v1/x", basic("nobody", "whatever-it-is"), 401},
		{"viewer token reads", "GET", "/api/v1/x", bearer(viewerToken), 200},
		{"viewer token may not operate", "POST", "/api/v1/op", bearer(viewerToken), 403},
		{"forged token", "GET", "/api/v1/x", bearer(viewerToken[:len(viewerToken)-2] + "xx"), 401},
	} {
		if got, body := s.do(t, nil, c.method, c.path, c.set); got != c.want {
			t.Errorf("%s: %s %s = %d %s, want %d", c.name, c.method, c.path, got, body, c.want)
		}
	}

	tokens, _ := s.svc.Tokens(ctx)
	if err := s.svc.RevokeToken(ctx, tokens[0].ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.do(t, nil, "GET", "/api/v1/x", bearer(viewerToken)); got != 401 {
		t.Errorf("a revoked token gets %d, want 401", got)
	}
	if err := s.svc.DeleteUser(ctx, "admin"); err == nil {
		t.Error("the last admin was deleted")
	}
}

func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

func TestSessionsFromTheFormAndTheOneTimeLink(t *testing.T) {
	s := newSite(t, auth.Config{})
	ctx := context.Background()
	_, link, _ := s.svc.Bootstrap(ctx, "the-admin-password")
	page := func(r *http.Request) { r.Header.Set("Accept", "text/html") }

	// A page asked for before signing in sends the browser to sign in,
	// and back where it was going afterwards.
	b := browser()
	if code, body := s.do(t, b, "GET", "/admin", page); code != 200 || !strings.Contains(body, "form next=/admin") {
		t.Fatalf("GET /admin signed out = %d %q, want the sign-in form with next=/admin", code, body)
	}
	form := url.Values{"username": {"admin"}, "password": {"the-admin-password"}, "next": {"/admin"}}
	resp, err := b.PostForm(s.srv.URL+"/login", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "admin admin session" {
		t.Fatalf("after signing in, /admin = %d %q, want the admin's session", resp.StatusCode, body)
	}
	cookie := b.Jar.Cookies(resp.Request.URL)[0]
	if cookie.Name != auth.CookieName {
		t.Fatalf("cookie %s", cookie.Name)
	}

	// Changing the password signs every session out.
	if err := s.svc.SetPassword(ctx, "admin", "a-new-admin-password"); err != nil {
		t.Fatal(err)
	}
	if code, _ := s.do(t, b, "GET", "/api/v1/x", nil); code != 401 {
		t.Fatalf("a session of the old password gets %d, want 401", code)
	}

	// The one-time link signs in once.
	b2 := browser()
	if code, body := s.do(t, b2, "GET", link, nil); code != 200 || body != "admin admin session" {
		t.Fatalf("following the one-time link = %d %q, want signed in as admin", code, body)
	}
	if code, _ := s.do(t, browser(), "GET", link, nil); code != 401 {
		t.Fatalf("the one-time link worked twice")
	}

	// Signing out ends the session.
	if code, _ := s.do(t, b2, "POST", "/logout", nil); code != 200 {
		t.Fatalf("sign out = %d", code)
	}
	if code, _ := s.do(t, b2, "GET", "/api/v1/x", nil); code != 401 {
		t.Fatalf("after signing out /api/v1/x = %d, want 401", code)
	}

	// A next that leaves the site goes home instead.
	resp, err = browser().PostForm(s.srv.URL+"/login", url.Values{"username": {"admin"}, "password": {"a-new-admin-password"}, "next": {"//evil.example/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Host != strings.TrimPrefix(s.srv.URL, "http://") || resp.Request.URL.Path != "/" {
		t.Fatalf("next=//evil.example/ went to %s", resp.Request.URL)
	}
}

func TestWrongPasswordsAreLimited(t *testing.T) {
	s := newSite(t, auth.Config{})
	s.svc.Bootstrap(context.Background(), "the-admin-password")
	limited := 0
	for i := range 30 {
		code, _ := s.do(t, nil, "GET", "/api/v1/x", basic("admin", fmt.Sprintf("guess-%d-guess", i)))
		if code == http.StatusTooManyRequests {
			limited++
		} else if code != http.StatusUnauthorized {
			t.Fatalf("guess %d = %d", i, code)
		}
	}
	if limited < 20 {
		t.Fatalf("%d of 30 quick wrong passwords were refused as too many, want at least 20", limited)
	}
	// The right password is refused too while the user is limited: a
	// guesser cannot tell a hit.
	if code, _ := s.do(t, nil, "GET", "/api/v1/x", basic("admin", "the-admin-password")); code != http.StatusTooManyRequests {
		t.Fatalf("the right password during the limit = %d, want 429", code)
	}
	// The form says the same.
	resp, _ := http.PostForm(s.srv.URL+"/login", url.Values{"username": {"admin"}, "password": {"again-a-guess"}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("form during the limit = %d, want 429", resp.StatusCode)
	}
}

func TestProxyHeaderOnlyFromTheProxy(t *testing.T) {
	from := func(cidr string) *site {
		return newSite(t, auth.Config{ProxyHeader: "X-Forwarded-User", ProxyFrom: []netip.Prefix{netip.MustParsePrefix(cidr)}})
	}
	user := func(name string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("X-Forwarded-User", name) }
	}
	trusted := from("127.0.0.0/8")
	trusted.svc.Bootstrap(context.Background(), "the-admin-password")
	if code, body := trusted.do(t, nil, "GET", "/admin", user("admin")); code != 200 || body != "admin admin proxy" {
		t.Errorf("admin named by the trusted proxy = %d %q", code, body)
	}
	if code, body := trusted.do(t, nil, "GET", "/api/v1/x", user("newcomer")); code != 200 || body != "newcomer viewer proxy" {
		t.Errorf("someone the proxy signed in, unknown here = %d %q, want a viewer", code, body)
	}
	untrusted := from("10.0.0.0/8")
	untrusted.svc.Bootstrap(context.Background(), "the-admin-password")
	if code, _ := untrusted.do(t, nil, "GET", "/admin", user("admin")); code != 401 {
		t.Errorf("the header from an address that is not the proxy's = %d, want 401", code)
	}
}
