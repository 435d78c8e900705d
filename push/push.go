// Package push streams live readings and presence changes to browsers over
// WebSockets (GET /ws).
//
// A Hub keeps one bounded queue per connected client. Publish and
// PublishStatus put work on those queues and return at once: they never wait
// on a client's connection, so a slow or stalled browser never slows ingest or
// the other browsers. Each client's own goroutine sends what is queued as
// soon as there is something: an idle connection gets a reading at once,
// and what arrives while a frame is being written joins the next one, so a
// busy connection coalesces by itself and no reading waits for a timer. A
// conflated subscription (the overview's) takes only the latest reading
// of each device and metric, at most Latest frames a second, the newest
// value always last; it reads them from one table of the newest reading of
// every series that the hub keeps for all such clients, so that a reading
// costs one table update however many overviews are open, and nothing of
// a conflated subscription is ever dropped. When a client's queue overflows,
// the readings that do not fit are dropped and the client is told with a gap
// frame naming the span it missed, so it can refetch that span from history.
// A client that cannot take a frame for several write timeouts in a row is
// closed.
//
// An idle connection costs one goroutine (its reader, which coder/websocket
// needs to answer pings and closes) and two timers: the writer is started
// when there is something to send and ends when it is sent, its buffer
// comes from a pool, and the ping is a goroutine for the moment of a ping.
// The HTTP handler returns once the connection is upgraded.
//
// It is not a history: a client that connects late or misses a span gets
// that span from the history API, not from here.
//
// The protocol, as JSON text frames:
//
//	client → server  {"subscribe":{"devices":["*"]}}         all devices, every reading
//	                 {"subscribe":{"devices":["dev-1","dev-2"]}}
//	                 {"subscribe":{"devices":["*"],"latest":4}} the latest of each device and metric, at most 4 frames a second
//	server → client  {"subscribed":{"devices":["*"]}}        the subscription is in force
//	                 {"readings":[{"d":"dev-1","m":"temperature","t":1764000000123,"v":21.5}]}
//	                 {"status":[{"d":"dev-1","s":"offline"}]}
//	                 {"gap":{"from":T1,"to":T2,"dropped":N}}   readings with times T1..T2 were dropped
//	                 {"notice":"…"}                           a warning for every page's banner ("" clears it)
//	                 {"alerts":{"firing":N,"devices":{"dev-1":{"severity":"critical","names":["…"]}}}}
//	                                                          what is firing, for titles, cards and the alerts page
//
// Nothing is sent before the client's first subscribe; the client may
// subscribe again at any time to change what it receives. A message that is
// not a valid subscribe, or is larger than 64 KiB, closes that connection.
//
// Limits: the hub takes at most Options.MaxClients connections, and at
// most Options.MaxPerAddr from one address; past them an upgrade is
// refused before it starts, with 503 and 429. A client that has not
// subscribed within Options.SubscribeWithin is closed (1008), and one that
// does not answer a ping within Options.PingTimeout is dropped.
package push

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"iotdash/devices"
	"iotdash/internal/limit"
)

// Defaults for Options left zero.
const (
	DefaultQueueSize    = 4096
	DefaultWriteTimeout = 5 * time.Second
	DefaultMaxClients   = 10_000
	// DefaultMaxPerAddr leaves room for an office or a control room behind
	// one NAT address, each person with a few tabs.
	DefaultMaxPerAddr      = 100
	DefaultSubscribeWithin = 10 * time.Second
	DefaultPingEvery       = 30 * time.Second
	DefaultPingTimeout     = 10 * time.Second
)

// maxMessage bounds what a client may send in one message. A subscribe to a
// thousand 64-character ids fits.
const maxMessage = 64 << 10

// slowStrikes is how many write timeouts in a row a client may take before
// it is closed as too slow.
const slowStrikes = 3

