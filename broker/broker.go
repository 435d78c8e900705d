// Package broker is the MQTT broker embedded in iotdash's self-contained
// mode (github.com/mochi-mqtt/server), so that a fresh machine needs nothing
// but the iotdash binary. It listens on loopback by default, allows anonymous
// clients, and keeps sessions and retained messages in memory: devices
// publish their retained meta and status again when they reconnect. For a
// fleet in production, point iotdash at a broker of your own (-mqtt).
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

// Start starts a broker listening on addr (host:port; port 0 picks a free one).
func Start(addr string, log *slog.Logger) (*Broker, error) {
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
	})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, err
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
