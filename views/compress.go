package views

import (
	"bytes"
	"compress/gzip"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// The pages and static files gzip themselves; Compress is for the other
// handlers of the server (the JSON and CSV of the history API).

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression)
	return w
}}

// gzipInto appends b, gzipped, to dst.
func gzipInto(dst *bytes.Buffer, b []byte) {
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(dst)
	zw.Write(b)
	zw.Close()
	gzipWriters.Put(zw)
}

// acceptsGzip reports whether the request's Accept-Encoding takes gzip
// (and does not refuse it with q=0).
func acceptsGzip(r *http.Request) bool {
	star := false
	for _, h := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(h, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			coding = strings.TrimSpace(coding)
			q := 1.0
			if k, v, ok := strings.Cut(strings.TrimSpace(params), "="); ok && strings.TrimSpace(k) == "q" {
				q, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
			switch {
			case strings.EqualFold(coding, "gzip"):
				return q > 0
			case coding == "*":
				star = q > 0
			}
		}
	}
	return star
}

// minCompress is the smallest body worth gzipping, when its length is known.
const minCompress = 1024

// compressible reports whether a body of content type ct shrinks when
// gzipped: text, JSON, JavaScript, CSV, SVG.
func compressible(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return strings.HasPrefix(mt, "text/") || mt == "application/json" || mt == "application/javascript" ||
		strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+xml") || mt == "image/svg+xml"
}

// Compress gzips h's responses for clients that take gzip: those of a
// compressible content type (text, JSON, CSV, JavaScript) and not already
// encoded. It passes WebSocket upgrades and range requests through
// untouched, and keeps streaming responses streaming: a Flush sends what
// has been compressed so far. A strong ETag becomes weak, since the bytes
// differ from the identity response's.
func Compress(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" || r.Header.Get("Range") != "" || !acceptsGzip(r) {
			h.ServeHTTP(w, r)
			return
		}
		cw := &compressWriter{ResponseWriter: w, head: r.Method == http.MethodHead}
		defer cw.close()
		h.ServeHTTP(cw, r)
	})
}

// compressWriter decides at WriteHeader whether to gzip, and then does.
type compressWriter struct {
	http.ResponseWriter
	head    bool
	decided bool
	zw      *gzip.Writer
}

func (c *compressWriter) WriteHeader(status int) {
	if c.decided {
		c.ResponseWriter.WriteHeader(status)
		return
	}
	c.decided = true
	h := c.Header()
	if compressible(h.Get("Content-Type")) && !strings.Contains(strings.Join(h.Values("Vary"), ","), "Accept-Encoding") {
		h.Add("Vary", "Accept-Encoding")
	}
	n, err := strconv.Atoi(h.Get("Content-Length"))
	small := err == nil && n < minCompress
	if !c.head && status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified &&
		h.Get("Content-Encoding") == "" && compressible(h.Get("Content-Type")) && !small {
		h.Del("Content-Length")
		h.Set("Content-Encoding", "gzip")
		if e := h.Get("ETag"); e != "" && !strings.HasPrefix(e, "W/") {
			h.Set("ETag", "W/"+e)
		}
		c.zw = gzipWriters.Get().(*gzip.Writer)
		c.zw.Reset(c.ResponseWriter)
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *compressWriter) Write(b []byte) (int, error) {
	if !c.decided {
		if c.Header().Get("Content-Type") == "" {
			c.Header().Set("Content-Type", http.DetectContentType(b))
		}
		c.WriteHeader(http.StatusOK)
	}
	if c.zw != nil {
		return c.zw.Write(b)
	}
	return c.ResponseWriter.Write(b)
}

// Flush sends what has been written so far.
func (c *compressWriter) Flush() {
	if !c.decided {
		c.WriteHeader(http.StatusOK)
	}
	if c.zw != nil {
		c.zw.Flush()
	}
	http.NewResponseController(c.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (c *compressWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *compressWriter) close() {
	if c.zw != nil {
		c.zw.Close()
		c.zw.Reset(io.Discard)
		gzipWriters.Put(c.zw)
		c.zw = nil
	}
}
