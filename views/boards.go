package views

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"

	"iotdash/auth"
	"iotdash/boards"
	"iotdash/devices"
	"iotdash/store"
)

// BoardStore is what the board pages read and change: *boards.Boards.
// Its methods return devices.EInvalid for a board that is not valid,
// ENotFound for one that does not exist, and EUnavailable when the state
// file cannot be reached.
type BoardStore interface {
	List(ctx context.Context) ([]boards.Board, error)
	Get(ctx context.Context, id string) (boards.Board, error)
	Create(ctx context.Context, b boards.Board, who string) (boards.Board, error)
	Save(ctx context.Context, id string, b boards.Board, who string) (boards.Board, error)
	Delete(ctx context.Context, id string) error
	Versions(ctx context.Context, id string) ([]boards.Version, error)
	Restore(ctx context.Context, id string, version int, who string) (boards.Board, error)
	Import(ctx context.Context, r io.Reader, who string) (boards.Board, error)
	// Decode reads a board's JSON (boards.Decode), counting what it refuses.
	Decode(r io.Reader, who string) (boards.Board, error)
	Limits() boards.Limits
}

var _ BoardStore = (*boards.Boards)(nil)

// BoardPages serves the boards: GET /boards (the list, and forms to create
// and import one), GET /boards/{id} (a board, with ?edit its editor),
// GET /boards/{id}/export, GET /boards/{id}/versions, and the changes an
// operator makes: POST /boards, /boards/import, /boards/{id} (save),
// /boards/{id}/restore and /boards/{id}/delete.
type BoardPages struct {
	Boards  BoardStore
	Fleet   Fleet
	Options Options
}

// BoardListModel is the list of boards.
type BoardListModel struct {
	Page
	Boards []boards.Board
	// Kinds are the kinds of device the fleet has, each with a board
	// generated for it.
	Kinds   []string
	CanEdit bool
	Problem string
	Zone    *time.Location
}

// BoardModel is one board's page.
type BoardModel struct {
	Page
	ID, Title string
	Version   int
	Saved     string // when and by whom it was last saved, in words
	Range     Range
	Panels    []PanelView
	CanEdit   bool
	// Generated says the board is the one made for a kind of device, not
	// stored: it has no versions and is not edited, but may be saved as a
	// board of its own (from JSON, its export).
	Generated bool
	// Editing shows the editor: the board's JSON in a form that works
	// without scripts, and the policy board.js builds its editor from.
	Editing bool
	JSON    string
	Policy  string
	Problem string
	// Variables are the board's device pickers, each with its choice.
	Variables []VariableView
	// KeepForVars and KeepForRange are the URL's parameters that the
	// variables' form and the range picker carry on unchanged.
	KeepForVars, KeepForRange []Param
	// Next is the board a kiosk cycling through boards (?cycle=) shows
	// after Every; "" when it does not cycle.
	Next  string
	Every time.Duration
	// Follows says a series selects devices by kind, id pattern or
	// location: the page fetches its grid again every FollowEvery, so that
	// a device the fleet gains shows without a reload.
	Follows     bool
	FollowEvery time.Duration
	// Replay, when not nil, shows the board as of a past moment, played
	// forward by board.js; when nil, ReplayFrom is the moment its form
	// offers (an hour ago).
	Replay     *Replay
	ReplayFrom string
}

// Bounds on a kiosk's cycle through boards (?kiosk&cycle=a,b,c&every=1m).
const (
	maxCycle     = 20 // boards in a cycle
	minCycleWait = 10 * time.Second
	maxCycleWait = time.Hour
	cycleWait    = time.Minute // when every is not given
)

