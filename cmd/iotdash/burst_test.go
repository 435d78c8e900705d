package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/internal/testenv"
	"iotdash/store"
	"iotdash/store/sqlite"
)

// burstConfig is a burst of QoS 1 messages sent as fast as the connections
// go, without waiting for one PUBACK before the next message.
type burstConfig struct {
	Broker   string
	Messages int // in all
	Conns    int // connections, each with its own devices
	Devices  int // device ids in all, dealt out among the connections
	Prefix   string
	// WriteTimeout is how long a publish may wait for room in its
	// connection (default 30s).
	WriteTimeout time.Duration
}

var burstMetrics = []string{"m0", "m1", "m2"}

// burst publishes cfg.Messages messages of three readings each, every one
// with a ts unique to its device, and records which got a PUBACK. It returns
// once every message is acknowledged or its connection is gone (then its
// unacknowledged messages count as not accepted).
func burst(t testing.TB, cfg burstConfig) loadResult {
	t.Helper()
	type conn struct {
		client  mqtt.Client
		lost    chan struct{}
		devices []string
		msgs    []loadMsg
		toks    []mqtt.Token
	}
	conns := make([]*conn, cfg.Conns)
	for i := range conns {
		c := &conn{lost: make(chan struct{})}
		for d := i; d < cfg.Devices; d += cfg.Conns {
			c.devices = append(c.devices, fmt.Sprintf("%s-%03d", cfg.Prefix, d))
		}
		c.client = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(cfg.Broker).
			SetClientID(fmt.Sprintf("%s-pub-%d-%d", cfg.Prefix, os.Getpid(), i)).
			SetAutoReconnect(false).SetOrderMatters(false).
			SetWriteTimeout(cmp.Or(cfg.WriteTimeout, 30*time.Second)).
			SetConnectionLostHandler(func(mqtt.Client, error) { close(c.lost) }))
		if tok := c.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("burst: connecting to %s: %v", cfg.Broker, tok.Error())
		}
		t.Cleanup(func() { c.client.Disconnect(0) })
		conns[i] = c
	}
	start := time.Now()
	// Every device's ts starts from the same time and counts up by a
	// millisecond a message: unique per device, however fast they go.
	base := start.UnixMilli()
	var wg sync.WaitGroup
	for i, c := range conns {
		n := cfg.Messages / cfg.Conns
		if i < cfg.Messages%cfg.Conns {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.msgs = make([]loadMsg, 0, n)
			c.toks = make([]mqtt.Token, 0, n)
			var buf []byte
			for k := range n {
				d := c.devices[k%len(c.devices)]
				ts := base + int64(k/len(c.devices))
				p := strconv.AppendInt(append(buf[:0], `{"ts":`...), ts, 10)
				for j, m := range burstMetrics {
					p = strconv.AppendInt(append(append(append(p, `,"`...), m...), `":`...), int64(k+j), 10)
				}
				buf = append(p, '}')
				c.msgs = append(c.msgs, loadMsg{device: d, ts: ts})
				c.toks = append(c.toks, c.client.Publish("devices/"+d+"/telemetry", 1, false, string(buf)))
			}
			deadline := time.After(2 * time.Minute)
			for k, tok := range c.toks {
				select {
				case <-tok.Done():
				case <-c.lost:
				case <-deadline:
				}
				select {
				case <-tok.Done():
					c.msgs[k].acked = tok.Error() == nil
				default: // its connection is gone: not acknowledged
				}
			}
		}()
	}
	wg.Wait()
	res := loadResult{Elapsed: time.Since(start), Metrics: burstMetrics, prefix: cfg.Prefix}
	for _, c := range conns {
		res.msgs = append(res.msgs, c.msgs...)
	}
	res.Sent = len(res.msgs)
	return res
}

