// Command iotload measures iotdash's live push from the browser's side: it
// opens WebSocket clients to a running iotdash, optionally publishes
// stamped telemetry to its MQTT broker meanwhile, and prints, per group of
// clients, the delay from publish to receipt over every reading received
// (p50, p90, p99, max), and what the server spent (CPU, memory per client)
// from its /metrics.
//
//	iotload -url http://127.0.0.1:8080 -user admin \
//	    -device-clients 200 -overview-clients 200 \
//	    -mqtt tcp://127.0.0.1:1883 -rate 5000 -for 10s
//
// Client groups: -device-clients subscribe to one device each, every
// reading (a device page); -overview-clients to every device, conflated to
// -latest frames a second (the overview); -all-clients to every device,
// every reading; -idle-clients to a device that never publishes (what an
// idle browser costs). The password is read from IOTLOAD_PASSWORD, or a
// token from IOTLOAD_TOKEN.
//
// Delays are measured against each reading's t, the publisher's send time
// in Unix milliseconds, so they are whole milliseconds, and the clients,
// the publisher and the server must share a clock (the same machine).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"iotdash/internal/limit"
	"iotdash/simulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "iotload:", err)
		os.Exit(1)
	}
}

// config is what one run does.
type config struct {
	url, user, header                             string
	deviceClients, overviewClients, allClients    int
	idleClients, latest, devices, dialParallelism int
	deviceFormat                                  string
	mqtt                                          string
	rate, qos                                     int
	dur, settle                                   time.Duration
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("iotload", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "iotdash's `URL`")
	fs.StringVar(&c.user, "user", "admin", "user to sign in as (HTTP Basic; password from IOTLOAD_PASSWORD), unless IOTLOAD_TOKEN holds an API token")
	fs.IntVar(&c.deviceClients, "device-clients", 0, "clients subscribed to one device each, every reading")
	fs.IntVar(&c.overviewClients, "overview-clients", 0, "clients subscribed to every device, conflated to -latest frames a second")
	fs.IntVar(&c.allClients, "all-clients", 0, "clients subscribed to every device, every reading")
	fs.IntVar(&c.idleClients, "idle-clients", 0, "clients subscribed to a device that never publishes")
	fs.IntVar(&c.latest, "latest", 4, "frames a second of the overview clients' conflated subscription")
	fs.IntVar(&c.devices, "devices", 100, "devices publishing (as iotsim's load mode names them)")
	fs.StringVar(&c.deviceFormat, "device-format", "", "device id format of the device clients (default: iotsim load mode's, load-001 …)")
	fs.IntVar(&c.dialParallelism, "dial-parallel", 64, "connections being opened at once")
	fs.StringVar(&c.mqtt, "mqtt", "", "broker `URL` to publish stamped telemetry to while measuring (empty: someone else publishes)")
	fs.IntVar(&c.rate, "rate", 0, "messages a second to publish (2 readings each)")
	fs.IntVar(&c.qos, "qos", 1, "QoS of the published messages")
	fs.DurationVar(&c.dur, "for", 10*time.Second, "how long to measure (and publish)")
	fs.DurationVar(&c.settle, "settle", 2*time.Second, "how long to wait after connecting, and after publishing, before reading the server's figures")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if n := c.deviceClients + c.overviewClients + c.allClients + c.idleClients; n > 0 {
		if got, err := limit.RaiseOpenFiles(uint64(n + 1024)); got < uint64(n+64) {
			return fmt.Errorf("%d clients need %d open files; the limit is %d (%v): raise ulimit -n", n, n+64, got, err)
		}
	}
	if c.deviceFormat == "" {
		c.deviceFormat = fmt.Sprintf("load-%%0%dd", len(strconv.Itoa(c.devices)))
	}
	switch tok, pw := os.Getenv("IOTLOAD_TOKEN"), os.Getenv("IOTLOAD_PASSWORD"); {
	case tok != "":
		c.header = "Bearer " + tok
	case pw != "":
		c.header = "Basic " + base64.StdEncoding.EncodeToString([]byte(c.user+":"+pw))
	default:
		return errors.New("set IOTLOAD_PASSWORD (for -user) or IOTLOAD_TOKEN")
	}

	before, err := scrape(ctx, c)
	if err != nil {
		return err
	}
	groups := []*group{
		{name: "device page (1 device, every reading)", n: c.deviceClients},
		{name: fmt.Sprintf("overview (all, latest %d/s)", c.latest), n: c.overviewClients},
		{name: "all devices, every reading", n: c.allClients},
		{name: "idle (subscribed, no readings)", n: c.idleClients},
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	if err := connect(cctx, c, groups, &wg); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d clients connected and subscribed in %v\n", total(groups), time.Since(start).Round(time.Millisecond))
	sleep(ctx, c.settle)
	held, err := scrape(ctx, c)
	if err != nil {
		return err
	}
	if n := total(groups); n > 0 {
		per := func(a, b float64) float64 { return (a - b) / 1024 / float64(n) }
		// Resident memory moves by megabytes as the runtime gives memory
		// back; with few clients that is more than they hold.
		rss := "resident less than the noise"
		if d := per(held.rss, before.rss); d > 0 {
			rss = fmt.Sprintf("%.1f KB resident", d)
		}
		fmt.Fprintf(out, "server, per connected client: %s, %.1f KB Go heap and stacks (%.1f KB heap, %.1f KB stacks), %.2f goroutines\n",
			rss, per(held.goMem(), before.goMem()), per(held.heap, before.heap), per(held.stack, before.stack),
			(held.goroutines-before.goroutines)/float64(n))
	}
	for _, g := range groups {
		g.reset()
	}

	if c.mqtt != "" && c.rate > 0 {
		sum, err := simulator.Load(ctx, simulator.LoadConfig{Broker: c.mqtt, Rate: c.rate, Devices: c.devices,
			Duration: c.dur, QoS: byte(c.qos), Stamp: true, ClientPrefix: "iotload"})
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "publisher:", sum)
	} else {
		sleep(ctx, c.dur)
	}
	sleep(ctx, c.settle)
	after, err := scrape(ctx, c)
	if err != nil {
		return err
	}
	cancel()
	wg.Wait()

	fmt.Fprintf(out, "server: %.2f s CPU over the run (%.0f%% of one core), %d frames dropped readings: %.0f\n",
		after.cpu-held.cpu, 100*(after.cpu-held.cpu)/(c.dur+c.settle).Seconds(), int64(after.frames-held.frames), after.dropped-held.dropped)
	fmt.Fprintln(out, "| clients | subscribed to | readings received | p50 | p90 | p99 | max |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|")
	for _, g := range groups {
		if g.n == 0 {
			continue
		}
		p := g.percentiles(0.5, 0.9, 0.99, 1)
		fmt.Fprintf(out, "| %d | %s | %d | %d ms | %d ms | %d ms | %d ms |\n", g.n, g.name, g.received.Load(), p[0], p[1], p[2], p[3])
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// group is clients with one kind of subscription, and the delays they saw.
type group struct {
	name     string
	n        int
	mu       sync.Mutex
	delays   []int32 // ms, one per reading received
	received atomic.Int64
}

func (g *group) reset() {
	g.mu.Lock()
	g.delays = g.delays[:0]
	g.mu.Unlock()
	g.received.Store(0)
}

func (g *group) add(ds []int32) {
	g.mu.Lock()
	g.delays = append(g.delays, ds...)
	g.mu.Unlock()
	g.received.Add(int64(len(ds)))
}

// percentiles returns the delays at the quantiles qs, in ms.
func (g *group) percentiles(qs ...float64) []int32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]int32, len(qs))
	if len(g.delays) == 0 {
		return out
	}
	slices.Sort(g.delays)
	for i, q := range qs {
		out[i] = g.delays[min(len(g.delays)-1, int(q*float64(len(g.delays))))]
	}
	return out
}

