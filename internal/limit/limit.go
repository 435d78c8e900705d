// Package limit counts what is in use at once (live connections, streaming
// exports) against a bound in all and a bound per client, so that the
// parts of iotdash that refuse the next one past a bound do it one way.
//
// It does not refuse anything by itself, count refusals or rates over
// time: its caller answers (503, 429) and counts.
package limit

import (
	"net"
	"net/http"
	"sync"
)

// Refusal is which bound refuses one more: none, the total or the client's.
type Refusal int

// The bounds that may refuse.
const (
	None Refusal = iota
	Total
	PerClient
)

// Concurrent counts what is in use, in all and per client. Its zero value
// has no room; set Max and MaxPerClient before use. It is safe for
// concurrent use.
type Concurrent struct {
	Max, MaxPerClient int

	mu sync.Mutex
	n  int
	by map[string]int
}

// Acquire takes one place for client, or says which bound refuses it.
// Each Acquire that returns None is matched by one Release.
func (c *Concurrent) Acquire(client string) Refusal {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.n >= c.Max:
		return Total
	case c.by[client] >= c.MaxPerClient:
		return PerClient
	}
	if c.by == nil {
		c.by = map[string]int{}
	}
	c.n++
	c.by[client]++
	return None
}

// Release gives back a place Acquire took for client.
func (c *Concurrent) Release(client string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n--
	if c.by[client]--; c.by[client] <= 0 {
		delete(c.by, client)
	}
}

// Addr is the address a request comes from, that a client is counted by
// until it is known by another name: the host of r.RemoteAddr. Behind a
// proxy it is the proxy's.
func Addr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
