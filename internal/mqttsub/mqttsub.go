// Package mqttsub is iotdash's MQTT 3.1.1 subscriber: one connection to a
// broker (tcp:// or ssl://) on a persistent session, kept up forever, that
// hands every PUBLISH to one handler in the order it arrived and sends the
// acknowledgements its user queues, in batches, when told.
//
// It does what the ingester needs on its hot path and no more: reading
// QoS 0 and 1 messages (QoS 2 too, at least once: see Ack), SUBSCRIBE and
// UNSUBSCRIBE, keepalive, reconnection. It does not publish, has no Last
// Will, keeps no state across processes (the broker's session does), and
// does not speak MQTT 5. Devices and the simulator keep using the paho
// client.
//
// Why not paho: at 20,000 messages a second paho's packet object per
// message, its acknowledgement through a sync.Once and a goroutine, and the
// wake-ups between its goroutines cost more CPU than everything iotdash does
// with a message (README, "Ingest, end to end"). Here one goroutine reads
// packets in place from a bufio.Reader, copies what it hands on into a
// shared slab, calls the handler, and the acknowledgements of a group
// commit leave in one write from the goroutine that committed them.
package mqttsub

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"iotdash/internal/mqttconn"
)

// DefaultMaxPacket is Options.MaxPacket's default: sixteen times ingest's
// largest payload, far past any device message.
const DefaultMaxPacket = 1 << 20

// Options configure a Client.
type Options struct {
	// Broker is tcp://host:port, or ssl://host:port (tls:// and mqtts://
	// too) for TLS with TLS.
	Broker             string
	TLS                *tls.Config
	ClientID           string
	Username, Password string
	// CleanSession asks the broker to start a session afresh; false keeps
	// the session (its subscriptions and queued messages) across
	// connections.
	CleanSession bool
	// KeepAlive (default 15 s) is how often a PINGREQ goes out; a
	// connection on which nothing arrives for a whole KeepAlive after one
	// is closed as dead.
	KeepAlive time.Duration
	// ConnectTimeout bounds the dial, the TLS handshake and the wait for
	// CONNACK (default 10 s).
	ConnectTimeout time.Duration
	// A failed connection is tried again after RetryInterval (default
	// 1 s), doubling up to MaxRetryInterval (default 2 s); a lost one at
	// once if it had lasted MaxRetryInterval, else likewise.
	RetryInterval, MaxRetryInterval time.Duration
	// MaxPacket (default DefaultMaxPacket) is the largest packet read into
	// memory. A PUBLISH over it is skipped on the wire: the handler gets
	// its topic, Size and Ack, and no payload. Any other packet over it
	// closes the connection.
	MaxPacket int

	// Handler is called with every message, one at a time, in the order
	// the broker sent them (messages the session kept included, which may
	// come before OnConnect's SUBSCRIBE is answered), on the goroutine
	// that reads the connection: while it runs nothing else is read.
	Handler func(Message)
	// OnConnect, if not nil, is called once each connection is accepted,
	// before anything else is done with it; it may Subscribe. An error
	// closes the connection, which is then tried again (and reported to
	// OnConnectionLost).
	OnConnect func(*Client) error
	// OnConnectionLost, if not nil, is told why a connection ended, unless
	// Disconnect ended it. Connected is false by then.
	OnConnectionLost func(error)
	// ReadPause, if above zero, is how long the reading goroutine waits
	// after a read of the socket that brought data without filling half
	// its buffer, before it reads again: a steady stream of small
	// messages is then read a few dozen at a time, in one system call and
	// one wake-up, instead of one each. It adds at most ReadPause to a
	// message that arrives just after a read; a message that finds the
	// connection idle is read at once.
	ReadPause time.Duration
	// Logger takes the failures to connect, at a limited rate.
	Logger *slog.Logger
}

// Message is one PUBLISH received.
type Message struct {
	// Topic and Payload are the client's copy, never written again: they
	// may be kept as long as wanted, and must not be modified.
	Topic   string
	Payload []byte
	// Size is the payload's length; with Payload nil and Size > 0 the
	// packet was over Options.MaxPacket and its payload was skipped.
	Size   int
	QoS    byte
	Retain bool
	Dup    bool
	// Ack acknowledges the message to the broker (nothing at QoS 0).
	Ack Ack
}

