package ingest

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"iotdash/devices"
)

type discard struct{}

func (discard) Append(context.Context, []devices.Reading) error { return nil }

// BenchmarkSubmit is the work a message costs on the network goroutine
// before it is queued for its commit (topic, decoding, the clock check,
// the fleet's admission) for iotsim's load payload from 1,000 devices the
// fleet knows. The queue is drained at once, by a goroutine of its own.
//
//	go test -run '^$' -bench Submit -benchmem ./ingest
func BenchmarkSubmit(b *testing.B) {
	fleet := devices.NewFleet(nil)
	in := New(Config{Store: discard{}, Fleet: fleet})
	topics := make([]string, 1000)
	payloads := make([][]byte, len(topics))
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	for i := range topics {
		topics[i] = fmt.Sprintf("devices/load-%04d/telemetry", i+1)
		payloads[i] = []byte(`{"ts":` + ts + `,"temperature":21.` + strconv.Itoa(i%10) + `,"humidity":40.` + strconv.Itoa(i%7) + `}`)
		id := topics[i][len("devices/") : len(topics[i])-len("/telemetry")]
		fleet.Seen(id, []devices.Reading{{Device: id, Metric: "temperature", Time: devices.MinTime}, {Device: id, Metric: "humidity", Time: devices.MinTime}})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range in.in {
		}
	}()
	ack := func() {}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % len(topics)
		in.submit(message{topic: topics[k], payload: payloads[k], ack: ack})
	}
	b.StopTimer()
	close(in.in)
	<-done
}
