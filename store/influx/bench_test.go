package influx_test

import (
	"testing"

	"iotdash/store/storetest"
)

// BenchmarkQueries downsamples a week (a day without IOTDASH_BENCH_BIG=1)
// of 1 Hz readings of one metric and reads all of it; see
// storetest.Benchmark.
func BenchmarkQueries(b *testing.B) {
	s, _ := open(b, 0)
	storetest.Benchmark(b, s)
}
