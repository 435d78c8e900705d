package journal

import (
	"encoding/binary"
	"errors"
	"math"

	"iotdash/devices"
)

// A record's payload is its readings, one after the other:
//
//	count   uvarint: readings in the record
//	then, for each reading:
//	device  uvarint length, then the bytes; length 0: the previous reading's
//	metric  uvarint length, then the bytes
//	time    varint: Unix ms less the previous reading's (the first: less 0)
//	value   8 bytes, little endian IEEE 754
//
// The readings of one message share a device and a time, so most cost a
// byte for each and little more than their metric and value.

// appendReadings appends the payload of rs to b.
func appendReadings(b []byte, rs []devices.Reading) []byte {
	b = binary.AppendUvarint(b, uint64(len(rs)))
	var prevDevice string
	var prevTime int64
	for _, r := range rs {
		if r.Device == prevDevice {
			b = append(b, 0)
		} else {
			b = binary.AppendUvarint(b, uint64(len(r.Device)))
			b = append(b, r.Device...)
			prevDevice = r.Device
		}
		b = binary.AppendUvarint(b, uint64(len(r.Metric)))
		b = append(b, r.Metric...)
		b = binary.AppendVarint(b, r.Time-prevTime)
		prevTime = r.Time
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.Value))
	}
	return b
}

var errCodec = errors.New("record payload does not decode")

// readingCount returns how many readings a payload holds.
func readingCount(p []byte) (int64, error) {
	n, k := binary.Uvarint(p)
	if k <= 0 {
		return 0, errCodec
	}
	return int64(n), nil
}

// decoder turns payloads back into readings. Device ids and metric names
// repeat, so it hands out one string for each rather than one per reading.
type decoder struct {
	names map[string]string
}

// maxNames bounds the decoder's table; past it, it starts again.
const maxNames = 1 << 16

func (d *decoder) name(b []byte) string {
	if s, ok := d.names[string(b)]; ok { // no allocation for the lookup
		return s
	}
	if d.names == nil || len(d.names) >= maxNames {
		d.names = make(map[string]string, 1024)
	}
	s := string(b)
	d.names[s] = s
	return s
}

// decode appends to rs the readings of payload p from the skip-th on, at
// most max of them, and returns them and how many it read.
func (d *decoder) decode(rs []devices.Reading, p []byte, skip, max int64) ([]devices.Reading, int64, error) {
	n, k := binary.Uvarint(p)
	if k <= 0 {
		return rs, 0, errCodec
	}
	p = p[k:]
	var device string
	var t int64
	var took int64
	for i := int64(0); i < int64(n) && took < max; i++ {
		l, k := binary.Uvarint(p)
		if k <= 0 || uint64(len(p)-k) < l {
			return rs, took, errCodec
		}
		p = p[k:]
		if l > 0 {
			device = d.name(p[:l])
			p = p[l:]
		}
		l, k = binary.Uvarint(p)
		if k <= 0 || uint64(len(p)-k) < l {
			return rs, took, errCodec
		}
		metric := p[k : k+int(l)]
		p = p[k+int(l):]
		dt, k := binary.Varint(p)
		if k <= 0 || len(p)-k < 8 {
			return rs, took, errCodec
		}
		t += dt
		v := math.Float64frombits(binary.LittleEndian.Uint64(p[k:]))
		p = p[k+8:]
		if i < skip {
			continue
		}
		rs = append(rs, devices.Reading{Device: device, Metric: d.name(metric), Time: t, Value: v})
		took++
	}
	return rs, took, nil
}
