package mqttsub

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MQTT 3.1.1 control packet types (the fixed header's high nibble) and the
// fixed headers this client sends or expects whole.
const (
	typeConnect     = 0x10
	typeConnack     = 0x20
	typePublish     = 0x30
	typePuback      = 0x40
	typePubrec      = 0x50
	typePubrel      = 0x62 // with its required flags 0010
	typePubcomp     = 0x70
	typeSubscribe   = 0x82 // with its required flags 0010
	typeSuback      = 0x90
	typeUnsubscribe = 0xA2 // with its required flags 0010
	typeUnsuback    = 0xB0
	typePingreq     = 0xC0
	typePingresp    = 0xD0
	typeDisconnect  = 0xE0
)

// ErrMalformed is wrapped by the error of a connection closed because the
// broker sent something that is not MQTT 3.1.1, or that this client never
// asked for.
var ErrMalformed = errors.New("malformed or unexpected packet from the broker")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// bufSize is the reader's buffer: room for any packet but a large PUBLISH
// (a topic is at most 65,535 bytes, with its length and a packet id).
const bufSize = 64<<10 + 16

// packetReader reads packets off a connection without a packet object
// each: a body that fits its buffer is handed back in place.
type packetReader struct {
	r    *bufio.Reader
	max  int // the largest packet read into memory
	skip int // bytes of the previous body still to discard
}

// next reads the next packet's fixed header and remaining length, and its
// body unless the body is larger than max: then body is nil and size says
// how long it is (the caller reads or skips it with rest). body is valid
// until the next call.
func (p *packetReader) next() (header byte, body []byte, size int, err error) {
	if p.skip > 0 {
		if _, err := p.r.Discard(p.skip); err != nil {
			return 0, nil, 0, err
		}
		p.skip = 0
	}
	if header, err = p.r.ReadByte(); err != nil {
		return 0, nil, 0, err
	}
	if size, err = readLength(p.r); err != nil {
		return 0, nil, 0, err
	}
	switch {
	case size > p.max:
		return header, nil, size, nil
	case size <= p.r.Size():
		body, err = p.r.Peek(size)
		if err != nil {
			return 0, nil, 0, unexpectedEOF(err)
		}
		p.skip = size
		return header, body, size, nil
	}
	body = make([]byte, size)
	if _, err := io.ReadFull(p.r, body); err != nil {
		return 0, nil, 0, unexpectedEOF(err)
	}
	return header, body, size, nil
}

// unexpectedEOF is err, or io.ErrUnexpectedEOF for a connection that ended
// inside a packet.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readLength reads a remaining length: 1 to 4 bytes, 7 bits each, least
// significant first.
func readLength(r io.ByteReader) (int, error) {
	n, shift := 0, 0
	for i := range 4 {
		b, err := r.ReadByte()
		if err != nil {
			return 0, unexpectedEOF(err)
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			if i > 0 && b == 0 {
				return 0, malformed("remaining length not in its shortest form")
			}
			return n, nil
		}
		shift += 7
	}
	return 0, malformed("remaining length longer than 4 bytes")
}

// appendLength appends n as a remaining length.
func appendLength(b []byte, n int) []byte {
	for {
		d := byte(n & 0x7f)
		n >>= 7
		if n == 0 {
			return append(b, d)
		}
		b = append(b, d|0x80)
	}
}

// appendString appends s as an MQTT string (its length in two bytes).
func appendString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

// publish is a PUBLISH's variable header and payload, pointing into its
// body.
type publish struct {
	qos     byte
	retain  bool
	dup     bool
	id      uint16 // 0 at QoS 0
	topic   []byte
	payload []byte
}

// parsePublish parses a PUBLISH of fixed header h and body b.
func parsePublish(h byte, b []byte) (publish, error) {
	p := publish{qos: h >> 1 & 3, retain: h&1 != 0, dup: h&8 != 0}
	if p.qos == 3 {
		return p, malformed("PUBLISH with QoS 3")
	}
	topic, rest, err := publishHeader(p.qos, b)
	if err != nil {
		return p, err
	}
	p.topic = topic
	if p.qos > 0 {
		p.id = binary.BigEndian.Uint16(rest)
		rest = rest[2:]
	}
	p.payload = rest
	return p, nil
}

// publishHeader checks a PUBLISH's variable header at the start of b (all
// of it, or more) and returns its topic and what follows the topic.
func publishHeader(qos byte, b []byte) (topic, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, malformed("PUBLISH too short for its topic length")
	}
	n := int(binary.BigEndian.Uint16(b))
	if n == 0 {
		return nil, nil, malformed("PUBLISH with an empty topic")
	}
	if len(b) < 2+n {
		return nil, nil, malformed("PUBLISH shorter than its topic")
	}
	topic, rest = b[2:2+n], b[2+n:]
	if qos > 0 {
		if len(rest) < 2 {
			return nil, nil, malformed("PUBLISH of QoS %d without a packet id", qos)
		}
		if binary.BigEndian.Uint16(rest) == 0 {
			return nil, nil, malformed("PUBLISH with packet id 0")
		}
	}
	return topic, rest, nil
}

// connectPacket is a CONNECT for protocol level 4 (MQTT 3.1.1).
func connectPacket(o *Options) []byte {
	var flags byte
	if o.CleanSession {
		flags |= 0x02
	}
	body := appendString(nil, "MQTT")
	body = append(body, 4, 0) // level, flags (set below)
	body = binary.BigEndian.AppendUint16(body, uint16(o.KeepAlive.Seconds()))
	body = appendString(body, o.ClientID)
	if o.Username != "" || o.Password != "" { // 3.1.1: no password without a user name
		flags |= 0x80
		body = appendString(body, o.Username)
	}
	if o.Password != "" {
		flags |= 0x40
		body = appendString(body, o.Password)
	}
	body[7] = flags
	return append(appendLength([]byte{typeConnect}, len(body)), body...)
}

// connackError is the error of a CONNACK's return code, or nil for 0.
func connackError(code byte) error {
	if code == 0 {
		return nil
	}
	why := map[byte]string{
		1: "it does not speak MQTT 3.1.1 (unacceptable protocol version)",
		2: "it refused the client id (identifier rejected)",
		3: "the MQTT service is unavailable (server unavailable)",
		4: "bad user name or password",
		5: "not authorized",
	}[code]
	if why == "" {
		why = "unknown return code"
	}
	return &RefusedError{Code: code, Reason: why}
}

// RefusedError is a broker's refusal of a connection (a CONNACK with a
// return code other than 0).
type RefusedError struct {
	Code   byte
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the broker refused the connection: %s (CONNACK return code %d)", e.Reason, e.Code)
}
