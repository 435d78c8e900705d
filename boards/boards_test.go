package boards_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"iotdash/boards"
	"iotdash/devices"
	"iotdash/store/sqlite"
)

var _ boards.Store = (*sqlite.Docs)(nil)

// open returns boards kept in a fresh state file.
func open(t *testing.T, l boards.Limits) *boards.Boards {
	t.Helper()
	docs, err := sqlite.OpenDocs(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docs.Close() })
	return boards.New(docs, boards.Options{Limits: l})
}

func ptr[T any](v T) *T { return &v }

// boilerRoom is a small board of every panel type.
func boilerRoom() boards.Board {
	return boards.Board{Title: "Boiler room", Panels: []boards.Panel{
		{Title: "Temperatures", Type: boards.TimeSeries, W: 8, Series: []boards.Series{{Selector: devices.Selector{Kind: "thermostat"}, Metric: "temperature"}}},
		{Title: "Tank", Type: boards.Gauge, Series: []boards.Series{{Selector: devices.Selector{Device: "tank-01"}, Metric: "level"}}, Min: ptr(0.0), Max: ptr(100.0), Unit: "%"},
		{Title: "Flow", Type: boards.Stat, Series: []boards.Series{{Selector: devices.Selector{Pattern: "pump-*"}, Metric: "flow"}},
			Thresholds: []boards.Threshold{{Value: 10, Level: "warn"}, {Value: 20, Level: "alert"}}, Decimals: ptr(1)},
		{Title: "Basement", Type: boards.Table, Series: []boards.Series{{Selector: devices.Selector{Location: "Basement*"}, Metric: "temperature"}}},
	}}
}

func TestValidate(t *testing.T) {
	long := strings.Repeat("x", 101)
	for _, tc := range []struct {
		name string
		edit func(*boards.Board)
		want string // in the message; "" for valid
	}{
		{"every type", func(*boards.Board) {}, ""},
		{"no title", func(b *boards.Board) { b.Title = "  " }, "the board's title is empty"},
		{"long title", func(b *boards.Board) { b.Title = long }, "the board's title is longer than 100 characters"},
		{"control character", func(b *boards.Board) { b.Title = "a\x00b" }, "control character"},
		{"long panel title", func(b *boards.Board) { b.Panels[1].Title = long }, "panel 2: the title is longer than 100"},
		{"bad type", func(b *boards.Board) { b.Panels[0].Type = "pie" }, `panel 1: type "pie" is none of`},
		{"too wide", func(b *boards.Board) { b.Panels[0].W = 13 }, "panel 1: w (width) must be 1 to 12"},
		{"too tall", func(b *boards.Board) { b.Panels[0].H = 7 }, "panel 1: h (height) must be 1 to 6"},
		{"no series", func(b *boards.Board) { b.Panels[2].Series = nil }, "panel 3: it has no series"},
		{"two selectors", func(b *boards.Board) { b.Panels[0].Series[0].Device = "x" }, "panel 1: series 1: give exactly one of"},
		{"no selector", func(b *boards.Board) { b.Panels[0].Series[0].Kind = "" }, "series 1: give exactly one of"},
		{"bad metric", func(b *boards.Board) { b.Panels[1].Series[0].Metric = "a b" }, `series 1: metric "a b" is not`},
		{"bad device", func(b *boards.Board) { b.Panels[1].Series[0].Device = "tank/01" }, `device "tank/01" is not`},
		{"bad pattern", func(b *boards.Board) { b.Panels[2].Series[0].Pattern = "pump-[" }, `the pattern "pump-[" is not a pattern`},
		{"long pattern", func(b *boards.Board) { b.Panels[3].Series[0].Location = strings.Repeat("*", 65) }, "the location is longer than 64 bytes"},
		{"thresholds out of order", func(b *boards.Board) { b.Panels[2].Thresholds[1].Value = 5 }, "panel 3: thresholds must be in ascending order"},
		{"bad level", func(b *boards.Board) { b.Panels[2].Thresholds[0].Level = "red" }, `level "red" is none of ok, warn, alert`},
		{"decimals", func(b *boards.Board) { b.Panels[2].Decimals = ptr(10) }, "decimals must be 0 to 9"},
		{"min over max", func(b *boards.Board) { b.Panels[1].Min = ptr(200.0) }, "panel 2: min must be less than max"},
		{"long unit", func(b *boards.Board) { b.Panels[1].Unit = strings.Repeat("m", 17) }, "unit must be at most 16"},
		{"too many panels", func(b *boards.Board) {
			for len(b.Panels) <= 50 {
				b.Panels = append(b.Panels, b.Panels[0])
			}
		}, "a board has at most 50 panels; this one has 51"},
		{"too many series", func(b *boards.Board) {
			for len(b.Panels[0].Series) <= 20 {
				b.Panels[0].Series = append(b.Panels[0].Series, b.Panels[0].Series[0])
			}
		}, "panel 1: a panel has at most 20 series; this one has 21"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := boilerRoom()
			tc.edit(&b)
			err := b.Validate(boards.Limits{})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tc.want == "":
			case err == nil:
				t.Fatalf("Validate = nil, want an error saying %q", tc.want)
			case devices.ErrorKind(err) != devices.EInvalid || !strings.Contains(devices.ErrorMessage(err), tc.want):
				t.Errorf("Validate = %q (%s), want EInvalid saying %q", devices.ErrorMessage(err), devices.ErrorKind(err), tc.want)
			}
		})
	}
}

