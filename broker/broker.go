// Package broker is the MQTT broker embedded in iotdash's self-contained
// mode (github.com/mochi-mqtt/server), so that a fresh machine needs nothing
// but the iotdash binary. It keeps sessions and retained messages in
// memory: devices publish their retained meta and status again when they
// reconnect. For a fleet in production, point iotdash at a broker of your
// own (-mqtt).
//
// Devices sign in with their id as the user name and a secret made by
// AddDevice, and may publish and subscribe only under devices/{their id}/.
// Clients without a user name are let in only where Options.Anonymous says
// so (iotdash: while the broker listens on loopback, the demo, or with
// -mqtt-anonymous). No outside client may take a client id iotdash keeps
// for itself, or one that another user's session holds. Packets, clients
// and retained messages are bounded, and every refusal is counted by
// reason (Metrics) and logged at a limited rate.
//
// Devices' messages do not reach iotdash through a subscription of its own:
// the broker hands each one to a Deliver function on the device's own
// connection and sends the device its PUBACK only when Deliver acknowledges
// it, that is once it is durable. A subscriber's in-flight window, which a
// broker overflows by dropping, is not on the path at all; and there is no
// ingester's session for a client to take over.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Broker is a running embedded broker.
type Broker struct {
	server *mqtt.Server
	stop   context.CancelFunc // ends the revocation sweep
	// Addr is the address it listens on, host:port.
	Addr string
}

// Options are what Start needs besides an address.
type Options struct {
	// Deliver, if not nil, takes every message published under Prefix
	// (default "devices/") in place of the broker's fan-out; see Deliver.
	Deliver Deliver
	Prefix  string
	// Credentials are the devices' (see Credentials); nil, no device can
	// sign in.
	Credentials Credentials
	// Anonymous lets clients without a user name in, with no limit on
	// their topics.
	Anonymous bool
	// Internal are clients of this process (the simulator), by user name
	// with their secret: they publish as any device.
	Internal map[string]string
	// ReservedIDs are client ids no outside client may use (the
	// ingester's); mochi's own inline client's is always among them.
	ReservedIDs []string
	// Recheck is how often connected devices are checked against
	// Credentials, so that one revoked by another process is disconnected
	// (default 10s).
	Recheck time.Duration
	// MaxPacketSize (bytes, default DefaultMaxPacketSize), MaxClients
	// (default DefaultMaxClients) and MaxRetained (default
	// DefaultMaxRetained) bound what clients may make the broker hold.
	MaxPacketSize int
	MaxClients    int
	MaxRetained   int
	// Metrics counts refusals; nil, they are counted in an unregistered set.
	Metrics *Metrics
	// Logger gets the broker's warnings, refusals among them (a few a
	// second at most).
	Logger *slog.Logger
}

// Loopback reports whether addr (host:port, as Start takes it) is reachable
// from this machine only. A host name counts as loopback only if it is
// localhost.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Start starts a broker listening on addr (host:port; port 0 picks a free one).
func Start(addr string, opts Options) (*Broker, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Prefix == "" {
		opts.Prefix = "devices/"
	}
	if opts.MaxPacketSize <= 0 {
		opts.MaxPacketSize = DefaultMaxPacketSize
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = DefaultMaxClients
	}
	if opts.Recheck <= 0 {
		opts.Recheck = 10 * time.Second
	}
	if opts.MaxRetained <= 0 {
		opts.MaxRetained = DefaultMaxRetained
	}
	refuse := newRefusals(opts.Metrics, log.With("component", "broker"))
	// Listen first so that a taken port is reported plainly, and port 0
	// resolves to the port actually used.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	actual := l.Addr().String()
	l.Close()

	caps := mqtt.NewDefaultServerCapabilities()
	// Keep a disconnected persistent session (a device's) for a day.
	caps.MaximumSessionExpiryInterval = 24 * 60 * 60
	caps.MaximumPacketSize = uint32(opts.MaxPacketSize)
	caps.MaximumClients = int64(opts.MaxClients)
	s := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		// mochi warns of every refused packet: ours are counted and
		// logged at a limited rate instead.
		Logger: slog.New(atLeast{log.Handler(), slog.LevelError}).With("component", "broker").WithGroup("mochi"),
		// Deliver's acks forward the message to other subscribers through
		// the inline client.
		InlineClient: true,
	})
	auth := &authHook{server: s, creds: opts.Credentials, anonymous: opts.Anonymous, internal: opts.Internal,
		reserved: map[string]bool{mqtt.InlineClientId: true}, prefix: opts.Prefix, refuse: refuse}
	for _, id := range opts.ReservedIDs {
		auth.reserved[id] = true
	}
	if err := s.AddHook(auth, nil); err != nil {
		return nil, err
	}
	// Before Deliver's hook, so that what it hands on is already decided.
	if err := s.AddHook(&retainHook{server: s, prefix: opts.Prefix, max: opts.MaxRetained, refuse: refuse}, nil); err != nil {
		return nil, err
	}
	// Ended by Close: the revocation sweep, and the wait for Deliver's
	// acknowledgement of a QoS 2 message.
	ctx, stop := context.WithCancel(context.Background())
	if opts.Deliver != nil {
		if err := s.AddHook(&deliverHook{server: s, prefix: opts.Prefix, deliver: opts.Deliver, closing: ctx.Done()}, nil); err != nil {
			stop()
			return nil, err
		}
	}
	if err := s.AddListener(&listener{TCP: listeners.NewTCP(listeners.Config{ID: "tcp", Address: actual}), server: s, refuse: refuse}); err != nil {
		stop()
		return nil, fmt.Errorf("listening on %s: %w", actual, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve() }()
	select {
	case err := <-errc:
		if err != nil {
			stop()
			return nil, err
		}
	default:
	}
	go func() {
		t := time.NewTicker(opts.Recheck)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				auth.sweep(ctx)
			}
		}
	}()
	return &Broker{server: s, stop: stop, Addr: actual}, nil
}

// Dropped is how many messages the broker has discarded since it started:
// QoS 0 and QoS 1 messages for a subscriber whose queue or in-flight window
// was full. Deliver's messages are never among them.
func (b *Broker) Dropped() int64 {
	info := b.server.Info.Clone()
	return info.MessagesDropped + info.InflightDropped
}

// URL is the broker's address for MQTT clients: tcp://host:port.
func (b *Broker) URL() string { return "tcp://" + b.Addr }

// Close disconnects every client and stops listening. It returns once
// every connection has ended, signed in or not; a Deliver that blocks and
// does not return holds it up (one that does not acknowledge a QoS 2
// message does not).
func (b *Broker) Close() error {
	b.stop()
	err := b.server.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// atLeast passes on the records of its level and above only.
type atLeast struct {
	slog.Handler
	level slog.Level
}

func (h atLeast) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h atLeast) WithAttrs(as []slog.Attr) slog.Handler {
	return atLeast{h.Handler.WithAttrs(as), h.level}
}

func (h atLeast) WithGroup(name string) slog.Handler {
	return atLeast{h.Handler.WithGroup(name), h.level}
}
