package store_test

import (
	"fmt"
	"testing"
	"time"

	"iotdash/store"
)

func TestLocalBuckets(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	kolkata, _ := time.LoadLocation("Asia/Kolkata")
	ms := func(s string, loc *time.Location) int64 {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	const hour, day = int64(3_600_000), int64(86_400_000)
	for _, c := range []struct {
		name     string
		loc      *time.Location
		from, to string
		step     int64
		want     []string // each query's buckets: local start, length
	}{
		{"days in winter start at local midnight", berlin, "2026-01-10 00:00", "2026-01-13 00:00", day,
			[]string{"2026-01-10 00:00 +0100 ×3 24h0m0s"}},
		{"the day the clock goes forward has 23 hours", berlin, "2026-03-28 00:00", "2026-03-31 00:00", day,
			[]string{"2026-03-28 00:00 +0100 ×1 24h0m0s", "2026-03-29 00:00 +0100 ×1 23h0m0s", "2026-03-30 00:00 +0200 ×1 24h0m0s"}},
		{"the day the clock goes back has 25", berlin, "2026-10-24 12:00", "2026-10-26 06:00", day,
			[]string{"2026-10-24 00:00 +0200 ×1 24h0m0s", "2026-10-25 00:00 +0200 ×1 25h0m0s", "2026-10-26 00:00 +0100 ×1 24h0m0s"}},
		{"hours across the clock going forward", berlin, "2026-03-29 00:00", "2026-03-29 06:00", hour,
			[]string{"2026-03-29 00:00 +0100 ×5 1h0m0s"}},
		{"the hour that repeats is one bucket of two", berlin, "2026-10-25 00:00", "2026-10-25 06:00", hour,
			[]string{"2026-10-25 00:00 +0200 ×2 1h0m0s", "2026-10-25 02:00 +0200 ×1 2h0m0s", "2026-10-25 03:00 +0100 ×3 1h0m0s"}},
		{"hours half an hour off UTC", kolkata, "2026-05-01 10:10", "2026-05-01 13:00", hour,
			[]string{"2026-05-01 10:00 +0530 ×3 1h0m0s"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := store.Query{Device: "d", Metric: "m", From: ms(c.from, c.loc), To: ms(c.to, c.loc), Step: c.step, Agg: store.AggMean}
			qs := store.LocalBuckets(q, c.loc)
			var got []string
			for _, p := range qs {
				first := p.BucketStart(p.From)
				n := (p.To - first + p.Step - 1) / p.Step
				got = append(got, fmt.Sprintf("%s ×%d %s", time.UnixMilli(first).In(c.loc).Format("2006-01-02 15:04 -0700"), n, time.Duration(p.Step)*time.Millisecond))
				if err := p.Validate(); err != nil {
					t.Errorf("%+v: %v", p, err)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("got  %q\nwant %q", got, c.want)
			}
			if qs[0].From != q.From || qs[len(qs)-1].To != q.To {
				t.Errorf("the queries cover %d..%d, want %d..%d", qs[0].From, qs[len(qs)-1].To, q.From, q.To)
			}
			for i := 1; i < len(qs); i++ {
				if qs[i].From != qs[i-1].To {
					t.Errorf("query %d starts at %d, the one before ends at %d", i, qs[i].From, qs[i-1].To)
				}
			}
		})
	}
	if qs := store.LocalBuckets(store.Query{From: 0, To: day, Step: day}, time.UTC); len(qs) != 1 || qs[0].Offset != 0 {
		t.Errorf("UTC: %+v, want the query as it is", qs)
	}
}
