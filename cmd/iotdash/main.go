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
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// usageError is a mistake in the flags or the environment: exit code 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// exitCode says err and returns the exit code for it: 0 for none (and for
// -h), 2 for a usage mistake, 1 for a failure at run time.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "iotdash:", err)
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

// config is what the flags say.
type config struct {
	httpAddr, brokerAddr, dataDir string
	mqttURL, mqttUser, mqttPass   string
	mqttCA, mqttCert, mqttKey     string
	mqttClientID                  string
	simulate                      int
	simInterval                   time.Duration
	staleAfter                    time.Duration
	influxURL, influxOrg          string
	influxBucket, influxToken     string
	influxBatch                   int
	journalMax                    int64
	origins                       string
	maxPoints                     int
	queryTimeout, exportTimeout   time.Duration
	maxExportRange                time.Duration
	logLevel                      string
	pprof                         bool
	publicURL                     string
	timezone                      string
	zone                          *time.Location
	adminPassword                 string
	proxyHeader, proxyFromList    string
	proxyFrom                     []netip.Prefix
	tlsCert, tlsKey               string
	alertmanagerURL, alertHooks   string
	alertSecret                   string
	mqttAnonymous                 bool
	brokerMaxPacket               int
	brokerMaxClients              int
	brokerMaxRetained             int
	limits                        devices.Limits
	maxAhead, maxBehind           time.Duration
	wsMax, wsMaxPerAddr           int
	exportsMax, exportsPerClient  int
}