// storedInFile reads every reading of res's devices from the embedded
// store's file, with iotdash stopped (or killed).
func (res loadResult) storedInFile(t testing.TB, path string) series {
	t.Helper()
	db, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	from, to := res.timeRange()
	out := series{}
	for _, d := range res.devices() {
		for _, m := range res.Metrics {
			err := db.Readings(context.Background(), store.Query{Device: d, Metric: m, From: from, To: to}, func(ps []store.Point) error {
				for _, p := range ps {
					out[d+"/"+m] = append(out[d+"/"+m], p.T)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// TestBurstSelfContained sends bursts of 100,000 QoS 1 messages as fast as
// they go to the built binary in its default self-contained mode (embedded
// broker, embedded store), from 4 connections sharing 100 devices and from
// 200 connections of one device each, each on a fresh data directory: every
// message gets its PUBACK and every PUBACK means three stored readings,
// exactly once. IOTDASH_BURST_RUNS repeats each shape (default 10;
// IOTDASH_BURST_MESSAGES changes the size).
func TestBurstSelfContained(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	runs := envInt(t, "IOTDASH_BURST_RUNS", 10)
	messages := envInt(t, "IOTDASH_BURST_MESSAGES", 100_000)
	for _, shape := range []struct {
		name           string
		conns, devices int
	}{{"4-connections", 4, 100}, {"200-connections", 200, 200}} {
		t.Run(shape.name, func(t *testing.T) {
			for run := range runs {
				data := t.TempDir()
				brokerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
				p := startBinary(t, bin, "-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-broker", brokerAddr,
					"-data", data, "-simulate", "0", "-log-level", "error")
				res := burst(t, burstConfig{Broker: "tcp://" + brokerAddr, Messages: messages, Conns: shape.conns, Devices: shape.devices, Prefix: fmt.Sprintf("burst%d", run)})
				accepted := len(res.Accepted())
				p.stop(t)
				tl := res.check(t, res.storedInFile(t, filepath.Join(data, "iotdash.db")))
				if accepted != messages {
					t.Errorf("run %d: %d of %d messages got a PUBACK", run+1, accepted, messages)
				}
				if tl.Stored != 3*accepted {
					t.Errorf("run %d: %d readings stored for %d acknowledged messages, want %d", run+1, tl.Stored, accepted, 3*accepted)
				}
				figures(t, "burst-"+shape.name, "run %d: %v; %.0f msg/s held from first publish to last PUBACK",
					run+1, tl, float64(accepted)/res.Elapsed.Seconds())
			}
		})
	}
}

// TestBurstKill9SelfContained kills the self-contained binary with SIGKILL
// in the middle of a burst: every message that got a PUBACK is in the store
// after it is started again.
func TestBurstKill9SelfContained(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	data := t.TempDir()
	brokerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	args := []string{"-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-broker", brokerAddr,
		"-data", data, "-simulate", "0", "-log-level", "error"}
	p := startBinary(t, bin, args...)
	go func() {
		// Kill once some of the burst is stored, so that some of it is
		// acknowledged and some not.
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if m, err := scrape(p.URL); err == nil && m["iotdash_readings_stored_total"] >= 3*20_000 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		p.cmd.Process.Kill()
	}()
	// A publish waiting for room in its connection when iotdash dies gives
	// up after WriteTimeout.
	res := burst(t, burstConfig{Broker: "tcp://" + brokerAddr, Messages: 200_000, Conns: 4, Devices: 100, Prefix: "kill", WriteTimeout: 2 * time.Second})
	<-p.done
	accepted := len(res.Accepted())
	if accepted == 0 || accepted == res.Sent {
		t.Fatalf("%d of %d messages acknowledged: the kill did not land in the middle of the burst", accepted, res.Sent)
	}
	// Started again on the same data, and stopped: what it holds now.
	p = startBinary(t, bin, args...)
	p.stop(t)
	stored := res.storedInFile(t, filepath.Join(data, "iotdash.db"))
	tl, missing := res.compare(stored)
	if tl.Missing > 0 || tl.Duplicates > 0 || tl.Unexpected > 0 {
		t.Errorf("after SIGKILL not every acknowledged reading is stored exactly once: %v (missing e.g. %v)", tl, missing)
	}
	figures(t, "burst-kill-9", "SIGKILL in a burst of %d: %d messages acknowledged, all stored; %d readings stored in all (%d more than acknowledged: committed, their PUBACK lost with the process)",
		res.Sent, accepted, tl.Stored, tl.Stored-3*accepted)
}

// TestBurstEmbeddedBrokerInfluxDB: the embedded broker in front of InfluxDB
// (through the journal) takes a burst of 100,000 QoS 1 messages from 4
// connections without losing one it acknowledged.
func TestBurstEmbeddedBrokerInfluxDB(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ix := testenv.StartInfluxDB(t)
	brokerAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p := startBinary(t, bin, "-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-broker", brokerAddr,
		"-data", t.TempDir(), "-simulate", "0", "-log-level", "error", "-influx-url", ix.URL, "-influx-bucket", ix.Bucket)
	messages := envInt(t, "IOTDASH_BURST_MESSAGES", 100_000)
	res := burst(t, burstConfig{Broker: "tcp://" + brokerAddr, Messages: messages, Conns: 4, Devices: 100, Prefix: "burstix"})
	accepted := len(res.Accepted())
	if accepted != messages {
		t.Errorf("%d of %d messages got a PUBACK", accepted, messages)
	}
	stored := func() series { return res.influxSeries(t, ix.URL, ix.Database) }
	res.waitStored(t, 2*time.Minute, stored)
	tl := res.check(t, stored())
	p.stop(t)
	figures(t, "burst-influxdb", "embedded broker, InfluxDB through the journal: %v; %.0f msg/s held from first publish to last PUBACK",
		tl, float64(accepted)/res.Elapsed.Seconds())
}

// TestBurstMosquittoSharedSubscription: a burst of 3,000 QoS 1 messages at
// once through a Mosquitto of the user's (default settings), read by
// iotdash over 4 connections sharing the subscription (-mqtt-connections
// 4), into the embedded store and into InfluxDB: every message the broker
// acknowledged is stored exactly once. (One connection's session would
// queue 1,000 and the broker drop the rest: ingest's
// TestSharedSubscriptionBurst.)
func TestBurstMosquittoSharedSubscription(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	for _, backend := range []string{"embedded", "influxdb"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			mq := testenv.StartMosquitto(t)
			args := []string{"-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-mqtt", mq.URL, "-mqtt-connections", "4",
				"-data", t.TempDir(), "-simulate", "0", "-log-level", "error"}
			var ix *testenv.InfluxDB
			if backend == "influxdb" {
				ix = testenv.StartInfluxDB(t)
				args = append(args, "-influx-url", ix.URL, "-influx-bucket", ix.Bucket)
			}
			p := startBinary(t, bin, args...)
			const messages = 3000
			res := burst(t, burstConfig{Broker: mq.URL, Messages: messages, Conns: 4, Devices: 100, Prefix: "share" + backend})
			if accepted := len(res.Accepted()); accepted != messages {
				t.Errorf("the broker acknowledged %d of %d messages", accepted, messages)
			}
			stored := func() series {
				if ix != nil {
					return res.influxSeries(t, ix.URL, ix.Database)
				}
				return res.historySeries(t, p.URL)
			}
			res.waitStored(t, 2*time.Minute, stored)
			tl := res.check(t, stored())
			p.stop(t)
			figures(t, "burst-shared-"+backend, "Mosquitto, 4 shared connections, %s: %v", backend, tl)
		})
	}
}
