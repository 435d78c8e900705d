// Package ingest takes device messages from an MQTT broker and hands every
// valid reading to a durable store before acknowledging it to the broker.
//
// Messages come in one of two ways. From a broker of the user's, it
// subscribes to devices/# with QoS 1 on a persistent session (clean session
// off, a stable client id), or over several such connections that share
// the telemetry subscription as an MQTT shared subscription
// (Config.Connections; conns.go says what that changes, and how Mosquitto
// treats the members). From the embedded broker, the broker hands each
// message to Submit on the publishing device's own connection, and the
// acknowledgement Submit is given is the device's PUBACK: there is no second
// in-flight window to overflow, and "the device got its PUBACK" means "its
// readings are on disk".
//
// Either way it decodes topics and payloads, counts and
// skips what is malformed, and commits readings in small groups: every
// message that arrived while the previous commit was running goes into the
// next one, so a broker's in-flight window of unacknowledged messages is
// refilled within a commit's time rather than a batching interval. Once a
// group is durable, the fleet state learns of its messages, they are
// acknowledged in the order they arrived, then the live push learns of them.
//
// It is not a store and not a pusher: those are handed in as small
// interfaces by the caller.
package ingest

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"iotdash/devices"
	"iotdash/internal/mqttsub"
)

// Appender stores readings durably: when Append returns nil, the readings
// survive a crash. Append is called from one goroutine.
type Appender interface {
	Append(ctx context.Context, rs []devices.Reading) error
}

// Fleet is told of what arrives from each device, and decides what of it
// may be taken.
type Fleet interface {
	// Admit keeps, in place, the readings of device id that the fleet's
	// limits let in, and says what it refused (see devices.Fleet.Admit).
	Admit(id string, rs []devices.Reading) ([]devices.Reading, devices.Admission)
	// SeenAll records the readings of messages stored together, in their
	// order (see devices.Fleet.SeenAll).
	SeenAll(ms []devices.Message)
	SetMeta(id string, m devices.Meta)
	SetPresence(id string, s devices.Status)
}

// Config is what an Ingester needs.
type Config struct {
	// Broker is the broker's URL: tcp://host:1883 or ssl://host:8883.
	// Empty, the ingester connects to no broker and takes its messages
	// from Submit (the embedded broker's way).
	Broker string
	// ClientID is the stable client id of the persistent session (of the
	// first connection, with several).
	ClientID string
	// Connections is how many connections to Broker share the telemetry
	// subscription (default 1, at most MaxConnections): with N, up to N
	// times the broker's in-flight window of messages can share one group
	// commit. More than one needs a broker with MQTT shared subscriptions;
	// see conns.go for what it changes.
	Connections int
	// ReadPause is how long each connection to Broker waits after a read
	// of its socket that did not fill its buffer before it reads again
	// (mqttsub.Options.ReadPause): CPU against latency, see
	// DefaultReadPause. Zero reads each message as it comes; New bounds it
	// to MaxReadPause.
	ReadPause          time.Duration
	Username, Password string
	TLS                *tls.Config

	Store Appender
	Fleet Fleet
	// Publish, if not nil, gets every stored reading for the live push. It
	// must not block.
	Publish func([]devices.Reading)
	// PublishBeforeCommit hands readings to Publish as soon as they are
	// decoded and admitted, from a goroutine of their own that batches
	// what arrives while it publishes, instead of after their group's
	// commit. A browser then sees a reading a few milliseconds before a
	// refresh would (the commit's fsync), and may see one that a refresh
	// never will: a QoS 0 reading lost in a crash before its commit, or one
	// the store refuses. The same reading may be published twice when the
	// broker sends it again after a reconnect.
	PublishBeforeCommit bool
	// Notice, if not nil, is told the warning every page should show when
	// it changes ("" for none): that the broker cannot be reached, or that
	// it reports dropping messages. It must not block.
	Notice  func(string)
	Metrics *Metrics
	Logger  *slog.Logger
	// DeadLetters keeps the messages the store refuses as invalid.
	DeadLetters *DeadLetters
	// MaxGroup caps the messages in one commit (default 1000).
	MaxGroup int
	// A group of fewer than MinGroup messages (default DefaultMinGroup)
	// waits up to Linger (default DefaultLinger) for more before it is
	// committed. Keep MinGroup
	// at or below the broker's in-flight window (Mosquitto's default is 20),
	// or every group waits the whole Linger.
	MinGroup int
	Linger   time.Duration
	// MaxAhead is how far ahead of the server's clock a reading's ts may
	// be (default DefaultMaxAhead); a message beyond it is refused as
	// "future", so that one bad clock cannot freeze a device's latest
	// value for hours.
	MaxAhead time.Duration
	// MaxBehind is how far behind the server's clock a reading's ts may
	// be (default DefaultMaxBehind); a message beyond it is refused as
	// "past", so that a device cannot write into long-closed history
	// (nor make InfluxDB open a shard for every week since 2000).
	MaxBehind time.Duration
}

