package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"iotdash/internal/testenv"
)

// TestResilienceInfluxDBOutage stops InfluxDB under load and starts it again
// (a server of the test's own, same port and data): the built iotdash keeps
// taking readings into its on-disk journal, /readyz and /metrics show the
// outage and the backlog while it lasts, and afterwards every reading the
// broker accepted is in InfluxDB exactly once (read back with InfluxQL, per
// device, metric and time).
//
// "journal full" does the same with -journal-max far below the outage's
// readings: the journal refuses appends once full (counted in
// iotdash_journal_full_total), the messages wait unacknowledged at the
// broker, and still none is lost.
//
// By default the outage lasts 10s at 2,000 messages a second (4,000
// readings), to keep `make test` short. The full size:
//
//	IOTDASH_OUTAGE=60s IOTDASH_OUTAGE_RATE=5000 go test -count=1 -v -timeout 30m -run 'ResilienceInfluxDBOutage/buffered' ./cmd/iotdash
func TestResilienceInfluxDBOutage(t *testing.T) {
	t.Parallel()
	outage := envDuration(t, "IOTDASH_OUTAGE", 10*time.Second)
	rate := envInt(t, "IOTDASH_OUTAGE_RATE", 2000)
	bin := buildBinary(t)
	t.Run("buffered", func(t *testing.T) {
		t.Parallel()
		influxOutage(t, bin, "outage", rate, outage, 0)
	})
	t.Run("journal full", func(t *testing.T) {
		t.Parallel()
		influxOutage(t, bin, "jfull", 500, 5*time.Second, 1000)
	})
}

func influxOutage(t *testing.T, bin, prefix string, rate int, outage time.Duration, journalMax int) {
	mq := testenv.StartMosquitto(t, keepQueued)
	ix := testenv.StartInfluxServer(t)
	args := []string{"-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-mqtt", mq.URL, "-mqtt-client-id", prefix + "-iotdash",
		"-data", t.TempDir(), "-influx-url", ix.URL, "-influx-bucket", ix.Bucket, "-log-level", "error"}
	if journalMax > 0 {
		args = append(args, "-journal-max", strconv.Itoa(journalMax))
	}
	p := startBinary(t, bin, args...)
	l := startLoad(t, loadConfig{Broker: mq.URL, Rate: rate, Prefix: prefix})
	testenv.WaitFor(t, time.Minute, "readings written to InfluxDB before the outage", func() bool {
		m, err := scrape(p.URL)
		return err == nil && m["iotdash_journal_written_total"] >= float64(rate)
	})

	ix.Stop()
	down := time.Now()
	sentBefore, _ := l.counts()
	before, err := scrape(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	var notReady string
	var maxBacklog float64
	watch := func() {
		if code, body := readiness(p.URL); code == http.StatusServiceUnavailable && strings.Contains(body, "store") {
			notReady = body
		}
		if m, err := scrape(p.URL); err == nil {
			maxBacklog = max(maxBacklog, m["iotdash_journal_backlog_readings"])
		}
	}
	// The outage lasts its time whatever happens meanwhile: watch it.
	for time.Since(down) < outage {
		watch()
		time.Sleep(200 * time.Millisecond)
	}
	during, err := scrape(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	sentAfter, _ := l.counts()

	ix.Start(t)
	up := time.Now()
	var recovered time.Duration
	testenv.WaitFor(t, 5*time.Minute, "/readyz and the journal to recover", func() bool {
		code, _ := readiness(p.URL)
		m, err := scrape(p.URL)
		if err != nil {
			return false
		}
		maxBacklog = max(maxBacklog, m["iotdash_journal_backlog_readings"])
		// Caught up: what is left is less than a fifth of a second's load.
		if code == http.StatusOK && m["iotdash_journal_backlog_readings"] <= float64(rate)*2/5 {
			recovered = time.Since(up)
			return true
		}
		return false
	})
	// A little more load after the recovery, then stop.
	_, acked := l.counts()
	l.waitAcked(t, acked+rate)
	res := l.Stop(t)
	accepted := len(res.Accepted())
	testenv.WaitFor(t, 2*time.Minute, "every accepted reading taken and drained", func() bool {
		m, err := scrape(p.URL)
		return err == nil && m["iotdash_readings_stored_total"] >= float64(accepted*len(res.Metrics)) && m["iotdash_journal_backlog_readings"] == 0
	})
	after, err := scrape(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	tl := res.check(t, res.influxSeries(t, ix.URL, ix.Database))

	if notReady == "" {
		t.Errorf("/readyz never reported the store down during the outage")
	}
	if maxBacklog == 0 {
		t.Errorf("iotdash_journal_backlog_readings stayed 0 during the outage")
	}
	if during["iotdash_journal_write_failures_total"] == 0 {
		t.Errorf("iotdash_journal_write_failures_total did not count the failing writes")
	}
	if journalMax == 0 && during["iotdash_readings_stored_total"] <= before["iotdash_readings_stored_total"] {
		t.Errorf("ingest stopped taking readings during the outage: %v before, %v at its end", before["iotdash_readings_stored_total"], during["iotdash_readings_stored_total"])
	}
	if journalMax > 0 {
		if after["iotdash_journal_full_total"] == 0 {
			t.Errorf("iotdash_journal_full_total = 0, want the refused appends counted")
		}
		// A group is taken whole while there is room (at most 1,000
		// messages of 2 readings).
		if limit := float64(journalMax + 2*1000); maxBacklog > limit {
			t.Errorf("journal backlog reached %v readings, want at most -journal-max plus one group (%v)", maxBacklog, limit)
		}
	}
	scenario, journalFlag := "influxdb-outage", "default"
	if journalMax > 0 {
		scenario, journalFlag = "influxdb-outage-journal-full", strconv.Itoa(journalMax)
	}
	figures(t, scenario, "InfluxDB down %v under %d msg/s (%d messages sent meanwhile): %v; journal backlog at most %.0f readings (-journal-max %s), %.0f failed writes, %.0f appends refused as full, %.0f readings written twice; /readyz during the outage: %s; backlog drained %v after InfluxDB was back",
		outage, rate, sentAfter-sentBefore, tl, maxBacklog, journalFlag, after["iotdash_journal_write_failures_total"], after["iotdash_journal_full_total"],
		after["iotdash_journal_written_total"]-float64(tl.Stored), notReady, recovered.Round(10*time.Millisecond))
}
