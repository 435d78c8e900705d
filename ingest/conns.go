package ingest

// The connections to a broker of the user's.
//
// One connection takes at most the broker's in-flight window of
// unacknowledged QoS 1 messages (Mosquitto's max_inflight_messages, 20 by
// default), and since a message is acknowledged only once its group is
// durable, one group commit carries at most that many: the commit's fsync
// is then shared by 20 messages. Config.Connections > 1 opens that many
// connections, each a persistent session of its own, that share the
// telemetry subscription as an MQTT shared subscription
// ($share/GROUP/devices/+/telemetry, Mosquitto ≥ 1.6, EMQX, HiveMQ,
// VerneMQ): the broker hands each message to one member of the group, in
// turn, and each member has a window of its own, so N connections let
// 20·N messages be in flight, and all of them feed the one commit queue.
// Each message is acknowledged on the connection it came on, in that
// connection's order (the queue keeps each connection's order, the commit
// loop acknowledges in queue order).
//
// What it costs:
//   - Messages of one device reach the store out of order across
//     connections. The stores do not care (a reading is keyed by device,
//     metric and ts), the fleet keeps the newest reading by ts, not by
//     arrival (devices.Fleet.Seen), and "last seen" is the time of arrival.
//     Open pages may be pushed an older reading after a newer one, as they
//     are a late one.
//   - Retained messages are not sent on a shared subscription (MQTT 5
//     says so; Mosquitto applies it since 2.0.13, to 3.1.1 clients too),
//     and the order of a device's status messages matters (online, then
//     its Last Will's offline). So meta and status (devices/+/meta, devices/+/status) and
//     the broker's drop count ($SYS) are subscribed normally, on the first
//     connection only, and telemetry on the shared subscription. A topic
//     under devices/ outside the contract is then not delivered, so not
//     counted as rejected ("topic"); with one connection (devices/#) it is.
//   - Mosquitto gives the members their turns whether they are connected or
//     not (src/subs.c, subs__shared_process: strict round robin over the
//     group). A member whose connection is down has its share queued in its
//     session, as one connection's are while iotdash is down, and gets it
//     when it is back; messages it had in flight unacknowledged are sent
//     again to it, not to another member. Nothing is lost, but each session
//     keeps at most max_queued_messages (1,000 by default) before the broker
//     drops, so a single connection that stays down at a high rate loses
//     its share sooner than all of them together would. (And the window
//     is not a hard bound everywhere: Mosquitto before 2.0.13 lets more
//     than max_inflight_messages out to a session with a backlog, #2306.)
//   - The group is named after Config.ClientID, and its members are
//     sessions on the broker that outlive iotdash: lowering Connections
//     leaves the sessions of the connections no longer opened (CLIENTID-k
//     for k ≥ the new count) in the group, and the broker keeps queueing
//     their share for them (and drops it past max_queued_messages, which
//     iotdash then shows). Before lowering it, delete those sessions (for
//     Mosquitto: `mosquitto_sub -i CLIENTID-k -t x -E` connects once with a
//     clean session, which discards it, and the messages queued in it).
//
// What it gains, measured (README, "Over several connections"): with
// Mosquitto 2.0.11, whose window leaks under a backlog, not less CPU a
// message but N sessions' queues, so fewer messages dropped by the broker
// when iotdash falls behind.
//
// Going from one connection to several, the first connection (the
// configured client id) unsubscribes devices/#, and back from several to
// one it leaves the group, so that its persistent session does not get
// every message twice.

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"iotdash/internal/mqttsub"
)

// Topics subscribed: with one connection, everything under devices/; with
// several, telemetry shared and the rest on the first connection.
const (
	topicAll       = "devices/#"
	topicTelemetry = "devices/+/telemetry"
	topicMeta      = "devices/+/meta"
	topicStatus    = "devices/+/status"
)

// MaxConnections bounds Config.Connections: past a few the window is wide
// enough (a group of 20·N messages shares one fsync), and each connection
// is a session the broker keeps.
const MaxConnections = 64

// conn is one connection to the broker, with its own persistent session.
type conn struct {
	client     *mqttsub.Client
	err        error  // why client could not be made (a broker URL it cannot use)
	id         string // its client id
	first      bool   // the one with meta, status and the drop count
	subscribed atomic.Bool
}

// clientIDs is the client id of each of n connections: the configured one
// for the first (its session is the one of a single connection), then
// id-1, id-2, ….
func clientIDs(id string, n int) []string {
	ids := []string{id}
	for k := 1; k < n; k++ {
		ids = append(ids, fmt.Sprintf("%s-%d", id, k))
	}
	return ids
}

// shareGroup is the shared subscription's group name for client id id: a
// group name may not hold '/', '+' or '#'.
func shareGroup(id string) string {
	return strings.NewReplacer("/", "_", "+", "_", "#", "_").Replace(id)
}

