package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"iotdash/alerts"
	"iotdash/api"
	"iotdash/auth"
	"iotdash/broker"
	"iotdash/devices"
	"iotdash/ingest"
	"iotdash/push"
	"iotdash/store/sqlite"
	"iotdash/views"
)

// config is what the flags say.
type config struct {
	httpAddr, brokerAddr, dataDir string
	mqttURL, mqttUser, mqttPass   string
	mqttCA, mqttCert, mqttKey     string
	mqttClientID                  string
	mqttConns                     int
	mqttReadPause                 time.Duration
	simulate                      int
	simInterval                   time.Duration
	boardFollow                   time.Duration
	staleAfter                    time.Duration
	influxURL, influxOrg          string
	influxBucket, influxToken     string
	influxBatch                   int
	journalMax                    int64
	origins                       string
	maxPoints                     int
	queryTimeout, exportTimeout   time.Duration
	maxExportRange                time.Duration
	retention, rollupRetention    time.Duration
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
	alertHistory                  int
	mqttAnonymous                 bool
	brokerMaxPacket               int
	brokerMaxClients              int
	brokerMaxRetained             int
	limits                        devices.Limits
	maxAhead, maxBehind           time.Duration
	pushBeforeCommit              bool
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
		return envValue(getenv, &envErrs, name, def, strconv.Atoi, "a whole number")
	}
	envDur := func(name string, def time.Duration) time.Duration {
		return envValue(getenv, &envErrs, name, def, time.ParseDuration, "a duration such as 2s or 5m")
	}
	envBool := func(name string) bool {
		return envValue(getenv, &envErrs, name, false, strconv.ParseBool, "true or false")
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
	fs.DurationVar(&c.mqttReadPause, "mqtt-read-pause", envDur("IOTDASH_MQTT_READ_PAUSE", ingest.DefaultReadPause), "how long a connection to the -mqtt broker waits after a read before the next, so that a steady stream is read many messages a system call: a third less CPU at 5,000–20,000 msg/s, about 3 ms later on a live page at 5,000 msg/s; 0 reads each message at once (IOTDASH_MQTT_READ_PAUSE)")
	fs.IntVar(&c.mqttConns, "mqtt-connections", envInt("IOTDASH_MQTT_CONNECTIONS", 1), "connections to the -mqtt broker that share the telemetry subscription ($share, Mosquitto ≥ 1.6): each adds a broker in-flight window to what one commit can carry; client ids CLIENTID, CLIENTID-1, … (IOTDASH_MQTT_CONNECTIONS)")
	fs.BoolVar(&c.mqttAnonymous, "mqtt-anonymous", envBool("IOTDASH_MQTT_ANONYMOUS"), "let devices without credentials connect to the embedded broker although -broker is not on loopback (where they always may), and publish as any device (IOTDASH_MQTT_ANONYMOUS=true)")
	fs.IntVar(&c.brokerMaxPacket, "broker-max-packet", envInt("IOTDASH_BROKER_MAX_PACKET", broker.DefaultMaxPacketSize), "largest MQTT packet in bytes the embedded broker takes; a client sending a larger one is disconnected (IOTDASH_BROKER_MAX_PACKET)")
	fs.IntVar(&c.brokerMaxClients, "broker-max-clients", envInt("IOTDASH_BROKER_MAX_CLIENTS", broker.DefaultMaxClients), "most clients connected to the embedded broker at once (IOTDASH_BROKER_MAX_CLIENTS)")
	fs.IntVar(&c.brokerMaxRetained, "broker-max-retained", envInt("IOTDASH_BROKER_MAX_RETAINED", broker.DefaultMaxRetained), "most retained messages the embedded broker keeps, all under devices/ (IOTDASH_BROKER_MAX_RETAINED)")
	fs.IntVar(&c.simulate, "simulate", envInt("IOTDASH_SIMULATE", -1), "number of simulated devices; default 12 with the embedded broker, 0 with -mqtt (IOTDASH_SIMULATE)")
	fs.DurationVar(&c.simInterval, "simulate-interval", envDur("IOTDASH_SIMULATE_INTERVAL", 2*time.Second), "mean time between a simulated device's readings (IOTDASH_SIMULATE_INTERVAL)")
	fs.DurationVar(&c.boardFollow, "board-follow", envDur("IOTDASH_BOARD_FOLLOW", views.DefaultBoardFollow), "how often a board whose series select devices by kind or pattern looks again for the devices they pick (IOTDASH_BOARD_FOLLOW)")
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
	c.retention, c.rollupRetention = sqlite.DefaultRetention, sqlite.DefaultRollupRetention
	for _, r := range []struct {
		flag, env, usage string
		d                *time.Duration
	}{
		{"retention", "IOTDASH_RETENTION", "how long the embedded store keeps raw readings, e.g. 30d; 0 keeps them for ever (default 30d) (IOTDASH_RETENTION)", &c.retention},
		{"rollup-retention", "IOTDASH_ROLLUP_RETENTION", "how long the embedded store keeps its minute and hour summaries, at least -retention; 0 keeps them for ever (default 730d) (IOTDASH_ROLLUP_RETENTION)", &c.rollupRetention},
	} {
		set := func(s string) error {
			d, err := api.ParseDuration(s)
			if err != nil || d < 0 {
				return fmt.Errorf("%q is not a duration such as 30d or 12h, or 0", s)
			}
			*r.d = d
			return nil
		}
		if v := getenv(r.env); v != "" {
			if err := set(v); err != nil {
				envErrs = append(envErrs, fmt.Errorf("%s: %w", r.env, err))
			}
		}
		fs.Func(r.flag, r.usage, set)
	}
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
	fs.IntVar(&c.alertHistory, "alert-history", envInt("IOTDASH_ALERT_HISTORY", alerts.DefaultMaxHistory), "most alert episodes (a firing to its clearing) kept in the state file; the oldest go first (IOTDASH_ALERT_HISTORY)")
	fs.StringVar(&c.alertHooks, "alert-webhook", env("IOTDASH_ALERT_WEBHOOK", ""), "webhooks every alert is posted to in Alertmanager's format, comma-separated; severity=URL for one severity only; signed with IOTDASH_ALERT_WEBHOOK_SECRET (IOTDASH_ALERT_WEBHOOK)")
	fs.StringVar(&c.publicURL, "public-url", env("IOTDASH_PUBLIC_URL", ""), "the URL people reach the dashboard at, when not by an IP address or localhost (a name on the network, or behind a proxy): requests for other host names are refused (IOTDASH_PUBLIC_URL)")
	fs.StringVar(&c.timezone, "timezone", env("IOTDASH_TIMEZONE", ""), "the plant's time zone, an IANA name such as Europe/Berlin, that every time on the pages is shown in; default the machine's (IOTDASH_TIMEZONE)")
	fs.BoolVar(&c.pushBeforeCommit, "push-before-commit", envBool("IOTDASH_PUSH_BEFORE_COMMIT"), "send readings to browsers as they arrive rather than once stored: a few milliseconds sooner, but a browser may then show a reading that a crash or the store's refusal keeps out of history (IOTDASH_PUSH_BEFORE_COMMIT=true)")
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
	if c.boardFollow < time.Second {
		// Every board page on screen fetches its grid this often.
		return c, usageError{fmt.Errorf("-board-follow %v is less than a second", c.boardFollow)}
	}
	if c.alertHistory <= 0 {
		return c, usageError{errors.New("-alert-history must be positive")}
	}
	if c.mqttReadPause < 0 || c.mqttReadPause > ingest.MaxReadPause {
		return c, usageError{fmt.Errorf("-mqtt-read-pause %v is not between 0 and %v", c.mqttReadPause, ingest.MaxReadPause)}
	}
	if c.mqttConns < 1 || c.mqttConns > ingest.MaxConnections {
		return c, usageError{fmt.Errorf("-mqtt-connections %d is not between 1 and %d", c.mqttConns, ingest.MaxConnections)}
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

// envValue reads the environment variable name with parse, or is def
// while it is unset; a value parse refuses adds an error to errs that names
// the variable and says what it should be.
func envValue[T any](getenv func(string) string, errs *[]error, name string, def T, parse func(string) (T, error), what string) T {
	v := getenv(name)
	if v == "" {
		return def
	}
	x, err := parse(v)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s=%q is not %s", name, v, what))
		return def
	}
	return x
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

// listenError turns a failed listen into one line that names the flag to change.
func listenError(flagName, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s is already in use; choose another address with -%s", addr, flagName)
	}
	return fmt.Errorf("cannot listen on %s (-%s): %v", addr, flagName, err)
}