func TestDecodeIsStrict(t *testing.T) {
	deep := strings.Repeat(`{"panels":[`, 5000) + strings.Repeat(`]}`, 5000)
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown field", `{"title":"x","panels":[],"colour":"red"}`, `unknown field "colour"`},
		{"wrong type", `{"title":"x","panels":[{"title":"p","type":"stat","w":"wide","series":[]}]}`, "panels.w must be int"},
		{"syntax", `{"title":"x",`, "the board is not JSON of a board"},
		{"trailing", `{"title":"x","panels":[]} {}`, "something after its end"},
		{"deep", deep, "a board's JSON nests at most 8 deep"},
		{"deep in a string", `{"title":"` + strings.Repeat("[", 100) + `","panels":[]}`, ""},
		{"deep where a number goes", `{"title":"x","panels":[{"w":` + strings.Repeat("[", 10) + `}]}`, "nests at most 8 deep"},
		{"huge", `{"title":"` + strings.Repeat("x", 300<<10) + `"}`, "a board's JSON is at most 262144 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := boards.Decode(strings.NewReader(tc.doc), boards.Limits{})
			if tc.want == "" {
				if err != nil {
					t.Errorf("Decode = %v, want nil", err)
				}
				return
			}
			if devices.ErrorKind(err) != devices.EInvalid || !strings.Contains(devices.ErrorMessage(err), tc.want) {
				t.Errorf("Decode = %v, want EInvalid saying %q", err, tc.want)
			}
		})
	}
}

// fleet is a fleet of three thermostats (two in the basement), two pumps
// and a tank.
func fleet() []devices.Device {
	dev := func(id, kind, loc string, metrics ...string) devices.Device {
		d := devices.Device{ID: id, Meta: devices.Meta{Kind: kind, Location: loc}, Latest: map[string]devices.Value{}}
		for _, m := range metrics {
			d.Latest[m] = devices.Value{T: 1, V: 1}
		}
		return d
	}
	return []devices.Device{
		dev("pump-1", "pump", "Basement", "flow"),
		dev("pump-2", "pump", "Roof", "flow", "temperature"),
		dev("tank-01", "tank", "Yard"),
		dev("th-1", "thermostat", "Basement", "temperature"),
		dev("th-2", "thermostat", "Basement east", "temperature", "humidity"),
		dev("th-3", "thermostat", "Office", "temperature"),
	}
}

