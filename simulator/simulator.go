// Package simulator simulates a fleet of IoT devices over MQTT, for demos and
// for load. Run keeps a believable fleet going: each device has its own MQTT
// session with a Last Will, says who it is on its retained meta topic, and
// publishes telemetry from a deterministic signal model (Model) with a daily
// cycle, noise, drift, spikes and dropouts. A Scenario scripts which devices
// there are and what happens to them when. Load sends an exact number of
// messages a second for benchmarks.
//
// It speaks only the MQTT contract (devices/{id}/telemetry, meta, status) and
// imports nothing of iotdash but the devices package. It is not a broker and
// not a test double of one: it needs a real broker to talk to.
package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/devices"
	"iotdash/internal/mqttconn"
)

// Config says what fleet to simulate and where.
type Config struct {
	// Broker is the MQTT broker's URL: tcp://host:port (or ssl://).
	Broker string
	// Devices is how many devices to simulate, the kinds taken in turn.
	// Ignored when Scenario is set.
	Devices int
	// Interval is the mean time between a device's telemetry messages; each
	// device keeps its own interval near it, with jitter. Default 2s.
	Interval time.Duration
	// Seed makes the readings reproducible: the same seed, the same readings.
	Seed int64
	// Churn is the chance that a connected device drops off in any one
	// minute (its connection cut, or a clean offline), to come back 10 to 90
	// seconds later. 0 means devices stay.
	Churn float64
	// ClientPrefix starts every MQTT client id ("{prefix}-{device id}").
	// Default "iotsim".
	ClientPrefix       string
	Username, Password string
	// Scenario, if set, says which devices there are and scripts incidents.
	Scenario *Scenario
	// Clock is the simulation's time; nil means the wall clock.
	Clock  Clock
	Logger *slog.Logger
}

// Run simulates the configured fleet until ctx ends, then takes every device
// offline cleanly (each publishes a retained offline and disconnects) and
// returns nil. It returns an error at once if the config is invalid
// (devices.EInvalid) or no device can reach the broker (devices.EUnavailable).
// Devices that fail to connect later keep trying.
func Run(ctx context.Context, cfg Config) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Sim is a simulated fleet. Make one with New and start it with Run; the
// other methods may be called while it runs.
type Sim struct {
	cfg     Config
	log     *slog.Logger
	clock   Clock
	devices []*device
	byID    map[string]*device
	url     *url.URL
}

// New checks cfg and plans the fleet. Its errors are of kind devices.EInvalid.
func New(cfg Config) (*Sim, error) {
	if cfg.Interval == 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.ClientPrefix == "" {
		cfg.ClientPrefix = "iotsim"
	}
	if cfg.Clock == nil {
		cfg.Clock = WallClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	u, err := brokerURL(cfg.Broker)
	if err != nil {
		return nil, err
	}
	if cfg.Churn < 0 || cfg.Churn > 1 {
		return nil, devices.Errorf(devices.EInvalid, "churn %v is not a chance per minute between 0 and 1", cfg.Churn)
	}
	sc := cfg.Scenario
	if sc == nil {
		if cfg.Devices < 1 {
			return nil, devices.Errorf(devices.EInvalid, "devices must be at least 1, not %d", cfg.Devices)
		}
		sc = defaultScenario(cfg.Devices)
	}
	specs, err := sc.plan(cfg.Interval)
	if err != nil {
		return nil, err
	}
	s := &Sim{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, url: u, byID: map[string]*device{}}
	for _, sp := range specs {
		d := s.newDevice(sp)
		s.devices = append(s.devices, d)
		s.byID[sp.id] = d
	}
	return s, nil
}

// brokerURL checks a broker URL: tcp, mqtt, ssl, tls or mqtts with a host and
// port.
func brokerURL(broker string) (*url.URL, error) {
	u, err := url.Parse(broker)
	if err == nil {
		switch u.Scheme {
		case "tcp", "mqtt", "ssl", "tls", "mqtts":
			if u.Hostname() != "" && u.Port() != "" {
				return u, nil
			}
		}
	}
	return nil, devices.Errorf(devices.EInvalid, "broker %q is not a URL like tcp://host:1883 or ssl://host:8883", broker)
}

// Devices returns the ids of the simulated devices.
func (s *Sim) Devices() []string {
	ids := make([]string, len(s.devices))
	for i, d := range s.devices {
		ids[i] = d.spec.id
	}
	return ids
}

// Cut cuts the TCP connection of device id without an MQTT DISCONNECT, as a
// network failure would: the broker publishes the device's Last Will
// (offline), and the device reconnects a second later. It returns a
// devices.ENotFound error for an unknown id and does nothing if the device is
// not connected.
func (s *Sim) Cut(id string) error {
	d, ok := s.byID[id]
	if !ok {
		return devices.Errorf(devices.ENotFound, "no simulated device %q", id)
	}
	d.cut()
	return nil
}

// Run simulates the fleet until ctx ends; see the function Run. Call it once.
func (s *Sim) Run(ctx context.Context) error {
	origin := s.clock.Now()
	began := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	first := make(chan error, len(s.devices))
	var wg sync.WaitGroup
	for _, d := range s.devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.run(ctx, origin, first)
		}()
	}
	// Every device makes its first attempt at once; if none gets through,
	// the broker is not there and waiting would only hide that.
	var firstErr error
	connected := 0
	for range s.devices {
		select {
		case err := <-first:
			switch {
			case err == nil:
				connected++
			case errors.Is(err, errAway):
			case firstErr == nil:
				firstErr = err
			}
		case <-ctx.Done():
			wg.Wait()
			return nil
		}
	}
	if connected == 0 && firstErr != nil {
		cancel()
		wg.Wait()
		return devices.Errorf(devices.EUnavailable, "no simulated device could connect to %s: %v", s.cfg.Broker, firstErr)
	}
	s.log.Info("simulating", "devices", len(s.devices), "broker", s.cfg.Broker, "seed", s.cfg.Seed,
		"connected", connected, "in", time.Since(began).Round(time.Millisecond))
	wg.Wait()
	return nil
}