// Ack is a received message's acknowledgement. The broker resends a
// QoS 1 message whose acknowledgement it has not had when the session
// next connects.
//
// A QoS 2 message (which the broker sends only to a subscription of QoS 2)
// is received at least once, like QoS 1: its PUBREC is its
// acknowledgement, and a PUBREL is answered with PUBCOMP at once.
type Ack struct {
	s    *session
	id   uint16
	kind byte // typePuback or typePubrec
}

// Queue queues the acknowledgement; it leaves with the client's next
// Flush. MQTT wants them in the order the messages came. An
// acknowledgement of a message that came on a connection since lost is
// dropped: the broker sends the message again on the next connection
// (whose packet ids may name other messages).
// Queue does not allocate.
func (a Ack) Queue() {
	if a.s == nil {
		return
	}
	s := a.s
	s.mu.Lock()
	if !s.closed {
		s.out = append(s.out, a.kind, 2, byte(a.id>>8), byte(a.id))
	}
	s.mu.Unlock()
}

// Subscription is a topic filter and the largest QoS wanted for it.
type Subscription struct {
	Topic string
	QoS   byte
}

// ErrNotConnected is returned by what needs a connection when there is
// none, or it was lost while waiting for the broker's answer.
var ErrNotConnected = errors.New("not connected to the broker")

// Client is a connection to a broker, kept up by reconnecting until
// Disconnect. Create it with New.
type Client struct {
	o      Options
	u      *url.URL
	log    *slog.Logger
	ctx    context.Context // ended by Disconnect
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	started atomic.Bool
	mu      sync.Mutex
	s       *session // the connection up, nil if none
	up      atomic.Bool

	// Used by the reading goroutine only (one at a time).
	slab   []byte
	topics map[string]string
}

