package mqttsub_test

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"iotdash/internal/mqttconn"
	"iotdash/internal/mqttsub"
	"iotdash/internal/testenv"
)

// BenchmarkSubscriber: a real Mosquitto (defaults, but an unbounded queue)
// holds b.N QoS 1 messages for a persistent session; the subscriber
// connects and takes them all, acknowledging them in groups from another
// goroutine as ingest's commit loop does (everything that arrived while
// the previous group was acknowledged), 20 in flight at a time. Once
// with paho as ingest used it (manual acknowledgement, order kept, writes
// batched for 200 µs), once with this package. cpu-ns/msg is the whole
// test process's user and system CPU (the broker is another process)
// divided by the messages; allocs/op are per message.
//
//	go test -run '^$' -bench Subscriber -benchtime 100000x ./internal/mqttsub
func BenchmarkSubscriber(b *testing.B) {
	for _, sub := range []struct {
		name string
		run  func(b *testing.B, broker string, n int)
	}{{"paho", receivePaho}, {"mqttsub", receiveMqttsub}} {
		b.Run(sub.name, func(b *testing.B) {
			mq := testenv.StartMosquitto(b, "max_queued_messages 0")
			sub.run(b, mq.URL, 0) // the session and its subscription
			b.StopTimer()
			fill(b, mq.URL, b.N)
			runtime.GC()
			var before syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			b.ReportAllocs()
			b.StartTimer()
			sub.run(b, mq.URL, b.N)
			b.StopTimer()
			var after syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/msg")
		})
	}
}

// fill publishes n messages of 100 devices at QoS 1 and returns once the
// broker has them all.
func fill(b *testing.B, broker string, n int) {
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("bench-pub").SetMaxResumePubInFlight(1000))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	var last mqtt.Token
	for i := range n {
		last = c.Publish(fmt.Sprintf("devices/dev-%d/telemetry", i%100), 1, false,
			fmt.Sprintf(`{"ts":%d,"seq":%d,"temperature":21.5,"humidity":40.25}`, 1764400000000+int64(i), i))
		if i%1000 == 999 {
			last.Wait()
		}
	}
	if last != nil && (!last.WaitTimeout(time.Minute) || last.Error() != nil) {
		b.Fatalf("publish: %v", last.Error())
	}
}

const benchTopic = "devices/+/telemetry"

// commit acknowledges what arrives on ch in groups, calling ack for each
// and flush after each group, until n are acknowledged.
func commit[T any](ch <-chan T, n int, ack func(T), flush func()) {
	for done := 0; done < n; {
		ack(<-ch)
		done++
	more:
		for done < n {
			select {
			case m := <-ch:
				ack(m)
				done++
			default:
				break more
			}
		}
		flush()
	}
}

func receivePaho(b *testing.B, broker string, n int) {
	ch := make(chan mqtt.Message, 4096)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("bench-sub").
		SetCleanSession(false).SetAutoAckDisabled(true).SetOrderMatters(true).
		SetKeepAlive(15 * time.Second).
		SetCustomOpenConnectionFn(mqttconn.Batched(200 * time.Microsecond)).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { ch <- m }))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("connect: %v", tok.Error())
	}
	if tok := c.Subscribe(benchTopic, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("subscribe: %v", tok.Error())
	}
	commit(ch, n, func(m mqtt.Message) { m.Ack() }, func() {})
	c.Disconnect(500)
}

func receiveMqttsub(b *testing.B, broker string, n int) {
	ch := make(chan mqttsub.Ack, 4096)
	subscribed := make(chan error, 1)
	c, err := mqttsub.New(mqttsub.Options{Broker: broker, ClientID: "bench-sub",
		Handler: func(m mqttsub.Message) { ch <- m.Ack },
		OnConnect: func(c *mqttsub.Client) error {
			_, err := c.Subscribe(10*time.Second, mqttsub.Subscription{Topic: benchTopic, QoS: 1})
			select {
			case subscribed <- err:
			default:
			}
			return err
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	c.Start()
	if err := <-subscribed; err != nil {
		b.Fatalf("subscribe: %v", err)
	}
	commit(ch, n, mqttsub.Ack.Queue, func() { c.Flush() })
	c.Disconnect(500 * time.Millisecond)
}
