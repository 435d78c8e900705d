// Package guard stands in front of every route iotdash serves. It refuses a
// request whose Host is not a name iotdash is reached by, so that a web page
// on another site cannot read a dashboard on a private network by pointing
// a name of its own at it (DNS rebinding), and it sets the security headers
// every response carries: the pages' Content-Security-Policy, no framing,
// no MIME sniffing, no referrer to other sites. Who may do what is the
// auth package's.
package guard

import (
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// Options are what a Handler checks and sets.
type Options struct {
	// Hosts are the host names, besides IP addresses and localhost, that
	// the dashboard is reached by (the host of -public-url).
	Hosts []string
	// CSP is the Content-Security-Policy of every response.
	CSP    string
	Logger *slog.Logger
}

// Handler serves next behind the checks and headers of opts.
func Handler(next http.Handler, opts Options) http.Handler {
	hosts := make([]string, len(opts.Hosts))
	for i, h := range opts.Hosts {
		hosts[i] = strings.ToLower(h)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	limit := rate.NewLimiter(rate.Every(time.Second), 5)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		if opts.CSP != "" {
			h.Set("Content-Security-Policy", opts.CSP)
		}
		if !AllowedHost(r.Host, hosts) {
			if limit.Allow() {
				log.Warn("request for a host name iotdash does not serve refused", "host", truncate(r.Host, 100), "remote", r.RemoteAddr)
			}
			http.Error(w, "This host name is not one this dashboard is reached by. If it is, start iotdash with -public-url naming it.", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// AllowedHost reports whether a request's Host header (host or host:port)
// names this server: an IP address, localhost (or a name under it), or one
// of hosts (lower case).
func AllowedHost(hostport string, hosts []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	switch {
	case host == "":
		return false
	case net.ParseIP(host) != nil:
		// A page cannot make a browser send a foreign site's IP address
		// as the Host of its own origin: no rebinding through an address.
		return true
	case host == "localhost" || strings.HasSuffix(host, ".localhost"):
		return true
	}
	return slices.Contains(hosts, host)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