// DefaultMaxAhead is Config.MaxAhead's default: more than any clock a device
// keeps with NTP is off, far less than a time zone's mistake.
const DefaultMaxAhead = 5 * time.Minute

// DefaultMaxBehind is Config.MaxBehind's default: a device that buffers
// its readings while its network is down may send them up to a week late
// (a long weekend, a holiday) and they are still taken.
const DefaultMaxBehind = 7 * 24 * time.Hour

// message is one MQTT message on its way through the pipeline.
type message struct {
	topic    string
	payload  []byte
	ack      func()      // Submit's; nil for a message from a broker of the user's
	acker    mqttsub.Ack // a broker's message's: queued, then flushed per group
	id       string
	kind     Kind
	readings []devices.Reading
	meta     devices.Meta
	status   devices.Status
}

// Ingester is a running subscription. Create it with New, start it with Run.
type Ingester struct {
	cfg      Config
	conns    []*conn // to Config.Broker; none when fed by Submit
	shared   string  // the shared subscription to telemetry
	in       chan message
	log      *slog.Logger
	logLimit *rate.Limiter
	suppress atomic.Int64
	stopping chan struct{}          // closed when the ingester takes no more messages
	early    chan []devices.Reading // with PublishBeforeCommit, to pushLoop
	dropped  brokerDrops
	notices  notices

	slabMu sync.Mutex
	slab   []devices.Reading // what decoded readings are carved from
}

// slabSize is how many readings one allocation makes room for: decoding a
// message takes its readings from a slab rather than a slice of its own.
const slabSize = 4096

// decode decodes a telemetry payload into readings carved from the slab.
// The slab is never written again once carved, so a message's readings stay
// its own for as long as they are referenced.
func (in *Ingester) decode(id string, payload []byte, now int64) ([]devices.Reading, []*Rejection, *Rejection) {
	in.slabMu.Lock()
	defer in.slabMu.Unlock()
	if cap(in.slab)-len(in.slab) < 64 {
		in.slab = make([]devices.Reading, 0, slabSize)
	}
	free := in.slab[len(in.slab):]
	rs, skipped, rej := DecodeTelemetry(free, id, payload, now)
	if len(rs) > 0 && cap(rs) == cap(free) && &rs[:1][0] == &free[:1][0] {
		in.slab = in.slab[:len(in.slab)+len(rs)]
	}
	return rs[:len(rs):len(rs)], skipped, rej
}

// The commit loop's defaults (Config.MinGroup, Config.Linger): a group of
// fewer than 16 messages waits up to 3 ms for more, since a commit costs
// about the same for 1 message as for 100.
const (
	DefaultMinGroup = 16
	DefaultLinger   = 3 * time.Millisecond
)

// New returns an Ingester for cfg; Run starts it.
func New(cfg Config) *Ingester {
	if cfg.MaxGroup <= 0 {
		cfg.MaxGroup = 1000
	}
	if cfg.MinGroup <= 0 {
		cfg.MinGroup = DefaultMinGroup
	}
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "iotdash-ingest"
	}
	cfg.Connections = min(max(cfg.Connections, 1), MaxConnections)
	cfg.ReadPause = min(max(cfg.ReadPause, 0), MaxReadPause)
	if cfg.MaxAhead <= 0 {
		cfg.MaxAhead = DefaultMaxAhead
	}
	if cfg.MaxBehind <= 0 {
		cfg.MaxBehind = DefaultMaxBehind
	}
	in := &Ingester{
		cfg: cfg,
		// Room for far more than a broker's in-flight window, so that the
		// network goroutine almost never waits for the committer.
		in:       make(chan message, 4096),
		stopping: make(chan struct{}),
		log:      cfg.Logger.With("component", "ingest"),
		logLimit: rate.NewLimiter(rate.Every(time.Second), 5),
	}
	if cfg.PublishBeforeCommit && cfg.Publish != nil {
		in.early = make(chan []devices.Reading, 4096)
	}
	if cfg.Broker == "" {
		return in // fed by Submit
	}
	in.newConns()
	return in
}

