package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"iotdash/internal/testenv"
	"iotdash/simulator"
)

// cpuTime returns the user+system CPU time the process pid has used.
func cpuTime(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// BenchmarkIngest measures the built iotdash binary ingesting b.N telemetry
// messages (2 readings each) that iotsim's load mode publishes with QoS 1 at
// IOTDASH_BENCH_RATE messages a second (default 5000), evenly paced over 4
// connections and 1000 device ids, to a Mosquitto with default settings
// (max_inflight_messages 20, max_queued_messages 1000), acknowledged only
// after the durable write (IOTDASH_BENCH_INFLIGHT=N raises the window to N);
// and, as self-contained, to iotdash's embedded broker, which holds each
// PUBACK until the commit. It waits until every reading is stored, in
// InfluxDB (through the journal) or in the embedded store, fails if any is
// missing, and reports the rate held and iotdash's CPU time per message.
// IOTDASH_BENCH_CONNECTIONS=1,4,8 runs the two -mqtt backends once for each
// count of MQTT connections (-mqtt-connections), as sub-benchmarks
// influxdb/conns=4 and so on. IOTDASH_BENCH_PROFILE=DIR saves a CPU profile
// of iotdash, taken over most of the load, in DIR/NAME.pprof.
//
//	IOTDASH_BENCH_RATE=5000 go test -run '^$' -bench Ingest -benchtime 100000x ./cmd/iotdash
func BenchmarkIngest(b *testing.B) {
	rate := 5000
	if r, err := strconv.Atoi(os.Getenv("IOTDASH_BENCH_RATE")); err == nil {
		rate = r
	}
	// IOTDASH_BENCH_INFLIGHT raises Mosquitto's window from its default 20.
	var mosquittoConf []string
	if n := os.Getenv("IOTDASH_BENCH_INFLIGHT"); n != "" {
		mosquittoConf = []string{"max_inflight_messages " + n, "max_queued_messages 1000000"}
	}
	connections := []string{"1"}
	if v := os.Getenv("IOTDASH_BENCH_CONNECTIONS"); v != "" {
		connections = strings.Split(v, ",")
	}
	bin := buildBinary(b)
	for _, bench := range ingestBenches(connections) {
		backend := bench.backend
		b.Run(bench.name, func(b *testing.B) {
			// self-contained is the default mode: the embedded broker hands
			// messages to the ingester in-process, and iotdash's CPU
			// includes the broker's.
			var brokerURL string
			args := []string{"-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b)), "-data", b.TempDir(), "-log-level", "warn"}
			if backend == "self-contained" {
				addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
				brokerURL = "tcp://" + addr
				args = append(args, "-broker", addr, "-simulate", "0")
			} else {
				mq := testenv.StartMosquitto(b, mosquittoConf...)
				brokerURL = mq.URL
				args = append(args, "-mqtt", mq.URL, "-mqtt-connections", bench.conns)
			}
			stored := "iotdash_readings_stored_total"
			if backend == "influxdb" {
				ix := testenv.StartInfluxDB(b)
				args = append(args, "-influx-url", ix.URL, "-influx-bucket", ix.Bucket)
				stored = "iotdash_journal_written_total"
			}
			profileDir := os.Getenv("IOTDASH_BENCH_PROFILE")
			if profileDir != "" {
				args = append(args, "-pprof")
			}
			p := startBinary(b, bin, args...)
			if profileDir != "" {
				secs := max(1, b.N/rate*9/10)
				go testenv.SaveProfile(b, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", p.URL, secs), filepath.Join(profileDir, strings.ReplaceAll(bench.name, "/", "-")+".pprof"))
			}
			cpu0 := cpuTime(b, p.cmd.Process.Pid)
			b.ResetTimer()
			start := time.Now()
			sum, err := simulator.Load(b.Context(), simulator.LoadConfig{
				Broker: brokerURL, Rate: rate, Devices: 1000, Conns: 4, QoS: 1,
				Duration: time.Duration(b.N) * time.Second / time.Duration(rate),
			})
			if err != nil {
				b.Fatal(err)
			}
			want := float64(sum.Acked * 2)
			deadline := time.Now().Add(time.Minute)
			for metric(b, p.URL, stored) < want && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cpu := cpuTime(b, p.cmd.Process.Pid) - cpu0
			if got := metric(b, p.URL, stored); got != want {
				// Its CPU time is no figure then (it includes a minute of
				// answering the wait's scrapes); the commits' size still is.
				b.Logf("%.1f messages per commit", metric(b, p.URL, "iotdash_messages_received_total")/metric(b, p.URL, "iotdash_store_commits_total"))
				b.Fatalf("%v of the %v readings the broker accepted were stored (load: %v)", got, want, sum)
			}
			if !sum.Held {
				b.Logf("the load tool did not hold %d/s: %v", rate, sum)
			}
			b.ReportMetric(float64(sum.Acked)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(sum.Acked), "cpu-µs/msg")
			b.ReportMetric(float64(sum.Acked)/metric(b, p.URL, "iotdash_store_commits_total"), "msgs/commit")
		})
	}
}

// ingestBench is one sub-benchmark of BenchmarkIngest.
type ingestBench struct {
	name, backend string
	conns         string // -mqtt-connections, for a broker of the user's
}

// ingestBenches is each backend, the -mqtt ones once for each count of
// connections (named backend/conns=N when there are several).
func ingestBenches(connections []string) []ingestBench {
	var bs []ingestBench
	for _, backend := range []string{"influxdb", "embedded"} {
		for _, n := range connections {
			name := backend
			if len(connections) > 1 {
				name += "/conns=" + strings.TrimSpace(n)
			}
			bs = append(bs, ingestBench{name, backend, strings.TrimSpace(n)})
		}
	}
	return append(bs, ingestBench{name: "self-contained", backend: "self-contained"})
}
