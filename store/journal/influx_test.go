package journal_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"iotdash/devices"
	"iotdash/internal/testenv"
	"iotdash/store"
	"iotdash/store/influx"
	"iotdash/store/journal"
)

var _ journal.Writer = (*influx.Store)(nil)

// switchable is a Writer whose InfluxDB can be swapped while a drain runs.
type switchable struct{ to atomic.Pointer[influx.Store] }

func (w *switchable) Append(ctx context.Context, rs []devices.Reading) error {
	return w.to.Load().Append(ctx, rs)
}

// TestDrainIntoInfluxDB drains into the real InfluxDB, through a period in
// which the writer points at a port nothing listens on: every reading ends
// up in InfluxDB once, with its value.
func TestDrainIntoInfluxDB(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	live, err := influx.New(influx.Config{URL: db.URL, Bucket: db.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	dead, err := influx.New(influx.Config{URL: fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)), Bucket: db.Bucket, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()

	j := open(t, filepath.Join(t.TempDir(), "j.db"), journal.Options{})
	var w switchable
	w.to.Store(live)
	drain(t, j, &w, 200)

	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var want []devices.Reading
	// Messages of two metrics from four devices, appended in batches of
	// 20 as the ingest pipeline would.
	appendN := func(messages int) {
		var rs []devices.Reading
		for range messages {
			i := len(want) / 2
			tm := base + int64(i)*250
			for _, m := range []string{"temperature", "humidity"} {
				r := devices.Reading{Device: fmt.Sprintf("dev-%d", i%4), Metric: m, Time: tm, Value: float64(i) + 0.5}
				rs = append(rs, r)
				want = append(want, r)
			}
			if len(rs) == 20 {
				if err := j.Append(ctx, rs); err != nil {
					t.Fatal(err)
				}
				rs = nil
			}
		}
		if err := j.Append(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}

	appendN(150)
	testenv.WaitFor(t, 20*time.Second, "the first readings to reach InfluxDB", func() bool { return j.Stats().Written == 300 })

	w.to.Store(dead)
	appendN(250)
	testenv.WaitFor(t, 20*time.Second, "writes to fail", func() bool { return j.Stats().Failures >= 2 })
	if s := j.Stats(); s.Healthy || s.Backlog != 500 || s.LastError == "" {
		t.Errorf("while InfluxDB is unreachable: %+v, want unhealthy with 500 waiting and the error", s)
	}
	appendN(100) // still accepted

	w.to.Store(live)
	testenv.WaitFor(t, 20*time.Second, "the backlog to reach InfluxDB", func() bool { return j.Stats().Backlog == 0 })
	if s := j.Stats(); !s.Healthy || s.Written != int64(len(want)) || s.Rejected != 0 {
		t.Errorf("after: %+v, want healthy and all %d written", s, len(want))
	}

	// Every reading is in InfluxDB once, with its value.
	type series struct{ device, metric string }
	wantBy := map[series][]store.Point{}
	for _, r := range want {
		k := series{r.Device, r.Metric}
		wantBy[k] = append(wantBy[k], store.Point{T: r.Time, V: r.Value})
	}
	total := 0
	for k, ps := range wantBy {
		got, err := live.Query(ctx, store.Query{Device: k.device, Metric: k.metric, From: base, To: base + 24*60*60*1000})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(ps) {
			t.Errorf("%v: got %d points, want %d\n got %v\nwant %v", k, len(got), len(ps), got, ps)
		}
		total += len(got)
	}
	if total != len(want) {
		t.Errorf("InfluxDB holds %d readings, want %d", total, len(want))
	}
}
