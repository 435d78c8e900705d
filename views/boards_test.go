package views

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"iotdash/alerts"
	"iotdash/boards"
	"iotdash/devices"
	"iotdash/store/sqlite"
)

func ptr[T any](v T) *T { return &v }

// plantBoard shows fleetAt in a panel of each type.
func plantBoard() boards.Board {
	return boards.Board{ID: "plant", Title: "Plant", Version: 3, Panels: []boards.Panel{
		{Title: "Thermometers", Type: boards.TimeSeries, W: 8, Series: []boards.Series{{Selector: devices.Selector{Kind: "thermometer"}, Metric: "temperature"}}},
		{Title: "Boiler", Type: boards.Stat, Series: []boards.Series{{Selector: devices.Selector{Device: "boiler-1"}, Metric: "temperature"}, {Selector: devices.Selector{Device: "new-4"}, Metric: "temperature"}},
			Thresholds: []boards.Threshold{{Value: 0, Level: "ok"}, {Value: 20, Level: "warn"}}, Decimals: ptr(1)},
		{Title: "Humidity", Type: boards.Gauge, Series: []boards.Series{{Selector: devices.Selector{Pattern: "boiler-*"}, Metric: "humidity"}}, Unit: "% RH"},
		{Type: boards.Table, Series: []boards.Series{{Selector: devices.Selector{Location: "*"}, Metric: "temperature"}, {Selector: devices.Selector{Device: "gate-3"}, Metric: "pressure"}}},
		{Title: "Nothing yet", Type: boards.Stat, Series: []boards.Series{{Selector: devices.Selector{Kind: "pump"}, Metric: "flow"}}},
	}}
}

func TestBoardPanels(t *testing.T) {
	m := NewBoard(plantBoard(), fleetAt(), now, boards.Limits{}, nil)
	doc := renderDoc(t, BoardPage(m))
	panels := doc.Find(`[data-testid="panel"]`)
	if panels.Length() != 5 {
		t.Fatalf("%d panels, want 5", panels.Length())
	}
	if got := m.Live; got != "boiler-1 freezer-2 gate-3 new-4" {
		t.Errorf("the page subscribes to %q, want the devices it shows", got)
	}
	if _, ok := doc.Find("body").Attr("data-live-latest"); ok {
		t.Error("a board with charts asks for the latest values only; its charts need every reading")
	}
	// Its selectors may pick devices the fleet gains: the grid says which
	// it shows and how often to look again.
	grid := doc.Find(`#board-grid`)
	if grid.AttrOr("data-live", "") != m.Live || grid.AttrOr("data-follow", "") != "60000" {
		t.Errorf("the grid's data-live %q data-follow %q, want %q and 60000 (ms)", grid.AttrOr("data-live", ""), grid.AttrOr("data-follow", ""), m.Live)
	}
	if v, ok := doc.Find("body").Attr("data-page"); !ok || v != "board" {
		t.Errorf("body data-page = %q, want board", v)
	}

	// A time series: one chart, a line per thermometer, history from the
	// range.
	ts := panels.Eq(0)
	if !ts.HasClass("w-8") || !ts.HasClass("h-2") {
		t.Errorf("the time series' classes are %q, want w-8 h-2", ts.AttrOr("class", ""))
	}
	if n := ts.Find(`figure[data-testid="chart"]`).Length(); n != 1 {
		t.Errorf("the time series has %d charts, want 1", n)
	}
	var lines []string
	ts.Find(`figure[data-lines] [data-line]`).Each(func(_ int, s *goquery.Selection) {
		lines = append(lines, s.AttrOr("data-device", "")+"."+s.AttrOr("data-chart", "")+" "+text(s))
	})
	if got, want := strings.Join(lines, ", "), "boiler-1.temperature Boiler room temperature, freezer-2.temperature Freezer temperature"; got != want {
		t.Errorf("the chart's lines %q, want %q", got, want)
	}
	if s := text(ts.Find(`[data-testid="chart-summary"]`).First()); !strings.HasPrefix(s, "Thermometers: 2 series, the last 15 min") {
		t.Errorf("the chart's summary says %q, want the panel and its series", s)
	}

	// A stat: the panel's decimals, its level, and a device without the
	// metric yet.
	stats := panels.Eq(1).Find(`[data-testid="stat"]`)
	if stats.Length() != 2 {
		t.Fatalf("the stat shows %d values, want 2", stats.Length())
	}
	if v := text(stats.Eq(0).Find(`[data-value]`)); v != "21.5" {
		t.Errorf("the stat shows %q, want 21.5 (1 decimal)", v)
	}
	if !stats.Eq(0).HasClass("level-warn") || text(stats.Eq(0).Find(`[data-testid="level"]`)) != "warn" {
		t.Errorf("21.5 against thresholds ok 0, warn 20: class %q", stats.Eq(0).AttrOr("class", ""))
	}
	if v := text(stats.Eq(1).Find(`[data-value]`)); v != "–" {
		t.Errorf("a device without the metric shows %q, want –", v)
	}
	if th := panels.Eq(1).AttrOr("data-thresholds", ""); th != `[{"value":0,"level":"ok"},{"value":20,"level":"warn"}]` {
		t.Errorf("data-thresholds = %s", th)
	}

	// A gauge: a meter, the panel's unit.
	g := panels.Eq(2)
	if meter := g.Find(`meter[data-testid="gauge"]`); meter.AttrOr("value", "") != "40.2" || meter.AttrOr("max", "") != "100" {
		t.Errorf("the gauge's meter: value %q max %q, want 40.2 of 100", meter.AttrOr("value", ""), meter.AttrOr("max", ""))
	}
	if u := text(g.Find(`[data-testid="unit"]`)); u != "% RH" {
		t.Errorf("the gauge's unit is %q, want the panel's", u)
	}

	// A table: a row per device, a column per metric, titled by its type.
	tbl := panels.Eq(3)
	if title := text(tbl.Find("h2")); title != "Device table" {
		t.Errorf("an untitled table is titled %q", title)
	}
	var heads []string
	tbl.Find("thead th").Each(func(_ int, s *goquery.Selection) { heads = append(heads, text(s)) })
	if got := strings.Join(heads, ","); got != "Device,Status,Last seen,temperature,pressure" {
		t.Errorf("the table's columns: %s", got)
	}
	if rows := tbl.Find("tbody tr[data-device]"); rows.Length() != 3 {
		t.Errorf("the table has %d rows, want boiler-1, freezer-2, gate-3", rows.Length())
	}
	if v := text(tbl.Find(`tr[data-device="gate-3"] [data-metric="pressure"] [data-value]`)); v != "1013.25" {
		t.Errorf("gate-3's pressure in the table is %q", v)
	}

	// A panel that matches nothing says so.
	if e := text(panels.Eq(4).Find(`[data-testid="panel-empty"]`)); e == "" {
		t.Error("a panel without devices says nothing")
	}
	// No editor for who may not edit.
	if doc.Find(`[data-testid="editor"], [data-testid="edit-board"]`).Length() != 0 {
		t.Error("the editor is offered without the operator role")
	}
}