// Options configure a Hub. Zero values take the defaults.
type Options struct {
	// QueueSize is how many readings are buffered per client; default 4096.
	QueueSize int
	// OriginPatterns are extra origins allowed to connect, matched as
	// coder/websocket's AcceptOptions.OriginPatterns (host patterns such as
	// "dash.example.com" or "*.example.com"). The request's own host is
	// always allowed.
	OriginPatterns []string
	// WriteTimeout is how long one frame may take to write; default 5s. A
	// client that stays unable to write for 3 of these in a row is closed.
	WriteTimeout time.Duration
	// Logger receives connection errors; default slog.Default().
	Logger *slog.Logger

	// MaxClients is the most connections served at once (default 10,000);
	// past it an upgrade gets 503.
	MaxClients int
	// MaxPerAddr is the most connections from one address (default 100);
	// past it an upgrade gets 429.
	MaxPerAddr int
	// Addr gives the address a request's connection counts against
	// (default: the host of r.RemoteAddr). Behind a trusted proxy, give
	// the address the proxy names.
	Addr func(r *http.Request) string
	// SubscribeWithin is how long a client may stay connected without a
	// subscribe (default 10s).
	SubscribeWithin time.Duration
	// PingEvery is the time between two pings of a client (default 30s);
	// one not answered within PingTimeout (default 10s) drops the client.
	PingEvery, PingTimeout time.Duration
	// Registerer, if not nil, gets the hub's metrics (iotdash_websocket_*).
	Registerer prometheus.Registerer
}

// Why a connection is refused or closed: the values of Stats.Refused and
// Stats.Closed's keys, and of the reason label of their metrics.
const (
	RefusedTooMany     = "too_many"          // MaxClients reached: 503
	RefusedTooManyAddr = "too_many_per_addr" // MaxPerAddr reached: 429
	ClosedNoSubscribe  = "no_subscribe"      // no subscribe within SubscribeWithin
	ClosedNoPong       = "no_pong"           // a ping not answered within PingTimeout
)

// Stats are the hub's counters since it started.
type Stats struct {
	Clients         int    // clients connected now
	Frames          uint64 // frames sent to clients
	DroppedReadings uint64 // readings dropped because a client's queue was full
	Gaps            uint64 // gap frames sent
	SlowClosed      uint64 // clients closed for being too slow
	// Refused counts upgrades refused, by reason (RefusedTooMany,
	// RefusedTooManyAddr).
	Refused map[string]uint64
	// Closed counts clients closed by the hub's limits, by reason
	// (ClosedNoSubscribe, ClosedNoPong).
	Closed map[string]uint64
}

// Hub fans readings and presence changes out to WebSocket clients. It is safe
// for concurrent use.
type Hub struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	set     map[*client]struct{}
	closed  bool
	clients atomic.Pointer[[]*client] // copy of set, read by setShared and Stats without a lock
	table   *latestTable              // what conflated subscriptions read
	routes  routes                    // which clients a reading goes to
	wg      sync.WaitGroup            // one per connection being served

	notice atomic.Pointer[string] // the warning every page shows; "" for none
	shared [nShared]atomic.Pointer[[]byte]

	frames     atomic.Uint64
	dropped    atomic.Uint64
	gaps       atomic.Uint64
	slowClosed atomic.Uint64

	refusedTotal, refusedAddr atomic.Uint64
	noSubscribe, noPong       atomic.Uint64
	conns                     *limit.Concurrent // connections admitted, being upgraded or served
	logLimit                  *rate.Limiter
	suppressed                atomic.Uint64 // refusals not logged since the last logged one
}

// NewHub returns a hub with no clients.
func NewHub(opts Options) *Hub {
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = DefaultMaxClients
	}
	if opts.MaxPerAddr <= 0 {
		opts.MaxPerAddr = DefaultMaxPerAddr
	}
	if opts.Addr == nil {
		opts.Addr = limit.Addr
	}
	if opts.SubscribeWithin <= 0 {
		opts.SubscribeWithin = DefaultSubscribeWithin
	}
	if opts.PingEvery <= 0 {
		opts.PingEvery = DefaultPingEvery
	}
	if opts.PingTimeout <= 0 {
		opts.PingTimeout = DefaultPingTimeout
	}
	h := &Hub{opts: opts, log: opts.Logger.With("component", "push"), set: map[*client]struct{}{}, table: newLatestTable(),
		conns:    &limit.Concurrent{Max: opts.MaxClients, MaxPerClient: opts.MaxPerAddr},
		logLimit: rate.NewLimiter(rate.Every(time.Second), 5)}
	h.clients.Store(&[]*client{})
	if opts.Registerer != nil {
		registerMetrics(opts.Registerer, h)
	}
	return h
}

