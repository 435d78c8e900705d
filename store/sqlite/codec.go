package sqlite

import (
	"encoding/binary"
	"errors"
	"math"
	"math/bits"

	"iotdash/store"
)

// A block is the readings of one series in one hour, in time order, in one
// compressed value: the times as deltas of deltas (Gorilla's scheme, in
// milliseconds), the values either as decimal integers (when every value of
// the block is a number of at most maxDecimals decimals, as a sensor
// reports it) in delta frames of frameLen values packed at the frame's bit
// width, or else as Gorilla's XOR of each value with the one before. The
// README's "Density and retention" gives the sizes each way.
//
// Layout: a byte of encoding (0: XOR; 1+d: decimal with d decimals), the
// count as a uvarint, then the bit stream: the first time in 64 bits, the
// deltas of deltas, then the values.

const (
	encXOR      = 0
	maxDecimals = 9
	frameLen    = 32
)

var errCorrupt = errors.New("sqlite: corrupt block")

// pow10 holds 10^d for the decimal encoding; decoding divides by it, which
// gives back exactly the float64 that strconv gives for the decimal.
var pow10 = func() (p [maxDecimals + 1]float64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// decimals returns the fewest decimals d with which every value of ps is
// an integer over 10^d of magnitude below 2^53, or -1 if there is none.
func decimals(ps []store.Point) int {
	d := 0
	for _, p := range ps {
		for ; d <= maxDecimals; d++ {
			x := math.Round(p.V * pow10[d])
			if math.Abs(x) < 1<<53 && x/pow10[d] == p.V {
				break
			}
		}
		if d > maxDecimals {
			return -1
		}
	}
	return d
}

// encodeBlock appends the encoding of ps (sorted by time, times unique) to
// dst: with d decimals (see decimals), or in XOR when d is -1.
func encodeBlock(dst []byte, ps []store.Point, d int) []byte {
	dst = append(dst, byte(d+1))
	dst = binary.AppendUvarint(dst, uint64(len(ps)))
	w := bitWriter{b: dst}
	writeTimes(&w, ps)
	if d < 0 {
		writeXOR(&w, ps)
	} else {
		writeDecimal(&w, ps, pow10[d])
	}
	return w.flush()
}

// decodeBlock appends the readings of the block b to dst.
func decodeBlock(dst []store.Point, b []byte) ([]store.Point, error) {
	if len(b) < 2 || b[0] > maxDecimals+1 {
		return dst, errCorrupt
	}
	enc := int(b[0])
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b))*64 {
		return dst, errCorrupt
	}
	r := bitReader{b: b[1+k:]}
	start := len(dst)
	dst = readTimes(&r, dst, int(n))
	ps := dst[start:]
	if enc == encXOR {
		readXOR(&r, ps)
	} else {
		readDecimal(&r, ps, pow10[enc-1])
	}
	if r.short {
		return dst[:start], errCorrupt
	}
	return dst, nil
}

func writeTimes(w *bitWriter, ps []store.Point) {
	if len(ps) == 0 {
		return
	}
	w.write(uint64(ps[0].T), 64)
	var delta int64
	for i := 1; i < len(ps); i++ {
		d := ps[i].T - ps[i-1].T
		dod := d - delta
		delta = d
		switch z := zigzag(dod); {
		case z == 0:
			w.write(0, 1)
		case z < 1<<7:
			w.write(0b10, 2)
			w.write(z, 7)
		case z < 1<<12:
			w.write(0b110, 3)
			w.write(z, 12)
		case z < 1<<20:
			w.write(0b1110, 4)
			w.write(z, 20)
		default:
			w.write(0b1111, 4)
			w.write(z, 64)
		}
	}
}

func readTimes(r *bitReader, dst []store.Point, n int) []store.Point {
	if n == 0 {
		return dst
	}
	t := int64(r.read(64))
	dst = append(dst, store.Point{T: t})
	var delta int64
	for i := 1; i < n && !r.short; i++ {
		var z uint64
		switch {
		case r.read(1) == 0:
		case r.read(1) == 0:
			z = r.read(7)
		case r.read(1) == 0:
			z = r.read(12)
		case r.read(1) == 0:
			z = r.read(20)
		default:
			z = r.read(64)
		}
		delta += unzigzag(z)
		t += delta
		dst = append(dst, store.Point{T: t})
	}
	return dst
}

