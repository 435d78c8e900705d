// Package broker is the MQTT broker embedded in iotdash's self-contained
// mode (github.com/mochi-mqtt/server), so that a fresh machine needs nothing
// but the iotdash binary. It listens on loopback by default, allows anonymous
// clients, and keeps sessions and retained messages in memory: devices
// publish their retained meta and status again when they reconnect. For a
// fleet in production, point iotdash at a broker of your own (-mqtt).
//
// Devices' messages do not reach iotdash through a subscription of its own:
// the broker hands each one to a Deliver function on the device's own
// connection and sends the device its PUBACK only when Deliver acknowledges
// it, that is once it is durable. A subscriber's in-flight window, which a
// broker overflows by dropping, is not on the path at all.
package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Broker is a running embedded broker.
type Broker struct {
	server *mqtt.Server
	// Addr is the address it listens on, host:port.
	Addr string
}

// Options are what Start needs besides an address.
type Options struct {
	// Deliver, if not nil, takes every message published under Prefix
	// (default "devices/") in place of the broker's fan-out; see Deliver.
	Deliver Deliver
	Prefix  string
	Logger  *slog.Logger
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
	// Listen first so that a taken port is reported plainly, and port 0
	// resolves to the port actually used.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	actual := l.Addr().String()
	l.Close()

	caps := mqtt.NewDefaultServerCapabilities()
	// Keep a disconnected persistent session (the ingester's) for a day.
	caps.MaximumSessionExpiryInterval = 24 * 60 * 60
	s := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       log.With("component", "broker").WithGroup("mochi"),
		// Deliver's acks forward the message to other subscribers through
		// the inline client.
		InlineClient: true,
	})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, err
	}
	if opts.Deliver != nil {
		if err := s.AddHook(&deliverHook{server: s, prefix: opts.Prefix, deliver: opts.Deliver}, nil); err != nil {
			return nil, err
		}
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: actual})); err != nil {
		return nil, fmt.Errorf("listening on %s: %w", actual, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve() }()
	select {
	case err := <-errc:
		if err != nil {
			return nil, err
		}
	default:
	}
	return &Broker{server: s, Addr: actual}, nil
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

// Close disconnects every client and stops listening.
func (b *Broker) Close() error {
	err := b.server.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