// Publish queues readings for every client subscribed to their devices. It
// never blocks on a client: what does not fit in a client's queue is dropped
// and reported to that client as a gap. It copies what it keeps; rs may be
// reused when it returns.
func (h *Hub) Publish(rs []devices.Reading) {
	if len(rs) == 0 {
		return
	}
	h.table.put(rs)
	h.routes.mu.RLock()
	defer h.routes.mu.RUnlock()
	for _, c := range h.routes.wide {
		if c.enqueue(rs) {
			go c.write()
		}
	}
	if len(h.routes.byDevice) == 0 {
		return
	}
	// Readings of one message share a device, and come together.
	for i := 0; i < len(rs); {
		j := i + 1
		for j < len(rs) && rs[j].Device == rs[i].Device {
			j++
		}
		for _, c := range h.routes.byDevice[rs[i].Device] {
			if c.enqueue(rs[i:j]) {
				go c.write()
			}
		}
		i = j
	}
}

// PublishStatus queues a presence change of device id for every client
// subscribed to it. It never blocks on a client.
func (h *Hub) PublishStatus(id string, s devices.Status) {
	h.routes.mu.RLock()
	defer h.routes.mu.RUnlock()
	for _, l := range [2][]*client{h.routes.wide, h.routes.byDevice[id]} {
		for _, c := range l {
			if c.enqueueStatus(id, s) {
				go c.write()
			}
		}
	}
}

// A shared frame is one every page gets whenever it changes, and once,
// with its confirmation, when it subscribes: the notice and the alerts.
type shared int

const (
	sharedNotice shared = iota
	sharedAlerts
	nShared
)

// setShared makes frame the shared frame k (nil for none) and sends it to
// every connected client. It never blocks.
func (h *Hub) setShared(k shared, frame []byte) {
	if old := h.shared[k].Swap(&frame); old != nil && bytes.Equal(*old, frame) {
		return
	}
	for _, c := range *h.clients.Load() {
		c.mu.Lock()
		c.shared |= 1 << k
		start := c.startWriter()
		c.mu.Unlock()
		if start {
			go c.write()
		}
	}
}

// SetNotice sets the warning every page shows in its banner while it holds
// ("" for none), and sends it to every connected client; a client that
// subscribes later gets it with its confirmation. It never blocks.
func (h *Hub) SetNotice(text string) {
	h.notice.Store(&text)
	h.setShared(sharedNotice, appendNotice(nil, text))
}

// SetAlerts sets what is firing, as the JSON object of an alerts frame,
// and sends it to every connected client as SetNotice does.
func (h *Hub) SetAlerts(summary json.RawMessage) {
	h.setShared(sharedAlerts, append(append([]byte(`{"alerts":`), summary...), '}'))
}

// Notice returns the warning set by SetNotice.
func (h *Hub) Notice() string {
	if n := h.notice.Load(); n != nil {
		return *n
	}
	return ""
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	return Stats{
		Clients:         len(*h.clients.Load()),
		Frames:          h.frames.Load(),
		DroppedReadings: h.dropped.Load(),
		Gaps:            h.gaps.Load(),
		SlowClosed:      h.slowClosed.Load(),
		Refused:         map[string]uint64{RefusedTooMany: h.refusedTotal.Load(), RefusedTooManyAddr: h.refusedAddr.Load()},
		Closed:          map[string]uint64{ClosedNoSubscribe: h.noSubscribe.Load(), ClosedNoPong: h.noPong.Load()},
	}
}

// reserve counts a connection from addr against the limits before it is
// upgraded, or says with which status and why it is refused.
func (h *Hub) reserve(addr string) (code int, msg string) {
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return http.StatusServiceUnavailable, "server shutting down"
	}
	switch h.conns.Acquire(addr) {
	case limit.Total:
		h.refusedTotal.Add(1)
		h.logRefusal(addr, RefusedTooMany)
		return http.StatusServiceUnavailable, "too many live connections (-max-websockets); try again later"
	case limit.PerClient:
		h.refusedAddr.Add(1)
		h.logRefusal(addr, RefusedTooManyAddr)
		return http.StatusTooManyRequests, "too many live connections from your address (-max-websockets-per-addr); close some tabs"
	}
	return 0, ""
}

// logRefusal logs a refused or closed connection, a few a second at most.
func (h *Hub) logRefusal(addr, reason string) {
	if h.logLimit.Allow() {
		h.log.Warn("websocket refused or closed by a limit", "remote", addr, "reason", reason, "suppressed_since_last", h.suppressed.Swap(0))
		return
	}
	h.suppressed.Add(1)
}

// release gives back what reserve took.
func (h *Hub) release(addr string) { h.conns.Release(addr) }

