//go:build !linux

package mqttconn

import "net"

// QuickAck is Linux's TCP_QUICKACK; elsewhere there is none to ask for.
func QuickAck(net.Conn) func() { return nil }
