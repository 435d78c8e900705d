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
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"iotdash/alerts"
	"iotdash/api"
	"iotdash/broker"
	"iotdash/devices"
	"iotdash/ingest"
	"iotdash/internal/limit"
	"iotdash/internal/mqttconn"
	"iotdash/push"
	"iotdash/store/influx"
	"iotdash/store/journal"
	"iotdash/store/sqlite"
)

// The parts run wires, each built by one function from the flags: what it
// opens or starts is added to cl, to be closed in reverse order.

// newLogger is the logger every part is given, at -log-level.
func newLogger(level string, stderr io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Errorf("-log-level: %w", err)}
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: l})), nil
}

// state is what the state file fleet.db keeps: the fleet as the last run
// left it (saved every second and at the end, after the ingester), and
// the documents users, boards and alert rules live in.
type state struct {
	// presence is the alert engine, once it starts, which hears of
	// devices going offline from the fleet.
	presence *atomic.Pointer[alerts.Engine]
	fleet    *devices.Fleet
	docs     *sqlite.Docs
	events   *sqlite.Events
}

func openState(ctx context.Context, c config, hub *push.Hub, log *slog.Logger, cl *closers) (state, error) {
	// The data directory and every file in it are the owner's alone.
	syscall.Umask(0o077)
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return state{}, fmt.Errorf("-data %s: %w", c.dataDir, err)
	}
	if err := os.Chmod(c.dataDir, 0o700); err != nil {
		return state{}, fmt.Errorf("-data %s: %w", c.dataDir, err)
	}
	presence := new(atomic.Pointer[alerts.Engine])
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
		return state{}, fmt.Errorf("opening the fleet registry in -data %s: %w", c.dataDir, err)
	}
	cl.add(closer(registry.Close))
	known, err := registry.Load(ctx)
	if err != nil {
		return state{}, fmt.Errorf("reading the fleet registry in -data %s: %w", c.dataDir, err)
	}
	fleet.Restore(known)
	// What happened (presence and out-of-range episodes), in the same state file.
	events, err := sqlite.OpenEvents(filepath.Join(c.dataDir, "fleet.db"), 0)
	if err != nil {
		return state{}, fmt.Errorf("opening the event log in -data %s: %w", c.dataDir, err)
	}
	cl.add(closer(events.Close))
	ongoing, err := events.Events(ctx, devices.EventQuery{Ongoing: true, Limit: devices.DefaultMaxDevices * devices.DefaultMaxMetrics})
	if err != nil {
		return state{}, fmt.Errorf("reading the event log in -data %s: %w", c.dataDir, err)
	}
	fleet.RestoreEvents(ongoing)
	docs, err := sqlite.OpenDocs(filepath.Join(c.dataDir, "fleet.db"))
	if err != nil {
		return state{}, fmt.Errorf("opening the users in -data %s: %w", c.dataDir, err)
	}
	cl.add(closer(docs.Close))
	cl.add(task(ctx, "the fleet's clock", func(ctx context.Context) { fleet.Run(ctx, time.Second) }))
	// Not ended by ctx but by its closer, so that its last save comes
	// after the ingester's last message.
	cl.add(task(context.WithoutCancel(ctx), "saving the fleet", func(ctx context.Context) { fleet.Keep(ctx, registry, events, time.Second, log) }))
	return state{presence: presence, fleet: fleet, docs: docs, events: events}, nil
}

// storage is where readings go and history comes from: the embedded
// store, or InfluxDB behind the on-disk journal.
type storage struct {
	durable ingest.Appender
	reader  interface {
		api.Reader
		Ping(context.Context) error
		Devices(context.Context) ([]devices.Device, error)
	}
	desc string        // for the start-up line
	kept time.Duration // raw retention the device page states; 0 with InfluxDB
}