// Close closes every client with StatusGoingAway and refuses new ones. It
// returns once every connection has been closed; a client that does not
// answer the close handshake costs at most a few seconds.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	for c := range h.set {
		c.stop(closeReason{websocket.StatusGoingAway, "server shutting down"})
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// add registers c, or reports false if the hub is closed.
func (h *Hub) add(c *client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.set[c] = struct{}{}
	h.wg.Add(1)
	h.storeClients()
	return true
}

func (h *Hub) remove(c *client) {
	h.routes.remove(c)
	h.mu.Lock()
	delete(h.set, c)
	h.storeClients()
	h.mu.Unlock()
	h.wg.Done()
}

// storeClients publishes a fresh copy of the client set; h.mu must be held.
func (h *Hub) storeClients() {
	cs := make([]*client, 0, len(h.set))
	for c := range h.set {
		cs = append(cs, c)
	}
	h.clients.Store(&cs)
}

// ServeHTTP upgrades GET /ws to a WebSocket and hands the connection to a
// goroutine of its own, which serves the client until it goes away. A
// request from another origin than the request's host (and not allowed by
// Options.OriginPatterns) is refused with 403.
//
// The handler returns once the connection is upgraded: the net/http
// goroutine and what it holds are not kept for the life of a connection
// that is idle most of the time.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	addr := h.opts.Addr(r)
	if code, msg := h.reserve(addr); code != 0 {
		w.Header().Set("Retry-After", "10")
		http.Error(w, msg, code)
		return
	}
	conn, err := websocket.Accept(lightBuffers{w}, r, &websocket.AcceptOptions{OriginPatterns: h.opts.OriginPatterns})
	if err != nil {
		// Accept has written the response (403 for a foreign origin, 400 for
		// a bad handshake).
		h.release(addr)
		h.log.Debug("websocket refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "error", err)
		return
	}
	conn.SetReadLimit(maxMessage)
	c := newClient(h, conn)
	c.addr = addr
	if !h.add(c) {
		conn.Close(websocket.StatusGoingAway, "server shutting down")
		h.release(addr)
		return
	}
	go c.serve()
}

// lightBuffers hands coder/websocket a hijacked connection with buffers the
// size of what a live page exchanges, in place of the two 4 KiB ones net/http
// gives with it: they were 8 KiB of an idle client's 20 (measured with
// `iotload -idle-clients` and the heap profile). A browser sends little
// (a subscribe), and a frame larger than the write buffer goes to the
// connection directly, so neither costs a system call more.
type lightBuffers struct{ http.ResponseWriter }

func (w lightBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w lightBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	// What the client sent after its request and net/http read ahead is
	// carried over, buffered, so that coder/websocket's Peek finds it.
	ahead, _ := brw.Reader.Peek(brw.Reader.Buffered())
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(ahead)), conn), max(readBuffer, len(ahead)))
	if len(ahead) > 0 {
		br.Peek(len(ahead))
	}
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(conn, writeBuffer)), nil
}

// The buffers lightBuffers gives a connection.
const (
	readBuffer  = 256
	writeBuffer = 1024
)

// closeReason is why the server ends a connection, as sent in its close frame.
type closeReason struct {
	code   websocket.StatusCode
	reason string
}

// client is one WebSocket connection: its subscription and its queues.
//
// An idle client costs one goroutine, the reader coder/websocket needs,
// and two timers. The writer is a goroutine started when there is
// something to send, which ends when there is nothing left; the ping is a
// goroutine for the moment of a ping.
type client struct {
	h    *Hub
	conn *websocket.Conn
	addr string // what it counts against in Options.MaxPerAddr

	done chan struct{} // closed when the connection is to end
	once sync.Once
	why  closeReason // set before done is closed; zero when the peer left
	// active counts the writer, a ping and the closing handshake while
	// they run; each is added under mu and only while !stopped.
	active sync.WaitGroup

	// mu guards the fields below. It is held only to copy in or swap out
	// queues, never while writing to the connection.
	mu         sync.Mutex
	stopped    bool
	writing    bool // a writer goroutine runs
	subscribed bool
	all        bool
	devices    map[string]struct{}
	ack        []string // subscription to confirm, nil if none pending
	q          []devices.Reading
	gap        gapFrame                  // readings dropped since the last gap frame
	status     map[string]devices.Status // nil while empty
	maxStatus  int
	shared     uint8 // the hub's shared frames to be sent, a bit each
	// A conflated subscription: at most latest frames a second, each
	// with the newest reading of every series that changed since the
	// last (news: the hub's table has some), read from the hub's table
	// from cursor on. last is when its last frame was taken; rate starts
	// the writer when the next may go.
	latest int
	news   bool
	cursor uint64
	last   time.Time
	rate   *time.Timer
	armed  bool // rate is set to fire

	timers  [2]*time.Timer // the subscribe deadline and the next ping
	strikes int            // write timeouts in a row; only the writer touches it
}

