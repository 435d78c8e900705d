package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"iotdash/devices"
)

// fleetCollector gives iotdash_devices{status=…}, so that Prometheus can
// alert on devices going offline as the dashboard shows them, and
// iotdash_events_dropped_total, the events the fleet could not keep.
// It is the one adapter cmd keeps (every other part registers its own
// metrics): devices, the domain, depends on nothing, Prometheus included.
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
