package main

import (
	"fmt"
	"testing"
	"time"

	"iotdash/internal/testenv"
)

// TestResilienceKill9 kills the built iotdash with SIGKILL in the middle of
// a QoS 1 load and starts it again with the same data directory and MQTT
// client id, while the devices keep publishing: every message the broker
// accepted is stored exactly once, in the embedded store (read back through
// the history API) and in InfluxDB through the journal (read back with
// InfluxQL); over one MQTT connection, and over four sharing the
// subscription (-mqtt-connections 4), whose sessions each keep their share
// meanwhile. The broker keeps the messages for iotdash's persistent
// sessions (keepQueued lifts Mosquitto's default limit of 1,000).
func TestResilienceKill9(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	for _, backend := range []string{"embedded", "influxdb"} {
		for _, conns := range []int{1, 4} {
			name := backend
			if conns > 1 {
				name = fmt.Sprintf("%s-%dconns", backend, conns)
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				const rate = 1000
				var ix *testenv.InfluxDB
				if backend == "influxdb" {
					ix = testenv.StartInfluxDB(t)
				}
				u := startUnderLoad(t, bin, "kill-"+name, rate, ix, "-mqtt-connections", fmt.Sprint(conns))

				u.p.cmd.Process.Kill()
				killed := time.Now()
				select {
				case <-u.p.done:
				case <-time.After(30 * time.Second):
					t.Fatal("iotdash did not die of SIGKILL")
				}
				u.restart(t)
				ready := time.Since(killed)
				tl, res := u.finish(t)
				caughtUp := time.Since(killed)
				after, err := scrape(u.p.URL)
				if err != nil {
					t.Fatal(err)
				}
				figures(t, "kill-9-"+name, "SIGKILL under %d msg/s, restarted on the same data and client id, %d MQTT connections: %v; the restarted iotdash stored %.0f readings; ready %v after the kill, caught up %v after it (load sent for %v)",
					rate, conns, tl, after["iotdash_readings_stored_total"], ready.Round(10*time.Millisecond), caughtUp.Round(10*time.Millisecond), res.Elapsed.Round(10*time.Millisecond))
			})
		}
	}
}
