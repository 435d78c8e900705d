package api

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3.1 document of iotdash's HTTP API: every path
// routes.go serves for machines, /ws as far as OpenAPI describes a
// WebSocket. openapi_test.go holds it to the handlers.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI serves GET /api/v1/openapi.json: the OpenAPI document of the HTTP
// API.
func OpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(openAPI)
	})
}
