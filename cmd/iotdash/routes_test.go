package main

import (
	"net/http"
	"strings"
	"testing"

	"iotdash/internal/testenv"
)

// TestRoutesServeTheOpenAPIPaths: every path and method the OpenAPI
// document names is wired in routes.go (the api package checks the handlers themselves).
func TestRoutesServeTheOpenAPIPaths(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	app := startInProcess(t, "-mqtt", mq.URL, "-mqtt-client-id", "routes")
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if code := getJSON(t, app.URL, "/api/v1/openapi.json", &doc); code != http.StatusOK || len(doc.Paths) == 0 {
		t.Fatalf("GET /api/v1/openapi.json: %d, %d paths", code, len(doc.Paths))
	}
	for path, ops := range doc.Paths {
		if path == "/ws" {
			continue // a WebSocket upgrade
		}
		for method := range ops {
			if method == "parameters" {
				continue
			}
			req, err := http.NewRequest(strings.ToUpper(method), app.URL+strings.ReplaceAll(path, "{id}", "d")+"?device=d&metric=m", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			// A routed API path answers JSON, even a 404 (device d is not
			// known); an unrouted one gets the HTML 404 page.
			json := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
			if (resp.StatusCode == http.StatusNotFound && !json) || resp.StatusCode == http.StatusMethodNotAllowed {
				t.Errorf("%s %s = %d %s: documented but not routed", req.Method, path, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
		}
	}
	// And the WebSocket path answers a plain GET as a WebSocket endpoint would.
	resp, err := http.Get(app.URL + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		t.Errorf("/ws is not routed")
	}
}
