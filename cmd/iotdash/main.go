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
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	_ "time/tzdata" // -timezone works where the machine has no zoneinfo (a scratch image)

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"iotdash/alerts"
	"iotdash/api"
	"iotdash/auth"
	"iotdash/boards"
	"iotdash/broker"
	"iotdash/devices"
	"iotdash/guard"
	"iotdash/ingest"
	"iotdash/internal/mqttconn"
	"iotdash/push"
	"iotdash/simulator"
	"iotdash/store/influx"
	"iotdash/store/journal"
	"iotdash/store/sqlite"
	"iotdash/views"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// run is iotdash: it starts every part, waits for ctx to end, and stops them
// in reverse order.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (err error) {
	if len(args) > 0 && args[0] == "device" {
		return runDevice(ctx, args[1:], getenv, stdout, stderr)
	}
	c, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return usageError{fmt.Errorf("-log-level: %w", err)}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var cert tls.Certificate
	if c.tlsCert != "" {
		if cert, err = tls.LoadX509KeyPair(c.tlsCert, c.tlsKey); err != nil {
			return usageError{fmt.Errorf("-tls-cert, -tls-key: %w", err)}
		}
	}
	// Listen before anything else starts, so a taken port fails fast.
	httpLn, err := net.Listen("tcp", c.httpAddr)
	if err != nil {
		return listenError("http", c.httpAddr, err)
	}
	var cl closers
	defer func() {
		if cerr := cl.close(); err == nil {
			err = cerr
		}
	}()
	cl.add(func() error { httpLn.Close(); return nil })

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	origins := []string{}
	for _, o := range strings.Split(c.origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	hub := push.NewHub(push.Options{OriginPatterns: origins, Logger: log, MaxClients: c.wsMax, MaxPerAddr: c.wsMaxPerAddr})

	// The data directory and every file in it are the owner's alone.
	syscall.Umask(0o077)
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("-data %s: %w", c.dataDir, err)
	}
	if err := os.Chmod(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("-data %s: %w", c.dataDir, err)
	}
	// The fleet, as the last run left it; saved every second and at the
	// end, after the ingester has stopped.
	// The alert engine, once it starts, hears of devices going offline.
	var presence atomic.Pointer[alerts.Engine]
	fleet := devices.NewFleet(func(id string, s devices.Status) {
		hub.PublishStatus(id, s)
		if e := presence.Load(); e != nil {
			e.Presence(id, s)
		}
	})
	fleet.SetStaleAfter(c.staleAfter)
	fleet.SetLimits(c.limits)
	registry, err := sqlite.OpenRegistry(filepath.Join(c.dataDir, "fleet.db"))
	if err != nil {
		return fmt.Errorf("opening the fleet registry in -data %s: %w", c.dataDir, err)
	}
	cl.add(registry.Close)
	known, err := registry.Load(ctx)
	if err != nil {
		return fmt.Errorf("reading the fleet registry in -data %s: %w", c.dataDir, err)
	}
	fleet.Restore(known)

	// People: users, sessions and API tokens, in the same state file.
	docs, err := sqlite.OpenDocs(filepath.Join(c.dataDir, "fleet.db"))
	if err != nil {
		return fmt.Errorf("opening the users in -data %s: %w", c.dataDir, err)
	}
	cl.add(docs.Close)
	people := auth.New(auth.Config{Store: docs, ProxyHeader: c.proxyHeader, ProxyFrom: c.proxyFrom,
		SecureCookies: c.tlsCert != "" || strings.HasPrefix(c.publicURL, "https:"), Metrics: auth.NewMetrics(reg), Logger: log})
	adminPassword, signIn, err := people.Bootstrap(ctx, c.adminPassword)
	if err != nil {
		return fmt.Errorf("creating the first user in -data %s: %w", c.dataDir, err)
	}
	cl.add(task(ctx, func(ctx context.Context) { fleet.Run(ctx, time.Second) }))
	// Not ended by ctx but by its closer, so that its last save comes
	// after the ingester's last message.
	cl.add(task(context.WithoutCancel(ctx), func(ctx context.Context) { fleet.Keep(ctx, registry, time.Second, log) }))

	// Storage: the embedded store, or InfluxDB behind the on-disk journal.
	var (
		durable ingest.Appender
		reader  interface {
			api.Reader
			Ping(context.Context) error
			Devices(context.Context) ([]devices.Device, error)
		}
		storeDesc string
	)
	if c.influxURL == "" {
		db, err := sqlite.Open(filepath.Join(c.dataDir, "iotdash.db"))
		if err != nil {
			return fmt.Errorf("opening the embedded store in -data %s: %w", c.dataDir, err)
		}
		cl.add(db.Close)
		durable, reader = db, db
		storeDesc = "embedded store in " + filepath.Join(c.dataDir, "iotdash.db")
	} else {
		ix, err := influx.New(influx.Config{URL: c.influxURL, Token: c.influxToken, Org: c.influxOrg, Bucket: c.influxBucket, BatchSize: c.influxBatch})
		if err != nil {
			return fmt.Errorf("-influx-url: %w", err)
		}
		cl.add(func() error { ix.Close(); return nil })
		j, err := journal.Open(filepath.Join(c.dataDir, "journal.db"), journal.Options{MaxReadings: c.journalMax, Logger: log})
		if err != nil {
			return fmt.Errorf("opening the write journal in -data %s: %w", c.dataDir, err)
		}
		cl.add(j.Close)
		// On the way out, give InfluxDB a few seconds to take the backlog;
		// what it does not take stays in the journal for the next start.
		cl.add(func() error {
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := j.Flush(fctx, ix); err != nil {
				log.Warn("journal not empty at shutdown; it is replayed at the next start", "backlog", j.Stats().Backlog, "error", err)
			}
			return nil
		})
		cl.add(task(ctx, func(ctx context.Context) { j.Drain(ctx, ix, c.influxBatch) }))
		registerJournalMetrics(reg, j)
		durable, reader = j, ix
		storeDesc = "InfluxDB at " + c.influxURL + ", bucket " + c.influxBucket
	}

	// Devices the store has history of but the registry does not (data
	// from before the registry, or a registry lost) are listed too, as
	// unknown with their last values; those the registry or a live message
	// brought are left as they are.
	cl.add(task(ctx, func(ctx context.Context) {
		ds, err := reader.Devices(ctx)
		if err != nil {
			log.Warn("listing the devices the store has history of", "error", err)
			return
		}
		fleet.Restore(ds)
	}))

	dead, err := ingest.OpenDeadLetters(filepath.Join(c.dataDir, "dead-letters.jsonl"))
	if err != nil {
		return fmt.Errorf("-data %s: %w", c.dataDir, err)
	}
	cl.add(dead.Close)

	// The broker: embedded, handing devices' messages straight to the
	// ingester, or the user's, which the ingester subscribes to.
	tc, err := mqttconn.TLSConfig(c.mqttURL, c.mqttCA, c.mqttCert, c.mqttKey)
	if err != nil {
		return usageError{err}
	}
	// Alerts: rules evaluated on every reading stored, notified through a
	// queue in the state file.
	hooks, err := alertWebhooks(c.alertHooks)
	if err != nil {
		return usageError{err}
	}
	external := c.publicURL
	if external == "" {
		external = "http://" + httpLn.Addr().String()
	}
	notifier := alerts.NewNotifier(alerts.NotifierConfig{Store: docs, Webhooks: hooks, Secret: []byte(c.alertSecret),
		AlertmanagerURL: c.alertmanagerURL, ExternalURL: external, Registerer: reg, Logger: log})
	var rules *alerts.Engine
	rules, err = alerts.New(ctx, alerts.Config{Store: docs, Fleet: fleet, Notify: notifier, Logger: log, MaxHistory: c.alertHistory,
		Changed: func() { hub.SetAlerts(rules.Summary()) }})
	if err != nil {
		return fmt.Errorf("reading the alert rules in -data %s: %w", c.dataDir, err)
	}
	hub.SetAlerts(rules.Summary())
	presence.Store(rules)
	cl.add(task(context.WithoutCancel(ctx), func(ctx context.Context) { rules.Run(ctx) }))
	cl.add(task(ctx, func(ctx context.Context) {
		notifier.Run(ctx, func() []alerts.Instance { return rules.Alerts(alerts.StateFiring) })
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "iotdash_alerts_firing", Help: "Alerts firing now."},
		func() float64 { return float64(rules.Firing()) }))
	published := func(rs []devices.Reading) {
		hub.Publish(rs)
		rules.Observe(rs)
	}

	in := ingest.New(ingest.Config{
		Broker: c.mqttURL, ClientID: c.mqttClientID, Username: c.mqttUser, Password: c.mqttPass, TLS: tc,
		Store: durable, Fleet: fleet, Publish: published, Notice: hub.SetNotice, DeadLetters: dead,
		Metrics: ingest.NewMetrics(reg), Logger: log, MaxAhead: c.maxAhead, MaxBehind: c.maxBehind,
	})
	brokerURL, simUser, simPass := c.mqttURL, c.mqttUser, c.mqttPass
	brokerDropped := func() float64 { n, _ := in.BrokerDrops(); return float64(n) }
	var credentials broker.Credentials
	if brokerURL == "" {
		// Devices sign in with credentials from iotdash device add, kept
		// in the state file; the simulator with a secret of this process.
		creds, err := sqlite.OpenCredentials(filepath.Join(c.dataDir, "fleet.db"))
		if err != nil {
			return fmt.Errorf("opening the device credentials in -data %s: %w", c.dataDir, err)
		}
		cl.add(creds.Close)
		credentials = creds
		simUser = "iotdash/simulator" // not a device id: no device can have it
		if simPass, _, err = broker.NewSecret(); err != nil {
			return err
		}
		loopback := broker.Loopback(c.brokerAddr)
		b, err := broker.Start(c.brokerAddr, broker.Options{Deliver: in.Submit, Credentials: creds,
			Anonymous: loopback || c.mqttAnonymous, Internal: map[string]string{simUser: simPass}, ReservedIDs: []string{c.mqttClientID},
			MaxPacketSize: c.brokerMaxPacket, MaxClients: c.brokerMaxClients, MaxRetained: c.brokerMaxRetained,
			Metrics: broker.NewMetrics(reg), Logger: log})
		if err != nil {
			return listenError("broker", c.brokerAddr, err)
		}
		cl.add(b.Close)
		brokerURL = b.URL()
		brokerDropped = func() float64 { return float64(b.Dropped()) }
		fmt.Fprintf(stdout, "iotdash: embedded MQTT broker on %s\n", brokerURL)
		switch {
		case !loopback && c.mqttAnonymous:
			log.Warn("-mqtt-anonymous: ANY client that reaches the embedded broker may publish as any device and read every topic", "broker", brokerURL)
			fmt.Fprintf(stdout, "iotdash: WARNING: -mqtt-anonymous: any client that reaches %s may publish as any device and read every topic\n", brokerURL)
		case !loopback:
			fmt.Fprintf(stdout, "iotdash: devices need credentials to connect (iotdash device add ID)\n")
		}
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_broker_dropped_messages_total",
		Help: "Messages the broker says it discarded (for any subscriber whose queue or in-flight window was full): the embedded broker's own count, or Mosquitto's $SYS/broker/publish/messages/dropped."},
		brokerDropped))
	// The ingester stops after the simulator (whose devices' last words it
	// still commits and acknowledges) and before the broker, while the
	// devices' connections are still open: so its context ends with its
	// closer, not with ctx.
	cl.add(task(context.WithoutCancel(ctx), func(ctx context.Context) { in.Run(ctx) }))
	fmt.Fprintf(stdout, "iotdash: storing readings in the %s\n", storeDesc)

	if c.simulate > 0 {
		cl.add(task(ctx, func(ctx context.Context) {
			err := simulator.Run(ctx, simulator.Config{Broker: brokerURL, Devices: c.simulate, Interval: c.simInterval, Seed: time.Now().UnixNano(), Username: simUser, Password: simPass, Logger: log})
			if err != nil {
				log.Error("simulator stopped", "error", err)
			}
		}))
		fmt.Fprintf(stdout, "iotdash: simulating %d devices\n", c.simulate)
	}

	registerHubMetrics(reg, hub)
	reg.MustRegister(fleetCollector{fleet})
	var hosts []string
	// Forms change state: a POST from another site's page is refused.
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "This request came from another site's page and was refused.", http.StatusForbidden)
	}))
	if c.publicURL != "" {
		u, _ := url.Parse(c.publicURL) // checked by parseFlags
		hosts = append(hosts, u.Hostname())
		csrf.AddTrustedOrigin(u.Scheme + "://" + u.Host)
	}
	srv := &http.Server{
		Handler: guard.Handler(csrf.Handler(routes(deps{fleet: fleet, hub: hub, reader: reader, ingester: in, registry: reg, maxPoints: c.maxPoints,
			maxExportRange: c.maxExportRange, queryTimeout: c.queryTimeout, exportTimeout: c.exportTimeout, pprof: c.pprof, zone: c.zone, auth: people,
			alerts: rules, notifier: notifier, credentials: credentials, boards: boards.New(docs, boards.Limits{}), log: log, maxExports: c.exportsMax, exportsPer: c.exportsPerClient, apiMetrics: api.NewMetrics(reg)})),
			guard.Options{Hosts: hosts, CSP: views.ContentSecurityPolicy, Logger: log}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// /ws is hijacked (no deadline) and a raw CSV export extends its own.
		WriteTimeout:   60 * time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srvErr := make(chan error, 1)
	scheme := "http"
	if c.tlsCert != "" {
		scheme = "https"
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		go func() { srvErr <- srv.ServeTLS(httpLn, "", "") }()
	} else {
		go func() { srvErr <- srv.Serve(httpLn) }()
	}
	cl.add(func() error {
		// WebSockets are hijacked: Shutdown does not wait for them. The
		// hub closes them first, within its own write timeouts.
		hub.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	base := scheme + "://" + httpLn.Addr().String()
	fmt.Fprintf(stdout, "iotdash: dashboard on %s/\n", base)
	switch {
	case signIn != "" && c.adminPassword != "":
		fmt.Fprintf(stdout, "iotdash: created the user admin with the password from IOTDASH_ADMIN_PASSWORD\n")
	case signIn != "":
		fmt.Fprintf(stdout, "iotdash: created the user admin with the password %s (shown this once: keep it, or set another on the admin page)\n", adminPassword)
		fmt.Fprintf(stdout, "iotdash: sign in once without it: %s%s\n", base, signIn)
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case err := <-srvErr:
		return fmt.Errorf("http server: %w", err)
	}
}
