// Command livefloor is a benchmark tool, not part of iotdash: the least a
// server could do on the live push's path, to measure against. It
// subscribes to an MQTT broker (paho, QoS 1, on the same kind of
// connection as iotdash's ingest: writes batched, TCP_QUICKACK), lets paho
// acknowledge each message as soon as its handler returns, stores nothing,
// turns each telemetry message into readings by a scan of its flat JSON,
// and relays them over coder/websocket to clients that speak the protocol
// of iotdash's /ws (see package push): {"subscribe":{"devices":[…]}} with an
// optional "latest", answered by {"subscribed":…}, then {"readings":[…]}
// frames. A client subscribed to every reading has a goroutine and a
// channel; what queued while it wrote goes in its next frame. A conflated
// client ("latest": N) gets the newest reading of every series that
// changed, at most N frames a second, at once when its last frame is older
// than that.
//
// It takes any Authorization (iotload signs in) and checks no origin, and
// serves /metrics (the process's CPU and memory, frames sent) so that
// iotload reads the same figures from it as from iotdash.
// scripts/bench-live.sh runs it for the rows whose names end in -floor:
//
//	livefloor -mqtt tcp://127.0.0.1:1883 -http 127.0.0.1:8080
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof" // profiles, as iotdash's -pprof
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"iotdash/internal/mqttconn"
)

var (
	frames  = promauto.NewCounter(prometheus.CounterOpts{Name: "iotdash_websocket_frames_total", Help: "Frames sent."})
	dropped = promauto.NewCounter(prometheus.CounterOpts{Name: "iotdash_websocket_dropped_readings_total", Help: "Readings dropped: a client's queue was full."})
)

func main() {
	broker := flag.String("mqtt", "tcp://127.0.0.1:1883", "broker `URL`")
	addr := flag.String("http", "127.0.0.1:8080", "`address` to serve /ws and /metrics on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	r := &relay{byDevice: map[string][]*sub{}, index: map[string]int{}}
	opts := mqtt.NewClientOptions().AddBroker(*broker).SetClientID(fmt.Sprintf("livefloor-%d", os.Getpid())).
		SetCleanSession(true).SetOrderMatters(true).SetAutoReconnect(false).
		SetCustomOpenConnectionFn(mqttconn.Batched(200 * time.Microsecond))
	client := mqtt.NewClient(opts)
	if t := client.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		log.Fatalf("livefloor: connect to %s: %v", *broker, t.Error())
	}
	if t := client.Subscribe("devices/+/telemetry", 1, r.handle); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		log.Fatalf("livefloor: subscribe: %v", t.Error())
	}
	defer client.Disconnect(100)

	mux := http.DefaultServeMux // with net/http/pprof's handlers
	mux.Handle("GET /metrics", promhttp.Handler())
	mux.HandleFunc("GET /readyz", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("GET /ws", r.serve)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("livefloor: %v", err)
	}
	srv := &http.Server{Handler: mux}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("livefloor: %v", err)
	}
}

// relay routes readings to subscribers and keeps the newest reading of
// every series for the conflated ones.
type relay struct {
	mu       sync.RWMutex
	byDevice map[string][]*sub
	wide     []*sub // every device, every reading
	latest   []*sub // every device, conflated

	tmu   sync.Mutex
	index map[string]int // "device\x00metric" → slot
	slots []slot
	seq   uint64
}

// slot is a series' newest reading, as its JSON object.
type slot struct {
	frag []byte
	seq  uint64
}

// sub is one client's queue: reading objects for an every-reading client,
// a wake-up for a conflated one.
type sub struct {
	ch     chan []byte
	wake   chan struct{}
	latest int
}

