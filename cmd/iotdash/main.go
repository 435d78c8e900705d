// Command iotdash is the telemetry dashboard: it takes device readings from
// an MQTT broker, stores every one, streams them live to browsers and serves
// their history over HTTP.
//
// With no flags it is self-contained: an embedded broker, the embedded store
// under ./iotdash-data, a simulated fleet of 12 devices, and the dashboard on
// http://127.0.0.1:8080. See -h for pointing it at a broker and InfluxDB of
// your own.
package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
	_ "time/tzdata" // -timezone works where the machine has no zoneinfo (a scratch image)

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"iotdash/api"
	"iotdash/auth"
	"iotdash/boards"
	"iotdash/devices"
	"iotdash/guard"
	"iotdash/ingest"
	"iotdash/push"
	"iotdash/simulator"
	"iotdash/views"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// run is iotdash: it starts every part, waits for ctx to end, and stops them
// in reverse order within shutdownTimeout.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (err error) {
	if len(args) > 0 && args[0] == "device" {
		return runDevice(ctx, args[1:], getenv, stdout, stderr)
	}
	c, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(c.logLevel, stderr)
	if err != nil {
		return err
	}
	srv, err := newServer(c, nil, log)
	if err != nil {
		return err
	}
	// Listen before anything else starts, so a taken port fails fast.
	httpLn, err := net.Listen("tcp", c.httpAddr)
	if err != nil {
		return listenError("http", c.httpAddr, err)
	}
	var cl closers
	defer func() {
		if cerr := cl.close(shutdownTimeout); err == nil {
			err = cerr
		}
	}()
	cl.add(func(context.Context) error { httpLn.Close(); return nil }) // closed by Shutdown already

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	raiseOpenFiles(c, log)
	hub := push.NewHub(push.Options{OriginPatterns: c.originList(), Logger: log, MaxClients: c.wsMax, MaxPerAddr: c.wsMaxPerAddr, Registerer: reg})
	st, err := openState(ctx, c, hub, log, &cl)
	if err != nil {
		return err
	}
	reg.MustRegister(fleetCollector{st.fleet})
	people := auth.New(auth.Config{Store: st.docs, ProxyHeader: c.proxyHeader, ProxyFrom: c.proxyFrom,
		SecureCookies: c.tlsCert != "" || c.public() != nil && c.public().Scheme == "https", Metrics: auth.NewMetrics(reg), Logger: log})
	adminPassword, signIn, err := people.Bootstrap(ctx, c.adminPassword)
	if err != nil {
		return fmt.Errorf("creating the first user in -data %s: %w", c.dataDir, err)
	}
	data, err := openStorage(ctx, c, st.fleet, reg, log, &cl)
	if err != nil {
		return err
	}
	external := c.publicURL
	if external == "" {
		external = "http://" + httpLn.Addr().String()
	}
	rules, notifier, err := startAlerts(ctx, c, st, hub, external, reg, log, &cl)
	if err != nil {
		return err
	}
	in, err := newIngester(c, st, data, func(rs []devices.Reading) { hub.Publish(rs); rules.Observe(rs) }, hub.SetNotice, reg, log, &cl)
	if err != nil {
		return err
	}
	// The broker: embedded, handing devices' messages straight to the
	// ingester, or the user's, which the ingester subscribes to.
	b := embedded{url: c.mqttURL, simUser: c.mqttUser, simPass: c.mqttPass, dropped: func() float64 { n, _ := in.BrokerDrops(); return float64(n) }}
	if c.mqttURL == "" {
		if b, err = startBroker(c, in, reg, log, stdout, &cl); err != nil {
			return err
		}
	}
	registerBrokerDrops(reg, b.dropped)
	// The ingester stops after the simulator (whose devices' last words it
	// still commits and acknowledges) and before the broker, while the
	// devices' connections are still open: so its context ends with its
	// closer, not with ctx.
	cl.add(task(context.WithoutCancel(ctx), "the ingester", func(ctx context.Context) { in.Run(ctx) }))
	fmt.Fprintf(stdout, "iotdash: storing readings in the %s\n", data.desc)
	if c.simulate > 0 {
		cl.add(task(ctx, "the simulator", func(ctx context.Context) {
			err := simulator.Run(ctx, simulator.Config{Broker: b.url, Devices: c.simulate, Interval: c.simInterval, Seed: time.Now().UnixNano(), Username: b.simUser, Password: b.simPass, Logger: log})
			if err != nil {
				log.Error("simulator stopped", "error", err)
			}
		}))
		fmt.Fprintf(stdout, "iotdash: simulating %d devices\n", c.simulate)
	}

	srv.Handler = guard.Handler(crossOrigin(c, routes(deps{fleet: st.fleet, hub: hub, reader: data.reader, ingester: in, registry: reg, events: st.events, maxPoints: c.maxPoints,
		maxExportRange: c.maxExportRange, queryTimeout: c.queryTimeout, exportTimeout: c.exportTimeout, pprof: c.pprof, zone: c.zone, rawRetention: data.kept, boardFollow: c.boardFollow, auth: people,
		alerts: rules, notifier: notifier, credentials: b.credentials, boards: boards.New(st.docs, boards.Options{Metrics: boards.NewMetrics(reg), Logger: log}), log: log, maxExports: c.exportsMax, exportsPer: c.exportsPerClient, apiMetrics: api.NewMetrics(reg), lateWindow: cmp.Or(c.maxBehind, ingest.DefaultMaxBehind)})),
		guard.Options{Hosts: c.hosts(), CSP: views.ContentSecurityPolicy, Logger: log})
	srvErr := serve(srv, httpLn, hub, &cl)
	welcome(stdout, c, httpLn, adminPassword, signIn)
	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case err := <-srvErr:
		return fmt.Errorf("http server: %w", err)
	}
}
