package benchpeers

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The load of the table: 100 devices, 4 publisher connections.
const (
	devicesN = 100
	conns    = 4
)

// load is one row of the table.
type load struct {
	name     string
	id       string // the subtests' name
	messages int
	qos      byte
	rate     int // messages/s in all; 0 is as fast as the publisher goes
}

var loads = []load{
	{"200,000 QoS 1 at 20,000 msg/s", "qos1-20k", 200_000, 1, 20_000},
	{"400,000 QoS 0 at 60,000 msg/s", "qos0-60k", 400_000, 0, 60_000},
	{"400,000 QoS 0, as fast as the publisher goes", "qos0-max", 400_000, 0, 0},
}

// result is what one consumer did with one load.
type result struct {
	stored  int64
	elapsed time.Duration // from the first publish until InfluxDB's count last grew
	cpu     time.Duration // the consumer's user+system CPU meanwhile
	sent    int64
	// dropped is what the broker says it dropped ($SYS), read only when
	// fewer points were stored than published; -1 if not known.
	dropped int64
	// perCommit is the messages a group commit carried on average
	// (iotdash only; 0 when not known).
	perCommit float64
}

// consumer is a running consumer: its pid, and for iotdash the URLs of its
// CPU profile and its metrics.
type consumer struct {
	pid              int
	profile, metrics string
}

func (r result) perMessage() float64 {
	return float64(r.cpu.Microseconds()) / float64(max(r.stored, 1))
}

// droppedText is the broker's count of dropped messages for the table:
// empty when every message was stored (it was not read then).
func (r result) droppedText() string {
	if r.dropped < 0 {
		return ""
	}
	return strconv.FormatInt(r.dropped, 10)
}

func (r result) rate() float64 { return float64(r.stored) / r.elapsed.Seconds() }