// handle runs on each connection's reading goroutine, in order: it decodes
// and queues, and never waits for storage unless the queue is full. The
// client's topic and payload stay valid as long as the message is kept.
func (in *Ingester) handle(msg mqttsub.Message) {
	if msg.Topic == droppedTopic {
		// Kept for the session and sent before the subscription is made
		// again.
		in.reportDrops(msg.Payload)
		return
	}
	if msg.Payload == nil && msg.Size > 0 {
		// Over the client's packet bound: skipped on the wire unread.
		in.cfg.Metrics.Received.Inc()
		in.rejected(msg.Topic, tooLarge(), 1)
		in.queue(message{topic: msg.Topic, acker: msg.Ack}) // acknowledged in turn
		return
	}
	in.submit(message{topic: msg.Topic, payload: msg.Payload, acker: msg.Ack})
}

// Submit takes one message published to topic. It decodes it and queues it
// for the next group commit; ack is called once, from the committing
// goroutine, when the message's readings are durable (or the message was
// rejected as malformed, counted and logged). Messages are committed and
// acknowledged in the order Submit was called.
//
// Submit blocks while the commit queue is full: a broker that calls it on
// the publishing device's connection stops reading from that device
// meanwhile, which is how the pressure of a store that falls behind goes
// back to the devices instead of into a drop. Once the ingester has stopped
// (Run returned or is returning), Submit returns false and ack is never
// called: the message is not acknowledged, and the device sends it again;
// so is one Submit took just as the ingester stopped.
func (in *Ingester) Submit(topic string, payload []byte, ack func()) bool {
	return in.submit(message{topic: topic, payload: payload, ack: ack})
}

// submit is Submit of a message with its topic, payload and
// acknowledgement set.
func (in *Ingester) submit(m message) bool {
	topic, payload := m.topic, m.payload
	in.cfg.Metrics.Received.Inc()
	var rej *Rejection
	m.id, m.kind, rej = ParseTopic(topic)
	if rej == nil {
		switch m.kind {
		case KindTelemetry:
			var skipped []*Rejection
			now := time.Now()
			m.readings, skipped, rej = in.decode(m.id, payload, now.UnixMilli())
			for _, s := range skipped {
				in.rejected(topic, s, 1)
			}
			// One message has one ts: its first reading says it.
			if rej == nil && len(m.readings) > 0 {
				rej = in.checkTime(m.readings[0].Time, now)
			}
			if rej != nil {
				m.readings = nil
			}
		case KindMeta:
			if len(payload) == 0 {
				return in.queue(m) // a cleared retained meta: nothing to record
			}
			var err error
			if m.meta, err = parseMeta(payload); err != nil {
				rej = reject(ReasonMeta, err.Error())
			}
		case KindStatus:
			if len(payload) == 0 {
				return in.queue(m)
			}
			var err error
			if m.status, err = devices.ParseStatus(payload); err != nil {
				rej = reject(ReasonStatus, err.Error())
			}
		}
	}
	if rej == nil {
		rej = in.admit(topic, &m)
	}
	if rej != nil {
		in.rejected(topic, rej, 1)
		m.kind = 0 // acknowledged in turn, nothing else
	}
	if in.early != nil && len(m.readings) > 0 {
		select {
		case in.early <- m.readings:
		case <-in.stopping:
			return false
		}
	}
	return in.queue(m)
}

// pushLoop publishes the readings submit hands it before their commit. A
// reading that finds the loop idle is published at once, alone; those that
// arrive while it publishes go together in the next call, so that the cost
// of a Publish (a visit to every browser) is shared by more readings as the
// rate rises, and no reading waits for a timer.
func (in *Ingester) pushLoop() {
	var batch []devices.Reading
	for {
		select {
		case rs := <-in.early:
			batch = append(batch[:0], rs...)
		case <-in.stopping:
			return
		}
	more:
		for len(batch) < 4096 {
			select {
			case rs := <-in.early:
				batch = append(batch, rs...)
			default:
				break more
			}
		}
		in.cfg.Publish(batch)
	}
}

// checkTime refuses a message whose ts is further from the server's clock
// now than MaxAhead (future) or MaxBehind (past).
func (in *Ingester) checkTime(ts int64, now time.Time) *Rejection {
	switch d := time.UnixMilli(ts).Sub(now); {
	case d > in.cfg.MaxAhead:
		return reject(ReasonFuture, fmt.Sprintf("ts is %v ahead of the server's clock, more than %v", d.Round(time.Second), in.cfg.MaxAhead))
	case -d > in.cfg.MaxBehind:
		return reject(ReasonPast, fmt.Sprintf("ts is %v behind the server's clock, more than %v", (-d).Round(time.Second), in.cfg.MaxBehind))
	}
	return nil
}

