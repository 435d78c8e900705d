package simulator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/devices"
	"iotdash/internal/mqttconn"
)

// LoadConfig says what load to send and where.
type LoadConfig struct {
	// Broker is the MQTT broker's URL: tcp://host:port.
	Broker string
	// Rate is how many telemetry messages a second to send, in all.
	Rate int
	// Devices is how many device ids the messages take in turn. Default 1000.
	Devices int
	// Duration is how long to send; zero means until ctx ends.
	Duration time.Duration
	// Conns is how many MQTT connections share the rate evenly. Default 4.
	Conns int
	// QoS is 0 or 1.
	QoS byte
	// Stamp puts the send time in each message's ts (Unix ms), so the time
	// from publish to browser can be measured; otherwise there is no ts and
	// the receiver stamps the reading.
	Stamp bool
	// ClientPrefix starts every MQTT client id. Default "iotsim-load".
	ClientPrefix       string
	Username, Password string
	// Progress, if not nil, gets a line each second: sent per second,
	// acknowledged, errors, and how far behind the schedule the sender is.
	Progress io.Writer
	Logger   *slog.Logger
}

// Summary is what a load run did.
type Summary struct {
	Rate      int           // the rate asked for, messages/s
	Elapsed   time.Duration // from the start of sending until it stopped
	Want      int64         // messages the schedule called for in Elapsed (at most Duration)
	Sent      int64         // messages handed to the connections
	Acked     int64         // messages the broker acknowledged (QoS 1) or that were written (QoS 0)
	Errors    int64         // messages that failed
	MaxBehind int64         // the most messages ever due but not yet sent, sampled each second
	// Held says whether the rate was held: at least 99% of the scheduled
	// messages sent and acknowledged, none failed, and never more than a
	// second's worth behind.
	Held bool
}

// Achieved returns the rate actually sent, messages/s.
func (s Summary) Achieved() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Sent) / s.Elapsed.Seconds()
}

// String is the summary in one line, e.g. "rate 50000/s held: sent 500000
// of 500000 in 10s (50000/s), acked 500000, errors 0, at most 12 behind".
func (s Summary) String() string {
	verdict := "held"
	if !s.Held {
		verdict = "NOT held"
	}
	return fmt.Sprintf("rate %d/s %s: sent %d of %d in %v (%.0f/s), acked %d, errors %d, at most %d behind",
		s.Rate, verdict, s.Sent, s.Want, s.Elapsed.Round(time.Millisecond), s.Achieved(), s.Acked, s.Errors, s.MaxBehind)
}

// loadConn is one connection of a load run and its share of the schedule.
type loadConn struct {
	client  mqtt.Client
	rate    float64 // its messages/s
	offset  time.Duration
	topics  []string
	sent    atomic.Int64
	due     atomic.Int64
	pending chan mqtt.Token
}

// maxPending bounds the messages a connection has sent and not yet had
// acknowledged; past it the sender waits, and falls behind. MQTT allows at
// most 65535 in flight.
const maxPending = 20000