// TestPeers runs each load through Telegraf, then through iotdash, each with
// a Mosquitto of its own (default settings) and a database of its own on one
// InfluxDB 1.8.10, and prints the table and the ratios. It fails if either
// consumer stores fewer or more points than were published.
//
// IOTDASH_BENCH_CONNECTIONS=1,4,8 runs iotdash once for each count of MQTT
// connections (-mqtt-connections), one after the other after Telegraf, on
// each load; IOTDASH_BENCH_LOADS=qos1-20k,… runs only the loads named.
// IOTDASH_BENCH_EMBEDDED=1 adds a row for iotdash with its embedded store
// instead of InfluxDB (one MQTT connection), and IOTDASH_BENCH_FLOOR=1 one
// for the floor consumer (scripts/benchpeers/floor: iotdash's MQTT reading,
// a group commit's pwrite and fdatasync, and the acknowledgements, nothing
// else), on each load.
//
//	IOTDASH_TELEGRAF=/path/to/telegraf go test -run Peers -v -timeout 30m ./scripts/benchpeers
func TestPeers(t *testing.T) {
	telegraf := os.Getenv("IOTDASH_TELEGRAF")
	if telegraf == "" {
		t.Skip("the peer benchmark needs Telegraf: run `make bench-peers` (scripts/bench-peers.sh builds it)")
	}
	bin := filepath.Join(t.TempDir(), "iotdash")
	if out, err := exec.Command("go", "build", "-o", bin, "iotdash/cmd/iotdash").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	connections := []int{1}
	if v := os.Getenv("IOTDASH_BENCH_CONNECTIONS"); v != "" {
		connections = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				t.Fatalf("IOTDASH_BENCH_CONNECTIONS=%q: %q is not a count of connections", v, f)
			}
			connections = append(connections, n)
		}
	}
	only := os.Getenv("IOTDASH_BENCH_LOADS")
	embedded := os.Getenv("IOTDASH_BENCH_EMBEDDED") == "1"
	floor := ""
	if os.Getenv("IOTDASH_BENCH_FLOOR") == "1" {
		floor = filepath.Join(t.TempDir(), "floor")
		if out, err := exec.Command("go", "build", "-o", floor, "iotdash/scripts/benchpeers/floor").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	type row struct {
		load
		telegraf result
		iotdash  []result // one for each of connections
		embedded *result
		floor    *result
	}
	var rows []row
	for _, l := range loads {
		if only != "" && !slices.Contains(strings.Split(only, ","), l.id) {
			continue
		}
		r := row{load: l}
		r.telegraf = runPeer(t, "telegraf-"+l.id, l, func(t *testing.T, mq *testenv.Mosquitto, ix *testenv.InfluxDB) consumer {
			return consumer{pid: startTelegraf(t, telegraf, mq, ix)}
		})
		for _, n := range connections {
			name := "iotdash-" + l.id
			if len(connections) > 1 || n != 1 {
				name += fmt.Sprintf("-conns%d", n)
			}
			r.iotdash = append(r.iotdash, runPeer(t, name, l, func(t *testing.T, mq *testenv.Mosquitto, ix *testenv.InfluxDB) consumer {
				return startIotdash(t, bin, mq, ix, n)
			}))
		}
		if embedded {
			e := runEmbedded(t, bin, l)
			r.embedded = &e
		}
		if floor != "" {
			f := runFloor(t, floor, l)
			r.floor = &f
		}
		rows = append(rows, r)
	}
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "load\tconsumer\tCPU/msg\tmsgs/commit\tstored, time\tbroker dropped\tCPU ratio (T/c)\trate ratio (c/T)")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\tTelegraf\t%.1f µs\t\t%d in %.1f s (%.0fk msg/s)\t%s\t\t\n", r.name,
			r.telegraf.perMessage(), r.telegraf.stored, r.telegraf.elapsed.Seconds(), r.telegraf.rate()/1000, r.telegraf.droppedText())
		for i, res := range r.iotdash {
			fmt.Fprintf(tw, "%s\tiotdash, %d MQTT conn.\t%.1f µs\t%.1f\t%d in %.1f s (%.0fk msg/s)\t%s\t%.2f×\t%.2f×\n", r.name, connections[i],
				res.perMessage(), res.perCommit, res.stored, res.elapsed.Seconds(), res.rate()/1000, res.droppedText(),
				r.telegraf.perMessage()/res.perMessage(), res.rate()/r.telegraf.rate())
		}
		if e := r.embedded; e != nil {
			fmt.Fprintf(tw, "%s\tiotdash, embedded store\t%.1f µs\t%.1f\t%d in %.1f s (%.0fk msg/s)\t%s\t\t\n", r.name,
				e.perMessage(), e.perCommit, e.stored, e.elapsed.Seconds(), e.rate()/1000, e.droppedText())
		}
		if f := r.floor; f != nil {
			fmt.Fprintf(tw, "%s\tfloor: read, fdatasync, ack\t%.1f µs\t\t%d in %.1f s (%.0fk msg/s)\t%s\t\t\n", r.name,
				f.perMessage(), f.stored, f.elapsed.Seconds(), f.rate()/1000, f.droppedText())
		}
	}
	tw.Flush()
	fmt.Print(sb.String())
	t.Logf("\n%s", sb.String())
}

// runPeer starts a Mosquitto and a database for one consumer, starts the
// consumer with start (which returns its pid once it is subscribed),
// publishes l, and waits until InfluxDB holds every message published.
//
// With IOTDASH_BENCH_PROFILE=DIR, a consumer that serves Go's profiler
// (profile is not "") is profiled for 5 s while the load runs, into
// DIR/NAME.pprof.
func runPeer(t *testing.T, name string, l load, start func(*testing.T, *testenv.Mosquitto, *testenv.InfluxDB) consumer) result {
	var res result
	t.Run(name, func(t *testing.T) {
		mq := testenv.StartMosquitto(t)
		ix := testenv.StartInfluxDB(t)
		c := start(t, mq, ix)
		if dir := os.Getenv("IOTDASH_BENCH_PROFILE"); dir != "" && c.profile != "" {
			go testenv.SaveProfile(t, c.profile, filepath.Join(dir, name+".pprof"))
		}
		res = measure(t, mq, c, l, 0, "InfluxDB holds", func() int64 { return count(t, ix) })
	})
	return res
}