// writeDecimal writes the values as integers over p: the first whole, then
// the differences, in frames of frameLen each led by its bit width.
func writeDecimal(w *bitWriter, ps []store.Point, p float64) {
	var prev int64
	var frame [frameLen]uint64
	for start := 0; start < len(ps); start += frameLen {
		chunk := ps[start:min(start+frameLen, len(ps))]
		var or uint64
		for i, pt := range chunk {
			x := int64(math.Round(pt.V * p))
			frame[i] = zigzag(x - prev)
			or |= frame[i]
			prev = x
		}
		width := uint(bits.Len64(or))
		w.write(uint64(width), 7)
		for i := range chunk {
			w.write(frame[i], width)
		}
	}
}

func readDecimal(r *bitReader, ps []store.Point, p float64) {
	var x int64
	for start := 0; start < len(ps) && !r.short; start += frameLen {
		width := uint(r.read(7))
		if width > 64 {
			r.short = true
			return
		}
		for i := start; i < min(start+frameLen, len(ps)); i++ {
			x += unzigzag(r.read(width))
			ps[i].V = float64(x) / p
		}
	}
}

// writeXOR is Gorilla's value encoding: each value XOR the one before; a
// zero is one bit, else the meaningful bits within the last window or a new
// window given by its leading zeros and length.
func writeXOR(w *bitWriter, ps []store.Point) {
	var prev uint64
	lead, trail := uint(65), uint(0)
	for i, pt := range ps {
		v := math.Float64bits(pt.V)
		if i == 0 {
			w.write(v, 64)
			prev = v
			continue
		}
		x := v ^ prev
		prev = v
		if x == 0 {
			w.write(0, 1)
			continue
		}
		l, t := uint(bits.LeadingZeros64(x)), uint(bits.TrailingZeros64(x))
		l = min(l, 31)
		if lead <= 64 && l >= lead && t >= trail {
			w.write(0b10, 2)
			w.write(x>>trail, 64-lead-trail)
			continue
		}
		lead, trail = l, t
		w.write(0b11, 2)
		w.write(uint64(l), 5)
		w.write(uint64(64-l-t)&63, 6) // 64 is written as 0
		w.write(x>>t, 64-l-t)
	}
}

func readXOR(r *bitReader, ps []store.Point) {
	var prev uint64
	var lead, trail uint
	for i := range ps {
		if r.short {
			return
		}
		if i == 0 {
			prev = r.read(64)
			ps[i].V = math.Float64frombits(prev)
			continue
		}
		if r.read(1) == 1 {
			if r.read(1) == 1 {
				lead = uint(r.read(5))
				n := uint(r.read(6))
				if n == 0 {
					n = 64
				}
				if lead+n > 64 {
					r.short = true
					return
				}
				trail = 64 - lead - n
			}
			prev ^= r.read(64-lead-trail) << trail
		}
		ps[i].V = math.Float64frombits(prev)
	}
}

func zigzag(x int64) uint64   { return uint64(x<<1) ^ uint64(x>>63) }
func unzigzag(z uint64) int64 { return int64(z>>1) ^ -int64(z&1) }

// bitWriter appends bits to b, most significant first.
type bitWriter struct {
	b   []byte
	acc uint64
	n   uint // bits in acc not yet in b, fewer than 8
}

func (w *bitWriter) write(v uint64, n uint) {
	if n > 32 {
		w.write(v>>32, n-32)
		v, n = v&(1<<32-1), 32
	}
	w.acc = w.acc<<n | v&(1<<n-1)
	w.n += n
	for w.n >= 8 {
		w.n -= 8
		w.b = append(w.b, byte(w.acc>>w.n))
	}
}

func (w *bitWriter) flush() []byte {
	if w.n > 0 {
		w.b = append(w.b, byte(w.acc<<(8-w.n)))
		w.n = 0
	}
	return w.b
}

// bitReader reads what a bitWriter wrote; reading past the end gives
// zeros and sets short.
type bitReader struct {
	b     []byte
	acc   uint64
	n     uint
	short bool
}

func (r *bitReader) read(n uint) uint64 {
	if n > 32 {
		hi := r.read(n - 32)
		return hi<<32 | r.read(32)
	}
	for r.n < n {
		r.acc <<= 8
		if len(r.b) > 0 {
			r.acc |= uint64(r.b[0])
			r.b = r.b[1:]
		} else {
			r.short = true
		}
		r.n += 8
	}
	r.n -= n
	return r.acc >> r.n & (1<<n - 1)
}