// boardServer is the board pages over boards kept in a real state file.
func boardServer(t *testing.T) (*boards.Boards, http.Handler) {
	t.Helper()
	docs, err := sqlite.OpenDocs(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docs.Close() })
	bs := boards.New(docs, boards.Options{})
	f := testFleet()
	f.SetMeta("boiler-1", devices.Meta{Name: "Boiler room", Kind: "boiler", Units: map[string]string{"temperature": "°C"}})
	bp := BoardPages{Boards: bs, Fleet: f}
	mux := http.NewServeMux()
	mux.Handle("GET /boards", bp.List())
	mux.Handle("GET /boards/{id}", bp.Page())
	mux.Handle("GET /boards/{id}/export", bp.Export())
	mux.Handle("GET /boards/{id}/versions", bp.Versions())
	mux.Handle("POST /boards", bp.Create())
	mux.Handle("POST /boards/import", bp.Import())
	mux.Handle("POST /boards/{id}", bp.Save())
	mux.Handle("POST /boards/{id}/restore", bp.Restore())
	mux.Handle("POST /boards/{id}/delete", bp.Delete())
	return bs, mux
}

func TestBoardHandlers(t *testing.T) {
	bs, h := boardServer(t)
	b, err := bs.Create(context.Background(), boards.Board{Title: "Boiler", Panels: []boards.Panel{
		{Type: boards.Stat, Series: []boards.Series{{Selector: devices.Selector{Device: "boiler-1"}, Metric: "temperature"}}}}}, "otto")
	if err != nil {
		t.Fatal(err)
	}
	if res, doc := get(t, h, "/boards"); res.StatusCode != 200 || doc.Find(`[data-board="`+b.ID+`"] a`).AttrOr("href", "") != "/boards/"+b.ID {
		t.Errorf("GET /boards = %d without a link to the board", res.StatusCode)
	}
	// Every kind has a board of its own, generated.
	if _, doc := get(t, h, "/boards"); doc.Find(`[data-testid="kind-boards"] a[href="/boards/kind.boiler"]`).Length() != 1 {
		t.Error("the list has no board for the kind boiler")
	}
	if res, doc := get(t, h, "/boards/kind.boiler"); res.StatusCode != 200 || doc.Find(`[data-testid="panel"]`).Length() != 3 ||
		doc.Find(`select[name="var-device"] option[value="boiler-1"]`).Length() != 1 || doc.Find(`[data-testid="edit-board"]`).Length() != 0 {
		t.Errorf("GET /boards/kind.boiler = %d, %d panels", res.StatusCode, doc.Find(`[data-testid="panel"]`).Length())
	}
	if res, _ := get(t, h, "/boards/kind.nope"); res.StatusCode != 404 {
		t.Errorf("the board of a kind the fleet lacks = %d, want 404", res.StatusCode)
	}
	res, doc := get(t, h, "/boards/"+b.ID)
	if res.StatusCode != 200 || text(doc.Find(`[data-testid="stat"] [data-value]`)) != "21.5" {
		t.Errorf("GET /boards/%s = %d, value %q", b.ID, res.StatusCode, text(doc.Find(`[data-testid="stat"] [data-value]`)))
	}
	if res, doc := get(t, h, "/boards/nope"); res.StatusCode != 404 || doc.Find(`[data-testid="not-found"]`).Length() != 1 {
		t.Errorf("GET /boards/nope = %d, want the 404 page", res.StatusCode)
	}

	// Saving JSON: a bad board is a 400 that names the mistake, a good one
	// the stored board.
	post := func(body string) (int, map[string]any) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/boards/"+b.ID, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		var v map[string]any
		json.NewDecoder(rec.Body).Decode(&v)
		return rec.Code, v
	}
	if code, v := post(`{"title":"Boiler","panels":[{"type":"pie","series":[{"device":"boiler-1","metric":"t"}]}]}`); code != 400 || !strings.Contains(v["error"].(string), `panel 1: type "pie"`) {
		t.Errorf("saving a pie panel = %d %v, want 400 naming it", code, v)
	}
	if code, v := post(`{"title":"Boiler 2","panels":[],"version":1}`); code != 200 || v["version"] != 2.0 || v["title"] != "Boiler 2" {
		t.Errorf("saving = %d %v, want version 2", code, v)
	}
	if code, v := post(`{"title":"Boiler 3","panels":[],"version":1}`); code != 400 || !strings.Contains(v["error"].(string), "saved again (version 2, by someone) after version 1") {
		t.Errorf("saving a change to version 1 over version 2 = %d %v, want 400 saying so", code, v)
	}

	// Export: the board's JSON as a download, that Decode takes back.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/boards/"+b.ID+"/export", nil))
	if rec.Code != 200 || !strings.Contains(rec.Header().Get("Content-Disposition"), "attachment") {
		t.Errorf("export = %d %q", rec.Code, rec.Header().Get("Content-Disposition"))
	}
	exported := rec.Body.String()
	if got, err := boards.Decode(strings.NewReader(exported), boards.Limits{}); err != nil || got.Title != "Boiler 2" {
		t.Errorf("the export decodes to %+v, %v", got, err)
	}

	// The forms: versions and a restore, an import, a delete.
	form := func(path string, v url.Values) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", path, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		h.ServeHTTP(rec, req)
		return rec
	}
	if _, doc := get(t, h, "/boards/"+b.ID+"/versions"); text(doc.Find(`tr[data-version="1"] td`).First()) != "Boiler" {
		t.Errorf("the versions page lists %q", text(doc.Find(`[data-testid="versions"] tbody`)))
	}
	if rec := form("/boards/"+b.ID+"/restore", url.Values{"version": {"1"}}); rec.Code != http.StatusSeeOther {
		t.Errorf("restoring version 1 = %d", rec.Code)
	}
	if got, _ := bs.Get(context.Background(), b.ID); got.Version != 3 || got.Title != "Boiler" {
		t.Errorf("after restoring version 1 the board is version %d %q, want 3 \"Boiler\"", got.Version, got.Title)
	}
	if rec := form("/boards/"+b.ID+"/restore", url.Values{"version": {"9"}}); rec.Code != http.StatusNotFound {
		t.Errorf("restoring a version never saved = %d, want 404", rec.Code)
	}
	if rec := form("/boards/import", url.Values{"board": {`{"title":"x","panels":[{"type":"stat","series":[]}]}`}}); rec.Code != 400 ||
		!strings.Contains(rec.Body.String(), "panel 1: it has no series") {
		t.Errorf("importing a bad board = %d, want 400 naming the mistake", rec.Code)
	}
	rec = form("/boards/import", url.Values{"board": {exported}})
	imported := strings.TrimPrefix(rec.Header().Get("Location"), "/boards/")
	if got, err := bs.Get(context.Background(), imported); rec.Code != http.StatusSeeOther || err != nil || got.Title != "Boiler 2" {
		t.Errorf("importing the export = %d to %q: %+v %v", rec.Code, imported, got, err)
	}
	if rec := form("/boards", url.Values{"title": {""}}); rec.Code != 400 {
		t.Errorf("a board without a title = %d, want 400", rec.Code)
	}
	if rec := form("/boards/"+b.ID+"/delete", nil); rec.Code != http.StatusSeeOther {
		t.Errorf("deleting = %d", rec.Code)
	}
	if res, _ := get(t, h, "/boards/"+b.ID+"/versions"); res.StatusCode != 404 {
		t.Errorf("the versions of a deleted board = %d, want 404", res.StatusCode)
	}
}