// runEmbedded runs iotdash (built at bin) with its embedded store against a
// Mosquitto of its own, publishes l, and waits until the store holds every
// message's readings.
func runEmbedded(t *testing.T, bin string, l load) result {
	var res result
	t.Run("iotdash-embedded-"+l.id, func(t *testing.T) {
		mq := testenv.StartMosquitto(t)
		c := startIotdash(t, bin, mq, nil, 1)
		if dir := os.Getenv("IOTDASH_BENCH_PROFILE"); dir != "" {
			go testenv.SaveProfile(t, c.profile, filepath.Join(dir, "iotdash-embedded-"+l.id+".pprof"))
		}
		// The head's last readings go into the file at its next flush,
		// 10 s at most after they were stored: that is counted too.
		res = measure(t, mq, c, l, 11*time.Second, "the embedded store holds the readings of", func() int64 {
			return int64(scrape(t, c.metrics)["iotdash_readings_stored_total"]) / readingsPerMessage
		})
	})
	return res
}

// runFloor runs the floor consumer (scripts/benchpeers/floor, built at
// bin) against a Mosquitto of its own, publishes l, and waits until it says
// it has received and made durable every message.
func runFloor(t *testing.T, bin string, l load) result {
	var res result
	t.Run("floor-"+l.id, func(t *testing.T) {
		mq := testenv.StartMosquitto(t)
		cmd, out := startProcess(t, nil, bin, "-broker", mq.URL, "-file", filepath.Join(t.TempDir(), "floor.log"))
		testenv.WaitFor(t, 30*time.Second, "the floor consumer to subscribe", func() bool {
			return strings.Contains(out.String(), "subscribed")
		})
		res = measure(t, mq, consumer{pid: cmd.Process.Pid}, l, 0, "the floor consumer made durable", func() int64 {
			s := out.String()
			i := strings.LastIndex(s, "received ")
			if i < 0 {
				return 0
			}
			n, _ := strconv.ParseInt(strings.Fields(s[i+len("received "):])[0], 10, 64)
			return n
		})
	})
	return res
}

