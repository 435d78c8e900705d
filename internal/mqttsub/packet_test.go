package mqttsub

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"iotdash/internal/testenv"
)

// publishPacket is a PUBLISH of topic and payload at qos, with packet id 7.
func publishPacket(qos byte, topic, payload string) []byte {
	body := appendString(nil, topic)
	if qos > 0 {
		body = append(body, 0, 7)
	}
	body = append(body, payload...)
	return append(appendLength([]byte{typePublish | qos<<1}, len(body)), body...)
}

func reader(b []byte, max int) *packetReader {
	return &packetReader{r: bufio.NewReaderSize(bytes.NewReader(b), bufSize), max: max}
}

// TestReadPacket: well-formed packets read back as they were, one after the
// other, the large one too; malformed ones are ErrMalformed.
func TestReadPacket(t *testing.T) {
	large := strings.Repeat("p", 200_000)
	var stream []byte
	stream = append(stream, publishPacket(0, "a/b", "zero")...)
	stream = append(stream, publishPacket(1, "devices/d/telemetry", large)...)
	stream = append(stream, publishPacket(1, "c", "")...)
	stream = append(stream, typePingresp, 0)
	pr := reader(stream, 1<<20)
	for _, want := range []struct {
		qos            byte
		topic, payload string
	}{{0, "a/b", "zero"}, {1, "devices/d/telemetry", large}, {1, "c", ""}} {
		h, body, _, err := pr.next()
		if err != nil {
			t.Fatal(err)
		}
		p, err := parsePublish(h, body)
		if err != nil {
			t.Fatal(err)
		}
		if p.qos != want.qos || string(p.topic) != want.topic || string(p.payload) != want.payload || (p.qos > 0) != (p.id == 7) {
			t.Errorf("read QoS %d topic %q payload of %d bytes id %d, want QoS %d %q %d bytes", p.qos, p.topic, len(p.payload), p.id, want.qos, want.topic, len(want.payload))
		}
	}
	if h, body, _, err := pr.next(); err != nil || h != typePingresp || len(body) != 0 {
		t.Errorf("PINGRESP read as %#x %q %v", h, body, err)
	}
	if _, _, _, err := pr.next(); err != io.EOF {
		t.Errorf("after the last packet: %v, want EOF", err)
	}

	for name, b := range map[string][]byte{
		"length of 5 bytes":   {typePublish, 0x80, 0x80, 0x80, 0x80, 0x01},
		"length not shortest": {typePublish, 0x80, 0x00},
		"QoS 3":               append([]byte{typePublish | 6}, publishPacket(0, "t", "x")[1:]...),
		"empty topic":         {typePublish, 2, 0, 0},
		"topic past the end":  {typePublish, 3, 0, 9, 'a'},
		"QoS 1 without an id": {typePublish | 2, 3, 0, 1, 'a'},
		"QoS 1 with id 0":     {typePublish | 2, 5, 0, 1, 'a', 0, 0},
		"no topic length":     {typePublish, 1, 0},
	} {
		h, body, _, err := reader(b, 1<<20).next()
		if err == nil {
			_, err = parsePublish(h, body)
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, _, _, err := reader([]byte{typePublish, 10, 0}, 1<<20).next(); err != io.ErrUnexpectedEOF {
		t.Errorf("cut inside a packet: %v, want io.ErrUnexpectedEOF", err)
	}
}

// FuzzReadPacket: no input makes the reader or the parser panic, and what
// parses lies within the packet read.
func FuzzReadPacket(f *testing.F) {
	f.Add(publishPacket(1, "devices/d/telemetry", `{"ts":1}`))
	f.Add(append(publishPacket(0, "t", "x"), typeSuback, 3, 0, 1, 1))
	f.Add([]byte{typePublish, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		pr := reader(b, 1024)
		for range 16 {
			h, body, size, err := pr.next()
			if err != nil {
				return
			}
			if body == nil {
				if size <= pr.max {
					t.Fatalf("no body for a packet of %d bytes", size)
				}
				pr.skip = size
				continue
			}
			if len(body) != size {
				t.Fatalf("body of %d bytes, size %d", len(body), size)
			}
			if h&0xf0 == typePublish {
				if p, err := parsePublish(h, body); err == nil && len(p.topic)+len(p.payload) > len(body) {
					t.Fatalf("topic and payload longer than the packet")
				}
			}
		}
	})
}

// TestMalformedFromPeer: a peer that sends what is not MQTT gets its
// connection closed with ErrMalformed, and is connected to again; nothing
// panics. (A fake peer, for this parsing test only: the behaviour with
// brokers is tested against Mosquitto.)
func TestMalformedFromPeer(t *testing.T) {
	for name, junk := range map[string][]byte{
		"garbage":         bytes.Repeat([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"), 10),
		"QoS 3":           {typePublish | 6, 3, 0, 1, 'a'},
		"CONNACK again":   {typeConnack, 2, 0, 0},
		"PUBACK":          {typePuback, 2, 0, 1},
		"SUBACK too long": append([]byte{typeSuback, 0xff, 0x7f}, make([]byte, 100)...),
	} {
		t.Run(name, func(t *testing.T) {
			url, conns := testenv.FakeBroker(t, junk)
			lost := make(chan error, 10)
			c, err := New(Options{Broker: url, ClientID: "x", RetryInterval: 10 * time.Millisecond, MaxRetryInterval: 10 * time.Millisecond,
				MaxPacket: 1024, OnConnectionLost: func(err error) { lost <- err }, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			c.Start()
			defer c.Disconnect(time.Second)
			select {
			case err := <-lost:
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("lost with %v, want ErrMalformed", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the connection was not closed")
			}
			deadline := time.Now().Add(10 * time.Second)
			for conns.Load() < 2 {
				if time.Now().After(deadline) {
					t.Fatal("no second connection")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