// Load sends cfg.Rate telemetry messages a second in all, evenly paced over
// cfg.Conns connections, for cfg.Duration or until ctx ends, and says how it
// went. It returns an error only if it cannot start: an invalid config
// (devices.EInvalid) or a broker that does not answer (devices.EUnavailable).
// Whether the rate was held is in the Summary.
func Load(ctx context.Context, cfg LoadConfig) (Summary, error) {
	if cfg.Devices == 0 {
		cfg.Devices = 1000
	}
	if cfg.Conns == 0 {
		cfg.Conns = 4
	}
	if cfg.ClientPrefix == "" {
		cfg.ClientPrefix = "iotsim-load"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sum := Summary{Rate: cfg.Rate}
	switch {
	case cfg.Rate < 1:
		return sum, devices.Errorf(devices.EInvalid, "rate must be at least 1 message/s, not %d", cfg.Rate)
	case cfg.Conns < 1 || cfg.Conns > cfg.Rate:
		return sum, devices.Errorf(devices.EInvalid, "connections must be between 1 and the rate (%d), not %d", cfg.Rate, cfg.Conns)
	case cfg.Devices < cfg.Conns:
		return sum, devices.Errorf(devices.EInvalid, "devices (%d) must be at least the connections (%d)", cfg.Devices, cfg.Conns)
	case cfg.QoS > 1:
		return sum, devices.Errorf(devices.EInvalid, "qos must be 0 or 1, not %d", cfg.QoS)
	case cfg.Duration < 0:
		return sum, devices.Errorf(devices.EInvalid, "duration must not be negative")
	}
	u, err := brokerURL(cfg.Broker)
	if err != nil {
		return sum, err
	}

	width := len(strconv.Itoa(cfg.Devices))
	conns := make([]*loadConn, cfg.Conns)
	for i := range conns {
		c := &loadConn{
			rate:    float64(cfg.Rate) / float64(cfg.Conns),
			offset:  time.Duration(float64(time.Second) / float64(cfg.Rate) * float64(i)), // interleave the connections
			pending: make(chan mqtt.Token, maxPending),
		}
		for d := i; d < cfg.Devices; d += cfg.Conns {
			c.topics = append(c.topics, fmt.Sprintf("devices/load-%0*d/telemetry", width, d+1))
		}
		c.client = mqtt.NewClient(mqtt.NewClientOptions().
			AddBroker(u.String()).
			SetClientID(fmt.Sprintf("%s-%d", cfg.ClientPrefix, i)).
			SetUsername(cfg.Username).
			SetPassword(cfg.Password).
			SetCleanSession(true).
			SetAutoReconnect(false).
			SetConnectTimeout(10 * time.Second).
			SetWriteTimeout(10 * time.Second).
			SetKeepAlive(30 * time.Second).
			SetOrderMatters(false).
			SetCustomOpenConnectionFn(mqttconn.Batched(time.Millisecond)))
		conns[i] = c
	}
	// Connect all at once.
	errs := make(chan error, len(conns))
	for _, c := range conns {
		go func() {
			t := c.client.Connect()
			if !t.WaitTimeout(15 * time.Second) {
				errs <- orTimeout(nil)
				return
			}
			errs <- t.Error()
		}()
	}
	for range conns {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	defer func() {
		for _, c := range conns {
			c.client.Disconnect(100)
		}
	}()
	if err != nil {
		return sum, devices.Errorf(devices.EUnavailable, "connecting to %s: %v", cfg.Broker, err)
	}

	var acked, failed atomic.Int64
	var ackers sync.WaitGroup
	for _, c := range conns {
		ackers.Add(1)
		go func() {
			defer ackers.Done()
			for t := range c.pending {
				<-t.Done()
				if t.Error() != nil {
					failed.Add(1)
				} else {
					acked.Add(1)
				}
			}
		}()
	}

	start := time.Now()
	end := time.Time{}
	if cfg.Duration > 0 {
		end = start.Add(cfg.Duration)
	}
	var senders sync.WaitGroup
	for _, c := range conns {
		senders.Add(1)
		go func() {
			defer senders.Done()
			c.send(ctx, start, end, cfg.QoS, cfg.Stamp)
		}()
	}

	// Report each second while sending.
	tick := time.NewTicker(time.Second)
	sendersDone := make(chan struct{})
	go func() { senders.Wait(); close(sendersDone) }()
	var lastSent int64
	for running := true; running; {
		select {
		case <-sendersDone:
			running = false
		case now := <-tick.C:
			var sent, due int64
			for _, c := range conns {
				sent += c.sent.Load()
				due += c.due.Load()
			}
			behind := max(0, due-sent)
			sum.MaxBehind = max(sum.MaxBehind, behind)
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "%6.0fs  sent %7d/s  acked %9d  errors %d  behind %d\n",
					now.Sub(start).Seconds(), sent-lastSent, acked.Load(), failed.Load(), behind)
			}
			lastSent = sent
		}
	}
	tick.Stop()
	sum.Elapsed = time.Since(start)
	for _, c := range conns {
		sum.Sent += c.sent.Load()
		if cfg.Duration > 0 {
			sum.Want += c.dueAt(min(sum.Elapsed, cfg.Duration))
		} else {
			sum.Want += c.dueAt(sum.Elapsed)
		}
		close(c.pending)
	}
	// Wait a while for the last acknowledgements.
	drained := make(chan struct{})
	go func() { ackers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
	}
	sum.Acked, sum.Errors = acked.Load(), failed.Load()
	sum.Held = sum.Errors == 0 &&
		float64(sum.Sent) >= 0.99*float64(sum.Want) &&
		float64(sum.Acked) >= 0.99*float64(sum.Want) &&
		sum.MaxBehind <= int64(cfg.Rate)
	cfg.Logger.Info("load done", "summary", sum.String())
	return sum, nil
}

// dueAt is how many messages the connection's schedule calls for in the
// first d of the run: message k is due at offset + k/rate.
func (c *loadConn) dueAt(d time.Duration) int64 {
	if d <= c.offset {
		return 0
	}
	return int64(math.Ceil((d - c.offset).Seconds() * c.rate))
}

// send keeps to the connection's schedule until end (if not zero) or until
// ctx ends: it wakes every millisecond or so and sends whatever has fallen
// due. What it has not sent by the end stays unsent: catching up later would
// hide that the rate was not held.
func (c *loadConn) send(ctx context.Context, start, end time.Time, qos byte, stamp bool) {
	var buf []byte
	var n int64
	// A batch due just before the end may go out just after it.
	over := func(grace time.Duration) bool {
		return ctx.Err() != nil || (!end.IsZero() && !time.Now().Before(end.Add(grace)))
	}
	for {
		elapsed := time.Since(start)
		if !end.IsZero() {
			elapsed = min(elapsed, end.Sub(start))
		}
		due := c.dueAt(elapsed)
		c.due.Store(due)
		for ; n < due; n++ {
			if n%256 == 0 && n > 0 && over(50*time.Millisecond) {
				return
			}
			buf = loadPayload(buf[:0], n, stamp)
			t := c.client.Publish(c.topics[n%int64(len(c.topics))], qos, false, append([]byte(nil), buf...))
			c.sent.Store(n + 1)
			select {
			case c.pending <- t:
			case <-ctx.Done():
				return
			}
		}
		if over(0) {
			return
		}
		next := start.Add(c.offset + time.Duration(float64(n)/c.rate*float64(time.Second)))
		wait := max(time.Until(next), 500*time.Microsecond)
		if !end.IsZero() {
			wait = min(wait, max(0, time.Until(end)))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// loadPayload is a thermostat's reading that changes with n, stamped with
// the time now if stamp.
func loadPayload(b []byte, n int64, stamp bool) []byte {
	b = append(b, '{')
	if stamp {
		b = append(b, `"ts":`...)
		b = strconv.AppendInt(b, time.Now().UnixMilli(), 10)
		b = append(b, ',')
	}
	b = append(b, `"temperature":`...)
	b = strconv.AppendFloat(b, 18+float64(n%100)/10, 'f', 1, 64)
	b = append(b, `,"humidity":`...)
	b = strconv.AppendFloat(b, 35+float64(n%250)/10, 'f', 1, 64)
	return append(b, '}')
}