// series is one metric of one device.
type series struct{ device, metric string }

type gapFrame struct {
	From    int64  `json:"from"`
	To      int64  `json:"to"`
	Dropped uint64 `json:"dropped"`
}

func newClient(h *Hub, conn *websocket.Conn) *client {
	return &client{
		h:         h,
		conn:      conn,
		done:      make(chan struct{}),
		maxStatus: max(h.opts.QueueSize, 1024),
	}
}

// startWriter reports whether the caller is to start the writer: there is
// none running and the connection has not ended. c.mu held.
func (c *client) startWriter() bool {
	if c.writing || c.stopped {
		return false
	}
	c.writing = true
	c.active.Add(1)
	return true
}

// kick starts the writer if it is not running.
func (c *client) kick() {
	c.mu.Lock()
	start := c.startWriter()
	c.mu.Unlock()
	if start {
		go c.write()
	}
}

// stop ends the connection with why; the first reason given wins. The
// close handshake runs on a goroutine of its own; the reader ends with it.
func (c *client) stop(why closeReason) {
	c.once.Do(func() {
		c.mu.Lock()
		c.why = why
		c.stopped = true
		c.active.Add(1)
		c.mu.Unlock()
		close(c.done)
		go func() {
			defer c.active.Done()
			var err error
			if why.code == 0 {
				// The peer left, or the library already closed the
				// connection (read limit, failed write); nothing more can
				// be said to it.
				err = c.conn.CloseNow()
			} else {
				err = c.conn.Close(why.code, why.reason)
			}
			if err != nil && !errors.Is(err, net.ErrClosed) {
				c.h.log.Debug("websocket close", "remote", c.addr, "error", err)
			}
		}()
	})
}

// wants reports whether the client is subscribed to device id; c.mu held.
func (c *client) wants(id string) bool {
	if c.all {
		return true
	}
	_, ok := c.devices[id]
	return ok
}

// enqueue copies the readings c subscribes to into its queue, dropping what
// does not fit. It reports whether the caller is to start the writer:
// something was queued or dropped and no writer runs.
func (c *client) enqueue(rs []devices.Reading) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.subscribed {
		return false
	}
	limit := c.h.opts.QueueSize
	changed := false
	dropped := uint64(0)
	// Readings of one message share a device; decide once per run.
	last, want := "", false
	for i := range rs {
		r := &rs[i]
		if r.Device != last || i == 0 {
			last, want = r.Device, c.wants(r.Device)
		}
		if !want {
			continue
		}
		if c.latest > 0 {
			// The hub's table has it; the writer reads it from there.
			changed, c.news = true, true
			break
		}
		changed = true
		if len(c.q) < limit {
			c.q = append(c.q, *r)
			continue
		}
		if c.gap.Dropped == 0 || r.Time < c.gap.From {
			c.gap.From = r.Time
		}
		if c.gap.Dropped == 0 || r.Time > c.gap.To {
			c.gap.To = r.Time
		}
		c.gap.Dropped++
		dropped++
	}
	if dropped > 0 {
		c.h.dropped.Add(dropped)
	}
	// A conflated client waiting for its next frame is started by its
	// timer, not by every Publish meanwhile.
	return changed && !c.armed && c.startWriter()
}

// enqueueStatus records a presence change for c if it subscribes to id. A
// newer change of the same device replaces an unsent older one. It reports
// whether the caller is to start the writer.
func (c *client) enqueueStatus(id string, s devices.Status) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.subscribed || !c.wants(id) {
		return false
	}
	if _, ok := c.status[id]; !ok && len(c.status) >= c.maxStatus {
		// Only a client whose writer has been stuck for long gets here; it
		// is about to be closed as too slow, and reloads when it reconnects.
		return false
	}
	if c.status == nil {
		c.status = map[string]devices.Status{}
	}
	c.status[id] = s
	return c.startWriter()
}