// cycle is the board after id in the cycle q names (?cycle=a,b,c, the
// first after the last, or when id is not in it), as a URL that keeps
// q's kiosk, cycle, every and range, and how long to show id before it;
// an EInvalid error names a mistake in them.
func cycle(id string, q url.Values) (string, time.Duration, error) {
	ids := strings.Split(q.Get("cycle"), ",")
	if len(ids) > maxCycle {
		return "", 0, devices.Errorf(devices.EInvalid, "cycle names %d boards; a kiosk cycles through at most %d", len(ids), maxCycle)
	}
	for _, c := range ids {
		if !devices.ValidName(c) {
			return "", 0, devices.Errorf(devices.EInvalid, "cycle: %q is not a board's id; give the ids of the boards, separated by commas", c)
		}
	}
	every := cycleWait
	if s := q.Get("every"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < minCycleWait || d > maxCycleWait {
			return "", 0, devices.Errorf(devices.EInvalid, "every %q is not a duration from %v to %v, such as 30s or 2m", s, minCycleWait, maxCycleWait)
		}
		every = d
	}
	next := ids[(slices.Index(ids, id)+1)%len(ids)]
	keep := url.Values{}
	for _, k := range []string{"kiosk", "cycle", "every", "range", "from", "to"} {
		if q.Has(k) {
			keep.Set(k, q.Get(k))
		}
	}
	return boardURL(next, false) + "?" + keep.Encode(), every, nil
}

// cycleAttrs are what board.js cycles a kiosk by.
func cycleAttrs(m BoardModel) templ.Attributes {
	if m.Next == "" {
		return nil
	}
	return templ.Attributes{"data-next": m.Next, "data-every": strconv.FormatInt(m.Every.Milliseconds(), 10)}
}

// DefaultBoardFollow is how often a board whose selectors may pick new
// devices fetches its grid again, unless Options.BoardFollow says.
const DefaultBoardFollow = time.Minute

// VariableView is a board variable as its picker shows it.
type VariableView struct {
	Name, Param, Kind string
	Chosen            string
	Options           []Card
}

// Param is one URL parameter.
type Param struct{ Name, Value string }

// PanelView is one panel as the board page shows it.
type PanelView struct {
	ID    string // the element's id: "panel-1", …
	Title string
	Type  string
	W, H  int
	// Stats are a stat's or a gauge's values, one per series resolved.
	Stats []StatView
	// Chart is a time series' chart: a line for each series resolved.
	Chart PanelChart
	// Rows and Columns are a device table's devices and metrics.
	Rows    []Card
	Columns []string
	// More counts the device × metric pairs left out past the limit.
	More int
	// Thresholds are the panel's, as JSON for board.js ("" for none).
	Thresholds string
}

// PanelChart is a time series panel's chart: a line for each device ×
// metric, each with its min–max band, on one scale, with the panel's
// thresholds.
type PanelChart struct {
	Lines []ChartLine
	// Unit and Decimals are how its values are shown: the panel's, else
	// the first line's metric's.
	Unit     string
	Decimals int
	// HasLimits says every line's metric has the same normal range, Lo to
	// Hi, which the chart then shades beyond.
	HasLimits bool
	Lo, Hi    float64
	// Alerts are the spans its lines' alerts fired over, banded on it.
	Alerts []AlertSpan
}

// ChartLine is one line of a panel's chart.
type ChartLine struct {
	Device, DeviceName string
	Metric             Metric
	Series             Series
	// Alerts are the spans this device's alerts of the metric fired over.
	Alerts []AlertSpan
}

// firing are the spans of spans that have not cleared.
func firing(spans []AlertSpan) []AlertSpan {
	var out []AlertSpan
	for _, s := range spans {
		if s.To == 0 {
			out = append(out, s)
		}
	}
	return out
}

// scale sets c's unit, decimals and limits from its lines and panel p.
func (c *PanelChart) scale(p boards.Panel) {
	if len(c.Lines) == 0 {
		return
	}
	first := c.Lines[0].Metric
	c.Unit, c.Decimals = first.Unit, first.Decimals
	if p.Unit != "" {
		c.Unit = p.Unit
	}
	c.HasLimits, c.Lo, c.Hi = first.HasLimits, first.Lo, first.Hi
	for _, l := range c.Lines {
		if !l.Metric.HasLimits || l.Metric.Lo != c.Lo || l.Metric.Hi != c.Hi {
			c.HasLimits = false
		}
		if p.Decimals == nil {
			c.Decimals = max(c.Decimals, l.Metric.Decimals)
		}
	}
}

// StatView is one value on a stat or a gauge.
type StatView struct {
	Device Card
	Metric Metric
	Value  float64 // the latest value, 0 while there is none
	Level  string  // the value's threshold level, "" for none
	// Min and Max are a gauge's scale.
	Min, Max float64
	// Firing are the alerts of its device and metric that fire now.
	Firing []AlertSpan
}