// errAway is the first attempt of a device scripted to start offline.
var errAway = errors.New("scripted to start offline")

// device is one simulated device: its model, its MQTT session, and where it
// is in its life.
type device struct {
	sim      *Sim
	spec     deviceSpec
	model    *Model
	opts     *mqtt.ClientOptions
	client   mqtt.Client   // of the current session
	session  int           // counts sessions, so a late loss of an old one is ignored
	interval time.Duration // its own mean interval
	rng      *rand.Rand
	lost     chan int // receives the session that was lost
	meta     []byte

	mu   sync.Mutex
	conn *cutConn
}

func (s *Sim) newDevice(sp deviceSpec) *device {
	d := &device{
		sim:   s,
		spec:  sp,
		model: NewModel(sp.kind, s.cfg.Seed, sp.index),
		rng:   rand.New(rand.NewPCG(uint64(s.cfg.Seed), uint64(sp.index))),
		lost:  make(chan int, 8),
	}
	d.interval = time.Duration(float64(sp.interval) * (0.85 + 0.3*d.model.g.u(saltExtra+1, 0)))
	meta := d.model.Meta(sp.id)
	if sp.location != "" {
		meta.Location = sp.location
	}
	d.meta, _ = json.Marshal(meta)
	status := "devices/" + sp.id + "/status"
	d.opts = mqtt.NewClientOptions().
		AddBroker(s.url.String()).
		SetClientID(s.cfg.ClientPrefix+"-"+sp.id).
		SetUsername(s.cfg.Username).
		SetPassword(s.cfg.Password).
		SetCleanSession(true).
		SetAutoReconnect(false). // the device loop reconnects, on its own clock
		SetConnectTimeout(10*time.Second).
		SetWriteTimeout(10*time.Second).
		SetKeepAlive(30*time.Second).
		SetOrderMatters(false).
		SetWill(status, string(devices.StatusOffline), 1, true).
		SetCustomOpenConnectionFn(d.dial)
	return d
}

// dial opens the device's network connection and keeps it, so that cut can
// close it under the MQTT client's feet.
func (d *device) dial(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	c, err := mqttconn.Dial(u, o)
	if err != nil {
		return nil, err
	}
	cc := &cutConn{Conn: c}
	d.mu.Lock()
	d.conn = cc
	d.mu.Unlock()
	return cc, nil
}

func (d *device) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		d.conn.cut()
		d.conn = nil
	}
}

// cutConn is a connection that can be cut as a network failure would cut
// it. The MQTT client takes "use of closed network connection" for its own
// doing and stays quiet, so once cut, reads and writes fail with errCut.
type cutConn struct {
	net.Conn
	isCut atomic.Bool
}

var errCut = errors.New("simulated network failure")

func (c *cutConn) cut() {
	c.isCut.Store(true)
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		tc.SetLinger(0) // a reset, as when a cable is pulled and the peer notices
	}
	c.Conn.Close()
}

func (c *cutConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && c.isCut.Load() {
		err = errCut
	}
	return n, err
}

func (c *cutConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil && c.isCut.Load() {
		err = errCut
	}
	return n, err
}

func (d *device) topic(leaf string) string { return "devices/" + d.spec.id + "/" + leaf }

