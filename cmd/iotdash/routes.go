package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"iotdash/api"
	"iotdash/devices"
	"iotdash/ingest"
	"iotdash/push"
	"iotdash/views"
)

// deps is what the routes are built from.
type deps struct {
	fleet interface {
		views.Fleet
		api.Fleet
	}
	hub    *push.Hub
	reader interface {
		api.Reader
		Ping(context.Context) error
		Devices(context.Context) ([]devices.Device, error)
	}
	ingester       *ingest.Ingester
	registry       *prometheus.Registry
	maxPoints      int
	maxExportRange time.Duration
	queryTimeout   time.Duration
	exportTimeout  time.Duration
	pprof          bool
	zone           *time.Location
	log            *slog.Logger
}

// routes lists every path iotdash serves.
func routes(d deps) http.Handler {
	mux := http.NewServeMux()
	pages := views.Options{History: d.reader, Zone: d.zone, Logger: d.log}
	mux.Handle("GET /{$}", views.OverviewWithHistory(d.fleet, pages))
	mux.Handle("GET /devices/{id}", views.DevicePageWithHistory(d.fleet, pages))
	mux.Handle("GET /static/", http.StripPrefix("/static/", views.Static()))
	mux.Handle("GET /ws", d.hub)

	mux.Handle("GET /api/v1/devices", views.Compress(api.Devices(d.fleet)))
	mux.Handle("GET /api/v1/devices/{id}", views.Compress(api.Device(d.fleet)))
	mux.Handle("GET /api/v1/query", views.Compress(api.Query(d.reader, api.QueryOptions{
		MaxPoints: d.maxPoints, MaxExportRange: d.maxExportRange, Timeout: d.queryTimeout, ExportTimeout: d.exportTimeout, Fleet: d.fleet, Logger: d.log})))
	mux.Handle("GET /api/v1/openapi.json", views.Compress(api.OpenAPI()))
	mux.Handle("/api/", api.Fallback(mux))

	mux.Handle("GET /healthz", api.Health())
	mux.Handle("GET /readyz", api.Ready(
		api.Check{Name: "broker", Fn: func(context.Context) error {
			if !d.ingester.Connected() {
				return devices.Errorf(devices.EUnavailable, "not connected to the MQTT broker")
			}
			return nil
		}},
		api.Check{Name: "store", Fn: d.reader.Ping},
	))
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.registry, promhttp.HandlerOpts{Registry: d.registry}))
	if d.pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	}
	mux.Handle("/", views.NotFound())
	return mux
}