// editorPolicy is what board.js's editor needs to know of the rules: the
// panel types, the levels and the limits, from the boards package.
type editorPolicy struct {
	Types       []struct{ Value, Label string } `json:"types"`
	Levels      []string                        `json:"levels"`
	Columns     int                             `json:"columns"`
	MaxHeight   int                             `json:"max_height"`
	Panels      int                             `json:"panels"`
	Series      int                             `json:"series"`
	Variables   int                             `json:"variables"`
	Thresholds  int                             `json:"thresholds"`
	TitleLen    int                             `json:"title_len"`
	MaxDecimals int                             `json:"max_decimals"`
}

func policyJSON(l boards.Limits) string {
	b, _ := json.Marshal(editorPolicy{Types: boards.Types, Levels: boards.Levels, Columns: boards.Columns, MaxHeight: boards.MaxHeight,
		Panels: l.Panels, Series: l.Series, Variables: l.Variables, Thresholds: l.Threshold, TitleLen: l.TitleLen, MaxDecimals: devices.MaxDecimals})
	return string(b)
}

func canEdit(r *http.Request) bool {
	p, ok := auth.From(r.Context())
	return ok && p.Role >= auth.Operator
}

func who(r *http.Request) string {
	p, _ := auth.From(r.Context())
	return p.Name
}

func (bp BoardPages) log() *slog.Logger { return orDiscard(bp.Options.Logger) }

// List serves GET /boards.
func (bp BoardPages) List() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { bp.showList(w, r, nil) })
}

func (bp BoardPages) showList(w http.ResponseWriter, r *http.Request, problem error) {
	now := bp.Options.now(r)
	m := BoardListModel{Page: Page{Title: "Boards", TZ: zoneName(now.Location())}, CanEdit: canEdit(r), Zone: now.Location()}
	status := http.StatusOK
	if problem != nil {
		status, m.Problem = bp.problem(r, problem)
	}
	list, err := bp.Boards.List(r.Context())
	if err != nil {
		status, m.Problem = bp.problem(r, err)
	}
	m.Boards = list
	m.Kinds = boards.Kinds(bp.Fleet.List())
	render(w, r, bp.log(), status, BoardListPage(m))
}

// problem is the status and message of err, logged when it is ours.
func (bp BoardPages) problem(r *http.Request, err error) (int, string) {
	return problem(bp.log(), r, err)
}

// Create serves POST /boards: a new, empty board of the title given,
// opened in its editor.
func (bp BoardPages) Create() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := bp.Boards.Create(r.Context(), boards.Board{Title: strings.TrimSpace(r.PostFormValue("title"))}, who(r))
		if err != nil {
			bp.showList(w, r, err)
			return
		}
		http.Redirect(w, r, "/boards/"+b.ID+"?edit", http.StatusSeeOther)
	})
}

// Import serves POST /boards/import: a board's exported JSON, as a file
// (multipart field "file") or text (field "board"), stored as a new board.
func (bp BoardPages) Import() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := int64(bp.Boards.Limits().Bytes) + 64<<10
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		var doc io.Reader
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
			if err := r.ParseMultipartForm(limit); err != nil {
				bp.showList(w, r, devices.Errorf(devices.EInvalid, "the file could not be read: it is larger than %d bytes, or not a form", limit))
				return
			}
			if f, _, err := r.FormFile("file"); err == nil {
				defer f.Close()
				doc = f
			}
		}
		if doc == nil {
			doc = strings.NewReader(r.PostFormValue("board"))
		}
		b, err := bp.Boards.Import(r.Context(), doc, who(r))
		if err != nil {
			bp.showList(w, r, err)
			return
		}
		http.Redirect(w, r, "/boards/"+b.ID, http.StatusSeeOther)
	})
}

// Page serves GET /boards/{id}: the board with its values and the history
// of its charts over the range in the URL (as the device page's), and
// with ?edit, for an operator, its editor.
func (bp BoardPages) Page() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := bp.board(r.Context(), r.PathValue("id"))
		if err != nil {
			bp.showError(w, r, err)
			return
		}
		bp.show(w, r, b, r.URL.Query().Has("edit"), http.StatusOK, "")
	})
}