// parseFlags reads flags, each with an IOTDASH_* environment twin that the
// flag overrides.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("iotdash", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	// A variable that is set must be right: a typo is an error that names
	// it, not a default silently taken.
	var envErrs []error
	envInt := func(name string, def int) int {
		v := getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			envErrs = append(envErrs, fmt.Errorf("%s=%q is not a whole number", name, v))
			return def
		}
		return n
	}
	envDur := func(name string, def time.Duration) time.Duration {
		v := getenv(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			envErrs = append(envErrs, fmt.Errorf("%s=%q is not a duration such as 2s or 5m", name, v))
			return def
		}
		return d
	}
	envBool := func(name string) bool {
		v := getenv(name)
		if v == "" {
			return false
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			envErrs = append(envErrs, fmt.Errorf("%s=%q is not true or false", name, v))
		}
		return b
	}
	fs.StringVar(&c.httpAddr, "http", env("IOTDASH_HTTP", "127.0.0.1:8080"), "address the dashboard and API listen on (IOTDASH_HTTP)")
	fs.StringVar(&c.brokerAddr, "broker", env("IOTDASH_BROKER", "127.0.0.1:1883"), "address the embedded MQTT broker listens on, when -mqtt is not set (IOTDASH_BROKER)")
	fs.StringVar(&c.dataDir, "data", env("IOTDASH_DATA", "iotdash-data"), "directory of the embedded store and the InfluxDB write journal (IOTDASH_DATA)")
	fs.StringVar(&c.mqttURL, "mqtt", env("IOTDASH_MQTT", ""), "URL of an MQTT broker to use instead of the embedded one: tcp://host:1883 or ssl://host:8883 (IOTDASH_MQTT)")
	fs.StringVar(&c.mqttUser, "mqtt-user", env("IOTDASH_MQTT_USER", ""), "MQTT user name; the password comes from IOTDASH_MQTT_PASSWORD (IOTDASH_MQTT_USER)")
	fs.StringVar(&c.mqttCA, "mqtt-ca", env("IOTDASH_MQTT_CA", ""), "PEM file of the CA that signed the broker's certificate, for ssl:// (IOTDASH_MQTT_CA)")
	fs.StringVar(&c.mqttCert, "mqtt-cert", env("IOTDASH_MQTT_CERT", ""), "PEM client certificate for ssl://, with -mqtt-key (IOTDASH_MQTT_CERT)")
	fs.StringVar(&c.mqttKey, "mqtt-key", env("IOTDASH_MQTT_KEY", ""), "PEM client key for ssl:// (IOTDASH_MQTT_KEY)")
	fs.StringVar(&c.mqttClientID, "mqtt-client-id", env("IOTDASH_MQTT_CLIENT_ID", "iotdash-ingest"), "MQTT client id of the ingester's persistent session; keep it stable (IOTDASH_MQTT_CLIENT_ID)")
	fs.BoolVar(&c.mqttAnonymous, "mqtt-anonymous", envBool("IOTDASH_MQTT_ANONYMOUS"), "let devices without credentials connect to the embedded broker although -broker is not on loopback (where they always may), and publish as any device (IOTDASH_MQTT_ANONYMOUS=true)")
	fs.IntVar(&c.brokerMaxPacket, "broker-max-packet", envInt("IOTDASH_BROKER_MAX_PACKET", broker.DefaultMaxPacketSize), "largest MQTT packet in bytes the embedded broker takes; a client sending a larger one is disconnected (IOTDASH_BROKER_MAX_PACKET)")
	fs.IntVar(&c.brokerMaxClients, "broker-max-clients", envInt("IOTDASH_BROKER_MAX_CLIENTS", broker.DefaultMaxClients), "most clients connected to the embedded broker at once (IOTDASH_BROKER_MAX_CLIENTS)")
	fs.IntVar(&c.brokerMaxRetained, "broker-max-retained", envInt("IOTDASH_BROKER_MAX_RETAINED", broker.DefaultMaxRetained), "most retained messages the embedded broker keeps, all under devices/ (IOTDASH_BROKER_MAX_RETAINED)")
	fs.IntVar(&c.simulate, "simulate", envInt("IOTDASH_SIMULATE", -1), "number of simulated devices; default 12 with the embedded broker, 0 with -mqtt (IOTDASH_SIMULATE)")
	fs.DurationVar(&c.simInterval, "simulate-interval", envDur("IOTDASH_SIMULATE_INTERVAL", 2*time.Second), "mean time between a simulated device's readings (IOTDASH_SIMULATE_INTERVAL)")
	fs.DurationVar(&c.staleAfter, "stale-after", envDur("IOTDASH_STALE_AFTER", devices.DefaultStaleAfter), "how long an online device may be silent before it is shown as stale, while its usual interval is not known; once known, 3 intervals (IOTDASH_STALE_AFTER)")
	fs.StringVar(&c.influxURL, "influx-url", env("IOTDASH_INFLUX_URL", ""), "InfluxDB URL; set it to store in InfluxDB instead of the embedded store. The token comes from INFLUX_TOKEN (IOTDASH_INFLUX_URL)")
	fs.StringVar(&c.influxOrg, "influx-org", env("IOTDASH_INFLUX_ORG", ""), "InfluxDB organisation (IOTDASH_INFLUX_ORG)")
	fs.StringVar(&c.influxBucket, "influx-bucket", env("IOTDASH_INFLUX_BUCKET", "iotdash"), "InfluxDB bucket; db/rp on InfluxDB 1.8 (IOTDASH_INFLUX_BUCKET)")
	fs.IntVar(&c.influxBatch, "influx-batch", envInt("IOTDASH_INFLUX_BATCH", 5000), "most readings in one write to InfluxDB (IOTDASH_INFLUX_BATCH)")
	fs.Int64Var(&c.journalMax, "journal-max", int64(envInt("IOTDASH_JOURNAL_MAX", 50_000_000)), "most readings the on-disk journal holds while InfluxDB is unreachable; past it, messages stay unacknowledged at the broker (IOTDASH_JOURNAL_MAX)")
	fs.StringVar(&c.origins, "allowed-origins", env("IOTDASH_ALLOWED_ORIGINS", ""), "comma-separated host patterns, besides the dashboard's own, whose pages may open /ws (IOTDASH_ALLOWED_ORIGINS)")
	fs.IntVar(&c.maxPoints, "max-points", envInt("IOTDASH_MAX_POINTS", 10000), "most points one history query may return (IOTDASH_MAX_POINTS)")
	fs.DurationVar(&c.queryTimeout, "query-timeout", envDur("IOTDASH_QUERY_TIMEOUT", api.DefaultTimeout), "longest a history query may take before it gets a 503 (IOTDASH_QUERY_TIMEOUT)")
	fs.DurationVar(&c.exportTimeout, "export-timeout", envDur("IOTDASH_EXPORT_TIMEOUT", api.DefaultExportTimeout), "longest a raw CSV export (step=raw&format=csv) may stream (IOTDASH_EXPORT_TIMEOUT)")
	c.maxExportRange = api.DefaultMaxExportRange
	setRange := func(s string) error {
		d, err := api.ParseDuration(s)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q is not a positive duration such as 31d or 744h", s)
		}
		c.maxExportRange = d
		return nil
	}
	if v := getenv("IOTDASH_MAX_EXPORT_RANGE"); v != "" {
		if err := setRange(v); err != nil {
			envErrs = append(envErrs, fmt.Errorf("IOTDASH_MAX_EXPORT_RANGE: %w", err))
		}
	}
	fs.Func("max-export-range", "longest range one raw CSV export may cover, e.g. 31d (default 31d) (IOTDASH_MAX_EXPORT_RANGE)", setRange)
	fs.IntVar(&c.limits.Devices, "max-devices", envInt("IOTDASH_MAX_DEVICES", devices.DefaultMaxDevices), "most devices the fleet takes; messages of new ones past it are refused (IOTDASH_MAX_DEVICES)")
	fs.IntVar(&c.limits.Metrics, "max-metrics-per-device", envInt("IOTDASH_MAX_METRICS_PER_DEVICE", devices.DefaultMaxMetrics), "most metrics one device may have; readings of new ones past it are refused (IOTDASH_MAX_METRICS_PER_DEVICE)")
	fs.IntVar(&c.limits.NewSeriesPerMinute, "max-new-series", envInt("IOTDASH_MAX_NEW_SERIES", devices.DefaultMaxNewSeries), "most new series (a device's metric seen for the first time) taken a minute (IOTDASH_MAX_NEW_SERIES)")
	fs.DurationVar(&c.maxAhead, "max-ts-ahead", envDur("IOTDASH_MAX_TS_AHEAD", ingest.DefaultMaxAhead), "how far ahead of the server's clock a reading's ts may be (IOTDASH_MAX_TS_AHEAD)")
	fs.DurationVar(&c.maxBehind, "max-ts-behind", envDur("IOTDASH_MAX_TS_BEHIND", ingest.DefaultMaxBehind), "how far behind the server's clock a reading's ts may be (IOTDASH_MAX_TS_BEHIND)")
	fs.IntVar(&c.wsMax, "max-websockets", envInt("IOTDASH_MAX_WEBSOCKETS", push.DefaultMaxClients), "most browsers connected to /ws at once (IOTDASH_MAX_WEBSOCKETS)")
	fs.IntVar(&c.wsMaxPerAddr, "max-websockets-per-addr", envInt("IOTDASH_MAX_WEBSOCKETS_PER_ADDR", push.DefaultMaxPerAddr), "most /ws connections from one IP address (IOTDASH_MAX_WEBSOCKETS_PER_ADDR)")
	fs.IntVar(&c.exportsMax, "max-exports", envInt("IOTDASH_MAX_EXPORTS", api.DefaultMaxExports), "most raw CSV exports streaming at once (IOTDASH_MAX_EXPORTS)")
	fs.IntVar(&c.exportsPerClient, "max-exports-per-client", envInt("IOTDASH_MAX_EXPORTS_PER_CLIENT", api.DefaultMaxExportsPerClient), "most raw CSV exports streaming at once to one client: its IP address, until exports are counted per signed-in user (IOTDASH_MAX_EXPORTS_PER_CLIENT)")
	fs.StringVar(&c.proxyHeader, "auth-proxy-header", env("IOTDASH_AUTH_PROXY_HEADER", ""), "header in which a reverse proxy that signs people in names the user, e.g. X-Forwarded-User; believed only from -auth-proxy-from (IOTDASH_AUTH_PROXY_HEADER)")
	fs.StringVar(&c.proxyFromList, "auth-proxy-from", env("IOTDASH_AUTH_PROXY_FROM", ""), "addresses or CIDR ranges of that proxy, comma-separated (IOTDASH_AUTH_PROXY_FROM)")
	fs.StringVar(&c.tlsCert, "tls-cert", env("IOTDASH_TLS_CERT", ""), "serve HTTPS with this certificate (PEM); needs -tls-key (IOTDASH_TLS_CERT)")
	fs.StringVar(&c.tlsKey, "tls-key", env("IOTDASH_TLS_KEY", ""), "the certificate's private key (PEM) (IOTDASH_TLS_KEY)")
	fs.StringVar(&c.alertmanagerURL, "alertmanager-url", env("IOTDASH_ALERTMANAGER_URL", ""), "a Prometheus Alertmanager that alerts are posted to (IOTDASH_ALERTMANAGER_URL)")
	fs.StringVar(&c.alertHooks, "alert-webhook", env("IOTDASH_ALERT_WEBHOOK", ""), "webhooks every alert is posted to in Alertmanager's format, comma-separated; severity=URL for one severity only; signed with IOTDASH_ALERT_WEBHOOK_SECRET (IOTDASH_ALERT_WEBHOOK)")
	fs.StringVar(&c.publicURL, "public-url", env("IOTDASH_PUBLIC_URL", ""), "the URL people reach the dashboard at, when not by an IP address or localhost (a name on the network, or behind a proxy): requests for other host names are refused (IOTDASH_PUBLIC_URL)")
	fs.StringVar(&c.timezone, "timezone", env("IOTDASH_TIMEZONE", ""), "the plant's time zone, an IANA name such as Europe/Berlin, that every time on the pages is shown in; default the machine's (IOTDASH_TIMEZONE)")
	fs.BoolVar(&c.pprof, "pprof", envBool("IOTDASH_PPROF"), "serve Go's profiler under /debug/pprof/ (IOTDASH_PPROF=true)")
	fs.StringVar(&c.logLevel, "log-level", env("IOTDASH_LOG_LEVEL", "info"), "debug, info, warn or error (IOTDASH_LOG_LEVEL)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: iotdash [flags]\n       iotdash device add|list|revoke [ID] [-data DIR]\n\nWith no flags, iotdash runs self-contained: embedded MQTT broker, embedded store, 12 simulated devices.\nEvery flag can also be set by the environment variable named after it.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, usageError{err}
	}
	if fs.NArg() > 0 {
		return c, usageError{fmt.Errorf("unexpected argument %q; see -h", fs.Arg(0))}
	}
	if err := errors.Join(envErrs...); err != nil {
		return c, usageError{err}
	}
	c.mqttPass = getenv("IOTDASH_MQTT_PASSWORD")
	c.adminPassword = getenv("IOTDASH_ADMIN_PASSWORD")
	c.alertSecret = getenv("IOTDASH_ALERT_WEBHOOK_SECRET")
	if c.adminPassword != "" && len(c.adminPassword) < auth.MinPasswordLength {
		return c, usageError{fmt.Errorf("IOTDASH_ADMIN_PASSWORD has fewer than %d characters", auth.MinPasswordLength)}
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return c, usageError{errors.New("-tls-cert and -tls-key go together")}
	}
	for _, f := range strings.Split(c.proxyFromList, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return c, usageError{fmt.Errorf("-auth-proxy-from: %q is not an address or a CIDR range", f)}
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.proxyFrom = append(c.proxyFrom, p.Masked())
	}
	if c.proxyHeader != "" && len(c.proxyFrom) == 0 {
		return c, usageError{errors.New("-auth-proxy-header needs -auth-proxy-from: the addresses the header is believed from")}
	}
	c.influxToken = getenv("INFLUX_TOKEN")
	if c.publicURL != "" {
		u, err := url.Parse(c.publicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
			return c, usageError{fmt.Errorf("-public-url %q is not an http:// or https:// URL with a host", c.publicURL)}
		}
	}
	var err error
	if c.zone, err = views.LoadZone(c.timezone); err != nil {
		return c, usageError{fmt.Errorf("-timezone %q is not a time zone such as Europe/Berlin or UTC", c.timezone)}
	}
	if c.brokerMaxPacket <= 0 || c.brokerMaxClients <= 0 || c.brokerMaxRetained <= 0 {
		return c, usageError{errors.New("-broker-max-packet, -broker-max-clients and -broker-max-retained must be positive")}
	}
	if c.simulate < 0 {
		c.simulate = 12
		if c.mqttURL != "" {
			c.simulate = 0
		}
	}
	return c, nil
}

