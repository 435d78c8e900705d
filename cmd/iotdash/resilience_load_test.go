package main

// What the resilience tests share: a device load whose every message the
// test can account for, ways to read back what a store holds, and the one
// line of figures each scenario prints.
//
// Run them all, with their figures, by
//
//	go test -count=1 -v -run Resilience ./cmd/iotdash | grep RESILIENCE

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/internal/testenv"
)

// keepQueued makes the test broker keep every message queued for iotdash's
// persistent session. Mosquitto's default max_queued_messages (1000) drops
// QoS 1 messages beyond that for a client that is offline or behind: that
// is the broker's limit, not iotdash's, and would hide what the tests check.
const keepQueued = "max_queued_messages 10000000"

// loadConfig says what load to send.
type loadConfig struct {
	Broker  string
	Rate    int    // messages a second, in all
	Devices int    // device ids prefix-000 …, shared among the connections
	Conns   int    // MQTT connections
	Prefix  string // starts every device id and client id: unique per test
	// Metrics is how many readings each message carries, as metrics m0,
	// m1, …; default 2.
	Metrics int
}

// loadMsg is one message the load handed to its MQTT client.
type loadMsg struct {
	device string
	ts     int64
	acked  bool // the broker acknowledged it (PUBACK)
}

// load publishes telemetry with QoS 1 at a steady rate over persistent,
// reconnecting sessions. Each message carries a ts unique to its device (the
// time it was sent, moved on by a millisecond where that would repeat), so a
// message delivered twice is the same reading, and it records which
// messages the broker acknowledged.
type load struct {
	cfg     loadConfig
	metrics []string
	conns   []*loadConn
	start   time.Time
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

type loadConn struct {
	client  mqtt.Client
	devices []string
	lastTS  []int64
	rate    float64
	pending chan pendingMsg
	acker   sync.WaitGroup

	mu   sync.Mutex
	msgs []loadMsg
}

type pendingMsg struct {
	i   int
	tok mqtt.Token
}

// startLoad connects cfg.Conns clients and starts sending.
func startLoad(t testing.TB, cfg loadConfig) *load {
	t.Helper()
	if cfg.Conns == 0 {
		cfg.Conns = 4
	}
	if cfg.Devices == 0 {
		cfg.Devices = 100
	}
	if cfg.Metrics == 0 {
		cfg.Metrics = 2
	}
	l := &load{cfg: cfg, stop: make(chan struct{})}
	for i := range cfg.Metrics {
		l.metrics = append(l.metrics, fmt.Sprintf("m%d", i))
	}
	for i := range cfg.Conns {
		c := &loadConn{rate: float64(cfg.Rate) / float64(cfg.Conns), pending: make(chan pendingMsg, 1<<16)}
		for d := i; d < cfg.Devices; d += cfg.Conns {
			c.devices = append(c.devices, fmt.Sprintf("%s-%03d", cfg.Prefix, d))
		}
		c.lastTS = make([]int64, len(c.devices))
		// A persistent session that reconnects: messages sent while the
		// broker is away wait in the client and go out once it is back.
		c.client = mqtt.NewClient(mqtt.NewClientOptions().
			AddBroker(cfg.Broker).
			SetClientID(fmt.Sprintf("%s-pub-%d-%d", cfg.Prefix, os.Getpid(), i)).
			SetCleanSession(false).
			SetAutoReconnect(true).
			SetConnectRetry(true).
			SetConnectRetryInterval(250 * time.Millisecond).
			SetMaxReconnectInterval(time.Second).
			SetOrderMatters(false))
		if tok := c.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("load: connecting to %s: %v", cfg.Broker, tok.Error())
		}
		l.conns = append(l.conns, c)
	}
	t.Cleanup(func() {
		l.halt()
		for _, c := range l.conns {
			c.client.Disconnect(0)
		}
	})
	l.start = time.Now()
	for _, c := range l.conns {
		c.acker.Add(1)
		go c.ack()
		l.wg.Add(1)
		go func() { defer l.wg.Done(); c.send(l.start, l.stop, l.metrics) }()
	}
	return l
}