// admit asks the fleet whether m's device and its readings' series may be
// taken. It keeps in m the readings admitted and counts those refused; it
// returns the rejection of the whole message if its device is refused.
// Refused readings are not kept anywhere: they are over a limit the
// operator set, and keeping them (in the dead-letter file, say) would let
// a flood fill the disk instead.
func (in *Ingester) admit(topic string, m *message) *Rejection {
	var a devices.Admission
	m.readings, a = in.cfg.Fleet.Admit(m.id, m.readings)
	if a.TooManyDevices {
		m.readings = nil
		return reject(ReasonTooManyDevices, "the fleet has the most devices it may have (-max-devices)")
	}
	if a.TooManyMetrics > 0 {
		in.rejected(topic, reject(ReasonTooManyMetrics, "the device has the most metrics it may have (-max-metrics-per-device); new ones are refused"), a.TooManyMetrics)
	}
	if a.TooManyNewSeries > 0 {
		in.rejected(topic, reject(ReasonNewSeries, "more new series this minute than -max-new-series; new ones are refused"), a.TooManyNewSeries)
	}
	return nil
}

// queue puts m on the commit queue, waiting while it is full, and reports
// false once the ingester is stopping (m is then not acknowledged: the
// device or the broker sends it again). It holds no lock while it waits.
func (in *Ingester) queue(m message) bool {
	select {
	case <-in.stopping:
		return false
	default:
	}
	select {
	case in.in <- m:
		return true
	default:
	}
	in.cfg.Metrics.Throttled.Inc()
	select {
	case <-in.stopping:
		return false
	case in.in <- m:
		return true
	}
}

// rejected counts n rejections of one message for one reason and logs them
// at a limited rate.
func (in *Ingester) rejected(topic string, r *Rejection, n int) {
	in.cfg.Metrics.Rejected.WithLabelValues(r.Reason).Add(float64(n))
	if !in.logLimit.Allow() {
		in.suppress.Add(int64(n))
		return
	}
	in.log.Warn("rejected message", "topic", truncate(topic, 200), "reason", r.Reason, "detail", r.Detail, "count", n, "suppressed_since_last", in.suppress.Swap(0))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Run connects to the broker (if Config.Broker is set) and ingests until ctx
// ends. Then it stops taking messages, commits and acknowledges what it
// has, and disconnects; it returns when all of that is done. A broker that
// cannot be reached is retried meanwhile, and said in the log.
func (in *Ingester) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { in.commitLoop(ctx) })
	if in.early != nil {
		wg.Go(in.pushLoop)
	}

	in.connect(&wg, ctx.Done())
	<-ctx.Done()
	in.disconnect()
	close(in.stopping)
	wg.Wait()
}

