package guard_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"iotdash/guard"
)

func TestAllowedHost(t *testing.T) {
	hosts := []string{"dash.plant.example"}
	for _, c := range []struct {
		host string
		want bool
	}{
		{"127.0.0.1:8080", true},
		{"[::1]:8080", true},
		{"192.168.1.20:8080", true},
		{"localhost:8080", true},
		{"LOCALHOST", true},
		{"grafana.localhost:8080", true},
		{"dash.plant.example", true},
		{"Dash.Plant.Example.:443", true},
		{"attacker.example:8080", false},
		{"localhost.attacker.example", false},
		{"dash.plant.example.attacker.example", false},
		{"", false},
	} {
		if got := guard.AllowedHost(c.host, hosts); got != c.want {
			t.Errorf("AllowedHost(%q) = %v, want %v", c.host, got, c.want)
		}
	}
}

// TestHandler: a request for a host name the dashboard is not reached by is
// refused before any handler runs, and every answer carries the security
// headers.
func TestHandler(t *testing.T) {
	reached := false
	h := guard.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true }), guard.Options{CSP: "default-src 'self'"})
	for _, c := range []struct {
		host string
		code int
	}{{"127.0.0.1:8080", http.StatusOK}, {"attacker.example:8080", http.StatusMisdirectedRequest}} {
		reached = false
		r := httptest.NewRequest("GET", "/api/v1/devices", nil)
		r.Host = c.host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.code || reached != (c.code == http.StatusOK) {
			t.Errorf("Host %s: %d, handler reached %v; want %d", c.host, w.Code, reached, c.code)
		}
		for name, want := range map[string]string{"Content-Security-Policy": "default-src 'self'", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"} {
			if got := w.Header().Get(name); got != want {
				t.Errorf("Host %s: %s = %q, want %q", c.host, name, got, want)
			}
		}
	}
}
