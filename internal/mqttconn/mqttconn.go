// Package mqttconn opens connections to an MQTT broker: plain TCP, or TLS
// for ssl://, tls:// and mqtts://, for iotdash's own subscriber
// (internal/mqttsub) and for the paho client (its
// SetCustomOpenConnectionFn), there optionally with writes gathered into
// fewer system calls. It is shared by the ingester, the simulator and the
// benchmark tools, and knows nothing of any of them.
package mqttconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Secure reports whether a broker URL's scheme is one Dial speaks TLS to:
// ssl, tls or mqtts.
func Secure(scheme string) bool {
	switch scheme {
	case "ssl", "tls", "mqtts":
		return true
	}
	return false
}

// TLSConfig is the TLS configuration for the broker at rawURL, from PEM
// files: the CA that signed the broker's certificate (the system's CAs
// when caFile is empty), and a client certificate and key, if any. It is
// nil for a broker spoken to in clear text; such a broker with any of the
// files is an error, rather than certificates silently unused.
func TLSConfig(rawURL, caFile, certFile, keyFile string) (*tls.Config, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("broker URL %q: %w", rawURL, err)
	}
	if !Secure(u.Scheme) {
		if caFile != "" || certFile != "" || keyFile != "" {
			return nil, fmt.Errorf("-mqtt-ca, -mqtt-cert and -mqtt-key need an ssl:// broker URL; with %q iotdash would connect in clear text", rawURL)
		}
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("-mqtt-ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-mqtt-ca: no PEM certificate in %s", caFile)
		}
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("-mqtt-cert/-mqtt-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Dial opens a connection to the broker at u, over TLS for ssl, tls and
// mqtts URLs, with the options' connect timeout and TLS configuration.
func Dial(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	return Open(context.Background(), u, o.ConnectTimeout, o.TLSConfig)
}

// Open opens a connection to the broker at u within timeout (none if 0) or
// until ctx ends, over TLS for ssl, tls and mqtts URLs with tc (nil: the
// system's CAs), whose ServerName defaults to u's host.
func Open(ctx context.Context, u *url.URL, timeout time.Duration, tc *tls.Config) (net.Conn, error) {
	dialer := &net.Dialer{Timeout: timeout}
	if Secure(u.Scheme) {
		cfg := &tls.Config{ServerName: u.Hostname()}
		if tc != nil {
			cfg = tc.Clone()
			if cfg.ServerName == "" {
				cfg.ServerName = u.Hostname()
			}
		}
		return (&tls.Dialer{NetDialer: dialer, Config: cfg}).DialContext(ctx, "tcp", u.Host)
	}
	return dialer.DialContext(ctx, "tcp", u.Host)
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
		return &batchConn{Conn: c, r: bufio.NewReaderSize(c, batchSize), delay: delay, ack: QuickAck(c)}, nil
	}
}

// batchConn is a connection whose writes are sent together. A write error
// shows in a later write.
type batchConn struct {
	net.Conn
	r     *bufio.Reader
	delay time.Duration
	ack   func() // after each read, if not nil
	mu    sync.Mutex
	buf   []byte
	armed bool
	err   error
}

const batchSize = 64 << 10

func (c *batchConn) Read(p []byte) (int, error) {
	buffered := c.r.Buffered()
	n, err := c.r.Read(p)
	if c.ack != nil && buffered == 0 {
		c.ack() // this read went to the socket
	}
	return n, err
}

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