// listenError turns a failed listen into one line that names the flag to change.
func listenError(flagName, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s is already in use; choose another address with -%s", addr, flagName)
	}
	return fmt.Errorf("cannot listen on %s (-%s): %v", addr, flagName, err)
}

// closers runs shutdown steps in reverse order of registration, keeping the
// first error.
type closers []func() error

func (cs *closers) add(f func() error) { *cs = append(*cs, f) }

func (cs closers) close() error {
	var first error
	for i := len(cs) - 1; i >= 0; i-- {
		if err := cs[i](); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// task runs f in a goroutine and returns a function that cancels it and
// waits for it to end.
func task(parent context.Context, f func(ctx context.Context)) func() error {
	ctx, cancel := context.WithCancel(parent)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); f(ctx) }()
	return func() error { cancel(); wg.Wait(); return nil }
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
	fleet := devices.NewFleet(hub.PublishStatus)
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
	rules, err = alerts.New(ctx, alerts.Config{Store: docs, Fleet: fleet, Notify: notifier, Logger: log,
		Changed: func() { hub.SetAlerts(rules.Summary()) }})
	if err != nil {
		return fmt.Errorf("reading the alert rules in -data %s: %w", c.dataDir, err)
	}
	hub.SetAlerts(rules.Summary())
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

func registerJournalMetrics(reg *prometheus.Registry, j *journal.Journal) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "iotdash_journal_backlog_readings", Help: "Readings in the on-disk journal waiting for InfluxDB."},
			func() float64 { return float64(j.Stats().Backlog) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_journal_written_total", Help: "Readings written from the journal to InfluxDB."},
			func() float64 { return float64(j.Stats().Written) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_journal_write_failures_total", Help: "Failed writes from the journal to InfluxDB (retried)."},
			func() float64 { return float64(j.Stats().Failures) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_journal_full_total", Help: "Appends refused because the journal was full (the messages stay at the broker)."},
			func() float64 { return float64(j.Stats().Full) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_journal_rejected_total", Help: "Readings InfluxDB refused as bad data, set aside in the journal's rejected table."},
			func() float64 { return float64(j.Stats().Rejected) }),
	)
}

// fleetCollector gives iotdash_devices{status=…}, so that Prometheus can
// alert on devices going offline as the dashboard shows them.
type fleetCollector struct{ fleet *devices.Fleet }

var devicesDesc = prometheus.NewDesc("iotdash_devices", "Devices known, by status as the dashboard shows it.", []string{"status"}, nil)

func (fleetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- devicesDesc }

func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	for s, n := range c.fleet.Counts() {
		ch <- prometheus.MustNewConstMetric(devicesDesc, prometheus.GaugeValue, float64(n), string(s))
	}
}