func openStorage(ctx context.Context, c config, fleet *devices.Fleet, reg prometheus.Registerer, log *slog.Logger, cl *closers) (storage, error) {
	s, err := openStore(ctx, c, reg, log, cl)
	if err != nil {
		return s, err
	}
	// Devices the store has history of but the registry does not (data
	// from before the registry, or a registry lost) are listed too, as
	// unknown with their last values; those the registry or a live
	// message brought are left as they are.
	cl.add(task(ctx, "listing the stored devices", func(ctx context.Context) {
		if ds, err := s.reader.Devices(ctx); err != nil {
			log.Warn("listing the devices the store has history of", "error", err)
		} else {
			fleet.Restore(ds)
		}
	}))
	return s, nil
}

func openStore(ctx context.Context, c config, reg prometheus.Registerer, log *slog.Logger, cl *closers) (storage, error) {
	if c.influxURL == "" {
		db, err := sqlite.OpenWith(filepath.Join(c.dataDir, "iotdash.db"), sqlite.Options{Retention: c.retention, RollupRetention: c.rollupRetention, Logger: log})
		if err != nil {
			return storage{}, fmt.Errorf("opening the embedded store in -data %s: %w", c.dataDir, err)
		}
		cl.add(closer(db.Close))
		return storage{db, db, "embedded store in " + filepath.Join(c.dataDir, "iotdash.db"), c.retention}, nil
	}
	ix, err := influx.New(influx.Config{URL: c.influxURL, Token: c.influxToken, Org: c.influxOrg, Bucket: c.influxBucket, BatchSize: c.influxBatch})
	if err != nil {
		return storage{}, fmt.Errorf("-influx-url: %w", err)
	}
	cl.add(func(context.Context) error { ix.Close(); return nil })
	j, err := journal.Open(filepath.Join(c.dataDir, "journal.db"), journal.Options{MaxReadings: c.journalMax, Logger: log, Registerer: reg})
	if err != nil {
		return storage{}, fmt.Errorf("opening the write journal in -data %s: %w", c.dataDir, err)
	}
	cl.add(closer(j.Close))
	// On the way out, give InfluxDB a few seconds of the shutdown to take
	// the backlog; what it does not take stays in the journal for the
	// next start.
	cl.add(func(ctx context.Context) error {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := j.Flush(fctx, ix); err != nil {
			log.Warn("journal not empty at shutdown; it is replayed at the next start", "backlog", j.Stats().Backlog, "error", err)
		}
		return nil
	})
	cl.add(task(ctx, "the journal's drain", func(ctx context.Context) { j.Drain(ctx, ix, c.influxBatch) }))
	return storage{j, ix, "InfluxDB at " + c.influxURL + ", bucket " + c.influxBucket, 0}, nil
}