// board is the stored board id, or the one generated for a kind.
func (bp BoardPages) board(ctx context.Context, id string) (boards.Board, error) {
	kind, generated := strings.CutPrefix(id, boards.KindPrefix)
	if !generated {
		return bp.Boards.Get(ctx, id)
	}
	b, ok := boards.ForKind(kind, bp.Fleet.List(), bp.Boards.Limits())
	if !ok {
		return boards.Board{}, devices.Errorf(devices.ENotFound, "the fleet has no device of kind %q", kind)
	}
	return b, nil
}

func (bp BoardPages) showError(w http.ResponseWriter, r *http.Request, err error) {
	if devices.ErrorKind(err) == devices.ENotFound {
		notFound(w, r, bp.log(), "There is no board with the id “"+r.PathValue("id")+"”.")
		return
	}
	status, msg := bp.problem(r, err)
	render(w, r, bp.log(), status, NotFoundPage(NotFoundModel{Page: Page{Title: "Board"}, Message: msg}))
}

func (bp BoardPages) show(w http.ResponseWriter, r *http.Request, b boards.Board, editing bool, status int, problem string) {
	now := bp.Options.now(r)
	q := r.URL.Query()
	ds := bp.Fleet.List()
	chosen := b.Choose(ds, q.Get)
	rp, err := parseReplay(q, now)
	if err != nil {
		status, problem = http.StatusBadRequest, devices.ErrorMessage(err)
	}
	at := now // the moment the board shows
	if rp != nil {
		at = time.UnixMilli(rp.At).In(now.Location())
		ds = asOf(r.Context(), bp.Options.History, bp.Options.Events, b, ds, bp.Boards.Limits(), chosen, at, bp.log())
	}
	m := NewBoard(b, ds, at, bp.Boards.Limits(), chosen)
	m.SetRange(ParseRange(q.Get, at))
	if rp != nil {
		rp.links(b.ID, q, m.Range)
		m.Replay = rp
		m.NowMs = now.UnixMilli()
		// History plays the board, not the live readings: the page
		// subscribes to none (what fires, notices) and follows no selector.
		m.Live, m.LiveLatest, m.Follows = "-", 0, false
	} else {
		m.ReplayFrom = replayInput(now.Add(-time.Hour).Truncate(time.Minute).UnixMilli(), now.Location())
	}
	m.FollowEvery = cmp.Or(bp.Options.BoardFollow, m.FollowEvery)
	m.Kiosk = q.Has("kiosk")
	if m.Kiosk && q.Has("cycle") {
		var err error
		if m.Next, m.Every, err = cycle(b.ID, q); err != nil {
			status, problem = http.StatusBadRequest, devices.ErrorMessage(err)
		}
	}
	for name, vs := range q {
		switch {
		case name == "kiosk" || name == "range" || name == "from" || name == "to" || (rp != nil && (name == "replay" || name == "speed")):
			m.KeepForVars = append(m.KeepForVars, Param{name, vs[0]})
			if name == "kiosk" || name == "replay" || name == "speed" {
				m.KeepForRange = append(m.KeepForRange, Param{name, vs[0]})
			}
		case strings.HasPrefix(name, "var-"):
			m.KeepForRange = append(m.KeepForRange, Param{name, vs[0]})
		}
	}
	byName := func(a, b Param) int { return strings.Compare(a.Name, b.Name) }
	slices.SortFunc(m.KeepForVars, byName)
	slices.SortFunc(m.KeepForRange, byName)
	m.CanEdit = canEdit(r)
	m.Generated = strings.HasPrefix(b.ID, boards.KindPrefix)
	m.Editing = editing && m.CanEdit && !m.Generated
	m.Problem = problem
	if m.Generated {
		m.JSON = string(boards.Export(b))
	}
	if m.Editing {
		m.JSON = string(boards.Export(b))
		m.Policy = policyJSON(bp.Boards.Limits())
	}
	addBoardAlerts(&m, bp.Options.Alerts, at)
	if h := bp.Options.History; h != nil {
		m.History = true
		addBoardHistory(r.Context(), h, &m, at, bp.log())
	}
	render(w, r, bp.log(), status, BoardPage(m))
}