// subscribe replaces c's subscription and drops queued readings and statuses
// it no longer wants, so that everything sent after the confirmation
// matches the new subscription. It reports whether the caller is to start
// the writer.
func (c *client) subscribe(ids []string, latest int) bool {
	all := false
	set := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if id == "*" {
			all = true
		}
		set[id] = struct{}{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.subscribed {
		for k := range nShared {
			if f := c.h.shared[k].Load(); f != nil && len(*f) > 0 && (k != sharedNotice || c.h.Notice() != "") {
				c.shared |= 1 << k
			}
		}
	}
	c.subscribed, c.all, c.devices = true, all, set
	c.ack = append([]string{}, ids...)
	if c.latest = latest; latest > 0 {
		c.cursor, c.news = c.h.table.now(), false
	}
	kept := c.q[:0]
	for _, r := range c.q {
		if c.wants(r.Device) {
			kept = append(kept, r)
		}
	}
	clear(c.q[len(kept):])
	c.q = kept
	for id := range c.status {
		if !c.wants(id) {
			delete(c.status, id)
		}
	}
	return c.startWriter()
}

// batch is what one flush takes from a client.
type batch struct {
	ack      []string
	shared   uint8
	status   map[string]devices.Status
	readings []devices.Reading
	gap      gapFrame
	latest   int // the subscription's frames a second, 0 for every reading
}

// take swaps c's queues out, leaving spare (emptied) in their place. When
// there is nothing to send, or a conflated subscription's next frame may
// not go yet (then its timer is set to start the writer when it may), it
// reports false and the writer, which has called it, is to end.
func (c *client) take(spare []devices.Reading) (batch, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return batch{}, false
	}
	if c.ack == nil && c.shared == 0 && len(c.q) == 0 && c.gap.Dropped == 0 && len(c.status) == 0 && !c.news {
		c.writing = false
		c.q = nil // an idle client holds no queue
		return batch{}, false
	}
	if c.latest > 0 && c.ack == nil {
		// A conflated subscription takes at most latest frames a second:
		// what arrives meanwhile replaces what is queued.
		if wait := time.Until(c.last.Add(time.Second / time.Duration(c.latest))); wait > 0 {
			c.writing = false
			if !c.armed {
				c.armed = true
				if c.rate == nil {
					c.rate = time.AfterFunc(wait, c.fire)
				} else {
					c.rate.Reset(wait)
				}
			}
			return batch{}, false
		}
		c.last = time.Now()
	}
	if c.news {
		q := c.q
		if cap(q) == 0 {
			q = getLatestQueue()
		}
		c.q, c.cursor, c.news = c.h.table.since(c.cursor, c.wants, c.h.opts.QueueSize, q)
	}
	b := batch{ack: c.ack, shared: c.shared, readings: c.q, gap: c.gap, latest: c.latest}
	c.ack, c.shared = nil, 0
	c.q = spare[:0]
	c.gap = gapFrame{}
	if len(c.status) > 0 {
		b.status = c.status
		c.status = nil
	}
	return b, true
}

// fire is the conflation timer's: the next frame may go.
func (c *client) fire() {
	c.mu.Lock()
	c.armed = false
	c.mu.Unlock()
	c.kick()
}

// queued returns how many readings wait in c's queue.
func (c *client) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.q)
}

// serve runs the connection: it reads the client's messages until the
// connection ends, then waits for the writer, a ping in flight and the
// close handshake, and gives the connection's place back.
func (c *client) serve() {
	h := c.h
	defer h.release(c.addr)
	defer h.remove(c)
	c.mu.Lock()
	c.timers[0] = time.AfterFunc(h.opts.SubscribeWithin, c.subscribeDeadline)
	c.timers[1] = time.AfterFunc(h.opts.PingEvery, c.ping)
	c.mu.Unlock()

	c.read(context.Background())

	c.stop(closeReason{}) // the peer left, unless the server ended it first
	c.mu.Lock()
	for _, t := range c.timers {
		t.Stop()
	}
	if c.rate != nil {
		c.rate.Stop()
	}
	c.mu.Unlock()
	c.active.Wait()
}

// subscribeDeadline closes a client that has not subscribed in time.
func (c *client) subscribeDeadline() {
	c.mu.Lock()
	subscribed := c.subscribed
	c.mu.Unlock()
	if !subscribed {
		h := c.h
		h.noSubscribe.Add(1)
		h.logRefusal(c.addr, ClosedNoSubscribe)
		c.stop(closeReason{websocket.StatusPolicyViolation, "no subscribe within " + h.opts.SubscribeWithin.String()})
	}
}