// New checks o and returns a client; Start connects it.
func New(o Options) (*Client, error) {
	u, err := url.Parse(o.Broker)
	if err != nil {
		return nil, fmt.Errorf("broker URL %q: %w", o.Broker, err)
	}
	if u.Scheme != "tcp" && u.Scheme != "mqtt" && !mqttconn.Secure(u.Scheme) {
		return nil, fmt.Errorf("broker URL %q: the scheme must be tcp, mqtt, ssl, tls or mqtts", o.Broker)
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("broker URL %q has no port", o.Broker)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.KeepAlive, 15*time.Second)
	def(&o.ConnectTimeout, 10*time.Second)
	def(&o.RetryInterval, time.Second)
	def(&o.MaxRetryInterval, 2*time.Second)
	o.MaxRetryInterval = max(o.MaxRetryInterval, o.RetryInterval)
	if o.KeepAlive > 65535*time.Second {
		o.KeepAlive = 65535 * time.Second
	}
	if o.MaxPacket <= 0 {
		o.MaxPacket = DefaultMaxPacket
	}
	if o.Handler == nil {
		o.Handler = func(Message) {}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	c := &Client{o: o, u: u, log: o.Logger, done: make(chan struct{}), topics: map[string]string{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Start connects in the background, and reconnects whenever the connection
// is lost, until Disconnect.
func (c *Client) Start() {
	c.started.Store(true)
	go c.run()
}

// Connected reports whether a connection is up (OnConnect may still be
// running on it).
func (c *Client) Connected() bool { return c.up.Load() }

// current is the connection up, or nil.
func (c *Client) current() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s
}

// Flush sends the acknowledgements queued on the connection up, in one
// write. A write that fails closes the connection (and is its error).
func (c *Client) Flush() error {
	if s := c.current(); s != nil {
		return s.flush()
	}
	return nil
}

// Subscribe subscribes the session to subs and returns the broker's return
// code for each, in order (the QoS granted, or 0x80 for a refusal). It
// fails with ErrNotConnected, or when no SUBACK came within timeout.
func (c *Client) Subscribe(timeout time.Duration, subs ...Subscription) ([]byte, error) {
	codes, err := c.request(timeout, typeSuback, func(b []byte) []byte {
		for _, sub := range subs {
			b = append(appendString(b, sub.Topic), sub.QoS)
		}
		return b
	}, typeSubscribe)
	if err == nil && len(codes) != len(subs) {
		err = fmt.Errorf("%w: SUBACK with %d return codes for %d topics", ErrMalformed, len(codes), len(subs))
	}
	return codes, err
}

// Unsubscribe unsubscribes the session from topics (one it does not have
// is no error). It fails with ErrNotConnected, or when no UNSUBACK came
// within timeout.
func (c *Client) Unsubscribe(timeout time.Duration, topics ...string) error {
	_, err := c.request(timeout, typeUnsuback, func(b []byte) []byte {
		for _, t := range topics {
			b = appendString(b, t)
		}
		return b
	}, typeUnsubscribe)
	return err
}

// request sends a packet of fixed header h with a new packet id and the
// body body appends after it, and waits for the answer of type want.
func (c *Client) request(timeout time.Duration, want byte, body func([]byte) []byte, h byte) ([]byte, error) {
	s := c.current()
	if s == nil {
		return nil, ErrNotConnected
	}
	ch := make(chan []byte, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrNotConnected
	}
	s.lastID++
	for s.lastID == 0 || s.pending[s.lastID].ch != nil {
		s.lastID++
	}
	id := s.lastID
	s.pending[id] = pending{want, ch}
	b := body(binary.BigEndian.AppendUint16(nil, id))
	err := s.writeLocked(append(appendLength([]byte{h}, len(b)), b...))
	s.mu.Unlock()
	if err != nil {
		s.fail(err)
		return nil, ErrNotConnected
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r, nil
	case <-s.done:
		return nil, ErrNotConnected
	case <-t.C:
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
		return nil, fmt.Errorf("no answer from the broker within %v", timeout)
	}
}

// Disconnect stops reading (letting a running handler return), sends the
// acknowledgements queued then and DISCONNECT, and closes the connection,
// waiting at most wait for the network; it stops reconnecting. It returns
// once no handler runs, nor will (a handler that never returns holds it).
// Once disconnected a client stays so: calling Disconnect again does
// nothing.
func (c *Client) Disconnect(wait time.Duration) {
	if !c.started.Load() {
		c.cancel()
		return
	}
	c.mu.Lock()
	c.cancel() // under mu: run either sees it or has set c.s
	s := c.s
	c.mu.Unlock()
	if s != nil {
		s.closing.Store(true)
		s.conn.SetReadDeadline(time.Now())
		t := time.NewTimer(wait)
		select {
		case <-s.done:
		case <-t.C:
		}
		t.Stop()
		s.goodbye(wait)
	}
	<-c.done
}

// run connects, and connects again when the connection is lost, until
// Disconnect.
func (c *Client) run() {
	defer close(c.done)
	backoff := c.o.RetryInterval
	// A broker that cannot be reached is said once, then every 30 s, until
	// a connection succeeds.
	newLimit := func() *rate.Limiter { return rate.NewLimiter(rate.Every(30*time.Second), 1) }
	limit := newLimit()
	for {
		s, err := c.connect()
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			if limit.Allow() {
				c.log.Error("connecting to the MQTT broker", "broker", c.o.Broker, "client_id", c.o.ClientID, "retry_in", backoff, "error", err)
			}
			if !c.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, c.o.MaxRetryInterval)
			continue
		}
		c.mu.Lock()
		if c.ctx.Err() != nil {
			c.mu.Unlock()
			s.closing.Store(true)
			s.goodbye(time.Second)
			return
		}
		c.s = s
		c.up.Store(true)
		c.mu.Unlock()
		limit = newLimit()
		started := time.Now()
		go s.read()
		go s.keepAlive(c.o.KeepAlive)
		if c.o.OnConnect != nil {
			if err := c.o.OnConnect(c); err != nil {
				s.fail(err)
			}
		}
		<-s.done
		c.mu.Lock()
		c.s = nil
		c.up.Store(false)
		c.mu.Unlock()
		if s.closing.Load() {
			return
		}
		s.conn.Close()
		if c.o.OnConnectionLost != nil {
			c.o.OnConnectionLost(s.error())
		}
		if time.Since(started) >= c.o.MaxRetryInterval {
			backoff = c.o.RetryInterval
			continue
		}
		if !c.sleep(backoff) {
			return
		}
		backoff = min(2*backoff, c.o.MaxRetryInterval)
	}
}

// sleep waits d, or less if Disconnect is called (then it returns false).
func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// connect dials, sends CONNECT and waits for CONNACK, within
// ConnectTimeout.
func (c *Client) connect() (*session, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.o.ConnectTimeout)
	defer cancel()
	conn, err := mqttconn.Open(ctx, c.u, c.o.ConnectTimeout, c.o.TLS)
	if err != nil {
		return nil, err
	}
	// Disconnect or the timeout end the wait for CONNACK too.
	conn.SetDeadline(time.Now().Add(c.o.ConnectTimeout))
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	s := newSession(c, conn)
	if _, err := conn.Write(connectPacket(&c.o)); err != nil {
		conn.Close()
		return nil, err
	}
	h, body, _, err := s.pr.next()
	if err == nil && (h != typeConnack || len(body) != 2) {
		err = malformed("the broker answered CONNECT with packet %#x of %d bytes, not CONNACK", h, len(body))
	}
	if err == nil {
		err = connackError(body[1])
	}
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return s, nil
}