// commitLoop commits the queued messages in groups, then tells the fleet,
// acknowledges them in order and tells the push.
//
// Once ctx has ended, a failing store is tried once more per group instead of
// until it succeeds; what is not stored then is not acknowledged either, and
// the broker delivers it again on the next session.
func (in *Ingester) commitLoop(ctx context.Context) {
	group := make([]message, 0, in.cfg.MaxGroup)
	var rs []devices.Reading
	var seen []devices.Message
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		var first message
		select {
		case first = <-in.in:
		case <-in.stopping:
			// Commit what is queued, then end. A message queued after
			// this is never acknowledged, and is sent again.
			select {
			case first = <-in.in:
			default:
				return
			}
		}
		group = append(group[:0], first)
		lingering := false
	fill:
		for len(group) < in.cfg.MaxGroup {
			select {
			case m := <-in.in:
				group = append(group, m)
				continue
			default:
			}
			// Nothing more is waiting. A small group waits a moment for
			// company, since a commit costs about the same for 1 message as
			// for 100; a group of MinGroup or more, which is what a broker's
			// full in-flight window gives, goes at once.
			if len(group) >= in.cfg.MinGroup || in.cfg.Linger <= 0 {
				break
			}
			if !lingering {
				lingering = true
				linger.Reset(in.cfg.Linger)
			}
			select {
			case m := <-in.in:
				group = append(group, m)
			case <-linger.C:
				lingering = false
				break fill
			case <-in.stopping:
				break fill
			}
		}
		if lingering {
			linger.Stop() // since Go 1.23 no stale tick can follow
		}
		rs = rs[:0]
		for _, m := range group {
			rs = append(rs, m.readings...)
		}
		if len(rs) > 0 {
			switch err := in.store(ctx, rs); {
			case err == nil:
			case devices.ErrorKind(err) == devices.EInvalid:
				if !in.storeEach(ctx, group) {
					continue
				}
				rs = rs[:0]
				for _, m := range group {
					rs = append(rs, m.readings...)
				}
			default:
				continue
			}
		}
		// The fleet learns of the group in its order before any of it is
		// acknowledged, so that a device whose message is acknowledged finds
		// the fleet knowing it and every message before it: telemetry in one
		// call a run of it, meta and status in between.
		seen = seen[:0]
		for _, m := range group {
			switch m.kind {
			case KindTelemetry:
				// Readings mean online: a message whose every metric was
				// rejected says nothing of the device.
				if len(m.readings) > 0 {
					seen = append(seen, devices.Message{Device: m.id, Readings: m.readings})
				}
			case KindMeta:
				if mt := m.meta; mt.Name != "" || mt.Kind != "" || mt.Location != "" || mt.Units != nil || mt.Limits != nil || mt.Decimals != nil || mt.Labels != nil || mt.Interval != 0 {
					in.cfg.Fleet.SeenAll(seen)
					seen = seen[:0]
					in.cfg.Fleet.SetMeta(m.id, m.meta)
				}
			case KindStatus:
				if m.status != "" {
					in.cfg.Fleet.SeenAll(seen)
					seen = seen[:0]
					in.cfg.Fleet.SetPresence(m.id, m.status)
				}
			}
		}
		in.cfg.Fleet.SeenAll(seen)
		for _, m := range group {
			if m.ack != nil {
				m.ack()
			} else {
				m.acker.Queue() // sent by the flush below
			}
		}
		in.flush() // the group's acknowledgements to a broker of the user's, one write a connection
		if len(rs) > 0 && in.cfg.Publish != nil && in.early == nil {
			in.cfg.Publish(rs)
		}
	}
}

// store appends rs until it succeeds, the store refuses the readings as
// invalid (an error of kind EInvalid), or ctx has ended and it failed once
// more: a message is acknowledged only once its readings are durable, so a
// store that fails holds the pipeline (and the broker keeps the messages)
// rather than losing them.
func (in *Ingester) store(ctx context.Context, rs []devices.Reading) error {
	backoff := 50 * time.Millisecond
	for {
		start := time.Now()
		err := in.cfg.Store.Append(context.Background(), rs)
		in.cfg.Metrics.WriteSeconds.Observe(time.Since(start).Seconds())
		if err == nil {
			in.cfg.Metrics.Stored.Add(float64(len(rs)))
			in.cfg.Metrics.Groups.Inc()
			return nil
		}
		in.cfg.Metrics.WriteErrors.Inc()
		if devices.ErrorKind(err) == devices.EInvalid {
			return err
		}
		if in.logLimit.Allow() {
			in.log.Error("store write failed; retrying", "readings", len(rs), "retry_in", backoff, "error", err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// storeEach stores a group the store refused as invalid one message at a
// time, so that one bad message costs nothing else: the messages it refuses
// again go to the dead-letter file (their readings are cleared, so nothing
// downstream sees them) and are acknowledged; the rest are stored. It
// returns false if the group must not be acknowledged (the store failed
// otherwise, or a dead letter could not be kept).
func (in *Ingester) storeEach(ctx context.Context, group []message) bool {
	for i := range group {
		m := &group[i]
		if len(m.readings) == 0 {
			continue
		}
		err := in.store(ctx, m.readings)
		if err == nil {
			continue
		}
		if devices.ErrorKind(err) != devices.EInvalid {
			return false
		}
		// Decoding validated every reading, so the store and the decoder
		// disagree: keep the message where an operator can find it.
		if derr := in.cfg.DeadLetters.Keep(m.topic, m.payload, err); derr != nil {
			in.log.Error("store refused a message as invalid and it could not be kept as a dead letter; it stays unacknowledged", "topic", truncate(m.topic, 200), "error", derr)
			return false
		}
		in.cfg.Metrics.DeadLetters.Inc()
		in.log.Error("store refused a message as invalid; kept in the dead-letter file", "topic", truncate(m.topic, 200), "file", in.cfg.DeadLetters.Path(), "error", err)
		m.readings = nil
	}
	return true
}