func registerHubMetrics(reg *prometheus.Registry, hub *push.Hub) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "iotdash_websocket_clients", Help: "Browsers connected to /ws."},
			func() float64 { return float64(hub.Stats().Clients) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_websocket_frames_total", Help: "Frames sent to browsers."},
			func() float64 { return float64(hub.Stats().Frames) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_websocket_dropped_readings_total", Help: "Readings not sent to a browser whose queue was full (it is told of the gap)."},
			func() float64 { return float64(hub.Stats().DroppedReadings) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_websocket_slow_closed_total", Help: "Browsers disconnected for being too slow."},
			func() float64 { return float64(hub.Stats().SlowClosed) }),
	)
	for _, reason := range []string{push.RefusedTooMany, push.RefusedTooManyAddr} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_websocket_refused_total", Help: "Connections to /ws refused by a limit (-max-websockets, -max-websockets-per-addr), by reason.", ConstLabels: prometheus.Labels{"reason": reason}},
			func() float64 { return float64(hub.Stats().Refused[reason]) }))
	}
	for _, reason := range []string{push.ClosedNoSubscribe, push.ClosedNoPong} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_websocket_limit_closed_total", Help: "Browsers disconnected for sending no subscribe in time, or answering no ping, by reason.", ConstLabels: prometheus.Labels{"reason": reason}},
			func() float64 { return float64(hub.Stats().Closed[reason]) }))
	}
}

// alertWebhooks reads -alert-webhook: URLs, each for every severity or,
// as severity=URL, for one.
func alertWebhooks(list string) (map[string][]string, error) {
	hooks := map[string][]string{}
	for _, h := range strings.Split(list, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		sev, u, ok := strings.Cut(h, "=")
		if !ok || strings.Contains(sev, "/") {
			sev, u = "", h
		} else if !slices.Contains(alerts.Severities, sev) {
			return nil, fmt.Errorf("-alert-webhook: %q is none of %s", sev, strings.Join(alerts.Severities, ", "))
		}
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return nil, fmt.Errorf("-alert-webhook: %q is not an http:// or https:// URL", u)
		}
		hooks[sev] = append(hooks[sev], u)
	}
	return hooks, nil
}
