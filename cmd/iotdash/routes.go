package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"iotdash/alerts"
	"iotdash/api"
	"iotdash/auth"
	"iotdash/boards"
	"iotdash/broker"
	"iotdash/devices"
	"iotdash/ingest"
	"iotdash/internal/limit"
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
	lateWindow     time.Duration // how far behind the clock a reading may still be taken (-max-ts-behind)
	queryTimeout   time.Duration
	exportTimeout  time.Duration
	maxExports     int
	exportsPer     int // most exports of one client at once
	apiMetrics     *api.Metrics
	pprof          bool
	zone           *time.Location
	rawRetention   time.Duration // of the embedded store; 0 with InfluxDB
	boardFollow    time.Duration
	auth           *auth.Service
	alerts         *alerts.Engine
	notifier       *alerts.Notifier
	credentials    broker.Credentials // the embedded broker's; nil with -mqtt
	boards         *boards.Boards
	events         interface {
		views.EventLog
		api.EventSource
	}
	log *slog.Logger
}

// route is one pattern iotdash serves and the least role that may use it.
type route struct {
	pattern string
	role    auth.Role
	handler http.Handler
}

// table lists every route iotdash serves, each with the role it needs:
// the one place that says who may do what (README, Security). mux is what
// the routes are mounted on, for the API's 404 and 405.
func table(d deps, mux *http.ServeMux) []route {
	pages := views.Options{History: d.reader, Zone: d.zone, Logger: d.log, RawRetention: d.rawRetention, Events: d.events, BoardFollow: d.boardFollow}
	if d.alerts != nil {
		pages.Alerts = d.alerts
	}
	admin := views.Admin{Accounts: d.auth, Options: pages}
	if d.credentials != nil {
		admin.Devices = broker.Accounts{Credentials: d.credentials}
	}
	account := views.AccountPages{Accounts: d.auth, Options: pages}
	alertAPI := api.AlertAPI{Alerts: d.alerts, Logger: d.log}
	alertPages := views.AlertPages{Book: d.alerts, Deliveries: d.notifier, Options: pages}
	board := views.BoardPages{Boards: d.boards, Fleet: d.fleet, Options: pages}
	boardAPI := api.BoardAPI{Boards: d.boards, Logger: d.log}
	queryOpts := api.QueryOptions{Zone: d.zone,
		MaxPoints: d.maxPoints, MaxExportRange: d.maxExportRange, Timeout: d.queryTimeout, ExportTimeout: d.exportTimeout, Fleet: d.fleet, Logger: d.log,
		MaxExports: d.maxExports, MaxExportsPerClient: d.exportsPer, Metrics: d.apiMetrics,
		// Exports count against the signed-in user (or token), wherever
		// they sign in from.
		ExportClient: func(r *http.Request) string {
			if p, ok := auth.From(r.Context()); ok {
				return "user:" + p.Name
			}
			return limit.Addr(r)
		}}
	// History older than a reading may arrive late is cached.
	query := api.CachedHistory(api.Query(d.reader, queryOpts), queryOpts, d.lateWindow)
	rs := []route{
		{"GET /login", auth.Anyone, d.auth.Login(views.Login(pages))},
		{"POST /login", auth.Anyone, d.auth.Login(views.Login(pages))},
		{"POST /logout", auth.Viewer, d.auth.Logout()},
		{"GET /static/", auth.Anyone, http.StripPrefix("/static/", views.Static())},
		{"GET /healthz", auth.Anyone, api.Health()},
		{"GET /readyz", auth.Anyone, api.Ready(
			api.Check{Name: "broker", Fn: func(context.Context) error {
				if !d.ingester.Connected() {
					return devices.Errorf(devices.EUnavailable, "not connected to the MQTT broker")
				}
				return nil
			}},
			api.Check{Name: "store", Fn: func(ctx context.Context) error { return d.reader.Ping(ctx) }},
		)},

		{"GET /{$}", auth.Viewer, views.OverviewWithHistory(d.fleet, pages)},
		{"GET /devices/{id}", auth.Viewer, views.DevicePageWithHistory(d.fleet, pages)},
		{"GET /ws", auth.Viewer, d.hub},
		{"GET /api/v1/devices", auth.Viewer, views.Compress(api.Devices(d.fleet))},
		{"GET /api/v1/devices/{id}", auth.Viewer, views.Compress(api.Device(d.fleet))},
		{"GET /api/v1/query", auth.Viewer, views.Compress(query)},
		{"GET /api/v1/events", auth.Viewer, views.Compress(api.Events(d.events, d.zone, d.log))},
		{"GET /api/v1/openapi.json", auth.Viewer, views.Compress(api.OpenAPI())},
		{"GET /api/v1/alerts", auth.Viewer, alertAPI.List()},
		{"GET /api/v1/alerts/history", auth.Viewer, alertAPI.History()},
		{"POST /api/v1/alerts/{id}/{action}", auth.Operator, alertAPI.Act()},
		{"GET /api/v1/alerts/rules", auth.Viewer, alertAPI.Rules()},
		{"POST /api/v1/alerts/rules", auth.Operator, alertAPI.Rules()},
		{"GET /api/v1/alerts/rules/{id}", auth.Viewer, alertAPI.Rule()},
		{"PUT /api/v1/alerts/rules/{id}", auth.Operator, alertAPI.Rule()},
		{"DELETE /api/v1/alerts/rules/{id}", auth.Operator, alertAPI.Rule()},
		{"GET /api/v1/boards", auth.Viewer, views.Compress(boardAPI.List())},
		{"POST /api/v1/boards", auth.Operator, boardAPI.List()},
		{"GET /api/v1/boards/{id}", auth.Viewer, views.Compress(boardAPI.Board())},
		{"PUT /api/v1/boards/{id}", auth.Operator, boardAPI.Board()},
		{"DELETE /api/v1/boards/{id}", auth.Operator, boardAPI.Board()},
		{"GET /api/v1/boards/{id}/versions", auth.Viewer, boardAPI.Versions()},
		{"/api/", auth.Viewer, api.Fallback(mux)},
		{"/", auth.Viewer, views.NotFound()},

		{"GET /events", auth.Viewer, views.EventPages{Log: d.events, Fleet: d.fleet, Options: pages}.Page()},
		{"GET /alerts", auth.Viewer, alertPages.Page()},
		{"POST /alerts/rules", auth.Operator, alertPages.Action()},
		{"POST /alerts/rules/{id}/{action}", auth.Operator, alertPages.Action()},
		{"POST /alerts/{key}/{action}", auth.Operator, alertPages.Action()},
		{"GET /boards", auth.Viewer, board.List()},
		{"GET /boards/{id}", auth.Viewer, board.Page()},
		{"GET /boards/{id}/export", auth.Viewer, board.Export()},
		{"GET /boards/{id}/versions", auth.Viewer, board.Versions()},
		{"POST /boards", auth.Operator, board.Create()},
		{"POST /boards/import", auth.Operator, board.Import()},
		{"POST /boards/{id}", auth.Operator, board.Save()},
		{"POST /boards/{id}/restore", auth.Operator, board.Restore()},
		{"POST /boards/{id}/delete", auth.Operator, board.Delete()},

		{"GET /account", auth.Viewer, account.Page()},
		{"POST /account/{what}", auth.Viewer, account.Action()},
		{"POST /theme", auth.Viewer, views.ThemeChoice()},

		{"GET /admin", auth.Admin, admin.Page()},
		{"POST /admin/{kind}", auth.Admin, admin.Action()},
		{"POST /admin/{kind}/{key}/{action}", auth.Admin, admin.Action()},
		{"GET /metrics", auth.Admin, promhttp.HandlerFor(d.registry, promhttp.HandlerOpts{Registry: d.registry})},
	}
	if d.pprof {
		rs = append(rs,
			route{"GET /debug/pprof/", auth.Admin, http.HandlerFunc(pprof.Index)},
			route{"GET /debug/pprof/profile", auth.Admin, http.HandlerFunc(pprof.Profile)},
			// The execution trace shows how long goroutines wait for a
			// core (go tool trace -pprof=sched), which the CPU profile
			// does not.
			route{"GET /debug/pprof/trace", auth.Admin, http.HandlerFunc(pprof.Trace)})
	}
	return rs
}

// routes serves every route of table to those its role allows.
func routes(d deps) http.Handler {
	mux := http.NewServeMux()
	for _, r := range table(d, mux) {
		mux.Handle(r.pattern, d.auth.Require(r.role, r.handler))
	}
	return mux
}
