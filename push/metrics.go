package push

import "github.com/prometheus/client_golang/prometheus"

// registerMetrics registers h's counts (its Stats) with reg: the clients
// connected, the frames sent, and what was dropped, closed or refused.
func registerMetrics(reg prometheus.Registerer, h *Hub) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "iotdash_websocket_clients", Help: "Browsers connected to /ws."},
			func() float64 { return float64(h.Stats().Clients) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_websocket_frames_total", Help: "Frames sent to browsers."},
			func() float64 { return float64(h.Stats().Frames) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_websocket_dropped_readings_total", Help: "Readings not sent to a browser whose queue was full (it is told of the gap)."},
			func() float64 { return float64(h.Stats().DroppedReadings) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_websocket_slow_closed_total", Help: "Browsers disconnected for being too slow."},
			func() float64 { return float64(h.Stats().SlowClosed) }),
	)
	for _, reason := range []string{RefusedTooMany, RefusedTooManyAddr} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_websocket_refused_total", Help: "Connections to /ws refused by a limit (-max-websockets, -max-websockets-per-addr), by reason.", ConstLabels: prometheus.Labels{"reason": reason}},
			func() float64 { return float64(h.Stats().Refused[reason]) }))
	}
	for _, reason := range []string{ClosedNoSubscribe, ClosedNoPong} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "iotdash_websocket_limit_closed_total", Help: "Browsers disconnected for sending no subscribe in time, or answering no ping, by reason.", ConstLabels: prometheus.Labels{"reason": reason}},
			func() float64 { return float64(h.Stats().Closed[reason]) }))
	}
}
