// Package mqttconn opens connections to an MQTT broker for the paho client
// (its SetCustomOpenConnectionFn): plain TCP, or TLS for ssl://, tls:// and
// mqtts://, optionally with writes gathered into fewer system calls. It is
// shared by the ingester and the simulator, and knows nothing of either.
package mqttconn

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Dial opens a connection to the broker at u, over TLS for ssl, tls and
// mqtts URLs, with the options' connect timeout and TLS configuration.
func Dial(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	dialer := &net.Dialer{Timeout: o.ConnectTimeout}
	switch u.Scheme {
	case "ssl", "tls", "mqtts":
		cfg := &tls.Config{ServerName: u.Hostname()}
		if o.TLSConfig != nil {
			cfg = o.TLSConfig.Clone()
			if cfg.ServerName == "" {
				cfg.ServerName = u.Hostname()
			}
		}
		return (&tls.Dialer{NetDialer: dialer, Config: cfg}).Dial("tcp", u.Host)
	}
	return dialer.Dial("tcp", u.Host)
}

// Batched returns an open-connection function whose connections gather
// writes for up to delay after the first of them (or until 64 KiB have
// gathered) and send them in one system call, and buffer reads. The paho
// client writes each packet on its own and reads a packet a few bytes at a
// time; at thousands of packets a second, a system call per packet costs
// more than the rest of the work together.
func Batched(delay time.Duration) mqtt.OpenConnectionFunc {
	return func(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
		c, err := Dial(u, o)
		if err != nil {
			return nil, err
		}
		return &batchConn{Conn: c, r: bufio.NewReaderSize(c, batchSize), delay: delay}, nil
	}
}

// batchConn is a connection whose writes are sent together. A write error
// shows in a later write.
type batchConn struct {
	net.Conn
	r     *bufio.Reader
	delay time.Duration
	mu    sync.Mutex
	buf   []byte
	armed bool
	err   error
}

const batchSize = 64 << 10

func (c *batchConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= batchSize {
		c.flushLocked()
		return len(p), c.err
	}
	if !c.armed {
		c.armed = true
		time.AfterFunc(c.delay, c.flush)
	}
	return len(p), nil
}

func (c *batchConn) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	c.flushLocked()
}

func (c *batchConn) flushLocked() {
	if len(c.buf) > 0 && c.err == nil {
		_, c.err = c.Conn.Write(c.buf)
		c.buf = c.buf[:0]
	}
}

// Close sends what has gathered, then closes.
func (c *batchConn) Close() error {
	c.flush()
	return c.Conn.Close()
}
