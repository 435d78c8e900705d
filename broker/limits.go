package broker

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Defaults of the broker's limits.
const (
	DefaultMaxPacketSize = 64 << 10
	DefaultMaxClients    = 10_000
	DefaultMaxRetained   = 20_000
)

// Refusal reasons, the values of iotdash_broker_refused_total's reason.
var reasons = []string{
	"anonymous",     // a CONNECT without a user name where anonymous clients are not allowed
	"credentials",   // an unknown device, or a wrong or missing secret
	"unavailable",   // the credentials could not be read
	"client_id",     // a client id reserved for iotdash, or another's session
	"acl_will",      // a Last Will on a topic the client may not publish to
	"acl_publish",   // a publish outside the client's own topics
	"acl_subscribe", // a subscription outside the client's own topics
	"packet_size",   // a packet over the size limit (the client is disconnected)
	"clients",       // a CONNECT while the broker has its most clients
	"retain_topic",  // a retained message outside devices/, passed on but not kept
	"retain_full",   // a new retained topic while the broker keeps its most
}

// Metrics are the embedded broker's Prometheus metrics.
type Metrics struct {
	Refused *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg, if not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "iotdash_broker_refused_total",
		Help: "Connections, publishes, subscriptions and retained messages the embedded broker refused, by reason."}, []string{"reason"})}
	for _, r := range reasons {
		m.Refused.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Refused)
	}
	return m
}

// refusals counts every refusal and logs a few a second, so that a flood
// of hostile clients neither goes unseen nor fills the log.
type refusals struct {
	metrics  *Metrics
	log      *slog.Logger
	limit    *rate.Limiter
	suppress atomic.Int64
}

func newRefusals(m *Metrics, log *slog.Logger) *refusals {
	if m == nil {
		m = NewMetrics(nil)
	}
	return &refusals{metrics: m, log: log, limit: rate.NewLimiter(rate.Every(time.Second), 5)}
}

// count counts one refusal for reason and logs msg with attrs, unless the
// log's rate is spent.
func (r *refusals) count(reason, msg string, attrs ...any) {
	r.metrics.Refused.WithLabelValues(reason).Inc()
	if !r.limit.Allow() {
		r.suppress.Add(1)
		return
	}
	for i := 1; i < len(attrs); i += 2 {
		if s, ok := attrs[i].(string); ok && len(s) > 200 {
			attrs[i] = s[:200] + "…"
		}
	}
	r.log.Warn(msg, append(attrs, "reason", reason, "suppressed_since_last", r.suppress.Swap(0))...)
}

// listener is mochi's TCP listener, with the errors that end a connection
// counted (and logged at a limited rate) here instead of each logged by
// mochi, and every connection closed when it closes.
type listener struct {
	*listeners.TCP
	server *mqtt.Server
	refuse *refusals

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // open, signed in or not
	closed bool
}

func (l *listener) Serve(establish listeners.EstablishFn) {
	l.TCP.Serve(func(id string, c net.Conn) error {
		if !l.track(c) {
			c.Close()
			return nil
		}
		defer l.untrack(c)
		remote := c.RemoteAddr().String()
		err := establish(id, c)
		switch {
		case errors.Is(err, packets.ErrServerBusy):
			l.refuse.count("clients", "a client was refused: the broker has its most clients", "remote", remote)
		case errors.Is(err, packets.ErrPacketTooLarge):
			l.refuse.count("packet_size", "a client sent a packet over the size limit and was disconnected", "remote", remote)
		}
		return nil
	})
}

// Close stops listening and disconnects the clients, as mochi's does, then
// closes every connection still open: mochi disconnects only the clients
// signed in when it starts, and its Server.Close waits for every
// connection to end, which one that never sends its CONNECT never does.
//
// The clients are disconnected by disconnect, not by mochi's closeClients
// (v2.7.9), whose Clients.GetByListener takes the clients' read lock twice
// over: a client that leaves in between (Clients.Delete, waiting for the
// write lock) deadlocks it, and the broker never closes
// (mochi-mqtt/server#488).
func (l *listener) Close(listeners.CloseFn) {
	l.TCP.Close(l.disconnect)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for c := range l.conns {
		c.Close()
	}
}

// disconnect disconnects the clients of listener id, as mochi's
// closeListenerClients does, taking the clients' lock once.
func (l *listener) disconnect(id string) {
	for _, cl := range l.server.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Closed() {
			l.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// track adds c to the open connections, or reports false once the
// listener is closed.
func (l *listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	if l.conns == nil {
		l.conns = make(map[net.Conn]struct{})
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *listener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// retainHook keeps retained messages only under the device prefix, and at
// most max of them: a message over either limit is passed on as usual but
// not kept.
type retainHook struct {
	mqtt.HookBase
	server *mqtt.Server
	prefix string
	max    int
	refuse *refusals
}

func (h *retainHook) ID() string { return "iotdash-retain" }

func (h *retainHook) Provides(b byte) bool { return b == mqtt.OnPublish || b == mqtt.OnWill }

func (h *retainHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Retain && !cl.Net.Inline {
		pk.FixedHeader.Retain = h.keep(cl.ID, pk.TopicName, len(pk.Payload))
	}
	return pk, nil
}

// OnWill applies the same rule to a Last Will, which mochi retains
// without a publish hook.
func (h *retainHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if will.Retain {
		will.Retain = h.keep(cl.ID, will.TopicName, len(will.Payload))
	}
	return will, nil
}

// keep reports whether a retained message on topic may be kept.
func (h *retainHook) keep(client, topic string, size int) bool {
	if !strings.HasPrefix(topic, h.prefix) {
		h.refuse.count("retain_topic", "a retained message outside the device topics was not kept", "client", client, "topic", topic)
		return false
	}
	if size == 0 {
		return true // clears the retained message
	}
	if _, ok := h.server.Topics.Retained.Get(topic); !ok && h.server.Topics.Retained.Len() >= h.max {
		h.refuse.count("retain_full", "a retained message was not kept: the broker keeps its most", "client", client, "topic", topic)
		return false
	}
	return true
}
