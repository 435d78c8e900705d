package journal

import "github.com/prometheus/client_golang/prometheus"

// registerMetrics registers j's counts (its Stats) with reg.
func registerMetrics(reg prometheus.Registerer, j *Journal) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "iotdash_journal_backlog_readings", Help: "Readings in the on-disk journal waiting for InfluxDB."},
			func() float64 { return float64(j.Stats().Backlog) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_journal_written_total", Help: "Readings written from the journal to InfluxDB."},
			func() float64 { return float64(j.Stats().Written) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_journal_write_failures_total", Help: "Failed writes from the journal to InfluxDB (retried)."},
			func() float64 { return float64(j.Stats().Failures) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_journal_full_total", Help: "Appends refused because the journal was full (the messages stay at the broker)."},
			func() float64 { return float64(j.Stats().Full) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_journal_rejected_total", Help: "Readings InfluxDB refused as bad data, set aside in the journal's rejected file."},
			func() float64 { return float64(j.Stats().Rejected) }),
	)
}
