package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"iotdash/devices"
	"iotdash/push"
	"iotdash/store/journal"
)

func registerJournalMetrics(reg *prometheus.Registry, j *journal.Journal) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "iotdash_journal_backlog_readings", Help: "Readings in the on-disk journal waiting for InfluxDB."},
			func() float64 { return float64(j.Stats().Backlog) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_journal_written_total", Help: "Readings written from the journal to InfluxDB."},
			func() float64 { return float64(j.Stats().Written) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_journal_write_failures_total", Help: "Failed writes from the journal to InfluxDB (retried)."},
			func() float64 { return float64(j.Stats().Failures) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_journal_full_total", Help: "Appends refused because the journal was full (the messages stay at the broker)."},
			func() float64 { return float64(j.Stats().Full) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_journal_rejected_total", Help: "Readings InfluxDB refused as bad data, set aside in the journal's rejected table."},
			func() float64 { return float64(j.Stats().Rejected) }),
	)
}

// fleetCollector gives iotdash_devices{status=…}, so that Prometheus can
// alert on devices going offline as the dashboard shows them, and
// iotdash_events_dropped_total, the events the fleet could not keep.
type fleetCollector struct{ fleet *devices.Fleet }

var (
	devicesDesc       = prometheus.NewDesc("iotdash_devices", "Devices known, by status as the dashboard shows it.", []string{"status"}, nil)
	eventsDroppedDesc = prometheus.NewDesc("iotdash_events_dropped_total", "Events (presence and out-of-range episodes) dropped because 100,000 were already waiting to be written to the event log.", nil, nil)
)

func (fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- devicesDesc
	ch <- eventsDroppedDesc
}

func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	for s, n := range c.fleet.Counts() {
		ch <- prometheus.MustNewConstMetric(devicesDesc, prometheus.GaugeValue, float64(n), string(s))
	}
	ch <- prometheus.MustNewConstMetric(eventsDroppedDesc, prometheus.CounterValue, float64(c.fleet.EventsDropped()))
}

func registerHubMetrics(reg *prometheus.Registry, hub *push.Hub) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "iotdash_websocket_clients", Help: "Browsers connected to /ws."},
			func() float64 { return float64(hub.Stats().Clients) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_websocket_frames_total", Help: "Frames sent to browsers."},
			func() float64 { return float64(hub.Stats().Frames) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_websocket_dropped_readings_total", Help: "Readings not sent to a browser whose queue was full (it is told of the gap)."},
			func() float64 { return float64(hub.Stats().DroppedReadings) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_websocket_slow_closed_total", Help: "Browsers disconnected for being too slow."},
			func() float64 { return float64(hub.Stats().SlowClosed) }),
	)
	for _, reason := range []string{push.RefusedTooMany, push.RefusedTooManyAddr} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_websocket_refused_total", Help: "Connections to /ws refused by a limit (-max-websockets, -max-websockets-per-addr), by reason.", ConstLabels: prometheus.Labels{"reason": reason}},
			func() float64 { return float64(hub.Stats().Refused[reason]) }))
	}
	for _, reason := range []string{push.ClosedNoSubscribe, push.ClosedNoPong} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_websocket_limit_closed_total", Help: "Browsers disconnected for sending no subscribe in time, or answering no ping, by reason.", ConstLabels: prometheus.Labels{"reason": reason}},
			func() float64 { return float64(hub.Stats().Closed[reason]) }))
	}
}
