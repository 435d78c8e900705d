package views

import (
	"bufio"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCompress(t *testing.T) {
	big := strings.Repeat(`{"t":1764000000000,"v":21.5},`, 200)
	h := Compress(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/json":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("ETag", `"abc"`)
			io.WriteString(w, big)
		case "/small":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "{}")
		case "/png":
			w.Header().Set("Content-Type", "image/png")
			io.WriteString(w, big)
		case "/sniffed":
			io.WriteString(w, "<!doctype html><p>"+big)
		case "/encoded":
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Encoding", "br")
			io.WriteString(w, "already")
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		}
	}))
	for _, tc := range []struct {
		path    string
		zipped  bool
		content string
	}{
		{"/json", true, big},
		{"/small", false, "{}"},
		{"/png", false, big},
		{"/sniffed", true, "<!doctype html><p>" + big},
		{"/encoded", false, "already"},
		{"/304", false, ""},
	} {
		req := httptest.NewRequest("GET", tc.path, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		body := io.Reader(res.Body)
		if zipped := res.Header.Get("Content-Encoding") == "gzip"; zipped != tc.zipped {
			t.Errorf("%s: gzipped %v, want %v", tc.path, zipped, tc.zipped)
			continue
		}
		if tc.zipped {
			zr, err := gzip.NewReader(res.Body)
			if err != nil {
				t.Fatalf("%s: %v", tc.path, err)
			}
			body = zr
			if res.Header.Get("Content-Length") != "" {
				t.Errorf("%s: Content-Length %q of the unzipped body kept", tc.path, res.Header.Get("Content-Length"))
			}
		}
		got, _ := io.ReadAll(body)
		if string(got) != tc.content {
			t.Errorf("%s: body of %d bytes, want %d", tc.path, len(got), len(tc.content))
		}
	}

	// The ETag of the gzipped bytes is weak: they are not the handler's bytes.
	req := httptest.NewRequest("GET", "/json", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if got := rec.Result().Header.Get("ETag"); got != `W/"abc"` {
		t.Errorf("ETag %q, want W/\"abc\"", got)
	}
	// Not asked for: as is.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/json", nil))
	if rec.Result().Header.Get("Content-Encoding") != "" || rec.Body.String() != big {
		t.Error("gzipped for a client that did not ask for it")
	}
}

// TestCompressStreams checks that a flushed part of a response reaches the
// client before the handler ends, and that WebSocket upgrades pass through.
func TestCompressStreams(t *testing.T) {
	flushed := make(chan struct{})
	srv := httptest.NewServer(Compress(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			if _, ok := w.(http.Hijacker); !ok {
				http.Error(w, "cannot hijack", 500)
			}
			return
		}
		w.Header().Set("Content-Type", "text/csv")
		io.WriteString(w, "time,value\n1,2\n")
		http.NewResponseController(w).Flush()
		<-flushed
		io.WriteString(w, "3,4\n")
	})))
	defer srv.Close()

	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Accept-Encoding", "gzip") // set by hand, so the client does not unzip
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q", res.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	first, err := bufio.NewReader(zr).ReadString('\n')
	close(flushed)
	if err != nil || first != "time,value\n" {
		t.Fatalf("first line before the handler ended: %q, %v", first, err)
	}

	req, _ = http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("an upgrade request did not reach a hijackable writer: %d", res.StatusCode)
	}
}

func TestAcceptsGzip(t *testing.T) {
	for ae, want := range map[string]bool{
		"": false, "gzip": true, "GZIP": true, "deflate, gzip": true, "br;q=1.0, gzip;q=0.8": true,
		"gzip;q=0": false, "gzip; q=0.0": false, "*": true, "identity": false, "br": false,
		"*;q=0, gzip": true, "gzip;q=0, *": false,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if ae != "" {
			r.Header.Set("Accept-Encoding", ae)
		}
		if got := acceptsGzip(r); got != want {
			t.Errorf("Accept-Encoding %q: %v, want %v", ae, got, want)
		}
	}
}

func TestStaticIsGzipped(t *testing.T) {
	h := Static()
	for name, f := range statics {
		req := httptest.NewRequest("GET", "/static/"+name, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		etag := res.Header.Get("ETag")
		if res.Header.Get("Content-Encoding") != "gzip" || etag != `"`+f.hash+`-gz"` {
			t.Errorf("%s: Content-Encoding %q, ETag %q", name, res.Header.Get("Content-Encoding"), etag)
			continue
		}
		zr, err := gzip.NewReader(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(zr); string(b) != string(f.body) {
			t.Errorf("%s: gunzipped is not the file", name)
		}
		req.Header.Set("If-None-Match", etag)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotModified {
			t.Errorf("%s: If-None-Match its gzip ETag: %d, want 304", name, rec.Code)
		}
	}
}
