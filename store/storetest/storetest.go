// Package storetest is the conformance suite every storage backend passes:
// the same readings written, the same queries asked, the same answers
// required, computed here from the readings rather than read back from a
// store.
//
// It also holds the benchmark every backend runs (Benchmark) and the week
// of readings it loads (Week), which the API's benchmarks load too. It is
// for tests and benchmarks, not for production code.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"iotdash/devices"
	"iotdash/store"
)

// Store is what the suite needs of a backend.
type Store interface {
	// Append stores readings durably before it returns. Storing a reading
	// that is already there (same device, metric and time) stores no second
	// one; which value is kept is the backend's Overwrite.
	Append(ctx context.Context, rs []devices.Reading) error
	// Query answers q; see store.Query.
	Query(ctx context.Context, q store.Query) ([]store.Point, error)
	// Readings calls fn with the readings of q's series with
	// From <= t < To, in time order, in chunks of at most
	// store.ReadingsChunk; q's Step and Agg are ignored. An error from fn
	// stops it and is returned.
	Readings(ctx context.Context, q store.Query, fn func([]store.Point) error) error
	// Devices returns every device with readings, each with the latest
	// reading of each metric and the newest of them as its LastSeen.
	Devices(ctx context.Context) ([]devices.Device, error)
}

// Compactor is what a backend that compresses its older readings offers:
// Compact compresses now all that it would in time. The suite calls it
// where it matters, so that readings arriving late into compressed data,
// and redeliveries of compressed readings, are checked.
type Compactor interface {
	Compact(ctx context.Context) error
}

// Overwrite is what a backend does with a reading whose device, metric and
// time are those of one written before, in the same Append or an earlier one.
type Overwrite int

const (
	// FirstWriteWins keeps the value stored first, as a ledger would: a
	// device cannot rewrite its history (the embedded store).
	FirstWriteWins Overwrite = iota + 1
	// LastWriteWins replaces the value with the one written last
	// (InfluxDB, whose point is its series and time).
	LastWriteWins
)

// Run runs the suite, its cases in parallel, against a backend whose
// policy for a reading written again is ow. open returns a new, empty
// store for each subtest; the store must be closed by open's own t.Cleanup.
// Device names are unique per subtest, so a backend that cannot be emptied
// (a shared InfluxDB) still passes.
//
// Besides store.Query's meaning, the suite requires: an answer with no
// points is an empty, non-nil slice; a batch holding an invalid reading is
// rejected whole with an EInvalid error; an invalid query gives EInvalid;
// Readings gives exactly what Query gives with Step 0.
func Run(t *testing.T, ow Overwrite, open func(t *testing.T) Store) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Each case has a store of its own: they may run side by side,
			// which halves the suite's time against a server.
			t.Parallel()
			c.run(t, &suite{t: t, s: open(t), ow: ow})
		})
	}
}

var cases = []struct {
	name string
	run  func(t *testing.T, s *suite)
}{
	{"RawInTimeOrder", testRawInTimeOrder},
	{"EachAggregate", testEachAggregate},
	{"BucketEdges", testBucketEdges},
	{"OffsetBuckets", testOffsetBuckets},
	{"FromIncludedToExcluded", testFromIncludedToExcluded},
	{"Duplicates", testDuplicates},
	{"OutOfOrderAppends", testOutOfOrderAppends},
	{"DevicesAndMetricsApart", testDevicesAndMetricsApart},
	{"EmptyRange", testEmptyRange},
	{"FutureRange", testFutureRange},
	{"SingleReading", testSingleReading},
	{"StepNotDividingRange", testStepNotDividingRange},
	{"StepLongerThanRange", testStepLongerThanRange},
	{"LongRangeManySteps", testLongRangeManySteps},
	{"InvalidReadingRejectsBatch", testInvalidReadingRejectsBatch},
	{"InvalidQuery", testInvalidQuery},
	{"Gaps", testGaps},
	{"LateReadings", testLateReadings},
	{"LateIntoCompressedHours", testLateIntoCompressedHours},
	{"ExactNames", testExactNames},
	{"ManySeriesSameTimes", testManySeriesSameTimes},
	{"ValuesKeepTheirPrecision", testValuesKeepTheirPrecision},
	{"MinMaxBands", testMinMaxBands},
	{"ReadingsStream", testReadingsStream},
	{"ReadingsStop", testReadingsStop},
	{"DevicesFromHistory", testDevicesFromHistory},
}

// base is a fixed recent instant, 2026-01-01T00:00:00Z, so that every
// backend (InfluxDB's Flux ranges included) handles the times written.
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

const (
	second = int64(1000)
	minute = 60 * second
	hour   = 60 * minute
)

// suite is one subtest's store and the readings the subtest wrote to it, in
// the order written, from which the expected answers are computed.
type suite struct {
	t       *testing.T
	s       Store
	ow      Overwrite
	written []devices.Reading
}

// runID keeps device names of one test binary apart from an earlier run's
// in a database that outlives the run.
var runID = func() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}()

var deviceSeq atomic.Int64