// minuteSummaries summarises the readings ps of one hour (in time order)
// per minute, appending to dst.
func minuteSummaries(dst []minuteSummary, ps []store.Point) []minuteSummary {
	for _, p := range ps {
		m := store.FloorTo(p.T, minute)
		if n := len(dst); n > 0 && dst[n-1].m == m {
			s := &dst[n-1]
			s.n++
			s.sum += p.V
			s.min, s.max = min(s.min, p.V), max(s.max, p.V)
			s.lastT, s.lastV = p.T, p.V
			continue
		}
		dst = append(dst, minuteSummary{m: m, n: 1, sum: p.V, min: p.V, max: p.V, firstT: p.T, firstV: p.V, lastT: p.T, lastV: p.V})
	}
	return dst
}

// encodeMinutes appends the summaries ms of minutes of hour h, in order, to
// dst: per minute its index in the hour, its count, the offsets of its
// first and last readings, and its values, as varints of decimal integers
// when the block's values have d >= 0 decimals (the sum too, exact), else
// as float64 bits.
func encodeMinutes(dst []byte, h int64, ms []minuteSummary, d int) []byte {
	dst = append(dst, byte(d+1))
	dst = binary.AppendUvarint(dst, uint64(len(ms)))
	for _, m := range ms {
		dst = append(dst, byte((m.m-h)/minute))
		dst = binary.AppendUvarint(dst, uint64(m.n))
		dst = binary.AppendUvarint(dst, uint64(m.firstT-m.m))
		dst = binary.AppendUvarint(dst, uint64(m.lastT-m.m))
		if d < 0 {
			for _, v := range []float64{m.sum, m.min, m.max, m.firstV, m.lastV} {
				dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
			}
			continue
		}
		p := pow10[d]
		first := int64(math.Round(m.firstV * p))
		dst = binary.AppendVarint(dst, first)
		for _, v := range []float64{m.min, m.max, m.lastV} {
			dst = binary.AppendVarint(dst, int64(math.Round(v*p))-first)
		}
		dst = binary.AppendVarint(dst, int64(math.Round(m.sum*p)))
	}
	return dst
}

// minuteDecimals is d, or -1 when some minute's sum does not fit the
// decimal encoding.
func minuteDecimals(ms []minuteSummary, d int) int {
	if d < 0 {
		return d
	}
	for _, m := range ms {
		if math.Abs(m.sum*pow10[d]) >= 1<<62 {
			return -1
		}
	}
	return d
}

// decodeMinutes appends the summaries in b, of the minutes of hour h, to dst.
func decodeMinutes(dst []minuteSummary, h int64, b []byte) ([]minuteSummary, error) {
	if len(b) < 2 || b[0] > maxDecimals+1 {
		return dst, errCorrupt
	}
	d := int(b[0]) - 1
	b = b[1:]
	bad := false
	uv := func() int64 {
		x, k := binary.Uvarint(b)
		if k <= 0 {
			bad = true
			return 0
		}
		b = b[k:]
		return int64(x)
	}
	sv := func() int64 { return unzigzag(uint64(uv())) } // binary.Varint's encoding
	f64 := func() float64 {
		if len(b) < 8 {
			bad = true
			return 0
		}
		x := binary.LittleEndian.Uint64(b)
		b = b[8:]
		return math.Float64frombits(x)
	}
	n := uv()
	for i := int64(0); i < n && !bad; i++ {
		if len(b) == 0 {
			return dst, errCorrupt
		}
		var m minuteSummary
		m.m = h + int64(b[0])*minute
		b = b[1:]
		m.n = uv()
		m.firstT = m.m + uv()
		m.lastT = m.m + uv()
		if d < 0 {
			m.sum, m.min, m.max, m.firstV, m.lastV = f64(), f64(), f64(), f64(), f64()
		} else {
			p := pow10[d]
			first := sv()
			m.firstV = float64(first) / p
			m.min = float64(first+sv()) / p
			m.max = float64(first+sv()) / p
			m.lastV = float64(first+sv()) / p
			m.sum = float64(sv()) / p
		}
		dst = append(dst, m)
	}
	if bad {
		return dst, errCorrupt
	}
	return dst, nil
}
