package devices

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// benchFleet is a fleet of n devices of m metrics each (iotsim's load
// mode makes 2: temperature and humidity), all of them seen once, and one
// message of each: the messages a commit hands the fleet are taken from it
// in turn.
func benchFleet(n, m int) (*Fleet, []string, [][]Reading) {
	f := NewFleet(func(string, Status) {})
	metrics := []string{"temperature", "humidity"}
	for i := len(metrics); i < m; i++ {
		metrics = append(metrics, fmt.Sprintf("metric-%d", i))
	}
	ids := make([]string, n)
	msgs := make([][]Reading, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("load-%04d", i+1)
		for _, name := range metrics[:m] {
			msgs[i] = append(msgs[i], Reading{Device: ids[i], Metric: name, Time: MinTime, Value: 21})
		}
		f.Seen(ids[i], msgs[i])
	}
	return f, ids, msgs
}

// readers keeps n goroutines reading the fleet (a device at a time, as the
// pages, the push and the alerts do) until the returned func is called.
func readers(f *Fleet, ids []string, n int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() {
			for i := r; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				f.Get(ids[i%len(ids)])
			}
		})
	}
	return func() { close(done); wg.Wait() }
}

// BenchmarkSeen is the fleet's bookkeeping per message that ingest's
// commit loop hands it: groups of 100 messages of 2 readings each, from a
// fleet of 1,000 devices, with and without a reader holding the lock now
// and then, and of 16 readings each.
//
//	go test -run '^$' -bench 'Seen|Admit' -benchmem ./devices
func BenchmarkSeen(b *testing.B) {
	for _, c := range []struct{ readers, metrics int }{{0, 2}, {1, 2}, {0, 16}} {
		name := fmt.Sprintf("readers=%d", c.readers)
		if c.metrics != 2 {
			name = fmt.Sprintf("metrics=%d", c.metrics)
		}
		b.Run(name, func(b *testing.B) {
			f, ids, msgs := benchFleet(1000, c.metrics)
			stop := readers(f, ids, c.readers)
			defer stop()
			const group = 100
			ms := make([]Message, 0, group)
			t := int64(MinTime)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += group {
				t += 1000
				ms = ms[:0]
				for j := i; j < i+group && j < b.N; j++ {
					k := j % len(ids)
					rs := msgs[k]
					for r := range rs {
						rs[r].Time = t
					}
					ms = append(ms, Message{Device: ids[k], Readings: rs})
				}
				f.SeenAll(ms)
			}
		})
	}
}

// BenchmarkAdmit is the fleet's admission per message of a known device
// of 2 known metrics, the case of nearly every message, with and without
// a reader.
func BenchmarkAdmit(b *testing.B) {
	for _, nr := range []int{0, 1} {
		b.Run(fmt.Sprintf("readers=%d", nr), func(b *testing.B) {
			f, ids, msgs := benchFleet(1000, 2)
			f.now = func() time.Time { return time.UnixMilli(MinTime) }
			stop := readers(f, ids, nr)
			defer stop()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i % len(ids)
				if rs, _ := f.Admit(ids[k], msgs[k]); len(rs) != 2 {
					b.Fatalf("admitted %d readings, want 2", len(rs))
				}
			}
		})
	}
}