func total(gs []*group) int {
	n := 0
	for _, g := range gs {
		n += g.n
	}
	return n
}

// connect opens and subscribes every group's clients, a few at a time,
// and leaves each reading its frames until ctx ends.
func connect(ctx context.Context, c config, groups []*group, wg *sync.WaitGroup) error {
	ws := "ws" + strings.TrimPrefix(c.url, "http") + "/ws"
	sem := make(chan struct{}, c.dialParallelism)
	errc := make(chan error, 1)
	var dials sync.WaitGroup
	for gi, g := range groups {
		for i := range g.n {
			var sub string
			switch gi {
			case 0:
				sub = fmt.Sprintf(`{"subscribe":{"devices":[%q]}}`, fmt.Sprintf(c.deviceFormat, i%c.devices+1))
			case 1:
				sub = fmt.Sprintf(`{"subscribe":{"devices":["*"],"latest":%d}}`, c.latest)
			case 2:
				sub = `{"subscribe":{"devices":["*"]}}`
			default:
				sub = `{"subscribe":{"devices":["iotload-idle"]}}`
			}
			sem <- struct{}{}
			dials.Add(1)
			go func() {
				defer dials.Done()
				conn, err := dial(ctx, ws, c.header, sub)
				<-sem
				if err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer conn.CloseNow()
					receive(ctx, conn, g)
				}()
			}()
		}
	}
	dials.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func dial(ctx context.Context, url, auth, sub string) (*websocket.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(dctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {auth}}})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("open %s: %s", url, resp.Status)
		}
		return nil, fmt.Errorf("open %s: %w", url, err)
	}
	conn.SetReadLimit(-1)
	if err := conn.Write(dctx, websocket.MessageText, []byte(sub)); err != nil {
		conn.CloseNow()
		return nil, err
	}
	for { // until the subscription is confirmed
		_, b, err := conn.Read(dctx)
		if err != nil {
			conn.CloseNow()
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		if bytes.HasPrefix(b, []byte(`{"subscribed"`)) {
			return conn, nil
		}
	}
}

