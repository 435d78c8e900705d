package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/internal/testenv"
	"iotdash/store/journal"
)

// TestResilienceSIGTERM sends SIGTERM to the built iotdash in the middle of
// a QoS 1 load: it exits with code 0, having committed what it took and (in
// front of InfluxDB) flushed its journal, and once started again on the same
// data and client id, every message the broker accepted is stored exactly
// once. The time to exit is logged; the only bound asserted is a 30s guard
// against a hang.
//
// "influxdb down" sends SIGTERM while InfluxDB is down: the flush gives up
// after its few seconds, the journal keeps what it holds, and the next start
// (once InfluxDB is back) replays it.
func TestResilienceSIGTERM(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	for _, backend := range []string{"embedded", "influxdb", "influxdb down"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			const rate = 2000
			prefix := "term-" + strings.ReplaceAll(backend, " ", "-")
			var ix *testenv.InfluxDB
			var server *testenv.InfluxServer
			switch backend {
			case "influxdb":
				ix = testenv.StartInfluxDB(t)
			case "influxdb down":
				server = testenv.StartInfluxServer(t)
				ix = &server.InfluxDB
			}
			u := startUnderLoad(t, bin, prefix, rate, ix)

			if server != nil {
				server.Stop()
				testenv.WaitFor(t, time.Minute, "readings waiting in the journal", func() bool {
					m, err := scrape(u.p.URL)
					return err == nil && m["iotdash_journal_backlog_readings"] >= rate
				})
			}

			signalled := time.Now()
			if err := testenv.Terminate(u.p.cmd, u.p.done); err != nil {
				t.Fatalf("%v, want code 0", err)
			}
			exited := time.Since(signalled)
			left := "no journal (embedded store)"
			if ix != nil {
				j, err := journal.Open(filepath.Join(u.data, "journal.db"), journal.Options{})
				if err != nil {
					t.Fatal(err)
				}
				left = fmt.Sprintf("%d readings left in the journal", j.Stats().Backlog)
				j.Close()
			}

			if server != nil {
				server.Start(t) // restart waits until /readyz, which needs InfluxDB
			}
			u.restart(t)
			tl, _ := u.finish(t)
			figures(t, prefix, "SIGTERM under %d msg/s: exited with code 0 after %v, %s; after a restart on the same data and client id: %v",
				rate, exited.Round(10*time.Millisecond), left, tl)
		})
	}
}

// TestStopsWithASilentBrokerClient: iotdash stops (its run returns) while
// a client of its embedded broker holds a connection open without sending
// its CONNECT. The broker's close once waited for it forever.
func TestStopsWithASilentBrokerClient(t *testing.T) {
	t.Parallel()
	in := startInProcess(t, "-simulate", "0", "-broker", "127.0.0.1:0")
	url := brokerLine.FindStringSubmatch(in.stdout.String())[1]
	silent, err := net.Dial("tcp", strings.TrimPrefix(url, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// The broker accepts connections in turn: once a later client is in,
	// the silent one has been accepted.
	dev := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("later").SetAutoReconnect(false))
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer dev.Disconnect(0)
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
}
