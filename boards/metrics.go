package boards

import "github.com/prometheus/client_golang/prometheus"

// Reasons a board is refused, as Metrics counts them.
const (
	RefusedLimit   = "limit"   // past one of Limits (ErrLimit)
	RefusedInvalid = "invalid" // not JSON of a board, or breaking one of its rules
)

// Metrics are the boards' Prometheus metrics.
type Metrics struct {
	// Refused counts the boards refused when they were created, saved or
	// imported, by reason.
	Refused *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg, if not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "iotdash_boards_refused_total",
		Help: "Boards refused when created, saved or imported (by the pages or the API), by reason: limit (past a limit on boards) or invalid."}, []string{"reason"})}
	for _, r := range []string{RefusedLimit, RefusedInvalid} {
		m.Refused.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Refused)
	}
	return m
}