// newIngester is the ingester of the broker -mqtt names (or of the
// embedded one, which hands it messages): it commits readings to the
// storage, hands them on to publish, and sets aside what the store refuses
// in the dead-letter file.
func newIngester(c config, st state, data storage, publish func([]devices.Reading), notice func(string), reg prometheus.Registerer, log *slog.Logger, cl *closers) (*ingest.Ingester, error) {
	dead, err := ingest.OpenDeadLetters(filepath.Join(c.dataDir, "dead-letters.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("-data %s: %w", c.dataDir, err)
	}
	cl.add(closer(dead.Close))
	tc, err := mqttconn.TLSConfig(c.mqttURL, c.mqttCA, c.mqttCert, c.mqttKey)
	if err != nil {
		return nil, usageError{err}
	}
	return ingest.New(ingest.Config{
		Broker: c.mqttURL, ClientID: c.mqttClientID, Connections: c.mqttConns, ReadPause: c.mqttReadPause, Username: c.mqttUser, Password: c.mqttPass, TLS: tc,
		Store: data.durable, Fleet: st.fleet, Publish: publish, Notice: notice, DeadLetters: dead,
		Metrics: ingest.NewMetrics(reg), Logger: log, MaxAhead: c.maxAhead, MaxBehind: c.maxBehind,
		PublishBeforeCommit: c.pushBeforeCommit,
	}), nil
}

// startAlerts starts the rules evaluated on every reading stored, and the
// queue in the state file their notifications go through.
func startAlerts(ctx context.Context, c config, st state, hub *push.Hub, external string, reg prometheus.Registerer, log *slog.Logger, cl *closers) (*alerts.Engine, *alerts.Notifier, error) {
	hooks, err := alertWebhooks(c.alertHooks)
	if err != nil {
		return nil, nil, usageError{err}
	}
	notifier := alerts.NewNotifier(alerts.NotifierConfig{Store: st.docs, Webhooks: hooks, Secret: []byte(c.alertSecret),
		AlertmanagerURL: c.alertmanagerURL, ExternalURL: external, Registerer: reg, Logger: log})
	var rules *alerts.Engine
	rules, err = alerts.New(ctx, alerts.Config{Store: st.docs, Fleet: st.fleet, Notify: notifier, Logger: log, Registerer: reg, MaxHistory: c.alertHistory,
		Changed: func() { hub.SetAlerts(rules.Summary()) }})
	if err != nil {
		return nil, nil, fmt.Errorf("reading the alert rules in -data %s: %w", c.dataDir, err)
	}
	hub.SetAlerts(rules.Summary())
	st.presence.Store(rules)
	cl.add(task(context.WithoutCancel(ctx), "the alert rules", func(ctx context.Context) { rules.Run(ctx) }))
	cl.add(task(ctx, "the alert notifier", func(ctx context.Context) {
		notifier.Run(ctx, func() []alerts.Instance { return rules.Alerts(alerts.StateFiring) })
	}))
	return rules, notifier, nil
}

// embedded is the embedded broker, when -mqtt names none: devices sign in
// with credentials from iotdash device add, kept in the state file; the
// simulator with a secret of this process.
type embedded struct {
	url, simUser, simPass string
	credentials           broker.Credentials
	dropped               func() float64
}

func startBroker(c config, in *ingest.Ingester, reg prometheus.Registerer, log *slog.Logger, stdout io.Writer, cl *closers) (embedded, error) {
	creds, err := sqlite.OpenCredentials(filepath.Join(c.dataDir, "fleet.db"))
	if err != nil {
		return embedded{}, fmt.Errorf("opening the device credentials in -data %s: %w", c.dataDir, err)
	}
	cl.add(closer(creds.Close))
	e := embedded{simUser: "iotdash/simulator", credentials: creds} // not a device id: no device can have it
	if e.simPass, _, err = broker.NewSecret(); err != nil {
		return e, err
	}
	loopback := broker.Loopback(c.brokerAddr)
	b, err := broker.Start(c.brokerAddr, broker.Options{Deliver: in.Submit, Credentials: creds,
		Anonymous: loopback || c.mqttAnonymous, Internal: map[string]string{e.simUser: e.simPass}, ReservedIDs: []string{c.mqttClientID},
		MaxPacketSize: c.brokerMaxPacket, MaxClients: c.brokerMaxClients, MaxRetained: c.brokerMaxRetained,
		Metrics: broker.NewMetrics(reg), Logger: log})
	if err != nil {
		return e, listenError("broker", c.brokerAddr, err)
	}
	// Close waits for every device's connection to end: within the
	// shutdown's deadline, as a task.
	cl.add(func(ctx context.Context) error { return wait(ctx, "the embedded broker", func() { b.Close() }) })
	e.url = b.URL()
	e.dropped = func() float64 { return float64(b.Dropped()) }
	fmt.Fprintf(stdout, "iotdash: embedded MQTT broker on %s\n", e.url)
	switch {
	case !loopback && c.mqttAnonymous:
		log.Warn("-mqtt-anonymous: ANY client that reaches the embedded broker may publish as any device and read every topic", "broker", e.url)
		fmt.Fprintf(stdout, "iotdash: WARNING: -mqtt-anonymous: any client that reaches %s may publish as any device and read every topic\n", e.url)
	case !loopback:
		fmt.Fprintf(stdout, "iotdash: devices need credentials to connect (iotdash device add ID)\n")
	}
	return e, nil
}

// registerBrokerDrops gives iotdash_broker_dropped_messages_total from
// dropped: the embedded broker's count, or Mosquitto's.
func registerBrokerDrops(reg prometheus.Registerer, dropped func() float64) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_broker_dropped_messages_total",
		Help: "Messages the broker says it discarded (for any subscriber whose queue or in-flight window was full): the embedded broker's own count, or Mosquitto's $SYS/broker/publish/messages/dropped."},
		dropped))
}