// slabSize is how many bytes of topics and payloads one allocation makes
// room for.
const slabSize = 64 << 10

// keep copies p into the slab, which is never written again once carved:
// what is handed out stays valid for as long as it is referenced.
func (c *Client) keep(p []byte) []byte {
	if len(p) == 0 {
		return nil
	}
	if len(p) > slabSize/8 {
		return append([]byte(nil), p...)
	}
	if cap(c.slab)-len(c.slab) < len(p) {
		c.slab = make([]byte, 0, slabSize)
	}
	n := len(c.slab)
	c.slab = append(c.slab, p...)
	return c.slab[n : n+len(p) : n+len(p)]
}

// maxTopics bounds the table of topics: past it, it starts again.
const maxTopics = 1 << 14

// topic is t as a string, the same string for the same topic: a device's
// topics are few and come again and again, and a string allocated once
// for them does not hold a slab alive (a device id cut from it is kept by
// whoever keeps the device).
func (c *Client) topic(t []byte) string {
	if s, ok := c.topics[string(t)]; ok {
		return s
	}
	if len(c.topics) >= maxTopics {
		clear(c.topics)
	}
	s := string(t)
	c.topics[s] = s
	return s
}

// errClosing ends the session of a Disconnect.
var errClosing = errors.New("disconnecting")

// session is one network connection, from CONNACK to its end.
type session struct {
	c    *Client
	conn net.Conn
	pr   packetReader
	done chan struct{} // closed when the reading goroutine has returned

	closing atomic.Bool   // Disconnect ends it
	seen    atomic.Uint64 // packets read: keepalive's sign of life

	mu      sync.Mutex // guards what follows, and writes to conn
	out     []byte     // queued acknowledgements
	closed  bool
	err     error
	lastID  uint16
	pending map[uint16]pending
}

// pending is a SUBSCRIBE or UNSUBSCRIBE waiting for its answer.
type pending struct {
	want byte
	ch   chan []byte
}

func newSession(c *Client, conn net.Conn) *session {
	r := bufio.NewReaderSize(socketReader{conn, mqttconn.QuickAck(conn), c.o.ReadPause}, bufSize)
	return &session{
		c: c, conn: conn, done: make(chan struct{}), pending: map[uint16]pending{},
		pr: packetReader{r: r, max: c.o.MaxPacket},
	}
}

// socketReader is what the bufio.Reader above it reads the socket with
// (only when it is empty).
//
// It asks for TCP_QUICKACK after each read, where ack is not nil: a
// broker that leaves Nagle's algorithm on otherwise holds each small
// packet until the previous one's delayed ACK, milliseconds at low rates
// (README, "Live push"). It costs about 3 µs a message at 20,000 msg/s;
// skipping it while PUBACKs are due (they carry the ACK) held the broker's
// messages until the next commit instead (README, "The subscriber").
//
// After a read that brought something but did not fill half the buffer,
// it waits pause (Options.ReadPause) before the next one.
type socketReader struct {
	net.Conn
	ack   func()
	pause time.Duration
}

func (r socketReader) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if r.ack != nil {
		r.ack()
	}
	if r.pause > 0 && err == nil && n > 0 && n < len(p)/2 {
		time.Sleep(r.pause)
	}
	return n, err
}

// fail ends the session with err, unless it has ended already: the
// connection is closed, which ends the reading goroutine.
func (s *session) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failLocked(err)
}

func (s *session) failLocked(err error) {
	if s.closed {
		return
	}
	s.closed, s.err, s.out = true, err, nil
	s.conn.Close()
}

func (s *session) error() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// writeTimeout bounds a write: a peer that takes nothing for that long is
// gone.
const writeTimeout = 10 * time.Second

// writeLocked writes p, under s.mu.
func (s *session) writeLocked(p []byte) error {
	if s.closed {
		return ErrNotConnected
	}
	s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := s.conn.Write(p)
	return err
}

// write writes p, and ends the session if that fails.
func (s *session) write(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.writeLocked(p)
	if err != nil {
		s.failLocked(err)
	}
	return err
}