// device returns a device id unique to this subtest and run, derived from
// the subtest's name so that stray data in a shared database says where it
// came from.
func (s *suite) device(suffix string) string {
	name := s.t.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for _, c := range name {
		if c < 128 && devices.ValidName(string(c)) {
			b.WriteRune(c)
		}
	}
	name = b.String()
	if len(name) > 32 {
		name = name[:32]
	}
	id := fmt.Sprintf("st-%s-%s-%d%s", name, runID, deviceSeq.Add(1), suffix)
	if !devices.ValidName(id) {
		s.t.Fatalf("storetest: made invalid device id %q", id)
	}
	return id
}

// compact compacts the store if it is a Compactor.
func (s *suite) compact() {
	s.t.Helper()
	if c, ok := s.s.(Compactor); ok {
		if err := c.Compact(context.Background()); err != nil {
			s.t.Fatalf("Compact: %v", err)
		}
	}
}

func (s *suite) append(rs ...devices.Reading) {
	s.t.Helper()
	if err := s.s.Append(context.Background(), rs); err != nil {
		s.t.Fatalf("Append(%d readings): %v", len(rs), err)
	}
	s.written = append(s.written, rs...)
}

// check asks q and compares the answer with the one computed from the
// readings written; with Step 0 it asks Readings too.
func (s *suite) check(q store.Query) {
	s.t.Helper()
	want := expect(s.written, s.ow, q)
	got, err := s.s.Query(context.Background(), q)
	if err != nil {
		s.t.Fatalf("Query(%+v): %v", q, err)
	}
	if got == nil {
		s.t.Errorf("Query(%+v) = nil, want a non-nil slice", q)
	}
	if !samePoints(got, want) {
		s.t.Errorf("Query(%+v)\n got %s\nwant %s", q, showPoints(got, q.From), showPoints(want, q.From))
	}
	if q.Step == 0 {
		got := s.readings(q)
		if !samePoints(got, want) {
			s.t.Errorf("Readings(%+v)\n got %s\nwant %s", q, showPoints(got, q.From), showPoints(want, q.From))
		}
	}
}

// readings collects what Readings gives for q, checking that every chunk
// holds 1 to store.ReadingsChunk readings.
func (s *suite) readings(q store.Query) []store.Point {
	s.t.Helper()
	out := []store.Point{}
	err := s.s.Readings(context.Background(), q, func(ps []store.Point) error {
		if len(ps) == 0 || len(ps) > store.ReadingsChunk {
			s.t.Errorf("Readings(%+v) passed a chunk of %d readings, want 1 to %d", q, len(ps), store.ReadingsChunk)
		}
		out = append(out, ps...)
		return nil
	})
	if err != nil {
		s.t.Fatalf("Readings(%+v): %v", q, err)
	}
	return out
}

// checkAll asks q with Step 0 and then with step and every aggregate.
func (s *suite) checkAll(q store.Query, step int64) {
	s.t.Helper()
	q.Step, q.Agg = 0, ""
	s.check(q)
	for _, a := range store.Aggs {
		q.Step, q.Agg = step, a
		s.check(q)
	}
}

// expect is the reference answer: the readings of q's series kept once per
// time (the first or the last written, as ow says), filtered to [From, To),
// ordered by time, and with Step > 0 combined per bucket. It shares no code
// with any backend.
func expect(written []devices.Reading, ow Overwrite, q store.Query) []store.Point {
	byTime := map[int64]float64{}
	for _, r := range written {
		if r.Device == q.Device && r.Metric == q.Metric && r.Time >= q.From && r.Time < q.To {
			if _, ok := byTime[r.Time]; ok && ow == FirstWriteWins {
				continue
			}
			byTime[r.Time] = r.Value
		}
	}
	times := make([]int64, 0, len(byTime))
	for tm := range byTime {
		times = append(times, tm)
	}
	slices.Sort(times)
	out := []store.Point{}
	if q.Step == 0 {
		for _, tm := range times {
			out = append(out, store.Point{T: tm, V: byTime[tm]})
		}
		return out
	}
	var vals []float64
	flush := func(start int64) {
		if len(vals) == 0 {
			return
		}
		p := store.Point{T: start, V: combine(q.Agg, vals)}
		if q.Agg == store.AggMinMax {
			p.V, p.Max = slices.Min(vals), slices.Max(vals)
		}
		out = append(out, p)
		vals = vals[:0]
	}
	start := int64(math.MinInt64)
	for _, tm := range times {
		// The bucket start computed by floor division, independently of
		// store.Query.BucketStart.
		b := int64(math.Floor(float64(tm+q.Offset)/float64(q.Step)))*q.Step - q.Offset
		if b != start {
			flush(start)
			start = b
		}
		vals = append(vals, byTime[tm])
	}
	flush(start)
	return out
}

// combine applies a to values given in time order.
func combine(a store.Agg, vals []float64) float64 {
	switch a {
	case store.AggFirst:
		return vals[0]
	case store.AggLast:
		return vals[len(vals)-1]
	case store.AggCount:
		return float64(len(vals))
	case store.AggMin:
		return slices.Min(vals)
	case store.AggMax:
		return slices.Max(vals)
	}
	sum := 0.0
	for _, v := range vals {
		sum += v
	}
	if a == store.AggMean {
		return sum / float64(len(vals))
	}
	return sum
}

