package views

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"iotdash/boards"
	"iotdash/devices"
	"iotdash/store"
	"iotdash/store/sqlite"
)

// TestBoardReplay: a board with ?replay= is rendered as it was at that
// moment: each stat the latest reading at or before it, each chart's
// window ending at it, a bar that says REPLAY and the moment, no live
// readings; a moment that is not one, or not past, is a 400 that says so.
func TestBoardReplay(t *testing.T) {
	end := time.Now().UTC()
	f, st := historyFleet(t, 3, end)
	docs, err := sqlite.OpenDocs(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docs.Close() })
	bs := boards.New(docs, boards.Options{})
	b, err := bs.Create(context.Background(), boards.Board{Title: "Replayed", Panels: []boards.Panel{
		{Type: boards.Stat, Series: []boards.Series{{Selector: devices.Selector{Device: "device-001"}, Metric: "temperature"}}, Decimals: ptr(2)},
		{Type: boards.TimeSeries, Series: []boards.Series{{Selector: devices.Selector{Kind: "sensor"}, Metric: "humidity"}}},
		{Type: boards.Table, Series: []boards.Series{{Selector: devices.Selector{Device: "device-002"}, Metric: "pressure"}}},
	}}, "otto")
	if err != nil {
		t.Fatal(err)
	}
	page := BoardPages{Boards: bs, Fleet: f, Options: Options{History: st}}.Page()
	show := func(query string) (int, *goquery.Document) {
		t.Helper()
		req := httptest.NewRequest("GET", "/boards/"+b.ID+"?"+query, nil)
		req.SetPathValue("id", b.ID)
		rec := httptest.NewRecorder()
		page.ServeHTTP(rec, req)
		doc, err := goquery.NewDocumentFromReader(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		return rec.Code, doc
	}
	// What history holds at a moment ten minutes ago.
	at := end.Add(-10 * time.Minute).Truncate(time.Second)
	latest := func(device, metric string) devices.Value {
		pts, err := st.Query(context.Background(), store.Query{Device: device, Metric: metric, From: at.Add(-time.Minute).UnixMilli(), To: at.UnixMilli() + 1})
		if err != nil || len(pts) == 0 {
			t.Fatalf("history before %v: %v, %d points", at, err, len(pts))
		}
		p := pts[len(pts)-1]
		return devices.Value{T: p.T, V: p.V}
	}
	want := latest("device-001", "temperature")

	code, doc := show("replay=" + at.Format("2006-01-02T15:04:05") + "&speed=10")
	if code != http.StatusOK {
		t.Fatalf("the replay = %d: %s", code, text(doc.Find(`[role="alert"]`)))
	}
	stat := doc.Find(`[data-testid="stat"] [data-metric="temperature"]`)
	if got := text(stat.Find(`[data-value]`)); got != strconv.FormatFloat(want.V, 'f', 2, 64) {
		t.Errorf("the stat shows %s, want %.2f, the latest at or before %v", got, want.V, at)
	}
	if got := stat.AttrOr("data-t", ""); got != strconv.FormatInt(want.T, 10) {
		t.Errorf("the stat's reading is of %s, want %d", got, want.T)
	}
	if got := doc.Find(`[data-testid="stat"]`).AttrOr("data-status", ""); got != string(devices.StatusUnknown) {
		t.Errorf("the stat's device is %s then, want unknown without an event log to tell", got)
	}
	cell := doc.Find(`[data-testid="device-table"] [data-metric="pressure"] [data-value]`)
	if got, want := text(cell), latest("device-002", "pressure").V; got != strconv.FormatFloat(want, 'f', -1, 64) && got != strconv.FormatFloat(want, 'f', 2, 64) {
		t.Errorf("the table shows %s, want %g", got, want)
	}
	chart := doc.Find(`figure[data-lines]`)
	if got := chart.AttrOr("data-to", ""); got != strconv.FormatInt(at.UnixMilli()+1, 10) {
		t.Errorf("the chart's window ends at %s, want the moment %d", got, at.UnixMilli())
	}
	if n := chart.Find(`[data-line]`).Length(); n != 3 {
		t.Errorf("the chart has %d lines, want every sensor's", n)
	}
	bar := doc.Find(`[data-testid="replay-bar"]`)
	if label := text(bar.Find(`[data-testid="replay-label"]`)); label != "REPLAY — "+formatAt(at.UnixMilli(), time.UTC) {
		t.Errorf("the replay's label reads %q", label)
	}
	if bar.AttrOr("data-speed", "") != "10" || bar.AttrOr("data-step", "") != "60000" || bar.AttrOr("data-replay", "") != strconv.FormatInt(at.UnixMilli(), 10) {
		t.Errorf("the bar's speed %s, step %s, moment %s", bar.AttrOr("data-speed", ""), bar.AttrOr("data-step", ""), bar.AttrOr("data-replay", ""))
	}
	if got := bar.Find(`[data-testid="replay-forward"]`).AttrOr("href", ""); got != "/boards/"+b.ID+"?replay="+strconv.FormatInt(at.Add(time.Minute).UnixMilli(), 10)+"&speed=10" {
		t.Errorf("a step forward links to %s", got)
	}
	if got := doc.Find(`[data-testid="replay-form"] [name="replay"]`).Length(); got != 1 {
		t.Errorf("the replay's form sends %d moments, want its field's only", got)
	}
	if got := doc.Find(`[data-testid="range-picker"] input[type="hidden"][name="replay"]`).AttrOr("value", ""); got != at.Format("2006-01-02T15:04:05") {
		t.Errorf("the range picker keeps the replay %q", got)
	}
	if live := doc.Find("body").AttrOr("data-live", ""); live != "-" {
		t.Errorf("a replay subscribes to %q, want no device's live readings", live)
	}
	if _, ok := doc.Find("#board-grid").Attr("data-follow"); ok {
		t.Error("a replay fetches its grid again to follow the fleet now")
	}
	if doc.Find(`[data-testid="replay-from"]`).Length() != 0 {
		t.Error("a replay offers to start a replay")
	}

	// The board live offers a replay, and no bar.
	if _, doc := show(""); doc.Find(`[data-testid="replay-from"] input[name="replay"]`).AttrOr("value", "") == "" || doc.Find(`[data-testid="replay-bar"]`).Length() != 0 {
		t.Error("the live board has no form to replay it from a moment, or has a replay bar")
	}
	for _, c := range []struct{ query, says string }{
		{"replay=yesterday", `replay "yesterday" is not a date and time`},
		{"replay=" + end.Add(time.Hour).Format(time.RFC3339), "is not in the past"},
		{"replay=" + at.Format(time.RFC3339) + "&speed=100", `speed "100" is not a whole number from 1 to 60`},
	} {
		code, doc := show(c.query)
		if got := text(doc.Find(`[data-testid="board-problem"]`)); code != http.StatusBadRequest || !strings.Contains(got, c.says) {
			t.Errorf("?%s = %d %q, want 400 that says %q", c.query, code, got, c.says)
		}
	}
}