// flush writes the queued acknowledgements.
func (s *session) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.out) == 0 || s.closed {
		return nil
	}
	err := s.writeLocked(s.out)
	s.out = s.out[:0]
	if err != nil {
		s.failLocked(err)
	}
	return err
}

// goodbye sends what is queued and DISCONNECT, within wait, and closes.
func (s *session) goodbye(wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.conn.SetWriteDeadline(time.Now().Add(wait))
		s.conn.Write(append(s.out, typeDisconnect, 0))
	}
	s.failLocked(errClosing)
}

// keepAlive sends PINGREQ every k, and ends the session when nothing at
// all arrived in the k after one.
func (s *session) keepAlive(k time.Duration) {
	t := time.NewTicker(k)
	defer t.Stop()
	pinged, seen := false, uint64(0)
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		if pinged && s.seen.Load() == seen {
			s.fail(fmt.Errorf("the broker did not answer a PINGREQ within %v: the connection is dead", k))
			return
		}
		pinged, seen = true, s.seen.Load()
		if s.write([]byte{typePingreq, 0}) != nil {
			return
		}
	}
}

// read reads packets until the connection ends, handing each PUBLISH to
// the handler.
func (s *session) read() {
	defer close(s.done)
	for {
		err := s.readOne()
		switch {
		case err == nil:
			continue
		case s.closing.Load():
			// Disconnect stopped the reading; it sends what is queued
			// and closes.
		case errors.Is(err, io.EOF):
			s.fail(errors.New("the broker closed the connection"))
		default:
			s.fail(err)
		}
		return
	}
}

// readOne reads one packet and does what it says.
func (s *session) readOne() error {
	h, body, size, err := s.pr.next()
	if err != nil {
		return err
	}
	s.seen.Add(1)
	if h&0xf0 == typePublish {
		return s.deliver(h, body, size)
	}
	if body == nil && size > 0 {
		return malformed("packet %#x of %d bytes, over the bound of %d", h, size, s.pr.max)
	}
	switch h {
	case typeSuback, typeUnsuback:
		if len(body) < 2 || (h == typeUnsuback) != (len(body) == 2) {
			return malformed("packet %#x of %d bytes", h, len(body))
		}
		id := binary.BigEndian.Uint16(body)
		s.mu.Lock()
		p, ok := s.pending[id]
		if ok && p.want == h {
			delete(s.pending, id)
		}
		s.mu.Unlock()
		if ok && p.want == h {
			p.ch <- append([]byte(nil), body[2:]...)
		}
		return nil
	case typePingresp:
		return nil
	case typePubrel:
		if len(body) != 2 {
			return malformed("PUBREL of %d bytes", len(body))
		}
		return s.write([]byte{typePubcomp, 2, body[0], body[1]})
	}
	return malformed("packet %#x (a subscriber is never sent one)", h)
}

// deliver hands a PUBLISH to the handler.
func (s *session) deliver(h byte, body []byte, size int) error {
	c := s.c
	if body == nil {
		return s.deliverLarge(h, size)
	}
	p, err := parsePublish(h, body)
	if err != nil {
		return err
	}
	m := Message{Topic: c.topic(p.topic), Payload: c.keep(p.payload), Size: len(p.payload), QoS: p.qos, Retain: p.retain, Dup: p.dup}
	if p.qos > 0 {
		m.Ack = Ack{s: s, id: p.id, kind: ackKind(p.qos)}
	}
	c.o.Handler(m)
	return nil
}

func ackKind(qos byte) byte {
	if qos == 2 {
		return typePubrec
	}
	return typePuback
}

// deliverLarge hands the handler a PUBLISH of size bytes, over MaxPacket,
// without its payload, which it skips.
func (s *session) deliverLarge(h byte, size int) error {
	qos := h >> 1 & 3
	if qos == 3 {
		return malformed("PUBLISH with QoS 3")
	}
	head := min(size, 2+65535+2)
	b, err := s.pr.r.Peek(head)
	if err != nil {
		return unexpectedEOF(err)
	}
	topic, rest, err := publishHeader(qos, b)
	if err != nil {
		return err
	}
	m := Message{Topic: s.c.topic(topic), QoS: qos, Retain: h&1 != 0, Dup: h&8 != 0}
	n := len(b) - len(rest)
	if qos > 0 {
		m.Ack = Ack{s: s, id: binary.BigEndian.Uint16(rest), kind: ackKind(qos)}
		n += 2
	}
	m.Size = size - n
	s.pr.skip = size
	s.c.o.Handler(m)
	return nil
}
