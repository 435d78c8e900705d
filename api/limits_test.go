package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"iotdash/api"
	"iotdash/devices"
	"iotdash/store"
	"iotdash/store/sqlite"
)

// heldExports reads from a real store, but every export waits, once
// started, until the test lets it go: a download that is still streaming.
type heldExports struct {
	*sqlite.Store
	started chan struct{}
	release chan struct{}
}

func (h heldExports) Readings(ctx context.Context, q store.Query, fn func([]store.Point) error) error {
	h.started <- struct{}{}
	select {
	case <-h.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return h.Store.Readings(ctx, q, fn)
}

// exportLimits serves the history API over a held store, with opts.
func exportLimits(t *testing.T, opts api.QueryOptions) (heldExports, *httptest.Server) {
	t.Helper()
	st := openSQLite(t)
	appendAll(t, st, []devices.Reading{{Device: "d", Metric: "m", Time: t0, Value: 1}})
	held := heldExports{st, make(chan struct{}), make(chan struct{})}
	opts.Logger = quiet
	srv := httptest.NewServer(api.Query(held, opts))
	t.Cleanup(srv.Close)
	return held, srv
}

// exportAs asks srv for a raw CSV export as client (a header the test's
// ExportClient reads) and returns the status and body.
func exportAs(t *testing.T, srv *httptest.Server, client string) (int, string) {
	req, _ := http.NewRequest("GET", srv.URL+query(url.Values{"device": {"d"}, "metric": {"m"}, "from": {fmt.Sprint(t0)}, "to": {fmt.Sprint(t0 + 1000)}, "step": {"raw"}, "format": {"csv"}}), nil)
	req.Header.Set("X-Test-Client", client)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startHeld starts an export as client and returns once it is streaming,
// with a channel that gives its status when it ends.
func startHeld(t *testing.T, held heldExports, srv *httptest.Server, client string) chan int {
	done := make(chan int, 1)
	go func() { code, _ := exportAs(t, srv, client); done <- code }()
	<-held.started
	return done
}

// TestExportsPerClient: a client with MaxExportsPerClient exports
// streaming gets 429 for one more, with a message that names the limit;
// once one has finished it may start another.
func TestExportsPerClient(t *testing.T) {
	m := api.NewMetrics(nil)
	// Every test request comes from 127.0.0.1: one address, one client.
	held, srv := exportLimits(t, api.QueryOptions{MaxExportsPerClient: 2, Metrics: m})
	first := startHeld(t, held, srv, "")
	startHeld(t, held, srv, "")
	code, body := exportAs(t, srv, "")
	if code != http.StatusTooManyRequests || !strings.Contains(body, "-max-exports-per-client") {
		t.Errorf("a third export from one address: %d %s, want 429 naming -max-exports-per-client", code, body)
	}
	if got := testutil.ToFloat64(m.ExportsRefused.WithLabelValues(api.RefusedExportsPerClient)); got != 1 {
		t.Errorf(`iotdash_exports_refused_total{reason="too_many_per_client"} = %v, want 1`, got)
	}
	held.release <- struct{}{}
	if code := <-first; code != http.StatusOK {
		t.Fatalf("the first export ended with %d", code)
	}
	third := startHeld(t, held, srv, "")
	held.release <- struct{}{}
	held.release <- struct{}{}
	if code := <-third; code != http.StatusOK {
		t.Errorf("an export after one had finished: %d, want 200", code)
	}
}

// TestExportsInTotal: past MaxExports streaming at once, from any clients,
// an export gets 429 that names -max-exports.
func TestExportsInTotal(t *testing.T) {
	m := api.NewMetrics(nil)
	held, srv := exportLimits(t, api.QueryOptions{MaxExports: 2, Metrics: m,
		ExportClient: func(r *http.Request) string { return r.Header.Get("X-Test-Client") }})
	startHeld(t, held, srv, "a")
	startHeld(t, held, srv, "b")
	code, body := exportAs(t, srv, "c")
	if code != http.StatusTooManyRequests || !strings.Contains(body, "(-max-exports)") {
		t.Errorf("a third export in all: %d %s, want 429 naming -max-exports", code, body)
	}
	if got := testutil.ToFloat64(m.ExportsRefused.WithLabelValues(api.RefusedExports)); got != 1 {
		t.Errorf(`iotdash_exports_refused_total{reason="too_many"} = %v, want 1`, got)
	}
	close(held.release)
}
