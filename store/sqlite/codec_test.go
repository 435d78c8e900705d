package sqlite

import (
	"math"
	"math/rand/v2"
	"testing"

	"iotdash/store"
)

// blockCases are readings of one hour that a block must give back exactly.
func blockCases() map[string][]store.Point {
	r := rand.New(rand.NewPCG(1, 2))
	const h = int64(1767225600000)
	regular := func(n int, step int64, v func(i int) float64) []store.Point {
		ps := make([]store.Point, n)
		for i := range ps {
			ps[i] = store.Point{T: h + int64(i)*step, V: v(i)}
		}
		return ps
	}
	jitter := regular(3600, 1000, func(i int) float64 { return math.Round((20+2*math.Sin(float64(i)/600)+r.Float64()/10)*100) / 100 })
	for i := range jitter {
		jitter[i].T += int64(r.IntN(40))
	}
	irregular := []store.Point{{T: h, V: 1}, {T: h + 1, V: -1}, {T: h + 3_599_999, V: 0}}
	return map[string][]store.Point{
		"one":         {{T: h + 5, V: 21.5}},
		"decimals":    regular(3600, 1000, func(i int) float64 { return math.Round((20+2*math.Sin(float64(i)/600))*100) / 100 }),
		"jitter":      jitter,
		"irregular":   irregular,
		"integers":    regular(100, 20000, func(i int) float64 { return float64(400 + i*i) }),
		"counter":     regular(500, 7000, func(i int) float64 { return math.Round((5000+float64(i)*0.013)*1000) / 1000 }),
		"floats":      regular(1000, 10, func(int) float64 { return r.NormFloat64() * 1e6 }),
		"extremes":    {{T: h, V: math.MaxFloat64}, {T: h + 1, V: -math.MaxFloat64}, {T: h + 2, V: math.SmallestNonzeroFloat64}, {T: h + 3, V: 0}, {T: h + 4, V: math.Copysign(0, -1)}},
		"big integer": {{T: h, V: 1 << 60}, {T: h + 1000, V: 3}},
		"negative t":  {{T: -5000, V: 1.5}, {T: -1000, V: 2.25}, {T: 0, V: -3}},
		"far apart":   {{T: h, V: 1}, {T: h + 3_500_000, V: 2}, {T: h + 3_500_001, V: 3}},
	}
}

func TestBlocksRoundTrip(t *testing.T) {
	for name, ps := range blockCases() {
		for _, xor := range []bool{false, true} {
			d := decimals(ps)
			if xor {
				d = -1
			}
			b := encodeBlock(nil, ps, d)
			got, err := decodeBlock(nil, b)
			if err != nil {
				t.Fatalf("%s (xor %v): %v", name, xor, err)
			}
			same := len(got) == len(ps)
			for i := 0; same && i < len(ps); i++ {
				same = got[i].T == ps[i].T && math.Float64bits(got[i].V) == math.Float64bits(ps[i].V)
			}
			if !same {
				t.Errorf("%s (xor %v): got %v, want %v", name, xor, got[:min(len(got), 5)], ps[:min(len(ps), 5)])
			}
			// A truncated block is an error, never a panic.
			if _, err := decodeBlock(nil, b[:len(b)/2]); err == nil && len(ps) > 2 {
				t.Errorf("%s (xor %v): a truncated block decodes without error", name, xor)
			}
		}
	}
}

func TestMinutesRoundTrip(t *testing.T) {
	for name, ps := range blockCases() {
		h := store.FloorTo(ps[0].T, hour)
		if store.FloorTo(ps[len(ps)-1].T, hour) != h {
			continue
		}
		ms := minuteSummaries(nil, ps)
		d := minuteDecimals(ms, decimals(ps))
		got, err := decodeMinutes(nil, h, encodeMinutes(nil, h, ms, d))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(got) != len(ms) {
			t.Fatalf("%s: got %d minutes, want %d", name, len(got), len(ms))
		}
		for i := range ms {
			g, w := got[i], ms[i]
			near := math.Abs(g.sum-w.sum) <= 1e-9*math.Max(1, math.Abs(w.sum))
			if g.m != w.m || g.n != w.n || g.min != w.min || g.max != w.max || g.firstT != w.firstT || g.firstV != w.firstV || g.lastT != w.lastT || g.lastV != w.lastV || !near {
				t.Fatalf("%s minute %d: got %+v, want %+v", name, i, g, w)
			}
		}
	}
}

func TestDecimals(t *testing.T) {
	for _, c := range []struct {
		vs   []float64
		want int
	}{
		{[]float64{1, 2, -3}, 0},
		{[]float64{20.5, 21.25}, 2},
		{[]float64{0.1, 0.2, 0.3}, 1},
		{[]float64{5000.123}, 3},
		{[]float64{math.Pi}, -1},
		{[]float64{1e300}, -1},
	} {
		var ps []store.Point
		for _, v := range c.vs {
			ps = append(ps, store.Point{V: v})
		}
		if got := decimals(ps); got != c.want {
			t.Errorf("decimals(%v) = %d, want %d", c.vs, got, c.want)
		}
	}
}

func FuzzDecodeBlock(f *testing.F) {
	for _, ps := range blockCases() {
		f.Add(encodeBlock(nil, ps, decimals(ps)))
		f.Add(encodeBlock(nil, ps, -1))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// Any bytes decode to readings or to an error, never a panic.
		decodeBlock(nil, b)
		decodeMinutes(nil, 0, b)
	})
}