// Save serves POST /boards/{id}: the board's new JSON, from board.js's
// editor (a JSON body, answered with the stored board as JSON) or from
// the form without scripts (field "board", answered by the board's page).
func (bp BoardPages) Save() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		limits := bp.Boards.Limits()
		r.Body = http.MaxBytesReader(w, r.Body, int64(limits.Bytes)+64<<10)
		asJSON := strings.HasPrefix(r.Header.Get("Content-Type"), "application/json")
		var body io.Reader = r.Body
		if !asJSON {
			body = strings.NewReader(r.PostFormValue("board"))
		}
		b, err := bp.Boards.Decode(body, who(r))
		if err == nil {
			b, err = bp.Boards.Save(r.Context(), id, b, who(r))
		}
		switch {
		case asJSON && err != nil:
			status, msg := bp.problem(r, err)
			writeJSON(w, status, map[string]string{"error": msg})
		case asJSON:
			writeJSON(w, http.StatusOK, b)
		case err == nil:
			http.Redirect(w, r, "/boards/"+id, http.StatusSeeOther)
		case devices.ErrorKind(err) == devices.EInvalid:
			cur, gerr := bp.Boards.Get(r.Context(), id)
			if gerr != nil {
				bp.showError(w, r, gerr)
				return
			}
			bp.show(w, r, cur, true, http.StatusBadRequest, devices.ErrorMessage(err))
		default:
			bp.showError(w, r, err)
		}
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// Export serves GET /boards/{id}/export: the board as a JSON file.
func (bp BoardPages) Export() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := bp.board(r.Context(), r.PathValue("id"))
		if err != nil {
			bp.showError(w, r, err)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": "board-" + b.ID + ".json"}))
		w.Write(boards.Export(b))
	})
}

// VersionsModel is the list of a board's earlier versions.
type VersionsModel struct {
	Page
	ID, Title string
	Version   int
	Versions  []boards.Version
	CanEdit   bool
	Zone      *time.Location
}

// Versions serves GET /boards/{id}/versions.
func (bp BoardPages) Versions() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		b, err := bp.Boards.Get(ctx, r.PathValue("id"))
		if err != nil {
			bp.showError(w, r, err)
			return
		}
		vs, err := bp.Boards.Versions(ctx, b.ID)
		if err != nil {
			bp.showError(w, r, err)
			return
		}
		now := bp.Options.now(r)
		render(w, r, bp.log(), http.StatusOK, VersionsPage(VersionsModel{Page: Page{Title: "Versions of " + b.Title, TZ: zoneName(now.Location())},
			ID: b.ID, Title: b.Title, Version: b.Version, Versions: vs, CanEdit: canEdit(r), Zone: now.Location()}))
	})
}

// Restore serves POST /boards/{id}/restore: version (a form field) saved
// as the board's newest.
func (bp BoardPages) Restore() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := strconv.Atoi(r.PostFormValue("version"))
		if err != nil {
			bp.showError(w, r, devices.Errorf(devices.EInvalid, "version must be a number"))
			return
		}
		if _, err := bp.Boards.Restore(r.Context(), r.PathValue("id"), v, who(r)); err != nil {
			bp.showError(w, r, err)
			return
		}
		http.Redirect(w, r, "/boards/"+r.PathValue("id"), http.StatusSeeOther)
	})
}

// Delete serves POST /boards/{id}/delete.
func (bp BoardPages) Delete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := bp.Boards.Delete(r.Context(), r.PathValue("id")); err != nil {
			bp.showError(w, r, err)
			return
		}
		http.Redirect(w, r, "/boards", http.StatusSeeOther)
	})
}