// newConns makes the ingester's connections to cfg.Broker.
func (in *Ingester) newConns() {
	n := in.cfg.Connections
	in.shared = "$share/" + shareGroup(in.cfg.ClientID) + "/" + topicTelemetry
	for i, id := range clientIDs(in.cfg.ClientID, n) {
		c := &conn{id: id, first: i == 0}
		c.client, c.err = mqttsub.New(mqttsub.Options{
			Broker:           in.cfg.Broker,
			TLS:              in.cfg.TLS,
			ClientID:         id,
			Username:         in.cfg.Username,
			Password:         in.cfg.Password,
			KeepAlive:        15 * time.Second,
			RetryInterval:    time.Second,
			MaxRetryInterval: 2 * time.Second,
			// Room for a payload of MaxPayload and the longest topic: a
			// larger message is skipped on the wire, and refused as too
			// large by handle.
			MaxPacket: 2 + 65535 + 2 + MaxPayload,
			ReadPause: in.cfg.ReadPause,
			// Messages the broker kept for the session arrive before
			// Subscribe returns: handle takes them as any other.
			Handler:   in.handle,
			OnConnect: func(cl *mqttsub.Client) error { return in.onConnect(c, cl) },
			OnConnectionLost: func(err error) {
				c.subscribed.Store(false)
				if errors.Is(err, mqttsub.ErrMalformed) {
					in.cfg.Metrics.BrokerProtocolErrors.Inc()
				}
				in.log.Warn("broker connection lost", "broker", in.cfg.Broker, "client_id", id, "error", err)
				in.brokerGone(time.Now())
			},
			Logger: in.log,
		})
		in.conns = append(in.conns, c)
	}
}

// DefaultReadPause is Config.ReadPause's default. At 20,000 msg/s a read a
// message and the wake-up before each cost about half of ingest's CPU;
// reading after a pause of 0.5 ms cuts ingest's CPU a message by a third
// or more, and makes a live page at 5,000 msg/s about 3 ms later (README,
// "Reading in batches").
const DefaultReadPause = 500 * time.Microsecond

// MaxReadPause bounds Config.ReadPause: past it the reader would hold the
// broker's in-flight window for a noticeable time.
const MaxReadPause = 10 * time.Millisecond

// subscribeTimeout bounds the wait for a SUBACK or UNSUBACK.
const subscribeTimeout = 10 * time.Second

// onConnect subscribes c, on every connection and reconnection (a
// persistent session keeps its subscriptions, but a broker that lost its
// sessions does not), and leaves what the other number of connections
// would have subscribed. An error drops the connection: the reconnection
// subscribes again.
func (in *Ingester) onConnect(c *conn, cl *mqttsub.Client) error {
	subs := []mqttsub.Subscription{{Topic: in.shared, QoS: 1}}
	var leave []string
	switch {
	case !c.first:
	case len(in.conns) == 1:
		subs = []mqttsub.Subscription{{Topic: topicAll, QoS: 1}}
		leave = []string{in.shared, topicMeta, topicStatus}
	default:
		subs = append(subs, mqttsub.Subscription{Topic: topicMeta, QoS: 1}, mqttsub.Subscription{Topic: topicStatus, QoS: 1})
		leave = []string{topicAll}
	}
	codes, err := cl.Subscribe(subscribeTimeout, subs...)
	if err == nil {
		err = refused(subs, codes)
	}
	if err != nil {
		in.log.Error("subscribing", "broker", in.cfg.Broker, "client_id", c.id, "topics", subs, "error", err)
		return fmt.Errorf("subscribing: %w", err)
	}
	if len(leave) > 0 {
		// Unsubscribing what the session does not have is no error.
		if err := cl.Unsubscribe(subscribeTimeout, leave...); err != nil {
			in.log.Warn("unsubscribing what another number of connections subscribed", "client_id", c.id, "topics", leave, "error", err)
		}
	}
	c.subscribed.Store(true)
	in.brokerBack()
	in.log.Info("subscribed", "broker", in.cfg.Broker, "client_id", c.id, "topics", subs)
	if c.first {
		in.watchDrops(cl)
	}
	return nil
}

// refused is the error of a SUBACK that refused a subscription (return
// code 0x80: an ACL, or a broker without shared subscriptions), or nil.
func refused(subs []mqttsub.Subscription, codes []byte) error {
	for i, code := range codes {
		if code > 2 {
			return fmt.Errorf("the broker refused the subscription to %s (return code %#x)", subs[i].Topic, code)
		}
	}
	return nil
}

// Connected reports whether every broker connection is up and subscribed.
// Fed by Submit (the embedded broker, in this process), it is always true.
func (in *Ingester) Connected() bool {
	for _, c := range in.conns {
		if !c.subscribed.Load() || c.client == nil || !c.client.Connected() {
			return false
		}
	}
	return true
}

// connect starts every connection (each retried until it succeeds, and
// again whenever it is lost) and logs a broker URL it cannot use; if a
// connection is not up within brokerGrace of the start, every page says
// the broker cannot be reached. done ends the wait.
func (in *Ingester) connect(wg *sync.WaitGroup, done <-chan struct{}) {
	started := time.Now()
	for _, c := range in.conns {
		if c.err != nil {
			in.log.Error("connecting to broker", "broker", in.cfg.Broker, "client_id", c.id, "error", c.err)
			continue
		}
		c.client.Start()
	}
	wg.Go(func() {
		grace := time.NewTimer(brokerGrace)
		defer grace.Stop()
		select {
		case <-grace.C:
			in.brokerGone(started) // unless every connection is up by now
		case <-done:
		}
	})
}

// disconnect closes every connection at once. Each lets a running handle
// return and sends the acknowledgements the commit loop, still running,
// has queued; then no handler runs again.
func (in *Ingester) disconnect() {
	var wg sync.WaitGroup
	for _, c := range in.conns {
		if c.client == nil {
			continue
		}
		wg.Go(func() {
			c.client.Disconnect(500 * time.Millisecond)
			c.subscribed.Store(false)
		})
	}
	wg.Wait()
}

// flush sends the acknowledgements queued on each connection, each
// connection's in one write.
func (in *Ingester) flush() {
	for _, c := range in.conns {
		if c.client != nil {
			c.client.Flush()
		}
	}
}