// measure publishes l through mq to the consumer c, and waits until stored
// (what the consumer has made durable, in messages) reaches what was
// published, or stops moving for 15 s (a loss, reported as "<what> N
// messages"). It returns c's CPU time meanwhile.
//
// settle is how long to wait after that before reading the CPU time, so
// that work the consumer does later for those messages is counted; what
// the consumer spends idle in as long (measured for 3 s before the load)
// is taken off again.
func measure(t *testing.T, mq *testenv.Mosquitto, c consumer, l load, settle time.Duration, what string, stored func() int64) result {
	var res result
	var idle time.Duration // the CPU time the consumer spends idle in settle
	if settle > 0 {
		cpu, start := cpuTime(t, c.pid), time.Now()
		time.Sleep(3 * time.Second)
		idle = time.Duration(float64(cpuTime(t, c.pid)-cpu) * float64(settle) / float64(time.Since(start)))
	}
	cpu0 := cpuTime(t, c.pid)
	began := time.Now()
	res.sent = publish(t, mq.URL, l)
	if res.sent != int64(l.messages) {
		t.Errorf("the publisher sent %d messages, want %d", res.sent, l.messages)
	}
	last, lastMove := int64(-1), time.Now()
	for {
		n := stored()
		if n != last {
			last, lastMove = n, time.Now()
		}
		if n >= res.sent || time.Since(lastMove) > 15*time.Second {
			res.stored = n
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.elapsed = lastMove.Sub(began) // until the last message was stored
	time.Sleep(settle)
	res.cpu = cpuTime(t, c.pid) - cpu0 - idle
	if c.metrics != "" {
		m := scrape(t, c.metrics)
		res.perCommit = m["iotdash_messages_received_total"] / max(m["iotdash_store_commits_total"], 1)
	}
	res.dropped = -1
	if res.stored != res.sent {
		res.dropped = brokerDropped(t, mq)
		t.Errorf("%s %d messages, want %d; the broker says it dropped %d messages "+
			"(its max_queued_messages was reached: the consumer fell behind it)", what, res.stored, res.sent, res.dropped)
	}
	return res
}

// publish sends l's messages over 4 connections, device d on connection
// d%4, each message {"ts":…,"seq":…,"temperature":…,"humidity":…}, and
// returns how many it sent (with QoS 1, how many the broker acknowledged).
// ts is the run's start plus the device's seq in milliseconds, so that
// every message is one point of its own in InfluxDB.
func publish(t *testing.T, broker string, l load) int64 {
	t0 := time.Now().UnixMilli()
	var sent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for c := range conns {
		cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).
			SetClientID(fmt.Sprintf("bench-pub-%d", c)).SetCleanSession(true).
			SetMaxResumePubInFlight(1000).SetWriteTimeout(30 * time.Second))
		if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publisher: connect: %v", tok.Error())
		}
		defer cl.Disconnect(100)
		wg.Go(func() {
			pending := make(chan mqtt.Token, 20000)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for tok := range pending {
					// A token of a connection that was lost may never
					// complete: such a message counts as not sent.
					if tok.WaitTimeout(30*time.Second) && tok.Error() == nil {
						sent.Add(1)
					}
				}
			}()
			share := l.messages / conns
			var buf []byte
			for i := range share {
				if l.rate > 0 && i%100 == 0 {
					// Paced: message i of this connection is due at
					// i / (rate/conns) seconds.
					due := start.Add(time.Duration(float64(i) / float64(l.rate/conns) * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
				}
				dev := c + conns*(i%(devicesN/conns))
				seq := int64(i / (devicesN / conns))
				buf = payload(buf[:0], t0+seq, seq)
				pending <- cl.Publish("devices/peer-"+strconv.Itoa(dev)+"/telemetry", l.qos, false, append([]byte(nil), buf...))
			}
			close(pending)
			<-done
		})
	}
	wg.Wait()
	return sent.Load()
}

// readingsPerMessage is the readings each payload holds: seq, temperature
// and humidity.
const readingsPerMessage = 3

func payload(b []byte, ts, seq int64) []byte {
	b = append(b, `{"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"temperature":`...)
	b = strconv.AppendFloat(b, 18+float64(seq%100)/10, 'f', 1, 64)
	b = append(b, `,"humidity":`...)
	b = strconv.AppendFloat(b, 35+float64(seq%250)/10, 'f', 1, 64)
	return append(b, '}')
}

// count asks InfluxDB how many points of measurement telemetry have a seq.
func count(t *testing.T, ix *testenv.InfluxDB) int64 {
	u := ix.URL + "/query?" + url.Values{"db": {ix.Database}, "q": {"SELECT count(seq) FROM telemetry"}}.Encode()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("counting in InfluxDB: %v", err)
	}
	defer resp.Body.Close()
	var v struct {
		Results []struct {
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("counting in InfluxDB: %v", err)
	}
	if len(v.Results) == 0 || len(v.Results[0].Series) == 0 || len(v.Results[0].Series[0].Values) == 0 {
		return 0
	}
	n, _ := v.Results[0].Series[0].Values[0][1].(json.Number).Int64()
	return n
}

