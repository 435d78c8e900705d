package alerts_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"iotdash/alerts"
	"iotdash/devices"
	"iotdash/store/sqlite"
)

// BenchmarkObserve is the ingest cost of alerting: a batch of readings of
// 10,000 devices that 10,000 rule instances watch (a rule on a kind, and
// the limits every device declares), none crossing, against no rules.
//
//	go test -run '^$' -bench Observe -benchmem ./alerts
func BenchmarkObserve(b *testing.B) {
	for _, rules := range []bool{false, true} {
		b.Run(fmt.Sprintf("rules=%v", rules), func(b *testing.B) {
			docs, err := sqlite.OpenDocs(filepath.Join(b.TempDir(), "state.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer docs.Close()
			fleet := devices.NewFleet(nil)
			const n = 10_000
			batch := make([]devices.Reading, n)
			now := time.Now().UnixMilli()
			for i := range n {
				id := fmt.Sprintf("dev-%05d", i)
				meta := devices.Meta{Kind: "thermostat"}
				if rules {
					meta.Limits = map[string][2]float64{"temperature": {0, 100}}
				}
				fleet.SetMeta(id, meta)
				batch[i] = devices.Reading{Device: id, Metric: "temperature", Time: now, Value: 20}
			}
			e, err := alerts.New(context.Background(), alerts.Config{Store: docs, Fleet: fleet})
			if err != nil {
				b.Fatal(err)
			}
			if rules {
				if _, err := e.PutRule(context.Background(), alerts.Rule{Name: "hot", Kind: "thermostat", Metric: "temperature", Op: ">", Value: 30}); err != nil {
					b.Fatal(err)
				}
			} else if _, err := e.PutRule(context.Background(), alerts.Rule{ID: alerts.LimitsRuleID, Disabled: true}); err != nil {
				b.Fatal(err)
			}
			e.Observe(batch) // the devices' targets, cached
			b.ResetTimer()
			for b.Loop() {
				e.Observe(batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/reading")
		})
	}
}