// BenchmarkBoard is a board of 30 panels of 10 series each (10 time
// series, 10 stats, 10 tables) over 100 devices, rendered and gzipped with
// the history of its charts and sparklines read from the embedded store.
func BenchmarkBoard(b *testing.B) {
	f, st := historyFleet(b, 100, time.Now())
	docs, err := sqlite.OpenDocs(filepath.Join(b.TempDir(), "fleet.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { docs.Close() })
	bs := boards.New(docs, boards.Options{})
	board := boards.Board{Title: "Big"}
	types := []string{boards.TimeSeries, boards.Stat, boards.Table}
	for i := range 30 {
		p := boards.Panel{Title: fmt.Sprintf("Panel %d", i+1), Type: types[i%3]}
		for j := range 10 {
			p.Series = append(p.Series, boards.Series{Selector: devices.Selector{Device: fmt.Sprintf("device-%03d", (i*10+j)%100)}, Metric: kinds[j%len(kinds)].metric})
		}
		board.Panels = append(board.Panels, p)
	}
	saved, err := bs.Create(context.Background(), board, "bench")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		h    History
	}{{"history", st}, {"no-history", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			page := BoardPages{Boards: bs, Fleet: f, Options: Options{History: bc.h}}.Page()
			get := func() *httptest.ResponseRecorder {
				req := httptest.NewRequest("GET", "/boards/"+saved.ID, nil)
				req.SetPathValue("id", saved.ID)
				req.Header.Set("Accept-Encoding", "gzip")
				rec := httptest.NewRecorder()
				page.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatal(rec.Code)
				}
				return rec
			}
			rec := get()
			wire := rec.Body.Len()
			zr, err := gzip.NewReader(rec.Body)
			if err != nil {
				b.Fatal(err)
			}
			html, _ := io.ReadAll(zr)
			for b.Loop() {
				get()
			}
			b.ReportMetric(float64(wire), "wire-bytes")
			b.ReportMetric(float64(len(html)), "html-bytes")
		})
	}
}

