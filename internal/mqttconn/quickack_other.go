//go:build !linux

package mqttconn

import "net"

// quickAck is Linux's TCP_QUICKACK; elsewhere there is none to ask for.
func quickAck(net.Conn) func() { return nil }