// receive reads frames until ctx ends, taking each reading's delay from
// its t (the publisher's send time, Unix ms) to now.
func receive(ctx context.Context, conn *websocket.Conn, g *group) {
	tKey := []byte(`"t":`)
	var ds []int32
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return
		}
		now := time.Now().UnixMilli()
		if !bytes.HasPrefix(b, []byte(`{"readings"`)) {
			continue
		}
		ds = ds[:0]
		for {
			i := bytes.Index(b, tKey)
			if i < 0 {
				break
			}
			b = b[i+len(tKey):]
			j := bytes.IndexByte(b, ',')
			t, err := strconv.ParseInt(string(b[:j]), 10, 64)
			if err == nil {
				ds = append(ds, int32(max(0, now-t)))
			}
		}
		g.add(ds)
	}
}

// figures are what the server's /metrics says of it.
type figures struct {
	rss, heap, stack, goroutines, cpu, frames, dropped float64
}

func (f figures) goMem() float64 { return f.heap + f.stack }

// scrape reads the server's figures from /metrics, after a garbage
// collection where the server's profiler is on (-pprof), so that memory
// figures count what is live.
func scrape(ctx context.Context, c config) (figures, error) {
	if req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/debug/pprof/heap?gc=1", nil); err == nil {
		req.Header.Set("Authorization", c.header)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/metrics", nil)
	req.Header.Set("Authorization", c.header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return figures{}, fmt.Errorf("read the server's /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return figures{}, fmt.Errorf("read the server's /metrics: %s (is the user an admin?)", resp.Status)
	}
	var f figures
	fields := map[string]*float64{
		"process_resident_memory_bytes":            &f.rss,
		"go_memstats_heap_inuse_bytes":             &f.heap,
		"go_memstats_stack_inuse_bytes":            &f.stack,
		"go_goroutines":                            &f.goroutines,
		"process_cpu_seconds_total":                &f.cpu,
		"iotdash_websocket_frames_total":           &f.frames,
		"iotdash_websocket_dropped_readings_total": &f.dropped,
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if p := fields[name]; ok && p != nil {
			*p, _ = strconv.ParseFloat(val, 64)
		}
	}
	return f, sc.Err()
}