// ping pings the client, and drops it when a pong does not come within
// PingTimeout; answered, it sets itself to ping again after PingEvery. The
// pong is read by the reader goroutine, as coder/websocket requires.
func (c *client) ping() {
	h := c.h
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.active.Add(1)
	c.mu.Unlock()
	defer c.active.Done()

	ctx, cancel := context.WithTimeout(context.Background(), h.opts.PingTimeout)
	err := c.conn.Ping(ctx)
	cancel()
	if err == nil {
		c.mu.Lock()
		if !c.stopped {
			c.timers[1].Reset(h.opts.PingEvery)
		}
		c.mu.Unlock()
		return
	}
	// An expired ping has closed the connection already.
	if errors.Is(err, context.DeadlineExceeded) {
		h.noPong.Add(1)
		h.logRefusal(c.addr, ClosedNoPong)
	}
	c.stop(closeReason{})
}

// read takes the client's messages until the connection ends.
func (c *client) read(ctx context.Context) {
	for {
		typ, b, err := c.conn.Read(ctx)
		if err != nil {
			// Closed by the peer, by us, or by the library after an oversized
			// message (it sends StatusMessageTooBig itself).
			return
		}
		if typ != websocket.MessageText {
			c.stop(closeReason{websocket.StatusUnsupportedData, "messages must be JSON text"})
			return
		}
		ids, latest, err := parseSubscribe(b)
		if err != nil {
			c.stop(closeReason{websocket.StatusPolicyViolation, err.Error()})
			return
		}
		c.h.routes.set(c, ids) // before: a reading routed to c meanwhile is checked against its subscription
		if c.subscribe(ids, latest) {
			go c.write()
		}
	}
}

// subscribeMsg is the only message a client sends.
type subscribeMsg struct {
	Subscribe *struct {
		Devices []string `json:"devices"`
		Latest  int      `json:"latest"`
	} `json:"subscribe"`
}

// MaxLatest is the most frames a second a conflated subscription may ask.
const MaxLatest = 60

// parseSubscribe reads a subscribe message: the devices, and for a
// conflated subscription its frames a second (0: every reading). Its
// errors are short enough for a close frame's reason (at most 123 bytes).
func parseSubscribe(b []byte) ([]string, int, error) {
	var m subscribeMsg
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil || dec.More() {
		return nil, 0, devices.Errorf(devices.EInvalid, `expected {"subscribe":{"devices":[...]}}`)
	}
	if m.Subscribe == nil || m.Subscribe.Devices == nil {
		return nil, 0, devices.Errorf(devices.EInvalid, `expected {"subscribe":{"devices":[...]}}`)
	}
	for _, id := range m.Subscribe.Devices {
		if id != "*" && !devices.ValidName(id) {
			return nil, 0, devices.Errorf(devices.EInvalid, "device ids must be * or 1-64 of [A-Za-z0-9._-]")
		}
	}
	if m.Subscribe.Latest < 0 || m.Subscribe.Latest > MaxLatest {
		return nil, 0, devices.Errorf(devices.EInvalid, "latest is 0 (every reading) to 60 frames a second")
	}
	return m.Subscribe.Devices, m.Subscribe.Latest, nil
}

// bufs holds frame buffers between bursts, so that an idle client holds
// none.
var bufs = sync.Pool{New: func() any { return new([]byte) }}

// latestQueues holds the queues that conflated subscriptions read the
// hub's table into, between frames. Without it every frame of a conflated
// subscription grew a queue of its own, the size of the frame: at 200
// overviews of 200 series, 4 frames a second, half of what the server
// allocated (`make bench-live`'s allocation profile), and so half of its
// garbage collections, each of which stops every goroutine for a moment.
// Queues of every-reading subscriptions are not kept: they are the size
// of a burst, most often a reading or two.
var latestQueues = sync.Pool{New: func() any { return new([]devices.Reading) }}

func getLatestQueue() []devices.Reading { return (*latestQueues.Get().(*[]devices.Reading))[:0] }

// putLatestQueue keeps q for the next frame of any conflated subscription.
// Its readings must be cleared already, as every queue is once its frame is
// encoded.
func putLatestQueue(q []devices.Reading) {
	if cap(q) > 0 && cap(q) <= DefaultQueueSize {
		q = q[:0]
		latestQueues.Put(&q)
	}
}

