package api

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"iotdash/auth"
	"iotdash/internal/version"
)

// History that cannot change any more is cacheable. A reading may arrive
// late, up to the ingester's window behind the clock (-max-ts-behind); a
// query whose range ended before that window (and a margin for readings
// still on their way through a journal) has every reading it will ever
// have. Its answer is the same every time it is asked, so it gets an ETag
// that names the query and the iotdash that answers it, and a
// Cache-Control that lets the browser keep it; asked again with that
// ETag in If-None-Match, the answer is a 304 before the store is read. A
// range that reaches into the window (the live edge) stays no-store.

// closedMargin is how long after the late-data window a range must have
// ended to be cached: readings of that age may still be on their way
// (buffered in the journal while InfluxDB was away).
const closedMargin = time.Hour

// closedMaxAge is how long a browser keeps a closed range's answer
// without asking again: a day, in case the store drops old history
// (InfluxDB's retention) or iotdash is upgraded.
const closedMaxAge = 24 * time.Hour

// CachedHistory serves next, the history API made by Query with opts,
// and lets the answers of closed ranges be cached: a JSON or CSV answer
// whose range ended before now − late − closedMargin gets an ETag and
// Cache-Control (private for a signed-in caller), and an If-None-Match
// with its ETag gets a 304 without reading the store. late is how far
// behind the clock a reading may still be taken; 0 caches nothing.
func CachedHistory(next http.Handler, opts QueryOptions, late time.Duration) http.Handler {
	opts = opts.withDefaults()
	if late <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tag, ok := closedTag(r, opts, late)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		cc := "public, max-age=" + strconv.Itoa(int(closedMaxAge.Seconds()))
		if _, signedIn := auth.From(r.Context()); signedIn {
			cc = "private, max-age=" + strconv.Itoa(int(closedMaxAge.Seconds()))
		}
		if matches(r.Header.Get("If-None-Match"), tag) {
			w.Header().Set("ETag", tag)
			w.Header().Set("Cache-Control", cc)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		next.ServeHTTP(&cacheWriter{ResponseWriter: w, tag: tag, cc: cc}, r)
	})
}

// closedTag is the ETag of r's answer when r asks for a closed range, and
// false for any other request (one the handler refuses, a raw export, a
// range that reaches into the late-data window).
func closedTag(r *http.Request, opts QueryOptions, late time.Duration) (string, bool) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", false
	}
	now := opts.Now()
	req, err := ParseQuery(v, now, opts)
	if err != nil || (req.Step == 0 && req.Format == "csv") {
		return "", false
	}
	if req.To > now.Add(-late-closedMargin).UnixMilli() {
		return "", false
	}
	h := sha256.New()
	zone := ""
	if req.Zone != nil {
		zone = req.Zone.String()
	}
	// The build answering is part of the tag: an upgrade, which may write
	// answers differently, does not answer 304 to what an older one wrote.
	for _, part := range []string{version.String(), strings.Join(req.Devices, ","), strings.Join(req.Metrics, ","),
		strconv.FormatInt(req.From, 10), strconv.FormatInt(req.To, 10), strconv.FormatInt(req.Step, 10), string(req.Agg), zone, req.Format} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	// Weak: the same answer gzipped or not is the same to its reader.
	return `W/"` + hex.EncodeToString(h.Sum(nil)[:16]) + `"`, true
}

// matches reports whether an If-None-Match header names tag, compared
// weakly (RFC 9110 13.1.2).
func matches(header, tag string) bool {
	if header == "" {
		return false
	}
	bare := strings.TrimPrefix(tag, "W/")
	for part := range strings.SplitSeq(header, ",") {
		part = strings.TrimSpace(part)
		if part == "*" || strings.TrimPrefix(part, "W/") == bare {
			return true
		}
	}
	return false
}

// cacheWriter gives a successful answer the closed range's ETag and
// Cache-Control in place of the handler's no-store.
type cacheWriter struct {
	http.ResponseWriter
	tag, cc string
	decided bool
}

func (c *cacheWriter) WriteHeader(status int) {
	if !c.decided && status == http.StatusOK {
		c.Header().Set("ETag", c.tag)
		c.Header().Set("Cache-Control", c.cc)
	}
	c.decided = true
	c.ResponseWriter.WriteHeader(status)
}

func (c *cacheWriter) Write(b []byte) (int, error) {
	if !c.decided {
		c.WriteHeader(http.StatusOK)
	}
	return c.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (c *cacheWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
