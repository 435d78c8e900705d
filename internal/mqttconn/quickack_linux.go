package mqttconn

import (
	"net"
	"syscall"
)

// QuickAck returns a function that asks the kernel to acknowledge what
// arrives on c at once rather than after its delayed-ACK timer, or nil where
// c is not a TCP connection. A broker that leaves Nagle's algorithm on (as
// Mosquitto does unless set_tcp_nodelay is set) holds each small packet
// until the previous one is acknowledged, so the delayed ACK otherwise adds
// milliseconds to every message it sends. Linux turns quick
// acknowledgement off again by itself, so it is asked for after each read.
func QuickAck(c net.Conn) func() {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn() // TLS: the TCP connection beneath
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	set := func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1) }
	return func() { _ = rc.Control(set) }
}