// write sends what is queued, batch after batch, until nothing is left,
// c is stopped or a write fails. Only one runs at a time (startWriter).
func (c *client) write() {
	defer c.active.Done()
	h := c.h
	var spare []devices.Reading
	conflated := false // the last batch was a conflated subscription's
	bp := bufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= 64<<10 { // one burst should not pin a large buffer for good
			*bp = buf[:0]
			bufs.Put(bp)
		}
	}()
	for {
		b, ok := c.take(spare)
		if !ok {
			if conflated {
				putLatestQueue(spare)
			}
			return
		}
		conflated = b.latest > 0
		if b.ack != nil {
			buf = appendAck(buf[:0], b.ack)
			if !c.send(buf) {
				return
			}
		}
		for k := range nShared {
			if b.shared&(1<<k) == 0 {
				continue
			}
			if f := h.shared[k].Load(); f != nil && len(*f) > 0 && !c.send(*f) {
				return
			}
		}
		if b.status != nil {
			buf = appendStatus(buf[:0], b.status)
			if !c.send(buf) {
				return
			}
		}
		if len(b.readings) > 0 {
			buf = appendReadings(buf[:0], b.readings)
			clear(b.readings) // let go of the publishers' strings
			if !c.send(buf) {
				return
			}
		}
		spare = b.readings
		if b.gap.Dropped > 0 {
			buf = appendGap(buf[:0], b.gap)
			if !c.send(buf) {
				return
			}
			h.gaps.Add(1)
		}
	}
}

// send writes one frame. It reports false when the connection is to end:
// the write failed, or the client has been too slow for slowStrikes write
// timeouts in a row.
func (c *client) send(frame []byte) bool {
	h := c.h
	// coder/websocket closes the connection when a write's context expires,
	// so the context carries the whole remaining budget: a stalled client
	// is cut off once it is spent, while a slow one that finishes its write
	// late is counted and closed with a reason it can read.
	budget := time.Duration(slowStrikes-c.strikes) * h.opts.WriteTimeout
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	start := time.Now()
	err := c.conn.Write(ctx, websocket.MessageText, frame)
	took := time.Since(start)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			h.slowClosed.Add(1)
			h.log.Info("websocket client too slow, closed", "error", err)
		}
		c.stop(closeReason{})
		return false
	}
	h.frames.Add(1)
	if took < h.opts.WriteTimeout {
		c.strikes = 0
		return true
	}
	c.strikes += int(took / h.opts.WriteTimeout)
	if c.strikes >= slowStrikes {
		h.slowClosed.Add(1)
		h.log.Info("websocket client too slow, closed", "strikes", c.strikes)
		c.stop(closeReason{websocket.StatusPolicyViolation, "too slow"})
		return false
	}
	return true
}

// appendReadings appends a readings frame. It is written by hand, not by
// encoding/json, because every reading published goes through it:
// BenchmarkReadingsFrame finds it two to eight times as fast (on a
// loaded machine), and it allocates nothing where encoding/json allocates
// the frame. Strings and numbers are written by devices.AppendString and
// devices.AppendNumber, as encoding/json would write them.
func appendReadings(b []byte, rs []devices.Reading) []byte {
	b = append(b, `{"readings":[`...)
	n := 0
	for _, r := range rs {
		if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
			continue // not representable in JSON; ingest rejects these
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, `{"d":`...)
		b = devices.AppendString(b, r.Device)
		b = append(b, `,"m":`...)
		b = devices.AppendString(b, r.Metric)
		b = append(b, `,"t":`...)
		b = strconv.AppendInt(b, r.Time, 10)
		b = append(b, `,"v":`...)
		b = devices.AppendNumber(b, r.Value)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

func appendNotice(b []byte, text string) []byte {
	return append(devices.AppendString(append(b, `{"notice":`...), text), '}')
}

func appendStatus(b []byte, st map[string]devices.Status) []byte {
	b = append(b, `{"status":[`...)
	first := true
	for id, s := range st {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"d":`...)
		b = devices.AppendString(b, id)
		b = append(b, `,"s":`...)
		b = devices.AppendString(b, string(s))
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

func appendGap(b []byte, g gapFrame) []byte {
	b = append(b, `{"gap":{"from":`...)
	b = strconv.AppendInt(b, g.From, 10)
	b = append(b, `,"to":`...)
	b = strconv.AppendInt(b, g.To, 10)
	b = append(b, `,"dropped":`...)
	b = strconv.AppendUint(b, g.Dropped, 10)
	return append(b, "}}"...)
}

func appendAck(b []byte, ids []string) []byte {
	b = append(b, `{"subscribed":{"devices":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = devices.AppendString(b, id)
	}
	return append(b, "]}}"...)
}