// samePoints compares times exactly and values within a relative 1e-9, as a
// backend may add in another order than the reference.
func samePoints(got, want []store.Point) bool {
	if len(got) != len(want) {
		return false
	}
	near := func(a, b float64) bool {
		return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
	}
	for i := range got {
		if got[i].T != want[i].T || !near(got[i].V, want[i].V) || !near(got[i].Max, want[i].Max) {
			return false
		}
	}
	return true
}

// showPoints prints points with times relative to from, to keep failures
// readable.
func showPoints(ps []store.Point, from int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d points [", len(ps))
	for i, p := range ps {
		if i == 20 {
			fmt.Fprintf(&b, " ...")
			break
		}
		fmt.Fprintf(&b, " from%+d:%g", p.T-from, p.V)
		if p.Max != 0 {
			fmt.Fprintf(&b, "..%g", p.Max)
		}
	}
	b.WriteString(" ]")
	return b.String()
}

func reading(device, metric string, t int64, v float64) devices.Reading {
	return devices.Reading{Device: device, Metric: metric, Time: t, Value: v}
}

// rng is seeded per subtest so that a failure repeats.
func rng(t *testing.T) *mrand.Rand {
	var seed uint64
	for _, c := range t.Name() {
		seed = seed*31 + uint64(c)
	}
	return mrand.New(mrand.NewPCG(seed, 2026))
}

func testRawInTimeOrder(t *testing.T, s *suite) {
	d := s.device("")
	r := rng(t)
	var rs []devices.Reading
	for i := range 200 {
		rs = append(rs, reading(d, "temperature", base+int64(i)*1537+int64(r.IntN(1000)), r.NormFloat64()*10+20))
	}
	r.Shuffle(len(rs), func(i, j int) { rs[i], rs[j] = rs[j], rs[i] })
	s.append(rs[:70]...)
	s.append(rs[70:]...)
	q := store.Query{Device: d, Metric: "temperature", From: base, To: base + hour}
	s.check(q)
	got, err := s.s.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 200 {
		t.Errorf("got %d points, want the 200 written", len(got))
	}
	if !slices.IsSortedFunc(got, func(a, b store.Point) int { return int(a.T - b.T) }) {
		t.Errorf("points are not in time order")
	}
}

func testEachAggregate(t *testing.T, s *suite) {
	d := s.device("")
	r := rng(t)
	var rs []devices.Reading
	// Uneven gaps so buckets hold different numbers of readings, and a few
	// empty buckets, with negative and fractional values.
	tm := base + 250
	for range 300 {
		rs = append(rs, reading(d, "power", tm, math.Round(r.NormFloat64()*1e5)/1e3))
		tm += int64(r.IntN(4000)) + 1
		if r.IntN(40) == 0 {
			tm += 30 * second
		}
	}
	s.append(rs...)
	for _, a := range store.Aggs {
		t.Run(string(a), func(t *testing.T) {
			sub := &suite{t: t, s: s.s, ow: s.ow, written: s.written}
			for _, step := range []int64{10 * second, 7 * second, minute} {
				sub.check(store.Query{Device: d, Metric: "power", From: base, To: tm + 1, Step: step, Agg: a})
			}
		})
	}
}

func testBucketEdges(t *testing.T, s *suite) {
	d := s.device("")
	const step = 10 * second
	// Readings on each side of and exactly on bucket boundaries: one on a
	// boundary belongs to the bucket that starts there.
	s.append(
		reading(d, "m", base, 1),
		reading(d, "m", base+step-1, 2),
		reading(d, "m", base+step, 4),
		reading(d, "m", base+step+1, 8),
		reading(d, "m", base+2*step-1, 16),
		reading(d, "m", base+3*step, 32),
	)
	s.checkAll(store.Query{Device: d, Metric: "m", From: base, To: base + 4*step}, step)
	got, err := s.s.Query(context.Background(), store.Query{Device: d, Metric: "m", From: base, To: base + 4*step, Step: step, Agg: store.AggSum})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Point{{T: base, V: 3}, {T: base + step, V: 28}, {T: base + 3*step, V: 32}}
	if !samePoints(got, want) {
		t.Errorf("sum per bucket: got %s, want %s", showPoints(got, base), showPoints(want, base))
	}
}

// testOffsetBuckets: buckets shifted back from the epoch by Offset, as a
// time zone's days and hours are (an hour at UTC+5:30 starts at :30).
func testOffsetBuckets(t *testing.T, s *suite) {
	d := s.device("")
	const hour, day = 3600 * second, 86400 * second
	start := base - base%day // a UTC midnight
	var rs []devices.Reading
	for i := range int64(60) {
		rs = append(rs, reading(d, "m", start+i*17*60*second, float64(i)))
	}
	s.append(rs...)
	q := store.Query{Device: d, Metric: "m", From: start, To: start + 18*hour}
	for _, off := range []int64{30 * 60 * second, hour - 1, 23 * hour} {
		for _, step := range []int64{hour, day} {
			if off >= step {
				continue
			}
			q.Offset = off
			s.checkAll(q, step)
		}
	}
	// One day at UTC+1 (Offset an hour): its bucket starts at 23:00 UTC.
	got, err := s.s.Query(context.Background(), store.Query{Device: d, Metric: "m", From: start, To: start + 18*hour, Step: day, Offset: hour, Agg: store.AggCount})
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.Point{{T: start - hour, V: 60}}; !samePoints(got, want) {
		t.Errorf("a day at UTC+1: got %s, want %s", showPoints(got, start), showPoints(want, start))
	}
	if _, err := s.s.Query(context.Background(), store.Query{Device: d, Metric: "m", From: start, To: start + hour, Step: hour, Offset: hour, Agg: store.AggCount}); devices.ErrorKind(err) != devices.EInvalid {
		t.Errorf("an offset as long as the step: %v, want EInvalid", err)
	}
}

func testFromIncludedToExcluded(t *testing.T, s *suite) {
	d := s.device("")
	from, to := base+5*second+123, base+50*second+456
	s.append(
		reading(d, "m", from-1, 100),
		reading(d, "m", from, 1),
		reading(d, "m", from+1000, 2),
		reading(d, "m", to-1, 3),
		reading(d, "m", to, 200),
	)
	q := store.Query{Device: d, Metric: "m", From: from, To: to}
	s.checkAll(q, 10*second)
	got, err := s.s.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Point{{T: from, V: 1}, {T: from + 1000, V: 2}, {T: to - 1, V: 3}}
	if !samePoints(got, want) {
		t.Errorf("got %s, want %s", showPoints(got, from), showPoints(want, from))
	}
}

func testDuplicates(t *testing.T, s *suite) {
	d := s.device("")
	// The same time twice in one batch, and again in a later batch: one
	// reading, with the value the backend's Overwrite keeps.
	s.append(
		reading(d, "m", base+1000, 1),
		reading(d, "m", base+2000, 2),
		reading(d, "m", base+1000, 3),
	)
	s.append(
		reading(d, "m", base+2000, 5),
		reading(d, "m", base+3000, 7),
	)
	// A redelivery of what is stored already.
	s.append(reading(d, "m", base+3000, 7))
	q := store.Query{Device: d, Metric: "m", From: base, To: base + minute}
	s.checkAll(q, 10*second)
	want := map[Overwrite][]store.Point{
		FirstWriteWins: {{T: base + 1000, V: 1}, {T: base + 2000, V: 2}, {T: base + 3000, V: 7}},
		LastWriteWins:  {{T: base + 1000, V: 3}, {T: base + 2000, V: 5}, {T: base + 3000, V: 7}},
	}[s.ow]
	if got := s.readings(q); !samePoints(got, want) {
		t.Errorf("readings: got %s, want %s", showPoints(got, base), showPoints(want, base))
	}
	got, err := s.s.Query(context.Background(), store.Query{Device: d, Metric: "m", From: base, To: base + minute, Step: minute, Agg: store.AggCount})
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.Point{{T: base, V: 3}}; !samePoints(got, want) {
		t.Errorf("count: got %s, want %s", showPoints(got, base), showPoints(want, base))
	}
}

func testOutOfOrderAppends(t *testing.T, s *suite) {
	d := s.device("")
	// Batches written newest first, each batch itself shuffled: late data
	// lands in buckets that already hold readings.
	r := rng(t)
	for b := 9; b >= 0; b-- {
		var rs []devices.Reading
		for i := range 30 {
			rs = append(rs, reading(d, "m", base+int64(b)*37*second+int64(i)*1300, float64(r.IntN(1000))/10))
		}
		r.Shuffle(len(rs), func(i, j int) { rs[i], rs[j] = rs[j], rs[i] })
		s.append(rs...)
	}
	s.checkAll(store.Query{Device: d, Metric: "m", From: base, To: base + 10*minute}, 30*second)
}

func testDevicesAndMetricsApart(t *testing.T, s *suite) {
	a, b := s.device("a"), s.device("b")
	var rs []devices.Reading
	for i := range 50 {
		tm := base + int64(i)*second
		rs = append(rs,
			reading(a, "temperature", tm, float64(i)),
			reading(a, "humidity", tm, float64(1000+i)),
			reading(b, "temperature", tm, float64(-i)),
			reading(b, "humidity", tm, float64(-1000-i)),
		)
	}
	s.append(rs...)
	for _, dev := range []string{a, b} {
		for _, m := range []string{"temperature", "humidity"} {
			s.checkAll(store.Query{Device: dev, Metric: m, From: base, To: base + minute}, 10*second)
		}
	}
	// A metric one device has and another does not, and a device never seen.
	s.check(store.Query{Device: a, Metric: "pressure", From: base, To: base + minute})
	s.check(store.Query{Device: s.device("never"), Metric: "temperature", From: base, To: base + minute, Step: second, Agg: store.AggMean})
}

func testEmptyRange(t *testing.T, s *suite) {
	d := s.device("")
	s.append(reading(d, "m", base, 1), reading(d, "m", base+hour, 2))
	// Between two readings, and ending just before one.
	s.checkAll(store.Query{Device: d, Metric: "m", From: base + 1, To: base + hour}, minute)
	s.checkAll(store.Query{Device: d, Metric: "m", From: base - hour, To: base}, minute)
	got, err := s.s.Query(context.Background(), store.Query{Device: d, Metric: "m", From: base + 1, To: base + hour})
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || len(got) != 0 {
		t.Errorf("got %#v, want an empty non-nil slice", got)
	}
}

func testFutureRange(t *testing.T, s *suite) {
	d := s.device("")
	s.append(reading(d, "m", base, 1))
	now := time.Now().UnixMilli()
	s.checkAll(store.Query{Device: d, Metric: "m", From: now + 24*hour, To: now + 48*hour}, hour)
}

func testSingleReading(t *testing.T, s *suite) {
	d := s.device("")
	s.append(reading(d, "m", base+90*second+7, 42.5))
	for _, step := range []int64{1, second, minute, hour} {
		s.checkAll(store.Query{Device: d, Metric: "m", From: base, To: base + hour}, step)
	}
}

func testStepNotDividingRange(t *testing.T, s *suite) {
	d := s.device("")
	var rs []devices.Reading
	for i := range 120 {
		rs = append(rs, reading(d, "m", base+int64(i)*second+int64(i%7)*11, float64(i%13)))
	}
	s.append(rs...)
	// Buckets are aligned to the epoch, not to From: the first point's time
	// is the start of the bucket holding From, before From itself.
	s.checkAll(store.Query{Device: d, Metric: "m", From: base + 3*second + 500, To: base + 100*second + 1}, 7*second)
	s.checkAll(store.Query{Device: d, Metric: "m", From: base + 1, To: base + 119*second}, 13*second+1)
}

func testStepLongerThanRange(t *testing.T, s *suite) {
	d := s.device("")
	s.append(reading(d, "m", base+10*second, 1), reading(d, "m", base+20*second, 2), reading(d, "m", base+30*second, 4))
	s.checkAll(store.Query{Device: d, Metric: "m", From: base + 15*second, To: base + 40*second}, 24*hour)
}

func testLongRangeManySteps(t *testing.T, s *suite) {
	d := s.device("")
	r := rng(t)
	// Two days at one reading per 10 s with gaps, asked for with steps that
	// are and are not whole minutes, from and to times off any minute: what a
	// backend that keeps per-minute (or other) summaries must get right at
	// the edges of its summaries.
	var rs []devices.Reading
	for tm := base - hour + 3; tm < base+2*24*hour; tm += 10*second + int64(r.IntN(50)) {
		if r.IntN(500) == 0 {
			tm += 2 * hour
		}
		rs = append(rs, reading(d, "m", tm, math.Round(r.NormFloat64()*1000)/100))
		if len(rs) == 2000 {
			s.append(rs...)
			rs = rs[:0]
		}
	}
	s.append(rs...)
	// Late corrections of values already summarised: one made the largest,
	// then made small again, so a summary must forget the old maximum.
	late := s.written[len(s.written)/2]
	late.Value = 1e6
	s.append(late)
	late.Value = -5
	s.append(late)
	from, to := base+17*minute+12345, base+47*hour+31*second
	for _, step := range []int64{minute, 5 * minute, 10*minute + 480, hour, 3*hour + 7} {
		for _, a := range store.Aggs {
			s.check(store.Query{Device: d, Metric: "m", From: from, To: to, Step: step, Agg: a})
		}
	}
	for _, a := range store.Aggs {
		s.check(store.Query{Device: d, Metric: "m", From: base, To: base + 24*hour, Step: hour, Agg: a})
	}
	// A step boundary inside the first and inside the last whole minute of
	// the range.
	for _, step := range []int64{10*minute + 480, 3*hour + 7} {
		b1 := (base/step + 5) * step
		b2 := b1 + 4*step
		from, to := b1-b1%minute-5*second, b2-b2%minute+minute+5*second
		for _, a := range store.Aggs {
			s.check(store.Query{Device: d, Metric: "m", From: from, To: to, Step: step, Agg: a})
		}
	}
}

func testInvalidReadingRejectsBatch(t *testing.T, s *suite) {
	d := s.device("")
	for _, bad := range []devices.Reading{
		reading(d, "m", base+2000, math.NaN()),
		reading(d, "m", base+2000, math.Inf(1)),
		reading(d, "bad metric", base+2000, 1),
		reading("", "m", base+2000, 1),
	} {
		err := s.s.Append(context.Background(), []devices.Reading{reading(d, "m", base+1000, 1), bad})
		if devices.ErrorKind(err) != devices.EInvalid {
			t.Errorf("Append(%+v) = %v, want an %s error", bad, err, devices.EInvalid)
		}
	}
	// Nothing of the rejected batches was stored.
	s.check(store.Query{Device: d, Metric: "m", From: base, To: base + minute})
}

func testInvalidQuery(t *testing.T, s *suite) {
	d := s.device("")
	s.append(reading(d, "m", base, 1))
	for _, q := range []store.Query{
		{Device: d, Metric: "m", From: base + 1, To: base},
		{Device: d, Metric: "m", From: base, To: base},
		{Device: d, Metric: "m", From: base, To: base + 1, Step: -1},
		{Device: d, Metric: "m", From: base, To: base + 1, Step: 1, Agg: "median"},
		{Device: "a b", Metric: "m", From: base, To: base + 1},
		{Device: d, Metric: "", From: base, To: base + 1},
	} {
		_, err := s.s.Query(context.Background(), q)
		if devices.ErrorKind(err) != devices.EInvalid {
			t.Errorf("Query(%+v) = %v, want an %s error", q, err, devices.EInvalid)
		}
	}
}

func testGaps(t *testing.T, s *suite) {
	d := s.device("")
	r := rng(t)
	// Bursts of readings a second apart, separated by silences of minutes,
	// hours and a day, one of them starting just before a day boundary:
	// the empty steps between bursts are left out, not filled.
	var rs []devices.Reading
	tm := base + 7*second
	for _, silence := range []int64{3 * minute, 2 * hour, 24*hour - 30*second, 45 * minute, 6 * hour} {
		for range 40 {
			rs = append(rs, reading(d, "m", tm, float64(r.IntN(2000))/10-100))
			tm += second
		}
		tm += silence
	}
	s.append(rs...)
	for _, step := range []int64{second, minute, 10 * minute, hour, 24 * hour} {
		s.checkAll(store.Query{Device: d, Metric: "m", From: base, To: tm}, step)
	}
	// Ranges that lie wholly inside a silence, or end inside one.
	s.checkAll(store.Query{Device: d, Metric: "m", From: base + 2*minute, To: base + 3*minute}, minute)
	s.checkAll(store.Query{Device: d, Metric: "m", From: base + 30*second, To: base + 5*minute}, minute)
}

func testLateReadings(t *testing.T, s *suite) {
	d := s.device("")
	// An hour at 1 Hz, asked for once so that any summary a backend keeps
	// is built, then readings that arrive late into those steps.
	var rs []devices.Reading
	for i := range 3600 {
		rs = append(rs, reading(d, "m", base+int64(i)*second+500, float64(i%97)))
	}
	s.append(rs...)
	q := store.Query{Device: d, Metric: "m", From: base, To: base + hour}
	each := func() {
		t.Helper()
		for _, step := range []int64{minute, 10 * minute, 7 * second, hour} {
			for _, a := range store.Aggs {
				q.Step, q.Agg = step, a
				s.check(q)
			}
		}
		q.Step, q.Agg = 0, ""
		s.check(q)
	}
	each()
	// Late readings between the ones stored, a new least and greatest
	// value in an old minute, and one before everything.
	s.append(
		reading(d, "m", base+10*minute+250, -1000),
		reading(d, "m", base+20*minute+750, 1000),
		reading(d, "m", base+30*minute+1, 42),
		reading(d, "m", base, -7),
	)
	each()
	// A correction that takes the greatest value away again, and one of a
	// minute's first reading.
	s.append(reading(d, "m", base+20*minute+750, 3), reading(d, "m", base+500, 99))
	each()
}

func testLateIntoCompressedHours(t *testing.T, s *suite) {
	d := s.device("")
	// Three hours at 1 Hz of a sensor's two-decimal values, compressed
	// where the backend compresses, with a gap in the middle hour.
	var rs []devices.Reading
	for i := range 3 * 3600 {
		if i >= 5000 && i < 5300 {
			continue
		}
		v := math.Round((20+2*math.Sin(float64(i)/500)+float64(i%7)/10)*100) / 100
		rs = append(rs, reading(d, "m", base+int64(i)*second, v))
	}
	s.append(rs...)
	s.compact()
	q := store.Query{Device: d, Metric: "m", From: base, To: base + 3*hour}
	each := func() {
		t.Helper()
		q.Step, q.Agg = 0, ""
		s.check(q)
		s.check(store.Query{Device: d, Metric: "m", From: base + 70*minute + 500, To: base + 100*minute + 7})
		for _, step := range []int64{7 * second, minute, 25 * minute, hour, 90 * minute, 2 * hour} {
			for _, a := range store.Aggs {
				q.Step, q.Agg = step, a
				s.check(q)
			}
		}
		// A range that cuts hours and minutes at both ends.
		for _, a := range []store.Agg{store.AggMean, store.AggMinMax, store.AggFirst, store.AggLast, store.AggCount} {
			s.check(store.Query{Device: d, Metric: "m", From: base + 30*minute + 12*second, To: base + 150*minute + 30*second, Step: 40 * minute, Offset: 7 * minute, Agg: a})
		}
	}
	each()
	// Late readings into the gap and between stored ones, a new least and
	// greatest value, values of another precision, a reading before
	// everything; then redeliveries of compressed readings with other
	// values, and one repeated within its batch.
	s.append(
		reading(d, "m", base+5100*second, 19.5),
		reading(d, "m", base+10*minute+250, -1000),
		reading(d, "m", base+2*hour+20*minute+750, 1000),
		reading(d, "m", base+hour+1, math.Pi),
		reading(d, "m", base-1, -7),
	)
	s.append(
		reading(d, "m", base+10*second, 99),
		reading(d, "m", base+2*hour+5*second, 98),
		reading(d, "m", base+5100*second, 97),
		reading(d, "m", base+2*hour+5*second, 96),
	)
	each()
	// Compressed again with the late ones merged in, then delivered again.
	s.compact()
	each()
	s.append(rs[:100]...)
	s.append(reading(d, "m", base+hour+1, 3), reading(d, "m", base+4*hour, 1))
	s.compact()
	q.To = base + 5*hour
	each()
}

func testExactNames(t *testing.T, s *suite) {
	a := s.device("")
	// Names that are prefixes of each other, or differ only in case or by
	// a dot, are different series.
	devs := []string{a, a + "0", a + ".x", strings.ToUpper(a)}
	metrics := []string{"temp", "temp_c", "Temp", "temp.1", "temp-1"}
	var rs []devices.Reading
	for i, dev := range devs {
		for j, m := range metrics {
			for k := range 5 {
				rs = append(rs, reading(dev, m, base+int64(k)*second, float64(100*i+10*j+k)))
			}
		}
	}
	s.append(rs...)
	for _, dev := range devs {
		for _, m := range metrics {
			s.checkAll(store.Query{Device: dev, Metric: m, From: base, To: base + minute}, 2*second)
		}
	}
	s.check(store.Query{Device: a, Metric: "tem", From: base, To: base + minute})
	s.check(store.Query{Device: a[:len(a)-1], Metric: "temp", From: base, To: base + minute})
}

func testManySeriesSameTimes(t *testing.T, s *suite) {
	devs := []string{s.device("a"), s.device("b"), s.device("c")}
	metrics := []string{"temperature", "humidity", "pressure"}
	// One message per device and second carries every metric; later
	// messages at the same instants carry only one metric each, with new
	// values: the other metrics of that instant keep theirs.
	var rs []devices.Reading
	for i := range 30 {
		for j, dev := range devs {
			for k, m := range metrics {
				rs = append(rs, reading(dev, m, base+int64(i)*second, float64(1000*j+100*k+i)))
			}
		}
	}
	s.append(rs...)
	var late []devices.Reading
	for i := 0; i < 30; i += 3 {
		late = append(late, reading(devs[i%3], metrics[(i/3)%3], base+int64(i)*second, -float64(i)))
	}
	s.append(late...)
	for _, dev := range devs {
		for _, m := range metrics {
			s.checkAll(store.Query{Device: dev, Metric: m, From: base, To: base + minute}, 10*second)
		}
	}
}

func testValuesKeepTheirPrecision(t *testing.T, s *suite) {
	d := s.device("")
	vals := []float64{0.1, 1.0 / 3, -2.5e-300, 1.7976931348623157e308, -1e15 - 0.3, 123456789.12345679, 0, 1e-10, -42, 6.02214076e23}
	var rs []devices.Reading
	for i, v := range vals {
		rs = append(rs, reading(d, "m", base+int64(i)*second, v))
	}
	s.append(rs...)
	q := store.Query{Device: d, Metric: "m", From: base, To: base + minute}
	got := s.readings(q)
	for i, p := range got {
		if i < len(vals) && p.V != vals[i] {
			t.Errorf("reading %d: got %v, want %v exactly", i, p.V, vals[i])
		}
	}
	s.check(q)
	// Sums of these would differ by the order of adding; the aggregates
	// that only pick a value must give it exactly.
	for _, a := range []store.Agg{store.AggMin, store.AggMax, store.AggMinMax, store.AggFirst, store.AggLast, store.AggCount} {
		for _, step := range []int64{second, 3 * second, minute} {
			s.check(store.Query{Device: d, Metric: "m", From: base, To: base + minute, Step: step, Agg: a})
		}
	}
}

func testMinMaxBands(t *testing.T, s *suite) {
	d := s.device("")
	const step = 10 * second
	s.append(
		reading(d, "m", base+1*second, 5),
		reading(d, "m", base+2*second, -3),
		reading(d, "m", base+9*second+999, 7.5),
		reading(d, "m", base+step, 2), // alone in its step: min = max
		reading(d, "m", base+3*step+5, -1),
		reading(d, "m", base+3*step+6, -1),
	)
	q := store.Query{Device: d, Metric: "m", From: base, To: base + 4*step, Step: step, Agg: store.AggMinMax}
	got, err := s.s.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Point{{T: base, V: -3, Max: 7.5}, {T: base + step, V: 2, Max: 2}, {T: base + 3*step, V: -1, Max: -1}}
	if !samePoints(got, want) {
		t.Errorf("minmax: got %v, want %v", got, want)
	}
	for _, st := range []int64{second, 3 * second, step, minute} {
		s.check(store.Query{Device: d, Metric: "m", From: base + 1500, To: base + 4*step, Step: st, Agg: store.AggMinMax})
	}
}

func testReadingsStream(t *testing.T, s *suite) {
	d, other := s.device("a"), s.device("b")
	r := rng(t)
	// More than three chunks, irregularly spaced, written in shuffled
	// batches beside another series at the same times.
	n := 3*store.ReadingsChunk + 17
	var rs []devices.Reading
	tm := base
	for i := range n {
		tm += int64(r.IntN(900)) + 100
		rs = append(rs, reading(d, "m", tm, float64(i)), reading(other, "m", tm, -float64(i)))
	}
	r.Shuffle(len(rs), func(i, j int) { rs[i], rs[j] = rs[j], rs[i] })
	for len(rs) > 0 {
		k := min(len(rs), 5000)
		s.append(rs[:k]...)
		rs = rs[k:]
	}
	q := store.Query{Device: d, Metric: "m", From: base, To: tm + 1}
	chunks := 0
	last := int64(math.MinInt64)
	err := s.s.Readings(context.Background(), q, func(ps []store.Point) error {
		chunks++
		for _, p := range ps {
			if p.T <= last {
				t.Fatalf("Readings: time %d after %d: not in time order", p.T, last)
			}
			last = p.T
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if chunks < 4 {
		t.Errorf("Readings passed %d readings in %d chunks, want at least 4 of at most %d", n, chunks, store.ReadingsChunk)
	}
	s.check(q)
	// From and To exactly on readings, the readings at the edge of a
	// chunk among them.
	var times []int64
	for _, w := range s.written {
		if w.Device == d {
			times = append(times, w.Time)
		}
	}
	slices.Sort(times)
	for _, c := range [][2]int{{0, n - 1}, {store.ReadingsChunk - 1, 2*store.ReadingsChunk + 1}, {store.ReadingsChunk, store.ReadingsChunk + 1}, {17, 18}} {
		s.check(store.Query{Device: d, Metric: "m", From: times[c[0]], To: times[c[1]]})
	}
}

func testReadingsStop(t *testing.T, s *suite) {
	d := s.device("")
	var rs []devices.Reading
	for i := range 2*store.ReadingsChunk + 1 {
		rs = append(rs, reading(d, "m", base+int64(i)*100, float64(i)))
	}
	s.append(rs...)
	q := store.Query{Device: d, Metric: "m", From: base, To: base + hour}
	// An error from fn ends the scan and comes back.
	stop := errors.New("enough")
	calls := 0
	err := s.s.Readings(context.Background(), q, func([]store.Point) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Readings with fn failing: %v after %d calls, want %v after 1", err, calls, stop)
	}
	// A cancelled context ends it with an error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.s.Readings(ctx, q, func([]store.Point) error { return nil }); err == nil {
		t.Errorf("Readings with a cancelled context: nil error")
	}
	// A series never written gives no calls and no error.
	err = s.s.Readings(context.Background(), store.Query{Device: s.device("never"), Metric: "m", From: base, To: base + hour}, func([]store.Point) error {
		t.Errorf("Readings of a series never written called fn")
		return nil
	})
	if err != nil {
		t.Errorf("Readings of a series never written: %v", err)
	}
	// Invalid queries give EInvalid.
	for _, bad := range []store.Query{{Device: d, Metric: "m", From: base, To: base}, {Device: "a b", Metric: "m", From: base, To: base + 1}} {
		err := s.s.Readings(context.Background(), bad, func([]store.Point) error { return nil })
		if devices.ErrorKind(err) != devices.EInvalid {
			t.Errorf("Readings(%+v) = %v, want an %s error", bad, err, devices.EInvalid)
		}
	}
}

// testDevicesFromHistory: Devices lists every device written, with the
// newest reading of each metric (not the last written), whatever order
// they arrived in.
func testDevicesFromHistory(t *testing.T, s *suite) {
	a, b := s.device("a"), s.device("b")
	s.append(reading(a, "level", base+2*second, 40240.648123), reading(a, "level", base+5*second, 41), reading(a, "flow", base+3*second, 2.5))
	s.append(reading(a, "level", base+4*second, 39), reading(b, "t", base, -1)) // late, older
	ds, err := s.s.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]devices.Device{}
	for _, d := range ds {
		got[d.ID] = d
	}
	da, db := got[a], got[b]
	if da.LastSeen != base+5*second || da.Latest["level"] != (devices.Value{T: base + 5*second, V: 41}) || da.Latest["flow"] != (devices.Value{T: base + 3*second, V: 2.5}) || len(da.Latest) != 2 {
		t.Errorf("device a = %+v, want level 41 at +5s and flow 2.5 at +3s, last seen +5s", da)
	}
	if db.LastSeen != base || db.Latest["t"].V != -1 || db.Status != devices.StatusUnknown {
		t.Errorf("device b = %+v, want t -1 at base, status unknown", db)
	}
}