// handle runs on paho's network goroutine; paho acknowledges the message
// when it returns.
func (r *relay) handle(_ mqtt.Client, m mqtt.Message) {
	id, ok := deviceOf(m.Topic())
	if !ok {
		return
	}
	frags, all := readings(id, m.Payload())
	if len(frags) == 0 {
		return
	}
	r.tmu.Lock()
	for i, f := range frags {
		k := id + "\x00" + string(metricOf(f))
		n, ok := r.index[k]
		if !ok {
			n = len(r.slots)
			r.index[k] = n
			r.slots = append(r.slots, slot{})
		}
		r.seq++
		r.slots[n] = slot{frag: frags[i], seq: r.seq}
	}
	r.tmu.Unlock()

	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.byDevice[id] {
		s.put(all, len(frags))
	}
	for _, s := range r.wide {
		s.put(all, len(frags))
	}
	for _, s := range r.latest {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *sub) put(frag []byte, n int) {
	select {
	case s.ch <- frag:
	default:
		dropped.Add(float64(n))
	}
}

// deviceOf returns the device of a topic devices/<id>/telemetry.
func deviceOf(topic string) (string, bool) {
	rest, ok := bytes.CutPrefix([]byte(topic), []byte("devices/"))
	if !ok {
		return "", false
	}
	id, ok := bytes.CutSuffix(rest, []byte("/telemetry"))
	return string(id), ok && len(id) > 0
}

// readings turns a flat JSON object of numbers with a "ts" (Unix ms) into
// one reading object each, {"d":…,"m":…,"t":…,"v":…}, and all of them
// comma-joined. It trusts its input: the publisher is iotload's.
func readings(id string, p []byte) (frags [][]byte, all []byte) {
	p = bytes.TrimSpace(p)
	p = bytes.TrimSuffix(bytes.TrimPrefix(p, []byte("{")), []byte("}"))
	var ts []byte
	type kv struct{ k, v []byte }
	var kvs []kv
	for len(p) > 0 {
		var f []byte
		f, p, _ = bytes.Cut(p, []byte(","))
		k, v, ok := bytes.Cut(f, []byte(":"))
		if !ok {
			continue
		}
		k = bytes.Trim(bytes.TrimSpace(k), `"`)
		v = bytes.TrimSpace(v)
		if string(k) == "ts" {
			ts = v
			continue
		}
		kvs = append(kvs, kv{k, v})
	}
	if ts == nil {
		ts = fmt.Appendf(nil, "%d", time.Now().UnixMilli())
	}
	all = make([]byte, 0, len(kvs)*(40+len(id)))
	for i, e := range kvs {
		if i > 0 {
			all = append(all, ',')
		}
		start := len(all)
		all = append(all, `{"d":"`...)
		all = append(all, id...)
		all = append(all, `","m":"`...)
		all = append(all, e.k...)
		all = append(all, `","t":`...)
		all = append(all, ts...)
		all = append(all, `,"v":`...)
		all = append(all, e.v...)
		all = append(all, '}')
		frags = append(frags, all[start:len(all):len(all)])
	}
	return frags, all
}

// metricOf returns the metric of a reading object readings made.
func metricOf(frag []byte) []byte {
	_, m, _ := bytes.Cut(frag, []byte(`"m":"`))
	m, _, _ = bytes.Cut(m, []byte(`"`))
	return m
}

// serve runs one client: its subscribe, then its writer until it leaves.
func (r *relay) serve(w http.ResponseWriter, req *http.Request) {
	conn, err := websocket.Accept(w, req, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer conn.CloseNow()
	var m struct {
		Subscribe struct {
			Devices []string `json:"devices"`
			Latest  int      `json:"latest"`
		} `json:"subscribe"`
	}
	_, b, err := conn.Read(req.Context())
	if err != nil || json.Unmarshal(b, &m) != nil {
		return
	}
	ack, _ := json.Marshal(map[string]any{"subscribed": map[string]any{"devices": m.Subscribe.Devices}})
	if err := conn.Write(req.Context(), websocket.MessageText, ack); err != nil {
		return
	}
	ctx := conn.CloseRead(context.Background()) // answers pings and closes
	s := &sub{ch: make(chan []byte, 1024), wake: make(chan struct{}, 1), latest: m.Subscribe.Latest}
	r.add(s, m.Subscribe.Devices)
	defer r.remove(s, m.Subscribe.Devices)
	if s.latest > 0 {
		r.conflated(ctx, conn, s)
		return
	}
	var buf []byte
	for {
		var f []byte
		select {
		case <-ctx.Done():
			return
		case f = <-s.ch:
		}
		buf = append(append(buf[:0], `{"readings":[`...), f...)
	more:
		for len(buf) < 64<<10 {
			select {
			case f = <-s.ch:
				buf = append(append(buf, ','), f...)
			default:
				break more
			}
		}
		if !write(ctx, conn, append(buf, "]}"...)) {
			return
		}
	}
}

// conflated sends a conflated client the series that changed since its
// last frame, at most s.latest frames a second.
func (r *relay) conflated(ctx context.Context, conn *websocket.Conn, s *sub) {
	r.tmu.Lock()
	cursor := r.seq
	r.tmu.Unlock()
	var last time.Time
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		if wait := time.Until(last.Add(time.Second / time.Duration(s.latest))); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		buf = append(buf[:0], `{"readings":[`...)
		n := 0
		r.tmu.Lock()
		for _, sl := range r.slots {
			if sl.seq > cursor {
				if n > 0 {
					buf = append(buf, ',')
				}
				buf = append(buf, sl.frag...)
				n++
			}
		}
		cursor = r.seq
		r.tmu.Unlock()
		if n == 0 {
			continue // what woke it went in the last frame
		}
		last = time.Now()
		if !write(ctx, conn, append(buf, "]}"...)) {
			return
		}
	}
}

func write(ctx context.Context, conn *websocket.Conn, frame []byte) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if conn.Write(ctx, websocket.MessageText, frame) != nil {
		return false
	}
	frames.Inc()
	return true
}

func (r *relay) add(s *sub, ids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		switch {
		case id == "*" && s.latest > 0:
			r.latest = append(r.latest, s)
		case id == "*":
			r.wide = append(r.wide, s)
		default:
			r.byDevice[id] = append(r.byDevice[id], s)
		}
	}
}

func (r *relay) remove(s *sub, ids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	drop := func(l []*sub) []*sub {
		out := make([]*sub, 0, len(l))
		for _, x := range l {
			if x != s {
				out = append(out, x)
			}
		}
		return out
	}
	r.latest, r.wide = drop(r.latest), drop(r.wide)
	for _, id := range ids {
		r.byDevice[id] = drop(r.byDevice[id])
	}
}
