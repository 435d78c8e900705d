package testenv

import (
	"bufio"
	"io"
	"net"
	"sync/atomic"
	"testing"
)

// FakeBroker listens on a free loopback port as a peer that answers a
// client's CONNECT with CONNACK (accepted) and then sends junk: what no
// real MQTT broker does, so the one thing a fake stands in for, in the
// tests of how a client takes malformed input from its broker. It returns
// its URL (tcp://…) and the count of connections it has accepted, and stops
// listening when the test ends.
func FakeBroker(t testing.TB, junk []byte) (string, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go answerJunk(c, junk)
		}
	}()
	return "tcp://" + l.Addr().String(), &n
}

// answerJunk reads a CONNECT from c (its type, a remaining length of at
// most four bytes, the rest), answers CONNACK followed by junk, and reads
// on until the client closes c.
func answerJunk(c net.Conn, junk []byte) {
	defer c.Close()
	r := bufio.NewReader(c)
	if h, err := r.ReadByte(); err != nil || h != 0x10 {
		return
	}
	size, mult := 0, 1
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil || i == 4 {
			return
		}
		size += int(b&0x7f) * mult
		if b < 0x80 {
			break
		}
		mult *= 128
	}
	if _, err := r.Discard(size); err != nil {
		return
	}
	c.Write(append([]byte{0x20, 2, 0, 0}, junk...))
	io.Copy(io.Discard, c)
}
