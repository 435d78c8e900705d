package views

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"iotdash/alerts"
	"iotdash/devices"
	"iotdash/internal/testenv"
	"iotdash/store/sqlite"
)

// TestAlertHistory: the alerts page lists each firing of an alert, with
// its peak, when it cleared and who acknowledged it, filtered by device,
// rule, severity and time; a filter that is not one says why.
func TestAlertHistory(t *testing.T) {
	docs, err := sqlite.OpenDocs(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer docs.Close()
	e, err := alerts.New(context.Background(), alerts.Config{Store: docs, Fleet: devices.NewFleet(nil)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	hot, _ := e.PutRule(ctx, alerts.Rule{Name: "Boiler hot", Pattern: "boiler-*", Metric: "temperature", Op: ">", Value: 30, Severity: "critical"})
	if _, err := e.PutRule(ctx, alerts.Rule{Name: "Tank low", Device: "tank-1", Metric: "level", Op: "<", Value: 10}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	for _, r := range []devices.Reading{
		{Device: "boiler-1", Metric: "temperature", Time: now, Value: 34}, {Device: "boiler-1", Metric: "temperature", Time: now, Value: 20},
		{Device: "boiler-2", Metric: "temperature", Time: now, Value: 31},
		{Device: "tank-1", Metric: "level", Time: now, Value: 4},
	} {
		e.Observe([]devices.Reading{r})
	}
	testenv.WaitFor(t, 10*time.Second, "three episodes", func() bool { return len(e.History(alerts.HistoryQuery{})) == 3 })

	h := AlertPages{Book: e}.Page()
	get := func(query string) (int, *goquery.Document) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/alerts?"+query, nil))
		doc, err := goquery.NewDocumentFromReader(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		return rec.Code, doc
	}
	devicesOf := func(doc *goquery.Document) []string {
		var out []string
		doc.Find(`[data-testid="history"] tbody tr td:nth-of-type(1)`).Each(func(_ int, s *goquery.Selection) { out = append(out, text(s)) })
		return out
	}
	_, doc := get("")
	if got := devicesOf(doc); len(got) != 3 {
		t.Errorf("every episode: %v, want three", got)
	}
	_, doc = get("severity=critical&rule=" + hot.ID + "&from=-1d")
	if got := devicesOf(doc); len(got) != 2 {
		t.Errorf("critical boiler episodes of the last day: %v, want boiler-1's and boiler-2's", got)
	}
	if got := doc.Find(`#history-severity option[selected]`).AttrOr("value", ""); got != "critical" {
		t.Errorf("the severity filter shows %q, want critical kept", got)
	}
	_, doc = get("device=boiler-1")
	row := doc.Find(`[data-testid="history"] tbody tr`)
	if got := text(row.Find(".value")); row.Length() != 1 || got != "34" || row.Find(`[data-testid="episode-cleared"]`).Length() != 1 {
		t.Errorf("boiler-1's episode: %q, want one with its peak 34, cleared", text(row))
	}
	code, doc := get("from=yesterday")
	if code != http.StatusBadRequest || !strings.Contains(text(doc.Find(`[data-testid="alerts-problem"]`)), "from") {
		t.Errorf("a bad from: %d %q, want 400 naming from", code, text(doc.Find(`[data-testid="alerts-problem"]`)))
	}
}
