package sqlite

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"iotdash/simulator"
	"iotdash/store"
)

// BenchmarkBlockEncodings compares the two value encodings a block may use
// on the same data, a day of hour blocks of each: every metric of every
// simulator kind at 1 Hz at its own resolution, and round(20 + 2·sin(t) +
// noise, 2) at 1 Hz, with exact times and with times off by up to 20 ms.
// Each reports the bytes a reading of the encoded blocks (times included,
// SQLite's own overhead not) and the decoding time per reading:
//
//	go test -run '^$' -bench BlockEncodings ./store/sqlite
func BenchmarkBlockEncodings(b *testing.B) {
	type series struct {
		name string
		ps   []store.Point
	}
	const t0 = int64(1767225600000)
	var data []series
	for _, k := range simulator.Kinds() {
		m := simulator.NewModel(k, 1, 0)
		byMetric := make([][]store.Point, len(k.Metrics))
		for sec := range int64(86400) {
			s := m.At(time.UnixMilli(t0 + sec*1000))
			for i, v := range s.Values {
				if !math.IsNaN(v) {
					byMetric[i] = append(byMetric[i], store.Point{T: s.Time, V: v})
				}
			}
		}
		for i, mt := range k.Metrics {
			data = append(data, series{k.Name + "/" + mt.Name, byMetric[i]})
		}
	}
	r := rand.New(rand.NewPCG(7, 7))
	sine, jitter := make([]store.Point, 86400), make([]store.Point, 86400)
	for i := range sine {
		v := math.Round((20+2*math.Sin(float64(i)/3600)+r.NormFloat64()*0.05)*100) / 100
		sine[i] = store.Point{T: t0 + int64(i)*1000, V: v}
		jitter[i] = store.Point{T: t0 + int64(i)*1000 + int64(r.IntN(21)) - 10, V: v}
	}
	data = append(data, series{"sine", sine}, series{"sine-jitter", jitter})

	for _, s := range data {
		var hours [][]store.Point
		for start := 0; start < len(s.ps); {
			h := store.FloorTo(s.ps[start].T, hour)
			end := start
			for end < len(s.ps) && s.ps[end].T < h+hour {
				end++
			}
			hours = append(hours, s.ps[start:end])
			start = end
		}
		for _, enc := range []string{"xor", "decimal"} {
			var blocks [][]byte
			size := 0
			for _, ps := range hours {
				d := -1
				if enc == "decimal" {
					d = decimals(ps)
				}
				blocks = append(blocks, encodeBlock(nil, ps, d))
				size += len(blocks[len(blocks)-1])
			}
			b.Run(fmt.Sprintf("%s/%s", s.name, enc), func(b *testing.B) {
				var buf []store.Point
				for b.Loop() {
					for _, blk := range blocks {
						var err error
						if buf, err = decodeBlock(buf[:0], blk); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(size)/float64(len(s.ps)), "B/reading")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(s.ps)), "ns/reading")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