// send keeps to the connection's share of the rate until stop is closed.
func (c *loadConn) send(start time.Time, stop <-chan struct{}, metrics []string) {
	defer close(c.pending)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	n := 0
	var buf []byte
	for {
		due := int(time.Since(start).Seconds() * c.rate)
		for ; n < due; n++ {
			d := n % len(c.devices)
			ts := max(time.Now().UnixMilli(), c.lastTS[d]+1)
			c.lastTS[d] = ts
			payload := strconv.AppendInt(append(buf[:0], `{"ts":`...), ts, 10)
			for i, m := range metrics {
				payload = append(append(append(payload, ',', '"'), m...), '"', ':')
				payload = strconv.AppendInt(payload, int64(n+i), 10)
			}
			payload = append(payload, '}')
			buf = payload
			c.mu.Lock()
			c.msgs = append(c.msgs, loadMsg{device: c.devices[d], ts: ts})
			c.mu.Unlock()
			c.pending <- pendingMsg{n, c.client.Publish("devices/"+c.devices[d]+"/telemetry", 1, false, slices.Clone(payload))}
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// ack records the broker's acknowledgements, in the order sent.
func (c *loadConn) ack() {
	defer c.acker.Done()
	for p := range c.pending {
		// A message not acknowledged within a minute (the broker is
		// restarted at most once, for a few seconds) counts as not accepted.
		if !p.tok.WaitTimeout(time.Minute) || p.tok.Error() != nil {
			continue
		}
		c.mu.Lock()
		c.msgs[p.i].acked = true
		c.mu.Unlock()
	}
}

// counts returns the messages sent and acknowledged so far.
func (l *load) counts() (sent, acked int) {
	for _, c := range l.conns {
		c.mu.Lock()
		sent += len(c.msgs)
		for _, m := range c.msgs {
			if m.acked {
				acked++
			}
		}
		c.mu.Unlock()
	}
	return sent, acked
}

// waitAcked waits until at least n messages have been acknowledged.
func (l *load) waitAcked(t testing.TB, n int) {
	t.Helper()
	testenv.WaitFor(t, time.Minute, fmt.Sprintf("the broker to acknowledge %d load messages", n), func() bool {
		_, acked := l.counts()
		return acked >= n
	})
}

// loadResult is what a load sent and the broker accepted.
type loadResult struct {
	Elapsed time.Duration
	Sent    int
	Metrics []string // of every message
	prefix  string
	msgs    []loadMsg
}

// Accepted returns the messages the broker acknowledged.
func (r loadResult) Accepted() []loadMsg {
	var out []loadMsg
	for _, m := range r.msgs {
		if m.acked {
			out = append(out, m)
		}
	}
	return out
}

func (l *load) halt() { l.once.Do(func() { close(l.stop) }) }

// Stop stops sending and waits for the broker's last acknowledgements.
func (l *load) Stop(t testing.TB) loadResult {
	t.Helper()
	l.halt()
	l.wg.Wait()
	res := loadResult{Elapsed: time.Since(l.start), Metrics: l.metrics, prefix: l.cfg.Prefix}
	for _, c := range l.conns {
		c.acker.Wait()
		c.mu.Lock()
		res.msgs = append(res.msgs, c.msgs...)
		c.mu.Unlock()
	}
	res.Sent = len(res.msgs)
	return res
}

// series is what a store holds: the times of each device's metric, as
// "device/metric" -> times, one entry per stored reading.
type series map[string][]int64

// tally compares what a store holds with what the load sent.
type tally struct {
	Sent, Accepted int // messages
	Readings       int // readings the accepted messages carry
	Stored         int // distinct readings of the load in the store
	Missing        int // readings of accepted messages not in the store
	Duplicates     int // readings the store holds more than once
	Unexpected     int // readings in the store that the load never sent
}

func (tl tally) String() string {
	return fmt.Sprintf("messages sent %d, accepted by the broker %d (%d readings); readings stored %d, missing %d, duplicates %d, unexpected %d",
		tl.Sent, tl.Accepted, tl.Readings, tl.Stored, tl.Missing, tl.Duplicates, tl.Unexpected)
}

// check compares res with what the store holds and fails t on any reading
// accepted but not stored exactly once.
func (res loadResult) check(t testing.TB, stored series) tally {
	t.Helper()
	tl, missing := res.compare(stored)
	if tl.Missing > 0 || tl.Duplicates > 0 || tl.Unexpected > 0 {
		t.Errorf("not every accepted reading is stored exactly once: %v (missing e.g. %v)", tl, missing)
	}
	return tl
}

// compare compares res with what the store holds, and returns a few of the
// missing readings.
func (res loadResult) compare(stored series) (tally, []string) {
	type key struct {
		series string
		ts     int64
	}
	sent := map[key]bool{}
	tl := tally{Sent: res.Sent}
	for _, m := range res.msgs {
		for _, metric := range res.Metrics {
			sent[key{m.device + "/" + metric, m.ts}] = m.acked
		}
		if m.acked {
			tl.Accepted++
			tl.Readings += len(res.Metrics)
		}
	}
	have := map[key]int{}
	for s, times := range stored {
		for _, ts := range times {
			k := key{s, ts}
			have[k]++
			switch {
			case have[k] > 1:
				tl.Duplicates++
			default:
				tl.Stored++
				if _, ok := sent[k]; !ok {
					tl.Unexpected++
				}
			}
		}
	}
	var missing []string
	for k, acked := range sent {
		if acked && have[k] == 0 {
			tl.Missing++
			if len(missing) < 5 {
				missing = append(missing, fmt.Sprintf("%s@%d", k.series, k.ts))
			}
		}
	}
	return tl, missing
}

// waitStored waits until the store holds every reading res had accepted.
func (res loadResult) waitStored(t testing.TB, within time.Duration, stored func() series) {
	t.Helper()
	var tl tally
	deadline := time.Now().Add(within)
	for {
		if tl, _ = res.compare(stored()); tl.Missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the store still lacks readings: %v", within, tl)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// timeRange returns the first ts and one past the last ts res sent.
func (res loadResult) timeRange() (from, to int64) {
	for i, m := range res.msgs {
		if i == 0 || m.ts < from {
			from = m.ts
		}
		to = max(to, m.ts+1)
	}
	return from, to
}

// devices returns the device ids res sent to, sorted.
func (res loadResult) devices() []string {
	seen := map[string]bool{}
	for _, m := range res.msgs {
		seen[m.device] = true
	}
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// influxSeries reads every reading of res's devices from database db of
// the InfluxDB at baseURL with InfluxQL: the times of each device's metrics.
func (res loadResult) influxSeries(t testing.TB, baseURL, db string) series {
	t.Helper()
	q := fmt.Sprintf(`SELECT %s FROM telemetry WHERE device =~ /^%s-/ GROUP BY device`, strings.Join(res.Metrics, ", "), res.prefix)
	resp, err := http.PostForm(baseURL+"/query", url.Values{"db": {db}, "q": {q}, "epoch": {"ms"}, "chunked": {"true"}, "chunk_size": {"10000"}})
	if err != nil {
		t.Fatalf("InfluxQL %s: %v", q, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("InfluxQL %s: %s %s", q, resp.Status, b)
	}
	out := series{}
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var chunk struct {
			Results []struct {
				Error  string `json:"error"`
				Series []struct {
					Tags    map[string]string `json:"tags"`
					Columns []string          `json:"columns"`
					Values  [][]any           `json:"values"`
				} `json:"series"`
			} `json:"results"`
		}
		if err := dec.Decode(&chunk); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("InfluxQL %s: %v", q, err)
		}
		for _, r := range chunk.Results {
			if r.Error != "" {
				t.Fatalf("InfluxQL %s: %s", q, r.Error)
			}
			for _, s := range r.Series {
				for _, row := range s.Values {
					ts := int64(row[0].(float64))
					for i, col := range s.Columns[1:] {
						if row[i+1] != nil {
							k := s.Tags["device"] + "/" + col
							out[k] = append(out[k], ts)
						}
					}
				}
			}
		}
	}
}

// historySeries reads every reading res sent back through iotdash's
// history API (step=raw), for the embedded store.
func (res loadResult) historySeries(t *testing.T, base string) series {
	t.Helper()
	from, to := res.timeRange()
	out := series{}
	for _, d := range res.devices() {
		for _, m := range res.Metrics {
			var ans queryAnswer
			if code := getJSON(t, base, rawQuery(d, m, from, to), &ans); code != http.StatusOK {
				t.Fatalf("history of %s/%s: status %d", d, m, code)
			}
			for _, p := range ans.Points {
				out[d+"/"+m] = append(out[d+"/"+m], int64(p[0]))
			}
		}
	}
	return out
}

// scrape reads iotdash's /metrics as sample -> value. Unlike metric it does
// not fail the test when iotdash does not answer.
func scrape(base string) (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// readiness returns /readyz's status and body, or 0 if iotdash does not
// answer.
func readiness(base string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// figures prints a scenario's figures in one line the README can quote.
func figures(t testing.TB, scenario string, format string, args ...any) {
	t.Helper()
	t.Logf("RESILIENCE %s: %s", scenario, fmt.Sprintf(format, args...))
}

// envInt reads a test knob from the environment.
func envInt(t testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// envDuration reads a test knob from the environment.
func envDuration(t testing.TB, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

// underLoad is the built iotdash on a broker of its own, storing in the
// embedded store or (ix not nil) in InfluxDB, taking a QoS 1 load: for the
// tests that stop it and start it again on the same data and client id.
type underLoad struct {
	bin  string
	args []string
	data string // its -data directory
	ix   *testenv.InfluxDB
	rate int
	p    *process
	l    *load
}

// startUnderLoad starts iotdash, with the flags extra beside those it
// always has, and a load of rate messages a second, and returns once it has
// stored two seconds' worth.
func startUnderLoad(t *testing.T, bin, prefix string, rate int, ix *testenv.InfluxDB, extra ...string) *underLoad {
	t.Helper()
	mq := testenv.StartMosquitto(t, keepQueued)
	u := &underLoad{bin: bin, data: t.TempDir(), ix: ix, rate: rate}
	u.args = []string{"-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-mqtt", mq.URL, "-mqtt-client-id", prefix,
		"-data", u.data, "-log-level", "error"}
	if ix != nil {
		u.args = append(u.args, "-influx-url", ix.URL, "-influx-bucket", ix.Bucket)
	}
	u.args = append(u.args, extra...)
	u.p = startBinary(t, bin, u.args...)
	u.l = startLoad(t, loadConfig{Broker: mq.URL, Rate: rate, Prefix: prefix})
	testenv.WaitFor(t, time.Minute, "readings stored", func() bool {
		m, err := scrape(u.p.URL)
		return err == nil && m["iotdash_readings_stored_total"] >= float64(2*rate)
	})
	return u
}

// restart starts iotdash again on the same data and client id, and
// returns once /readyz says it is ready.
func (u *underLoad) restart(t *testing.T) {
	t.Helper()
	u.p = startBinary(t, u.bin, u.args...)
}

// finish lets the load run a second more, stops it, waits until every
// reading the broker accepted is stored, and checks that each is stored
// exactly once.
func (u *underLoad) finish(t *testing.T) (tally, loadResult) {
	t.Helper()
	_, acked := u.l.counts()
	u.l.waitAcked(t, acked+u.rate)
	res := u.l.Stop(t)
	stored := func() series {
		if u.ix != nil {
			return res.influxSeries(t, u.ix.URL, u.ix.Database)
		}
		return res.historySeries(t, u.p.URL)
	}
	res.waitStored(t, 2*time.Minute, stored)
	return res.check(t, stored()), res
}
