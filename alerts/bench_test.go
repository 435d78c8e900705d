package alerts_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"iotdash/alerts"
	"iotdash/devices"
	"iotdash/store/sqlite"
)

// BenchmarkObserve is the ingest cost of alerting: a batch of readings of
// 10,000 devices, none crossing, with no rule; with 10,000 rule instances
// (a rule on their kind: each device its own instance); and with 20,000
// (that rule and the limits every device declares).
//
//	go test -run '^$' -bench Observe -benchmem ./alerts
func BenchmarkObserve(b *testing.B) {
	for _, instances := range []int{0, 10_000, 20_000} {
		b.Run(fmt.Sprintf("instances=%d", instances), func(b *testing.B) {
			docs, fleet := thermostats(b, instances == 20_000)
			batch := make([]devices.Reading, thermostatCount)
			now := time.Now().UnixMilli()
			for i := range batch {
				batch[i] = devices.Reading{Device: thermostat(i), Metric: "temperature", Time: now, Value: 20}
			}
			e, err := alerts.New(context.Background(), alerts.Config{Store: docs, Fleet: fleet})
			if err != nil {
				b.Fatal(err)
			}
			if instances > 0 {
				if _, err := e.PutRule(context.Background(), alerts.Rule{Name: "hot", Kind: "thermostat", Metric: "temperature", Op: ">", Value: 30}); err != nil {
					b.Fatal(err)
				}
			}
			if instances < 20_000 {
				if _, err := e.PutRule(context.Background(), alerts.Rule{ID: alerts.LimitsRuleID, Disabled: true}); err != nil {
					b.Fatal(err)
				}
			}
			e.Observe(batch) // the devices' targets, cached
			cpu := cpuTime()
			b.ResetTimer()
			for b.Loop() {
				e.Observe(batch)
			}
			readings := float64(b.N * len(batch))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/readings, "ns/reading")
			// CPU time, which other work on a shared machine does not
			// lengthen as it does the elapsed time.
			b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/readings, "cpu-ns/reading")
		})
	}
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// thermostatCount is how many devices the benchmarks' fleet has.
const thermostatCount = 10_000

func thermostat(i int) string { return fmt.Sprintf("dev-%05d", i%thermostatCount) }

// thermostats is a state file and a fleet of thermostatCount devices of
// the kind thermostat, with limits on their temperature if limits is set.
func thermostats(b *testing.B, limits bool) (*sqlite.Docs, *devices.Fleet) {
	docs, err := sqlite.OpenDocs(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { docs.Close() })
	fleet := devices.NewFleet(nil)
	for i := range thermostatCount {
		meta := devices.Meta{Kind: "thermostat"}
		if limits {
			meta.Limits = map[string][2]float64{"temperature": {0, 100}}
		}
		fleet.SetMeta(thermostat(i), meta)
	}
	return docs, fleet
}

// BenchmarkConditionToWebhook is the time from a reading that meets a
// rule's condition to its notification's arrival at a webhook receiver
// (real HTTP, in this process), through the engine, the state file and
// the notification queue, while 50,000 other readings a second of 10,000
// devices, each its own rule instance, are observed. Each op is one alert
// fired and resolved: two notifications timed.
//
//	go test -run '^$' -bench ConditionToWebhook -benchtime 500x ./alerts
func BenchmarkConditionToWebhook(b *testing.B) {
	arrived := make(chan time.Time, 16)
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { arrived <- time.Now() }))
	defer rx.Close()
	docs, fleet := thermostats(b, false)
	notifier := alerts.NewNotifier(alerts.NotifierConfig{Store: docs, Webhooks: map[string][]string{"": {rx.URL}}})
	e, err := alerts.New(context.Background(), alerts.Config{Store: docs, Fleet: fleet, Notify: notifier})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(3)
	go func() { defer wg.Done(); e.Run(ctx) }()
	go func() {
		defer wg.Done()
		notifier.Run(ctx, func() []alerts.Instance { return e.Alerts(alerts.StateFiring) })
	}()
	for _, r := range []alerts.Rule{
		{Name: "hot", Kind: "thermostat", Metric: "temperature", Op: ">", Value: 30},
		{Name: "Boiler too hot", Device: "boiler-1", Metric: "temperature", Op: ">", Value: 30, Severity: "critical"},
	} {
		if _, err := e.PutRule(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	// The load: 50,000 readings a second round the 10,000 devices, in a
	// batch every 10 ms of what is due by then (so a late wake-up catches
	// up; the rate reached is reported).
	var loaded atomic.Int64
	go func() {
		defer wg.Done()
		const rate = 50_000
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		began := time.Now()
		var batch []devices.Reading
		for sent := 0; ; {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			due := int(time.Since(began).Seconds()*rate) - sent
			now := time.Now().UnixMilli()
			batch = batch[:0]
			for i := range due {
				batch = append(batch, devices.Reading{Device: thermostat(sent + i), Metric: "temperature", Time: now, Value: 20})
			}
			e.Observe(batch)
			sent += due
			loaded.Add(int64(due))
		}
	}()

	var took []time.Duration
	start, before := time.Now(), loaded.Load()
	b.ResetTimer()
	for b.Loop() {
		for _, v := range []float64{35, 20} { // fires, then resolves
			start := time.Now()
			e.Observe([]devices.Reading{{Device: "boiler-1", Metric: "temperature", Time: start.UnixMilli(), Value: v}})
			select {
			case at := <-arrived:
				took = append(took, at.Sub(start))
			case <-time.After(30 * time.Second):
				b.Fatal("no notification within 30 s")
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(loaded.Load()-before)/time.Since(start).Seconds(), "load-readings/s")
	slices.Sort(took)
	q := func(p float64) float64 { return float64(took[int(p*float64(len(took)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
}