// NewBoard builds the page of b over the fleet ds as of now, over the
// last 15 minutes, with the devices chosen for its variables: each
// panel's series resolved, with their latest values.
func NewBoard(b boards.Board, ds []devices.Device, now time.Time, l boards.Limits, chosen map[string]string) BoardModel {
	m := BoardModel{Page: Page{Title: b.Title, Kind: "board", NowMs: now.UnixMilli(), TZ: zoneName(now.Location())},
		ID: b.ID, Title: b.Title, Version: b.Version, Range: DefaultRange(now), FollowEvery: DefaultBoardFollow}
	if !b.Saved.IsZero() {
		m.Saved = "Version " + strconv.Itoa(b.Version) + ", saved " + formatAt(b.Saved.UnixMilli(), now.Location())
		if b.SavedBy != "" {
			m.Saved += " by " + b.SavedBy
		}
	}
	for _, v := range b.Variables {
		vv := VariableView{Name: v.Name, Param: v.Param(), Kind: v.Kind, Chosen: chosen[v.Name]}
		for _, d := range ds {
			if d.Meta.Kind == v.Kind {
				vv.Options = append(vv.Options, Card{ID: d.ID, Name: d.Name()})
			}
		}
		m.Variables = append(m.Variables, vv)
	}
	live := map[string]bool{}
	for i, p := range b.Panels {
		m.Follows = m.Follows || slices.ContainsFunc(p.Series, func(s boards.Series) bool { return s.Device == "" })
		pv := PanelView{ID: "panel-" + strconv.Itoa(i+1), Title: p.Title, Type: p.Type}
		pv.W, pv.H = p.Size()
		if len(p.Thresholds) > 0 {
			t, _ := json.Marshal(p.Thresholds)
			pv.Thresholds = string(t)
		}
		ts, more := p.Resolve(ds, l, chosen)
		pv.More = more
		for _, t := range ts {
			live[t.Device.ID] = true
			c := NewCard(t.Device, now)
			mt := panelMetric(p, t.Device, c, t.Metric)
			switch p.Type {
			case boards.TimeSeries:
				pv.Chart.Lines = append(pv.Chart.Lines, ChartLine{Device: c.ID, DeviceName: c.Name, Metric: mt,
					Series: Series{From: m.Range.From, To: m.Range.To}})
			case boards.Table:
				if !slices.Contains(pv.Columns, t.Metric) {
					pv.Columns = append(pv.Columns, t.Metric)
				}
				if i := slices.IndexFunc(pv.Rows, func(r Card) bool { return r.ID == c.ID }); i < 0 {
					pv.Rows = append(pv.Rows, Card{ID: c.ID, Name: c.Name, Status: c.Status, LastSeen: c.LastSeen})
				}
			default:
				s := StatView{Device: c, Metric: mt, Min: 0, Max: 100}
				if v, has := t.Device.Latest[t.Metric]; has {
					s.Value, s.Level = v.V, p.Level(v.V)
				}
				if mt.HasLimits {
					s.Min, s.Max = mt.Lo, mt.Hi
				}
				if p.Min != nil {
					s.Min = *p.Min
				}
				if p.Max != nil {
					s.Max = *p.Max
				}
				pv.Stats = append(pv.Stats, s)
			}
		}
		pv.Chart.scale(p)
		// A table's cells: each row's device's value of each column's metric.
		for ri, row := range pv.Rows {
			d, _ := findDevice(ds, row.ID)
			full := NewCard(d, now)
			for _, col := range pv.Columns {
				pv.Rows[ri].Metrics = append(pv.Rows[ri].Metrics, panelMetric(p, d, full, col))
			}
		}
		m.Panels = append(m.Panels, pv)
	}
	ids := make([]string, 0, len(live))
	for id := range live {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	m.Live = strings.Join(ids, " ")
	switch {
	case len(ids) == 0:
		m.Live = "-" // live all the same: alerts, notices, the editor
	case len(ids) > maxLiveIDs:
		m.Live = "*"
	}
	if !hasCharts(m) {
		// Values only, as the overview shows them: the latest of each a
		// few times a second; a chart needs every reading.
		m.LiveLatest = OverviewLatest
	}
	return m
}

// maxLiveIDs is the most devices a board subscribes to by name; past it,
// to all (a subscribe of more ids would pass the hub's bound on a message).
const maxLiveIDs = 500

func findDevice(ds []devices.Device, id string) (devices.Device, bool) {
	i, ok := slices.BinarySearchFunc(ds, id, func(d devices.Device, id string) int { return strings.Compare(d.ID, id) })
	if !ok {
		return devices.Device{ID: id}, false
	}
	return ds[i], true
}

// panelMetric is metric of c as panel p shows it: p's unit and decimals
// in place of the device's, when p sets them; "–" for a metric the device
// has not sent yet.
func panelMetric(p boards.Panel, d devices.Device, c Card, metric string) Metric {
	i := slices.IndexFunc(c.Metrics, func(m Metric) bool { return m.Name == metric })
	if i < 0 {
		return Metric{Name: metric, Label: metric, Value: "–", Unit: p.Unit}
	}
	mt := c.Metrics[i]
	if p.Unit != "" {
		mt.Unit = p.Unit
	}
	if p.Decimals != nil {
		mt.Decimals = *p.Decimals
		mt.Value = formatValue(d.Latest[metric].V, mt.Decimals)
	}
	return mt
}

// SetRange sets the range the board's charts show.
func (m *BoardModel) SetRange(r Range) {
	m.Range = r
	for i := range m.Panels {
		for j := range m.Panels[i].Chart.Lines {
			m.Panels[i].Chart.Lines[j].Series = Series{From: r.From, To: r.To}
		}
	}
}

// addBoardAlerts marks what fired on the board's series: on each chart,
// bands from when an alert of a line's device and metric fired to when it
// cleared; on each line and stat, the alerts that fired still at now (the
// moment a replay shows, whose charts carry the bands of later alerts
// too, for when it plays on to them).
func addBoardAlerts(m *BoardModel, src AlertSource, now time.Time) {
	if src == nil {
		return
	}
	all, then := map[[2]string][]AlertSpan{}, map[[2]string][]AlertSpan{}
	for _, in := range src.Alerts("") {
		if in.FiredAt == 0 {
			continue
		}
		k := [2]string{in.Device, in.Metric}
		span := alertSpan(in, now)
		all[k] = append(all[k], span)
		if span.From > now.UnixMilli() {
			continue // it fired after a replay's moment
		}
		if span.To > now.UnixMilli() {
			span.To, span.Cleared = 0, "" // it fired still then
		}
		then[k] = append(then[k], span)
	}
	for i := range m.Panels {
		p := &m.Panels[i]
		for j := range p.Chart.Lines {
			l := &p.Chart.Lines[j]
			k := [2]string{l.Device, l.Metric.Name}
			l.Alerts = then[k]
			p.Chart.Alerts = append(p.Chart.Alerts, all[k]...)
		}
		for j := range p.Stats {
			s := &p.Stats[j]
			s.Firing = firing(then[[2]string{s.Device.ID, s.Metric.Name}])
		}
	}
}

// addBoardHistory reads what the board's panels draw: each chart's
// history over the range, and each stat's sparkline of the last 15
// minutes.
func addBoardHistory(ctx context.Context, h History, m *BoardModel, now time.Time, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, historyWait)
	defer cancel()
	fail := historyFailed(log, "/boards/"+m.ID)
	embedCharts := time.Duration(m.Range.To-m.Range.From)*time.Millisecond <= maxEmbedSpan
	to := now.UnixMilli() + 1
	from := to - sparkSpan.Milliseconds()
	var jobs []func(context.Context)
	for i := range m.Panels {
		p := &m.Panels[i]
		for j := range p.Chart.Lines {
			c := &p.Chart.Lines[j]
			if !embedCharts {
				break
			}
			jobs = append(jobs, func(ctx context.Context) {
				s, err := readSeries(ctx, h, c.Device, c.Metric.Name, m.Range.From, m.Range.To)
				if err != nil {
					fail(err)
					return
				}
				c.Series = s
			})
		}
		if p.Type != boards.Stat {
			continue
		}
		for j := range p.Stats {
			s := &p.Stats[j]
			s.Metric.Recent = Series{From: from, To: to, Step: sparkStep.Milliseconds()}
			jobs = append(jobs, func(ctx context.Context) {
				pts, err := h.Query(ctx, store.Query{Device: s.Device.ID, Metric: s.Metric.Name, From: from, To: to, Step: sparkStep.Milliseconds(), Agg: store.AggMean})
				if err != nil {
					fail(err)
					return
				}
				s.Metric.Recent.Points, s.Metric.Recent.Known = pts, true
			})
		}
	}
	queries(ctx, jobs)
}

