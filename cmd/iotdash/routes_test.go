package main

import (
	"net/http"
	"strings"
	"testing"

	"iotdash/internal/testenv"
)

// TestRoutesServeTheOpenAPIPaths: every path the OpenAPI document names is
// wired in routes.go (the api package checks the handlers themselves).
func TestRoutesServeTheOpenAPIPaths(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	app := startInProcess(t, "-mqtt", mq.URL, "-mqtt-client-id", "routes")
	var doc struct {
		Paths map[string]any `json:"paths"`
	}
	if code := getJSON(t, app.URL, "/api/v1/openapi.json", &doc); code != http.StatusOK || len(doc.Paths) == 0 {
		t.Fatalf("GET /api/v1/openapi.json: %d, %d paths", code, len(doc.Paths))
	}
	for path := range doc.Paths {
		if path == "/ws" || strings.Contains(path, "{") {
			continue // a WebSocket upgrade; templated paths are pages
		}
		resp, err := http.Get(app.URL + path + "?device=d&metric=m")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
			t.Errorf("GET %s = %d: documented but not routed", path, resp.StatusCode)
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
