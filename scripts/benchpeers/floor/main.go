// Command floor is the peer benchmark's floor: the least a Go consumer
// does that acknowledges QoS 1 messages only after a durable write. It
// reads with iotdash's own MQTT subscriber (internal/mqttsub, the same
// read pause), hands each message to a commit goroutine over a channel,
// writes each group's payloads with one pwrite and one fdatasync into a
// file made ahead of time, and then acknowledges the group, as ingest's
// commit loop and the journal do; it decodes nothing, keeps no fleet and
// sends nothing on. Every 100 ms it prints "received N" on stdout.
//
// scripts/benchpeers runs it beside iotdash with IOTDASH_BENCH_FLOOR=1, so
// that what iotdash costs a message can be read against what the MQTT
// reading, the fsync and the Go runtime cost by themselves.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"iotdash/ingest"
	"iotdash/internal/mqttsub"
)

// fileSize is the file's size; writes wrap around within it.
const fileSize = 64 << 20

type message struct {
	payload []byte
	ack     mqttsub.Ack
}

func main() {
	broker := flag.String("broker", "tcp://127.0.0.1:1883", "the MQTT broker")
	path := flag.String("file", "floor.log", "the file written and synced for each group")
	pause := flag.Duration("pause", ingest.DefaultReadPause, "the subscriber's read pause (iotdash's default)")
	flag.Parse()

	f, err := os.OpenFile(*path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		log.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < fileSize; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros, off); err != nil {
			log.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		log.Fatal(err)
	}

	in := make(chan message, 4096)
	subscribed := make(chan struct{}, 1)
	c, err := mqttsub.New(mqttsub.Options{
		Broker: *broker, ClientID: "bench-floor", ReadPause: *pause,
		Handler: func(m mqttsub.Message) { in <- message{m.Payload, m.Ack} },
		OnConnect: func(c *mqttsub.Client) error {
			_, err := c.Subscribe(10*time.Second, mqttsub.Subscription{Topic: "devices/+/telemetry", QoS: 1})
			if err == nil {
				select {
				case subscribed <- struct{}{}:
				default:
				}
			}
			return err
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	c.Start()
	<-subscribed
	fmt.Println("subscribed")

	var received atomic.Int64
	go func() {
		for range time.Tick(100 * time.Millisecond) {
			fmt.Printf("received %d\n", received.Load())
		}
	}()

	// The commit loop: ingest's rule, a group of fewer than
	// ingest.DefaultMinGroup waits up to ingest.DefaultLinger for more.
	var rec []byte
	var off int64
	group := make([]message, 0, 4096)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		group = append(group[:0], <-in)
	fill:
		for len(group) < cap(group) {
			select {
			case m := <-in:
				group = append(group, m)
				continue
			default:
			}
			if len(group) >= ingest.DefaultMinGroup {
				break
			}
			linger.Reset(ingest.DefaultLinger)
			select {
			case m := <-in:
				group = append(group, m)
				linger.Stop()
			case <-linger.C:
				break fill
			}
		}
		rec = rec[:0]
		for _, m := range group {
			rec = append(rec, m.payload...)
		}
		if off+int64(len(rec)) > fileSize {
			off = 0
		}
		if _, err := f.WriteAt(rec, off); err != nil {
			log.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			log.Fatal(err)
		}
		off += int64(len(rec))
		for _, m := range group {
			m.ack.Queue()
		}
		c.Flush()
		received.Add(int64(len(group)))
	}
}