// newServer is the HTTP server of h, with the time limits every request
// gets, on HTTPS if -tls-cert says so; the host names and the origin of
// -public-url are the ones guard and the cross-origin check take.
func newServer(c config, h http.Handler, log *slog.Logger) (*http.Server, error) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// /ws is hijacked (no deadline) and a raw CSV export extends its own.
		WriteTimeout:   60 * time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if c.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return nil, usageError{fmt.Errorf("-tls-cert, -tls-key: %w", err)}
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return srv, nil
}

// serve serves srv on ln until its shutdown, which cl is given: the hub
// closes the WebSockets first (they are hijacked: Shutdown does not wait
// for them), each within its write timeout. What ends the serving
// otherwise comes on the channel.
func serve(srv *http.Server, ln net.Listener, hub *push.Hub, cl *closers) <-chan error {
	errc := make(chan error, 1)
	if srv.TLSConfig != nil { // before Serve, which sets one up for HTTP/2
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	cl.add(srv.Shutdown)
	cl.add(func(ctx context.Context) error { return wait(ctx, "closing the browsers' connections", hub.Close) })
	return errc
}

// welcome says where the dashboard is and, on the first start, how to
// sign in.
func welcome(stdout io.Writer, c config, ln net.Listener, adminPassword, signIn string) {
	base := "http://" + ln.Addr().String()
	if c.tlsCert != "" {
		base = "https://" + ln.Addr().String()
	}
	fmt.Fprintf(stdout, "iotdash: dashboard on %s/\n", base)
	switch {
	case signIn != "" && c.adminPassword != "":
		fmt.Fprintf(stdout, "iotdash: created the user admin with the password from IOTDASH_ADMIN_PASSWORD\n")
	case signIn != "":
		fmt.Fprintf(stdout, "iotdash: created the user admin with the password %s (shown this once: keep it, or set another on the admin page)\n", adminPassword)
		fmt.Fprintf(stdout, "iotdash: sign in once without it: %s%s\n", base, signIn)
	}
}

// crossOrigin refuses a form's POST from another site's page; the origin
// of -public-url is the dashboard's own.
func crossOrigin(c config, h http.Handler) http.Handler {
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "This request came from another site's page and was refused.", http.StatusForbidden)
	}))
	if u := c.public(); u != nil {
		csrf.AddTrustedOrigin(u.Scheme + "://" + u.Host)
	}
	return csrf.Handler(h)
}

// public is -public-url parsed (checked by parseFlags), or nil.
func (c config) public() *url.URL {
	if c.publicURL == "" {
		return nil
	}
	u, _ := url.Parse(c.publicURL)
	return u
}

// hosts are the host names requests may name besides an IP address or
// localhost: -public-url's.
func (c config) hosts() []string {
	if u := c.public(); u != nil {
		return []string{u.Hostname()}
	}
	return nil
}

// originList is -allowed-origins as a list.
func (c config) originList() []string {
	origins := []string{}
	for _, o := range strings.Split(c.origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	return origins
}

// raiseOpenFiles raises the open-file limit to what every browser
// (-max-websockets) and every device on the embedded broker
// (-broker-max-clients) holding a file needs, where the system allows,
// and says what holds.
func raiseOpenFiles(c config, log *slog.Logger) {
	if n, err := limit.RaiseOpenFiles(uint64(c.wsMax + c.brokerMaxClients + 1024)); err != nil {
		log.Warn("the open-file limit is below what -max-websockets and -broker-max-clients need; raise it (ulimit -n)", "limit", n, "error", err)
	} else {
		log.Info("open-file limit", "limit", n)
	}
}
