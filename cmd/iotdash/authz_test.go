package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"iotdash/internal/testenv"
)

// request is one request to a route, and the status it gets from someone
// allowed to make it.
type request struct {
	method, path string
	form         url.Values
	ok           int
}

// who may use each route, written here apart from routes.go, so that a
// route given the wrong role in the table fails this test.
var matrix = map[string]struct {
	role string // anyone, viewer, operator or admin
	req  request
}{
	"GET /login":                        {"anyone", request{"GET", "/login", nil, 200}},
	"POST /login":                       {"anyone", request{"POST", "/login", url.Values{"username": {"x"}, "password": {"y"}}, 401}},
	"POST /logout":                      {"viewer", request{"POST", "/logout", url.Values{}, 200}}, // followed to /login
	"GET /static/":                      {"anyone", request{"GET", "/static/style.css", nil, 200}},
	"GET /healthz":                      {"anyone", request{"GET", "/healthz", nil, 200}},
	"GET /readyz":                       {"anyone", request{"GET", "/readyz", nil, 200}},
	"GET /{$}":                          {"viewer", request{"GET", "/", nil, 200}},
	"GET /devices/{id}":                 {"viewer", request{"GET", "/devices/nope", nil, 404}},
	"GET /ws":                           {"viewer", request{"GET", "/ws", nil, 426}}, // not an upgrade
	"GET /api/v1/devices":               {"viewer", request{"GET", "/api/v1/devices", nil, 200}},
	"GET /api/v1/devices/{id}":          {"viewer", request{"GET", "/api/v1/devices/nope", nil, 404}},
	"GET /api/v1/events":                {"viewer", request{"GET", "/api/v1/events", nil, 200}},
	"GET /events":                       {"viewer", request{"GET", "/events", nil, 200}},
	"GET /api/v1/query":                 {"viewer", request{"GET", "/api/v1/query?device=nope&metric=m", nil, 404}},
	"GET /api/v1/openapi.json":          {"viewer", request{"GET", "/api/v1/openapi.json", nil, 200}},
	"GET /api/v1/alerts":                {"viewer", request{"GET", "/api/v1/alerts?state=firing", nil, 200}},
	"GET /api/v1/alerts/history":        {"viewer", request{"GET", "/api/v1/alerts/history?severity=critical&from=-7d", nil, 200}},
	"POST /api/v1/alerts/{id}/{action}": {"operator", request{"POST", "/api/v1/alerts/nope/ack", nil, 404}},
	"GET /api/v1/alerts/rules":          {"viewer", request{"GET", "/api/v1/alerts/rules", nil, 200}},
	"POST /api/v1/alerts/rules":         {"operator", request{"POST", "/api/v1/alerts/rules", url.Values{"name": {"x"}}, 400}},
	"GET /api/v1/alerts/rules/{id}":     {"viewer", request{"GET", "/api/v1/alerts/rules/limits", nil, 200}},
	"PUT /api/v1/alerts/rules/{id}":     {"operator", request{"PUT", "/api/v1/alerts/rules/nope", url.Values{"name": {"x"}}, 400}},
	"DELETE /api/v1/alerts/rules/{id}":  {"operator", request{"DELETE", "/api/v1/alerts/rules/nope", nil, 404}},
	"GET /api/v1/boards":                {"viewer", request{"GET", "/api/v1/boards", nil, 200}},
	"POST /api/v1/boards":               {"operator", request{"POST", "/api/v1/boards", url.Values{"title": {"x"}}, 400}},
	"GET /api/v1/boards/{id}":           {"viewer", request{"GET", "/api/v1/boards/nope", nil, 404}},
	"PUT /api/v1/boards/{id}":           {"operator", request{"PUT", "/api/v1/boards/nope", url.Values{"title": {"x"}}, 400}},
	"DELETE /api/v1/boards/{id}":        {"operator", request{"DELETE", "/api/v1/boards/nope", nil, 404}},
	"GET /api/v1/boards/{id}/versions":  {"viewer", request{"GET", "/api/v1/boards/nope/versions", nil, 404}},
	"/api/":                             {"viewer", request{"GET", "/api/v2/nothing", nil, 404}},
	"/":                                 {"viewer", request{"GET", "/nothing", nil, 404}},
	"GET /boards":                       {"viewer", request{"GET", "/boards", nil, 200}},
	"GET /boards/{id}":                  {"viewer", request{"GET", "/boards/nope", nil, 404}},
	"GET /boards/{id}/export":           {"viewer", request{"GET", "/boards/nope/export", nil, 404}},
	"GET /boards/{id}/versions":         {"viewer", request{"GET", "/boards/nope/versions", nil, 404}},
	"POST /boards":                      {"operator", request{"POST", "/boards", url.Values{"title": {" "}}, 400}},
	"POST /boards/import":               {"operator", request{"POST", "/boards/import", url.Values{"board": {"{"}}, 400}},
	"POST /boards/{id}":                 {"operator", request{"POST", "/boards/nope", url.Values{"board": {`{"title":"x","panels":[]}`}}, 404}},
	"POST /boards/{id}/restore":         {"operator", request{"POST", "/boards/nope/restore", url.Values{"version": {"1"}}, 404}},
	"POST /boards/{id}/delete":          {"operator", request{"POST", "/boards/nope/delete", url.Values{}, 404}},
	"GET /alerts":                       {"viewer", request{"GET", "/alerts", nil, 200}},
	"POST /alerts/rules":                {"operator", request{"POST", "/alerts/rules", url.Values{"name": {"x"}}, 400}},
	"POST /alerts/rules/{id}/{action}":  {"operator", request{"POST", "/alerts/rules/nope/off", url.Values{}, 404}},
	"POST /alerts/{key}/{action}":       {"operator", request{"POST", "/alerts/nope/ack", url.Values{}, 404}},
	"GET /account":                      {"viewer", request{"GET", "/account", nil, 200}},
	"POST /account/{what}":              {"viewer", request{"POST", "/account/zone", url.Values{"zone": {"Mars/Olympus"}}, 400}},
	"POST /theme":                       {"viewer", request{"POST", "/theme", url.Values{"theme": {"sepia"}}, 400}},
	"GET /admin":                        {"admin", request{"GET", "/admin", nil, 200}},
	"POST /admin/{kind}":                {"admin", request{"POST", "/admin/users", url.Values{"username": {"bad name"}, "role": {"viewer"}, "password": {"long-enough-pw"}}, 400}},
	"POST /admin/{kind}/{key}/{action}": {"admin", request{"POST", "/admin/tokens/nope/revoke", url.Values{}, 404}},
	"GET /metrics":                      {"admin", request{"GET", "/metrics", nil, 200}},
	"GET /debug/pprof/":                 {"admin", request{"GET", "/debug/pprof/", nil, 200}},
	"GET /debug/pprof/profile":          {"admin", request{"GET", "/debug/pprof/profile?seconds=1", nil, 200}},
	"GET /debug/pprof/trace":            {"admin", request{"GET", "/debug/pprof/trace?seconds=1", nil, 200}},
}

