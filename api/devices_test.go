package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"iotdash/devices"
)

// TestDevicesFilters: /api/v1/devices keeps the devices every filter given
// holds for, and refuses what it does not know.
func TestDevicesFilters(t *testing.T) {
	fleet := devices.NewFleet(nil)
	fleet.SetMeta("boiler-1", devices.Meta{Name: "Boiler 1", Kind: "boiler", Location: "plant room"})
	fleet.Seen("boiler-1", []devices.Reading{{Device: "boiler-1", Metric: "t", Time: 1, Value: 1}})
	fleet.SetMeta("boiler-2", devices.Meta{Name: "Boiler 2", Kind: "boiler", Location: "basement"})
	fleet.SetPresence("boiler-2", devices.StatusOffline)
	fleet.SetMeta("tank-01", devices.Meta{Name: "Tank", Kind: "tank", Location: "yard"})
	h := Devices(fleet)
	for _, c := range []struct {
		query string
		code  int
		want  []string
	}{
		{"", 200, []string{"boiler-1", "boiler-2", "tank-01"}},
		{"status=offline", 200, []string{"boiler-2"}},
		{"kind=boiler", 200, []string{"boiler-1", "boiler-2"}},
		{"kind=boiler&location=basement", 200, []string{"boiler-2"}},
		{"q=YARD", 200, []string{"tank-01"}},
		{"q=boiler&status=online", 200, []string{"boiler-1"}},
		{"q=nothing", 200, []string{}},
		{"status=down", 400, nil},
		{"state=offline", 400, nil},
		{"kind=a&kind=b", 400, nil},
	} {
		a := serve(t, h, "/?"+c.query)
		if a.code != c.code {
			t.Errorf("?%s: status %d, want %d (%s)", c.query, a.code, c.code, a.body)
			continue
		}
		if c.code != http.StatusOK {
			continue
		}
		var list []struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(a.body, &list); err != nil {
			t.Fatal(err)
		}
		got := []string{}
		for _, d := range list {
			got = append(got, d.ID)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("?%s: got %v, want %v", c.query, got, c.want)
		}
	}
}

// TestFallback: what no API route serves is answered in JSON: 405 with
// Allow for a wrong method on an API path, 404 for an unknown path.
func TestFallback(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/devices", Devices(devices.NewFleet(nil)))
	mux.Handle("GET /api/v1/devices/{id}", Device(devices.NewFleet(nil)))
	mux.Handle("GET /api/v1/boards/{id}", http.NotFoundHandler())
	mux.Handle("DELETE /api/v1/boards/{id}", http.NotFoundHandler())
	mux.Handle("/api/", Fallback(mux))
	for _, c := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{"POST", "/api/v1/devices", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"DELETE", "/api/v1/devices/boiler-1", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"PATCH", "/api/v1/boards/b1", http.StatusMethodNotAllowed, "GET, HEAD, DELETE"},
		{"POST", "/api/v1/boards", http.StatusNotFound, ""},
		{"GET", "/api/v2/devices", http.StatusNotFound, ""},
	} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		var body map[string]string
		if w.Code != c.code || w.Header().Get("Allow") != c.allow || json.Unmarshal(w.Body.Bytes(), &body) != nil || body["error"] == "" {
			t.Errorf("%s %s: %d Allow %q %s; want %d Allow %q with a JSON error", c.method, c.path, w.Code, w.Header().Get("Allow"), w.Body, c.code, c.allow)
		}
	}
}
