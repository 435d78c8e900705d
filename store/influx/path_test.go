package influx

import (
	"context"
	"fmt"
	"testing"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"

	"iotdash/internal/testenv"
	"iotdash/store"
	"iotdash/store/storetest"
)

// BenchmarkQueryPath reads the same Flux answers, a day of raw readings
// and 1,000 means of it, through the two ways this package had of reading
// them: InfluxDB's Go client library (annotated CSV, a record per row) and
// the package's own reader of plain CSV (fluxCSV). The package keeps the
// faster one for every query; the library stays here, in a test, for the
// comparison.
func BenchmarkQueryPath(b *testing.B) {
	ctx := context.Background()
	db := testenv.StartInfluxDB(b)
	s, err := New(Config{URL: db.URL, Bucket: db.Bucket})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	rs, q := storetest.Week(1)
	for len(rs) > 0 {
		n := min(len(rs), 5000)
		if err := s.Append(ctx, rs[:n]); err != nil {
			b.Fatal(err)
		}
		rs = rs[n:]
	}
	client := influxdb2.NewClientWithOptions(db.URL, "", influxdb2.DefaultOptions().SetHTTPClient(s.http).SetUseGZip(false))
	b.Cleanup(client.Close)
	lib := client.QueryAPI("")
	for _, c := range []struct {
		name string
		step int64
		want int
	}{{"raw", 0, 86400}, {"mean", 86400, 1000}} {
		flux := fluxQuery(s.bucket, q.Device, q.Metric, q.From, q.To, c.step, "mean", 0)
		if c.step == 0 {
			flux = fluxQuery(s.bucket, q.Device, q.Metric, q.From, q.To, 0, "", 0)
		}
		b.Run(fmt.Sprintf("%s/library", c.name), func(b *testing.B) {
			for b.Loop() {
				res, err := lib.Query(ctx, flux)
				if err != nil {
					b.Fatal(err)
				}
				var ps []store.Point
				for res.Next() {
					rec := res.Record()
					v, _ := rec.Value().(float64)
					ps = append(ps, store.Point{T: rec.Time().UnixMilli(), V: v})
				}
				res.Close()
				if res.Err() != nil || len(ps) != c.want {
					b.Fatalf("got %d points, want %d, %v", len(ps), c.want, res.Err())
				}
			}
			b.ReportMetric(float64(c.want)*float64(b.N)/b.Elapsed().Seconds(), "points/s")
		})
		b.Run(fmt.Sprintf("%s/csv", c.name), func(b *testing.B) {
			for b.Loop() {
				var ps []store.Point
				err := s.points(ctx, s.stream, flux, nil, q.From-86400000, q.To, func(chunk []store.Point) error {
					ps = append(ps, chunk...)
					return nil
				})
				if err != nil || len(ps) != c.want {
					b.Fatalf("got %d points, want %d, %v", len(ps), c.want, err)
				}
			}
			b.ReportMetric(float64(c.want)*float64(b.N)/b.Elapsed().Seconds(), "points/s")
		})
	}
}