// TestBoardShowsWhatFires: an alert that fires on a series of the board
// bands its chart, marks its line in the legend and its stat, and is said
// in the chart's words.
func TestBoardShowsWhatFires(t *testing.T) {
	ctx := context.Background()
	docs, err := sqlite.OpenDocs(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer docs.Close()
	fleet := devices.NewFleet(nil)
	for _, d := range fleetAt() {
		fleet.SetMeta(d.ID, d.Meta)
	}
	engine, err := alerts.New(ctx, alerts.Config{Store: docs, Fleet: fleet, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.PutRule(ctx, alerts.Rule{Name: "Boiler too hot", Device: "boiler-1", Metric: "temperature", Op: ">", Value: 20, Severity: "critical"}); err != nil {
		t.Fatal(err)
	}
	engine.Observe([]devices.Reading{{Device: "boiler-1", Metric: "temperature", Time: now.UnixMilli(), Value: 21.5}})
	if len(engine.Alerts(alerts.StateFiring)) == 0 {
		t.Fatalf("the rule does not fire: %+v", engine.Alerts(""))
	}

	m := NewBoard(plantBoard(), fleetAt(), now, boards.Limits{}, nil)
	addBoardAlerts(&m, engine, now)
	doc := renderDoc(t, BoardPage(m))
	chart := doc.Find(`[data-testid="panel"]`).Eq(0).Find(`figure[data-lines]`)
	if a := chart.AttrOr("data-alerts", ""); !strings.Contains(a, `,0,"critical"]`) {
		t.Errorf("the chart's data-alerts = %q, want a span that fires still", a)
	}
	if got := text(chart.Find(`[data-line][data-device="boiler-1"] [data-testid="line-alert"]`)); got != "critical" {
		t.Errorf("boiler-1's line is marked %q, want critical", got)
	}
	if n := chart.Find(`[data-line][data-device="freezer-2"] [data-testid="line-alert"]`).Length(); n != 0 {
		t.Errorf("freezer-2's line has %d marks, want none", n)
	}
	if s := text(chart.Find(`[data-testid="chart-summary"]`)); !strings.Contains(s, "Boiler too hot (critical) fires on Boiler room since") {
		t.Errorf("the chart's words: %q", s)
	}
	stat := doc.Find(`[data-testid="stat"][data-device="boiler-1"]`)
	if !stat.HasClass("firing") || !strings.HasPrefix(text(stat.Find(`[data-testid="stat-alert"]`)), "critical Boiler too hot, since") {
		t.Errorf("boiler-1's stat: class %q, alert %q", stat.AttrOr("class", ""), text(stat.Find(`[data-testid="stat-alert"]`)))
	}

	// A replay of a minute before: nothing fires yet, but the chart has
	// the band, for when the replay plays on to it.
	before := now.Add(-time.Minute)
	m = NewBoard(plantBoard(), fleetAt(), before, boards.Limits{}, nil)
	addBoardAlerts(&m, engine, before)
	doc = renderDoc(t, BoardPage(m))
	chart = doc.Find(`[data-testid="panel"]`).Eq(0).Find(`figure[data-lines]`)
	if a := chart.AttrOr("data-alerts", ""); !strings.Contains(a, `"critical"]`) {
		t.Errorf("a minute before, the chart's data-alerts = %q, want the span to come", a)
	}
	if n := doc.Find(`[data-testid="line-alert"], [data-testid="stat-alert"]`).Length(); n != 0 || strings.Contains(text(chart.Find(`[data-testid="chart-summary"]`)), "fires") {
		t.Errorf("a minute before it fired, %d marks say it fires; the chart says %q", n, text(chart.Find(`[data-testid="chart-summary"]`)))
	}
}

// TestKioskCycles: a kiosk given a cycle of boards says which board comes
// next and when, keeping the cycle and the range; a mistake in the cycle
// is a 400 that names it, the board shown all the same.
func TestKioskCycles(t *testing.T) {
	_, h := boardServer(t)
	board := func(res *http.Response, doc *goquery.Document) (int, string, string, string) {
		b := doc.Find(`[data-testid="board"]`)
		return res.StatusCode, b.AttrOr("data-next", ""), b.AttrOr("data-every", ""), text(doc.Find(`[data-testid="board-problem"]`))
	}
	for _, c := range []struct {
		path, next, every, problem string
		code                       int
	}{
		{"/boards/kind.boiler?kiosk&cycle=kind.boiler,b2,b3&every=30s&range=1h", "/boards/b2?cycle=kind.boiler%2Cb2%2Cb3&every=30s&kiosk=&range=1h", "30000", "", 200},
		{"/boards/kind.boiler?kiosk&cycle=b2,kind.boiler", "/boards/b2?cycle=b2%2Ckind.boiler&kiosk=", "60000", "", 200},
		{"/boards/kind.boiler?kiosk&cycle=b2,b3", "/boards/b2?cycle=b2%2Cb3&kiosk=", "60000", "", 200},
		{"/boards/kind.boiler?cycle=b2,b3", "", "", "", 200}, // not a kiosk
		{"/boards/kind.boiler?kiosk&cycle=b2&every=1s", "", "", `every "1s" is not a duration from 10s to 1h0m0s`, 400},
		{"/boards/kind.boiler?kiosk&cycle=b2,,b3", "", "", `cycle: "" is not a board's id`, 400},
	} {
		code, next, every, problem := board(get(t, h, c.path))
		if code != c.code || next != c.next || every != c.every || !strings.HasPrefix(problem, c.problem) {
			t.Errorf("%s: %d next %q every %q problem %q, want %d %q %q %q", c.path, code, next, every, problem, c.code, c.next, c.every, c.problem)
		}
	}
}