func TestResolveFollowsTheFleet(t *testing.T) {
	b := boilerRoom()
	ids := func(ts []boards.Target) string {
		var s []string
		for _, t := range ts {
			s = append(s, t.Device.ID+"."+t.Metric)
		}
		return strings.Join(s, " ")
	}
	for i, want := range []string{
		"th-1.temperature th-2.temperature th-3.temperature", // every thermostat
		"tank-01.level",                     // a named device, before it has the metric
		"pump-1.flow pump-2.flow",           // ids pump-*
		"th-1.temperature th-2.temperature", // location Basement*: those with the metric
	} {
		got, more := b.Panels[i].Resolve(fleet(), boards.Limits{}, nil)
		if ids(got) != want || more != 0 {
			t.Errorf("panel %d resolves to %q (+%d), want %q", i+1, ids(got), more, want)
		}
	}
	// A new thermostat joins the panel of every thermostat.
	grown := append(fleet(), devices.Device{ID: "th-4", Meta: devices.Meta{Kind: "thermostat"}, Latest: map[string]devices.Value{"temperature": {}}})
	if got, _ := b.Panels[0].Resolve(grown, boards.Limits{}, nil); len(got) != 4 {
		t.Errorf("with a fourth thermostat the panel shows %q", ids(got))
	}
	// Past the limit, the rest are counted, not shown.
	got, more := b.Panels[0].Resolve(fleet(), boards.Limits{Resolved: 2}, nil)
	if len(got) != 2 || more != 1 {
		t.Errorf("with room for 2: %q and %d more, want 2 and 1 more", ids(got), more)
	}
}