var roleRank = map[string]int{"anyone": 0, "viewer": 1, "operator": 2, "admin": 3}

// TestEveryRouteIsInTheMatrix: a route added to routes.go without saying
// here who may use it fails.
func TestEveryRouteIsInTheMatrix(t *testing.T) {
	var patterns []string
	for _, r := range table(deps{registry: prometheus.NewRegistry(), pprof: true}, http.NewServeMux()) {
		patterns = append(patterns, r.pattern)
		if _, ok := matrix[r.pattern]; !ok {
			t.Errorf("route %q is not in the authorisation matrix (authz_test.go)", r.pattern)
		}
	}
	for p := range matrix {
		if !slices.Contains(patterns, p) {
			t.Errorf("the matrix names %q, which routes.go does not serve", p)
		}
	}
}

// caller is one way of making requests.
type caller struct {
	name string
	rank int // the role it should be given; -1: refused as anonymous
	do   func(*http.Request) *http.Client
}

// TestAuthorisationMatrix makes every route's request as each kind of
// caller and checks the status: what the route answers for someone
// allowed, 401 for no one (or a header from an untrusted address), 403 for
// a role too low.
func TestAuthorisationMatrix(t *testing.T) {
	app := launch(t, "-simulate", "0", "-pprof", "-auth-proxy-header", "X-Forwarded-User", "-auth-proxy-from", "127.0.0.1")
	app.waitReady(t)
	base := strings.Replace(app.URL, "admin:"+adminPassword+"@", "", 1)

	// The admin adds a viewer and an operator, and a viewer's token, on
	// the admin page.
	admin := &http.Client{}
	post := func(path string, form url.Values) string {
		resp, err := admin.PostForm(app.URL+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s = %d\n%s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	post("/admin/users", url.Values{"username": {"vera"}, "role": {"viewer"}, "password": {"vera-password"}})
	post("/admin/users", url.Values{"username": {"otto"}, "role": {"operator"}, "password": {"otto-password"}})
	page := post("/admin/tokens", url.Values{"name": {"grafana"}, "role": {"viewer"}})
	m := regexp.MustCompile(`<code class="secret-value">([^<]+)</code>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the admin page shows no new token:\n%s", page)
	}
	token := m[1]

	session := func(user, password string) *http.Client {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		resp, err := c.PostForm(base+"/login", url.Values{"username": {user}, "password": {password}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if u, _ := url.Parse(base); len(jar.Cookies(u)) == 0 {
			t.Fatalf("signing in as %s set no cookie (%d)", user, resp.StatusCode)
		}
		return c
	}
	// fromOther sends from 127.0.0.2, an address that is not the proxy's.
	fromOther := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	plain := &http.Client{}
	callers := []func() caller{
		func() caller { return caller{"anonymous", -1, func(*http.Request) *http.Client { return plain }} },
		func() caller {
			c := session("vera", "vera-password")
			return caller{"viewer session", 1, func(*http.Request) *http.Client { return c }}
		},
		func() caller {
			c := session("otto", "otto-password")
			return caller{"operator session", 2, func(*http.Request) *http.Client { return c }}
		},
		func() caller {
			c := session("admin", adminPassword)
			return caller{"admin session", 3, func(*http.Request) *http.Client { return c }}
		},
		func() caller {
			return caller{"viewer token", 1, func(r *http.Request) *http.Client { r.Header.Set("Authorization", "Bearer "+token); return plain }}
		},
		func() caller {
			return caller{"viewer Basic", 1, func(r *http.Request) *http.Client { r.SetBasicAuth("vera", "vera-password"); return plain }}
		},
		func() caller {
			return caller{"operator by the proxy", 2, func(r *http.Request) *http.Client { r.Header.Set("X-Forwarded-User", "otto"); return plain }}
		},
		func() caller {
			return caller{"admin by a header not from the proxy", -1, func(r *http.Request) *http.Client {
				r.Header.Set("X-Forwarded-User", "admin")
				return fromOther
			}}
		},
	}
	for _, mk := range callers {
		c := mk()
		for pattern, e := range matrix {
			if e.req.path == "/logout" {
				continue // it would end the caller's session: below
			}
			want := e.req.ok
			switch {
			case roleRank[e.role] == 0:
			case c.rank < 0:
				want = http.StatusUnauthorized
			case c.rank < roleRank[e.role]:
				want = http.StatusForbidden
			}
			var body io.Reader
			if e.req.form != nil {
				body = strings.NewReader(e.req.form.Encode())
			}
			req, _ := http.NewRequestWithContext(context.Background(), e.req.method, base+e.req.path, body)
			if body != nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			resp, err := c.do(req).Do(req)
			if err != nil {
				t.Fatalf("%s: %s: %v", c.name, pattern, err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%-40s %-36s = %d, want %d", c.name, pattern, resp.StatusCode, want)
			}
		}
	}

	// Signing out: a session's POST /logout ends it; anonymous gets 401.
	c := session("vera", "vera-password")
	resp, err := c.PostForm(base+"/logout", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/login" {
		t.Errorf("POST /logout = %d at %s, want the sign-in page", resp.StatusCode, resp.Request.URL.Path)
	}
	if resp, _ := c.Get(base + "/api/v1/devices"); resp.StatusCode != 401 {
		t.Errorf("after signing out the API answers %d, want 401", resp.StatusCode)
	}
	if resp, _ := plain.PostForm(base+"/logout", url.Values{}); resp.StatusCode != 401 {
		t.Errorf("POST /logout from no one = %d, want 401", resp.StatusCode)
	}
}

// TestSignInRequiredWithExternalServices: with Mosquitto and InfluxDB in
// place of the embedded parts, the same routes need the same sign-in.
func TestSignInRequiredWithExternalServices(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	ix := testenv.StartInfluxDB(t)
	app := startInProcess(t, "-mqtt", mq.URL, "-mqtt-client-id", "authz-external", "-influx-url", ix.URL, "-influx-bucket", ix.Bucket)
	base := strings.Replace(app.URL, "admin:"+adminPassword+"@", "", 1)
	for _, path := range []string{"/", "/api/v1/devices", "/api/v1/query?device=d&metric=m", "/ws", "/metrics", "/admin", "/alerts", "/boards"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s signed in as no one: %d, want 401", path, resp.StatusCode)
		}
	}
	if code := getJSON(t, app.URL, "/api/v1/devices", nil); code != http.StatusOK {
		t.Errorf("GET /api/v1/devices as admin: %d", code)
	}
}
