package journal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/tidwall/wal"

	"iotdash/devices"
	"iotdash/store/journal"
)

// BenchmarkCandidates weighs the journal's own log against
// github.com/tidwall/wal (Telegraf's disk buffer) on what the ingest path
// asks of it: a group of readings appended and synced, then read back and
// dropped from the front once the store has them. tidwall/wal is given the
// same records (the readings as JSON, as Telegraf gives it metrics in its
// own format) and syncs each write as the journal does.
func BenchmarkCandidates(b *testing.B) {
	for _, batch := range []int{20, 500} {
		rs := readings(0, batch)
		b.Run(fmt.Sprintf("journal/readings=%d", batch), func(b *testing.B) {
			j := open(b, filepath.Join(b.TempDir(), "j"), journal.Options{})
			ctx := context.Background()
			var w recorder
			cpu0 := cpuTime()
			for i := 0; b.Loop(); i++ {
				if err := j.Append(ctx, rs); err != nil {
					b.Fatal(err)
				}
				if i%50 == 49 {
					if err := j.Flush(ctx, &w); err != nil {
						b.Fatal(err)
					}
					w.got = w.got[:0]
				}
			}
			report(b, batch, cpu0)
		})
		b.Run(fmt.Sprintf("tidwall-wal/readings=%d", batch), func(b *testing.B) {
			l, err := wal.Open(filepath.Join(b.TempDir(), "w"), &wal.Options{NoSync: false, SegmentSize: 16 << 20, LogFormat: wal.Binary, NoCopy: true})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			cpu0 := cpuTime()
			var first uint64 = 1
			for i := uint64(1); b.Loop(); i++ {
				rec, _ := json.Marshal(rs)
				if err := l.Write(i, rec); err != nil {
					b.Fatal(err)
				}
				if i%50 == 0 {
					for k := first; k <= i; k++ {
						data, err := l.Read(k)
						if err != nil {
							b.Fatal(err)
						}
						var back []devices.Reading
						if err := json.Unmarshal(data, &back); err != nil {
							b.Fatal(err)
						}
					}
					if err := l.TruncateFront(i); err != nil {
						b.Fatal(err)
					}
					first = i
				}
			}
			report(b, batch, cpu0)
		})
	}
}

func report(b *testing.B, batch int, cpu0 interface{ Microseconds() int64 }) {
	s := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)/s, "commits/s")
	b.ReportMetric(float64(cpuTime().Microseconds()-cpu0.Microseconds())/float64(b.N*batch), "cpu-µs/reading")
}
