package ingest

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the ingest pipeline's Prometheus metrics.
type Metrics struct {
	Received     prometheus.Counter
	Stored       prometheus.Counter
	Groups       prometheus.Counter
	Rejected     *prometheus.CounterVec
	WriteSeconds prometheus.Histogram
	WriteErrors  prometheus.Counter
	Throttled    prometheus.Counter
	DeadLetters  prometheus.Counter
	// BrokerProtocolErrors counts connections to a broker of the user's
	// closed because it sent what is not MQTT 3.1.1 (each is logged and
	// connected again).
	BrokerProtocolErrors prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg, if not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotdash_messages_received_total", Help: "MQTT messages received from the broker."}),
		Stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotdash_readings_stored_total", Help: "Readings committed to the durable store."}),
		Groups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotdash_store_commits_total", Help: "Group commits to the durable store."}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotdash_rejected_total", Help: "Messages or metrics rejected, by reason."}, []string{"reason"}),
		WriteSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "iotdash_store_write_seconds", Help: "Time of one group commit to the durable store.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, 1}}),
		WriteErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotdash_store_write_errors_total", Help: "Failed group commits (retried)."}),
		Throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotdash_ingest_throttled_total", Help: "Messages that waited for room in the full commit queue (meanwhile the embedded broker stops reading from their device)."}),
		DeadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotdash_dead_letters_total", Help: "Messages the store refused as invalid, kept in the dead-letter file."}),
		BrokerProtocolErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotdash_broker_protocol_errors_total", Help: "Connections to the -mqtt broker closed because it sent a malformed or unexpected packet (then connected again)."}),
	}
	for _, r := range []string{ReasonTopic, ReasonDeviceID, ReasonTooLarge, ReasonJSON, ReasonNotNumber, ReasonRange, ReasonMetric, ReasonTimestamp, ReasonFuture, ReasonPast, ReasonEmpty, ReasonMeta, ReasonStatus, ReasonTooManyDevices, ReasonTooManyMetrics, ReasonNewSeries} {
		m.Rejected.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Received, m.Stored, m.Groups, m.Rejected, m.WriteSeconds, m.WriteErrors, m.Throttled, m.DeadLetters, m.BrokerProtocolErrors)
	}
	return m
}