// connect opens the MQTT session and announces the device: retained meta,
// then retained online.
func (d *device) connect() error {
	for len(d.lost) > 0 { // losses of sessions gone
		<-d.lost
	}
	d.session++
	session := d.session
	d.opts.SetConnectionLostHandler(func(mqtt.Client, error) {
		select {
		case d.lost <- session:
		default:
		}
	})
	d.client = mqtt.NewClient(d.opts)
	if t := d.client.Connect(); !t.WaitTimeout(15*time.Second) || t.Error() != nil {
		d.client.Disconnect(0)
		return orTimeout(t.Error())
	}
	for _, p := range []struct {
		leaf    string
		payload []byte
	}{{"meta", d.meta}, {"status", []byte(devices.StatusOnline)}} {
		if t := d.client.Publish(d.topic(p.leaf), 1, true, p.payload); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			d.cut()
			d.client.Disconnect(0)
			return orTimeout(t.Error())
		}
	}
	return nil
}

func orTimeout(err error) error {
	if err == nil {
		return devices.Errorf(devices.EUnavailable, "the broker did not answer in time")
	}
	return err
}

// leave takes the device off the broker: cleanly (a retained offline, then
// DISCONNECT) or by cutting the connection so that the Last Will fires.
func (d *device) leave(how string) {
	if how == DoOffline {
		d.cut()
		d.client.Disconnect(0)
		return
	}
	t := d.client.Publish(d.topic("status"), 1, true, []byte(devices.StatusOffline))
	t.WaitTimeout(5 * time.Second)
	d.client.Disconnect(250)
	d.mu.Lock()
	d.conn = nil
	d.mu.Unlock()
}

// run is the device's life until ctx ends: connect, announce, publish
// telemetry at its interval, go away when scripted or churned, come back.
// first receives the result of the first attempt to connect (errAway if the
// device is scripted to start offline).
func (d *device) run(ctx context.Context, origin time.Time, first chan<- error) {
	s := d.sim
	log := s.log.With("device", d.spec.id)
	clock := s.clock
	connected := false
	var (
		nextSend  time.Time // next telemetry, when connected
		awayUntil time.Time // no connecting before this (backoff, churn)
		dropAt    time.Time // churn: when the device next drops off
		backoff   = time.Second
	)
	for {
		now := clock.Now()
		up, how, change := presence(d.spec.incidents, now.Sub(origin))
		switch {
		case connected && !up:
			log.Info("scripted off", "how", how)
			d.leave(how)
			connected = false
		case connected && !dropAt.IsZero() && !now.Before(dropAt):
			how := DoDisconnect
			if d.rng.IntN(2) == 0 {
				how = DoOffline
			}
			away := 10*time.Second + time.Duration(d.rng.Int64N(int64(80*time.Second)))
			log.Info("churned off", "how", how, "for", away)
			d.leave(how)
			connected = false
			awayUntil = now.Add(away)
		case !connected && up && !now.Before(awayUntil):
			err := d.connect()
			if first != nil {
				first <- err
				first = nil
			}
			if err != nil {
				log.Warn("cannot connect", "error", err, "retry in", backoff)
				awayUntil = clock.Now().Add(backoff)
				backoff = min(2*backoff, 30*time.Second)
				break
			}
			log.Debug("connected")
			connected, backoff = true, time.Second
			nextSend = clock.Now()
			dropAt = time.Time{}
			if c := s.cfg.Churn; c > 0 {
				mins := -math.Log(1-d.rng.Float64()) / c
				dropAt = clock.Now().Add(time.Duration(mins * float64(time.Minute)))
			}
		}
		if first != nil && !up {
			first <- errAway
			first = nil
		}
		now = clock.Now()
		if connected && !now.Before(nextSend) {
			d.send(now, origin, log)
			jitter := 0.9 + 0.2*d.rng.Float64()
			nextSend = nextSend.Add(time.Duration(float64(d.interval) * jitter))
			if nextSend.Before(now) { // fell behind: skip rather than burst
				nextSend = now.Add(time.Duration(float64(d.interval) * jitter))
			}
		}

		// Sleep until the next thing to do.
		wake := now.Add(time.Hour)
		if connected {
			wake = earliest(wake, nextSend)
			if !dropAt.IsZero() {
				wake = earliest(wake, dropAt)
			}
		} else if up {
			wake = earliest(wake, awayUntil)
		}
		if change >= 0 {
			wake = earliest(wake, origin.Add(change))
		}
		select {
		case <-ctx.Done():
			if connected {
				d.leave(DoDisconnect)
			}
			if first != nil {
				first <- nil
			}
			return
		case session := <-d.lost:
			if connected && session == d.session {
				log.Info("connection lost", "retry in", backoff)
				connected = false
				awayUntil = clock.Now().Add(backoff)
				backoff = min(2*backoff, 30*time.Second)
			}
		case <-clock.After(wake.Sub(clock.Now())):
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// send publishes one telemetry message stamped now.
func (d *device) send(now, origin time.Time, log *slog.Logger) {
	sample := d.model.At(now)
	applyIncidents(d.spec.incidents, now.Sub(origin), sample)
	t := d.client.Publish(d.topic("telemetry"), 1, false, sample.AppendJSON(nil))
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		log.Debug("telemetry not acknowledged", "error", t.Error())
	}
}
