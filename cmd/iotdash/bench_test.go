package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/internal/testenv"
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
// messages (4 readings each) published with QoS 1 to a Mosquitto with
// default settings (max_inflight_messages 20), acknowledged only after the
// durable write, until every reading is stored: in InfluxDB (through the
// journal), or in the embedded store. It reports messages per second end to
// end and iotdash's CPU time per message.
//
//	go test -run '^$' -bench Ingest -benchtime 50000x ./cmd/iotdash
func BenchmarkIngest(b *testing.B) {
	bin := buildBinary(b)
	for _, backend := range []string{"influxdb", "embedded"} {
		b.Run(backend, func(b *testing.B) {
			mq := testenv.StartMosquitto(b)
			args := []string{"-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b)), "-mqtt", mq.URL, "-data", b.TempDir(), "-log-level", "warn"}
			stored := "iotdash_readings_stored_total"
			if backend == "influxdb" {
				ix := testenv.StartInfluxDB(b)
				args = append(args, "-influx-url", ix.URL, "-influx-bucket", ix.Bucket)
				stored = "iotdash_journal_written_total"
			}
			p := startBinary(b, bin, args...)
			const conns = 4
			clients := make([]mqtt.Client, conns)
			for i := range clients {
				clients[i] = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL).SetClientID(fmt.Sprintf("load-%d", i)).SetMaxResumePubInFlight(1000))
				if tok := clients[i].Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					b.Fatal(tok.Error())
				}
				defer clients[i].Disconnect(100)
			}
			base := time.Now().Add(-time.Hour).UnixMilli()
			cpu0 := cpuTime(b, p.cmd.Process.Pid)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			var failed atomic.Int64
			for c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// A window of outstanding publishes per connection.
					window := make(chan mqtt.Token, 200)
					for i := c; i < b.N; i += conns {
						dev := i % 1000
						payload := fmt.Sprintf(`{"ts":%d,"temperature":%d.5,"humidity":40.%d,"pressure":1013.2,"battery":3.7}`, base+int64(i/1000), i%40, i%10)
						tok := clients[c].Publish(fmt.Sprintf("devices/dev-%04d/telemetry", dev), 1, false, payload)
						select {
						case window <- tok:
						default:
							old := <-window
							if old.Wait(); old.Error() != nil {
								failed.Add(1)
							}
							window <- tok
						}
					}
					close(window)
					for tok := range window {
						if tok.Wait(); tok.Error() != nil {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			want := float64(b.N * 4)
			deadline := time.Now().Add(10 * time.Minute)
			for metric(b, p.URL, stored) < want {
				if time.Now().After(deadline) {
					b.Fatalf("only %v of %v readings stored", metric(b, p.URL, stored), want)
				}
				time.Sleep(20 * time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cpu := cpuTime(b, p.cmd.Process.Pid) - cpu0
			if failed.Load() > 0 {
				b.Fatalf("%d publishes failed", failed.Load())
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
			b.ReportMetric(metric(b, p.URL, "iotdash_store_commits_total"), "commits")
		})
	}
}