// brokerDropped returns the count of messages the broker has dropped since
// it started ($SYS/broker/publish/messages/dropped: Mosquitto drops a QoS 1
// message for a subscriber whose queue holds max_queued_messages already,
// though it acknowledged it to the publisher), as Mosquitto last published
// it (every sys_interval, 10 s by default; it is retained), or -1 if it
// says nothing within 15 s. Callers have waited 15 s since the count of
// stored points last grew, so the figure covers the whole run.
func brokerDropped(t *testing.T, mq *testenv.Mosquitto) int64 {
	got := make(chan int64, 1)
	cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL).SetClientID("bench-sys").SetCleanSession(true))
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Logf("reading the broker's dropped count: connect: %v", tok.Error())
		return -1
	}
	defer cl.Disconnect(100)
	tok := cl.Subscribe("$SYS/broker/publish/messages/dropped", 0, func(_ mqtt.Client, m mqtt.Message) {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(m.Payload())), 10, 64); err == nil {
			select {
			case got <- n:
			default:
			}
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Logf("reading the broker's dropped count: subscribe: %v", tok.Error())
		return -1
	}
	select {
	case n := <-got:
		return n
	case <-time.After(15 * time.Second):
		return -1
	}
}

// cpuTime returns the user+system CPU time the process pid has used.
func cpuTime(t *testing.T, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// startProcess runs a program until the test ends and returns its output.
func startProcess(t *testing.T, env []string, name string, args ...string) (*exec.Cmd, *testenv.Buffer) {
	out := &testenv.Buffer{}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), out.String())
		}
	})
	return cmd, out
}

// startTelegraf runs Telegraf with mqtt_consumer (persistent session, QoS 1
// subscription, JSON with ts in ms) and influxdb_v2 (batches of 5000, flushed
// every 100 ms), and returns its pid once it is subscribed.
func startTelegraf(t *testing.T, telegraf string, mq *testenv.Mosquitto, ix *testenv.InfluxDB) int {
	conf := fmt.Sprintf(`[agent]
  interval = "10s"
  flush_interval = "100ms"
  flush_jitter = "0s"
  metric_batch_size = 5000
  omit_hostname = true

[[inputs.mqtt_consumer]]
  servers = [%q]
  topics = ["devices/+/telemetry"]
  qos = 1
  persistent_session = true
  client_id = "telegraf-bench"
  topic_tag = ""
  name_override = "telemetry"
  data_format = "json"
  json_time_key = "ts"
  json_time_format = "unix_ms"
  [[inputs.mqtt_consumer.topic_parsing]]
    topic = "devices/+/telemetry"
    tags = "_/device/_"

[[outputs.influxdb_v2]]
  urls = [%q]
  token = "unused"
  organization = "unused"
  bucket = %q
`, mq.URL, ix.URL, ix.Bucket)
	path := filepath.Join(t.TempDir(), "telegraf.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, out := startProcess(t, nil, telegraf, "--config", path, "--debug")
	testenv.WaitFor(t, 30*time.Second, "Telegraf to connect to the broker", func() bool {
		return strings.Contains(out.String(), "Connected [")
	})
	return cmd.Process.Pid
}

// startIotdash runs iotdash against the broker and InfluxDB (its embedded
// store if ix is nil) over conns MQTT connections and returns once /readyz
// says it is subscribed.
func startIotdash(t *testing.T, bin string, mq *testenv.Mosquitto, ix *testenv.InfluxDB, conns int) consumer {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	args := []string{"-http", addr, "-data", t.TempDir(), "-log-level", "warn", "-pprof",
		"-mqtt", mq.URL, "-mqtt-connections", strconv.Itoa(conns)}
	if ix != nil {
		args = append(args, "-influx-url", ix.URL, "-influx-bucket", ix.Bucket)
	}
	cmd, _ := startProcess(t, []string{"IOTDASH_ADMIN_PASSWORD=bench-admin-password"}, bin, args...)
	testenv.WaitFor(t, 30*time.Second, "iotdash /readyz", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	admin := "http://admin:bench-admin-password@" + addr
	return consumer{pid: cmd.Process.Pid, profile: admin + "/debug/pprof/profile?seconds=5", metrics: admin + "/metrics"}
}

// scrape reads the samples without labels of a Prometheus text page.
func scrape(t *testing.T, url string) map[string]float64 {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping metrics: %v %s", err, resp.Status)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			m[name] = f
		}
	}
	return m
}