// boardURL is a board's page.
func boardURL(id string, edit bool) string {
	u := "/boards/" + url.PathEscape(id)
	if edit && !strings.HasPrefix(id, boards.KindPrefix) { // a generated board is saved as one of its own first
		u += "?edit"
	}
	return u
}

// followAttrs are what board.js follows the fleet by: the devices the
// grid shows (as data-live) and, for a board of selectors, how often to
// fetch it again.
func followAttrs(m BoardModel) templ.Attributes {
	a := templ.Attributes{"data-live": m.Live}
	if m.Follows && m.FollowEvery > 0 {
		a["data-follow"] = int64s(m.FollowEvery.Milliseconds())
	}
	return a
}

// lineColours is how many colours a panel's chart tells its lines apart
// by (--line-1 … in the stylesheet); the lines past it take them again.
const lineColours = 8

// panelChartAttrs are what chart.js draws a panel's chart with, beside its
// lines': the range, unit, decimals and limits.
func panelChartAttrs(c PanelChart, r Range) templ.Attributes {
	a := templ.Attributes{"data-lines": strconv.Itoa(len(c.Lines)), "data-from": int64s(r.From), "data-to": int64s(r.To),
		"data-unit": c.Unit, "data-decimals": strconv.Itoa(c.Decimals)}
	if c.HasLimits {
		a["data-lo"], a["data-hi"] = float(c.Lo), float(c.Hi)
	}
	if len(c.Alerts) > 0 {
		a["data-alerts"] = spansJSON(c.Alerts)
	}
	return a
}

