package api

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"iotdash/auth"
	"iotdash/store"
	"iotdash/store/sqlite"
)

// countingReader counts the queries that reach the store.
type countingReader struct {
	*sqlite.Store
	queries atomic.Int64
}

func (c *countingReader) Query(ctx context.Context, q store.Query) ([]store.Point, error) {
	c.queries.Add(1)
	return c.Store.Query(ctx, q)
}

// TestClosedHistoryIsCached: a query of a range that ended before the
// late-data window answers with an ETag and Cache-Control (private for a
// signed-in caller), and a 304 to its ETag without reading the store; a
// range that reaches into the window stays no-store.
func TestClosedHistoryIsCached(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "iotdash.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Append(context.Background(), openAPIExamples); err != nil {
		t.Fatal(err)
	}
	reader := &countingReader{Store: st}
	// The examples are of 2026-01-01 00:00; it is now 2026-01-09 00:00.
	now := time.UnixMilli(openAPIExamples[0].Time).Add(8 * 24 * time.Hour)
	opts := QueryOptions{Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)}
	h := CachedHistory(Query(reader, opts), opts, 7*24*time.Hour)

	docs, err := sqlite.OpenDocs(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer docs.Close()
	people := auth.New(auth.Config{Store: docs})
	if _, _, err := people.Bootstrap(context.Background(), "cache-admin-password"); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/query", people.Require(auth.Viewer, h))
	mux.Handle("GET /open/query", h)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	signedIn := strings.Replace(srv.URL, "://", "://admin:cache-admin-password@", 1) + "/api/v1/query?device=boiler-1&metric=temperature"

	closed := signedIn + "&from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z"
	first := fetchURL(t, closed)
	tag := first.hdr.Get("ETag")
	if first.code != 200 || !strings.HasPrefix(tag, `W/"`) || first.hdr.Get("Cache-Control") != "private, max-age=86400" {
		t.Fatalf("a closed range: %d ETag %q Cache-Control %q, want 200 with an ETag, private", first.code, tag, first.hdr.Get("Cache-Control"))
	}
	before := reader.queries.Load()
	again := fetchURL(t, closed, "If-None-Match", tag)
	if again.code != http.StatusNotModified || len(again.body) != 0 || again.hdr.Get("ETag") != tag {
		t.Errorf("asked again with its ETag: %d ETag %q, %d bytes; want 304 with the same ETag", again.code, again.hdr.Get("ETag"), len(again.body))
	}
	if n := reader.queries.Load() - before; n != 0 {
		t.Errorf("the 304 read the store %d times, want none", n)
	}
	// Another range, step or format is another answer.
	for _, other := range []string{"&from=2026-01-01T00:00:00Z&to=2026-01-01T02:00:00Z", "&from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z&step=1m", "&from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z&format=csv"} {
		a := fetchURL(t, signedIn+other, "If-None-Match", tag)
		if a.code != 200 || a.hdr.Get("ETag") == tag || a.hdr.Get("ETag") == "" {
			t.Errorf("%s with the first ETag: %d ETag %q, want 200 with its own", other, a.code, a.hdr.Get("ETag"))
		}
	}
	// Without sign-in (a route that needs none) the answer may be shared.
	if a := fetchURL(t, srv.URL+"/open/query?device=boiler-1&metric=temperature&from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z"); a.hdr.Get("Cache-Control") != "public, max-age=86400" {
		t.Errorf("without sign-in: Cache-Control %q, want public", a.hdr.Get("Cache-Control"))
	}

	// The live edge, a range inside the window, a raw export and a refused
	// query are not cached.
	for _, q := range []string{"", "&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z", "&from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z&step=raw&format=csv", "&from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z&agg=median"} {
		a := fetchURL(t, signedIn+q, "If-None-Match", "*")
		if a.hdr.Get("ETag") != "" || a.hdr.Get("Cache-Control") != "no-store" || a.code == http.StatusNotModified {
			t.Errorf("%q: %d ETag %q Cache-Control %q, want no ETag and no-store", q, a.code, a.hdr.Get("ETag"), a.hdr.Get("Cache-Control"))
		}
	}
}