// TestVariable: one board serves each pump, the one in the URL or else
// the first.
func TestVariable(t *testing.T) {
	b := boards.Board{Title: "A pump", Variables: []boards.Variable{{Name: "pump", Kind: "pump"}},
		Panels: []boards.Panel{{Type: boards.Stat, Series: []boards.Series{{Selector: devices.Selector{Device: "$pump"}, Metric: "flow"}}}}}
	if err := b.Validate(boards.Limits{}); err != nil {
		t.Fatal(err)
	}
	for url, want := range map[string]string{"": "pump-1", "pump-2": "pump-2", "th-1": "pump-1", "nope": "pump-1"} {
		chosen := b.Choose(fleet(), func(p string) string {
			if p == "var-pump" {
				return url
			}
			return ""
		})
		got, _ := b.Panels[0].Resolve(fleet(), boards.Limits{}, chosen)
		if len(got) != 1 || got[0].Device.ID != want {
			t.Errorf("?var-pump=%s shows %v, want %s", url, got, want)
		}
	}
	for _, tc := range []struct {
		edit func(*boards.Board)
		want string
	}{
		{func(b *boards.Board) { b.Panels[0].Series[0].Device = "$valve" }, `device "$valve" names no variable of the board`},
		{func(b *boards.Board) { b.Variables = append(b.Variables, b.Variables[0]) }, `variable 2: "pump" is named twice`},
		{func(b *boards.Board) { b.Variables[0].Kind = "" }, "variable 1: kind must be 1 to 64 bytes"},
		{func(b *boards.Board) { b.Variables[0].Name = "a pump" }, `variable 1: name "a pump" is not`},
	} {
		bad := b
		bad.Variables = slices.Clone(b.Variables)
		bad.Panels = []boards.Panel{b.Panels[0]}
		bad.Panels[0].Series = slices.Clone(b.Panels[0].Series)
		tc.edit(&bad)
		if err := bad.Validate(boards.Limits{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want %q", err, tc.want)
		}
	}
}

func TestLevel(t *testing.T) {
	p := boilerRoom().Panels[2]
	for v, want := range map[float64]string{5: "", 10: "warn", 15: "warn", 20: "alert", 99: "alert"} {
		if got := p.Level(v); got != want {
			t.Errorf("Level(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestSaveKeepsVersions(t *testing.T) {
	ctx := context.Background()
	bs := open(t, boards.Limits{Versions: 3})
	b, err := bs.Create(ctx, boilerRoom(), "otto")
	if err != nil {
		t.Fatal(err)
	}
	if b.ID == "" || b.Version != 1 || b.SavedBy != "otto" || b.Saved.IsZero() {
		t.Fatalf("Create = %+v, want an id, version 1, saved by otto", b)
	}
	for i := 2; i <= 5; i++ {
		next := b
		next.Title = fmt.Sprintf("Boiler room %d", i)
		if b, err = bs.Save(ctx, b.ID, next, "vera"); err != nil {
			t.Fatal(err)
		}
	}
	if b.Version != 5 || b.Title != "Boiler room 5" {
		t.Fatalf("after four saves: version %d %q", b.Version, b.Title)
	}
	vs, err := bs.Versions(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vs {
		got = append(got, fmt.Sprintf("%d %s", v.Version, v.Title))
	}
	if want := "4 Boiler room 4,3 Boiler room 3,2 Boiler room 2"; strings.Join(got, ",") != want {
		t.Errorf("versions kept (3): %q, want %q", strings.Join(got, ","), want)
	}

	// Restoring version 2 saves it as version 6, keeping 5.
	r, err := bs.Restore(ctx, b.ID, 2, "otto")
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != 6 || r.Title != "Boiler room 2" || r.SavedBy != "otto" {
		t.Errorf("Restore = version %d %q by %s, want 6 \"Boiler room 2\" by otto", r.Version, r.Title, r.SavedBy)
	}
	if vs, _ := bs.Versions(ctx, b.ID); len(vs) != 3 || vs[0].Version != 5 {
		t.Errorf("after restoring, versions %+v, want 5, 4, 3", vs)
	}
	if _, err := bs.Restore(ctx, b.ID, 1, "otto"); devices.ErrorKind(err) != devices.ENotFound {
		t.Errorf("restoring a version no longer kept = %v, want ENotFound", err)
	}

	// A change made to an older version is refused.
	stale := r
	stale.Version = 5
	if _, err := bs.Save(ctx, b.ID, stale, "vera"); devices.ErrorKind(err) != devices.EInvalid || !errors.Is(err, boards.ErrConflict) || !strings.Contains(err.Error(), "saved again (version 6, by otto) after version 5") {
		t.Errorf("saving over a newer version = %v, want EInvalid saying so", err)
	}

	// Invalid saves change nothing.
	bad := r
	bad.Panels[0].Type = "pie"
	if _, err := bs.Save(ctx, b.ID, bad, "otto"); devices.ErrorKind(err) != devices.EInvalid {
		t.Errorf("saving an invalid board = %v, want EInvalid", err)
	}
	if got, _ := bs.Get(ctx, b.ID); got.Version != 6 {
		t.Errorf("after an invalid save the board is version %d, want 6", got.Version)
	}

	// Deleting removes the board and its versions.
	if err := bs.Delete(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := bs.Get(ctx, b.ID); devices.ErrorKind(err) != devices.ENotFound {
		t.Errorf("Get after Delete = %v, want ENotFound", err)
	}
	if _, err := bs.Save(ctx, b.ID, boilerRoom(), "otto"); devices.ErrorKind(err) != devices.ENotFound {
		t.Errorf("Save of a deleted board = %v, want ENotFound", err)
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	ctx := context.Background()
	bs := open(t, boards.Limits{})
	b, err := bs.Create(ctx, boilerRoom(), "otto")
	if err != nil {
		t.Fatal(err)
	}
	doc := boards.Export(b)
	if bytes.Contains(doc, []byte(b.ID)) || bytes.Contains(doc, []byte(`"version"`)) {
		t.Errorf("the export carries this instance's id or version:\n%s", doc)
	}
	if err := bs.Delete(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	imported, err := bs.Import(ctx, bytes.NewReader(doc), "vera")
	if err != nil {
		t.Fatal(err)
	}
	if imported.ID == b.ID || imported.Version != 1 {
		t.Errorf("imported as %s version %d, want a new id at version 1", imported.ID, imported.Version)
	}
	if again := boards.Export(imported); !bytes.Equal(again, doc) {
		t.Errorf("export, delete, import, export differs:\n%s\nwas\n%s", again, doc)
	}
	list, err := bs.List(ctx)
	if err != nil || len(list) != 1 || list[0].Title != "Boiler room" {
		t.Errorf("List = %+v, %v", list, err)
	}
	var generic map[string]any
	if err := json.Unmarshal(doc, &generic); err != nil || generic["title"] != "Boiler room" {
		t.Errorf("the export is not the board's JSON: %v", err)
	}
}

func TestBoundOnBoards(t *testing.T) {
	ctx := context.Background()
	bs := open(t, boards.Limits{Boards: 2})
	for range 2 {
		if _, err := bs.Create(ctx, boilerRoom(), "otto"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bs.Create(ctx, boilerRoom(), "otto"); devices.ErrorKind(err) != devices.EInvalid || !errors.Is(err, boards.ErrLimit) || !strings.Contains(err.Error(), "already 2 boards") {
		t.Errorf("a third board past a limit of 2 = %v, want EInvalid naming the limit", err)
	}
}

// TestRefusalsAreCounted: every board refused, by the pages or the API,
// is counted by reason: past a limit, or otherwise invalid.
func TestRefusalsAreCounted(t *testing.T) {
	ctx := context.Background()
	docs, err := sqlite.OpenDocs(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer docs.Close()
	m := boards.NewMetrics(nil)
	bs := boards.New(docs, boards.Options{Limits: boards.Limits{Panels: 2}, Metrics: m})
	tooMany := boilerRoom() // 4 panels
	if _, err := bs.Create(ctx, tooMany, "otto"); !errors.Is(err, boards.ErrLimit) {
		t.Errorf("Create of 4 panels past a limit of 2 = %v, want ErrLimit", err)
	}
	if _, err := bs.Decode(strings.NewReader(`{"title":"x","panels":[],"colour":1}`), "otto"); err == nil || errors.Is(err, boards.ErrLimit) {
		t.Errorf("Decode of an unknown field = %v, want an error that is not ErrLimit", err)
	}
	if _, err := bs.Import(ctx, strings.NewReader(strings.Repeat("[", 20)), "otto"); !errors.Is(err, boards.ErrLimit) {
		t.Errorf("Import of deep JSON = %v, want ErrLimit", err)
	}
	for reason, want := range map[string]float64{boards.RefusedLimit: 2, boards.RefusedInvalid: 1} {
		if got := testutil.ToFloat64(m.Refused.WithLabelValues(reason)); got != want {
			t.Errorf("refused %s: %v, want %v", reason, got, want)
		}
	}
}

// TestForKind: every kind with a metric has a board, valid, of its devices.
func TestForKind(t *testing.T) {
	if got := strings.Join(boards.Kinds(fleet()), " "); got != "pump thermostat" {
		t.Errorf("Kinds = %q, want pump thermostat (the tank has no metric yet)", got)
	}
	b, ok := boards.ForKind("thermostat", fleet(), boards.Limits{})
	if !ok || b.ID != "kind.thermostat" || b.Validate(boards.Limits{}) != nil {
		t.Fatalf("ForKind = %+v %v (%v)", b, ok, b.Validate(boards.Limits{}))
	}
	chosen := b.Choose(fleet(), func(string) string { return "" })
	now, _ := b.Panels[0].Resolve(fleet(), boards.Limits{}, chosen)
	table, _ := b.Panels[2].Resolve(fleet(), boards.Limits{}, chosen)
	if len(now) != 2 || now[0].Device.ID != "th-1" || len(table) != 4 {
		t.Errorf("the thermostat board shows %d values of %v and %d table cells, want th-1's humidity and temperature, and 4", len(now), now, len(table))
	}
	if _, ok := boards.ForKind("tank", fleet(), boards.Limits{}); ok {
		t.Error("a board for a kind without metrics")
	}
}