// lineAttrs are one line's history and names, for chart.js.
func lineAttrs(l ChartLine) templ.Attributes {
	a := seriesAttrs(l.Series)
	a["data-chart"] = l.Metric.Name
	a["data-label"] = l.DeviceName + " " + l.Metric.Label
	return a
}

// panelChartSummary says in words what a panel's chart shows, and what
// fires on it.
func panelChartSummary(p PanelView, r Range) string {
	c := p.Chart
	s := panelTitle(p) + ": " + strconv.Itoa(len(c.Lines)) + " series"
	if len(c.Lines) == 1 {
		s = panelTitle(p) + ": " + c.Lines[0].DeviceName + " " + c.Lines[0].Metric.Label
	}
	s += ", " + r.Label()
	lo, hi, known, read := 0.0, 0.0, false, true
	for _, l := range c.Lines {
		read = read && l.Series.Known
		if a, b, ok := l.Series.Range(); ok {
			if !known {
				lo, hi = a, b
			}
			lo, hi, known = min(lo, a), max(hi, b), true
		}
	}
	m := Metric{Unit: c.Unit, Decimals: c.Decimals, HasLimits: c.HasLimits, Lo: c.Lo, Hi: c.Hi}
	switch {
	case known:
		s += ": from " + m.withUnit(lo) + " to " + m.withUnit(hi)
	case read:
		s += ": no readings"
	}
	if known && c.HasLimits {
		s += "; expected " + m.LimitsText()
	}
	for _, l := range c.Lines {
		for _, a := range firing(l.Alerts) {
			s += "; " + a.Name + " (" + a.Severity + ") fires on " + l.DeviceName + " since " + a.Fired
		}
	}
	return s + "."
}

// gaugeValue is a stat's value as a number for <meter>, clamped to its scale.
func gaugeValue(s StatView) string {
	return float(min(max(s.Value, s.Min), s.Max))
}

// float writes v in a page as every number iotdash hands a browser is
// written (devices.AppendNumber).
func float(v float64) string { return string(devices.AppendNumber(nil, v)) }

func panelCount(n int) string {
	if n == 1 {
		return "1 panel"
	}
	return strconv.Itoa(n) + " panels"
}

func savedBy(name string) string {
	if name == "" {
		return ""
	}
	return "by " + name
}

// hasCharts reports whether any panel of m charts history, which the
// range picker then sets.
func hasCharts(m BoardModel) bool {
	return slices.ContainsFunc(m.Panels, func(p PanelView) bool { return p.Type == boards.TimeSeries })
}

// panelTitle is a panel's title, or its type's name when it has none.
func panelTitle(p PanelView) string {
	if p.Title != "" {
		return p.Title
	}
	for _, t := range boards.Types {
		if t.Value == p.Type {
			return t.Label
		}
	}
	return p.Type
}
