package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"iotdash/boards"
	"iotdash/store/sqlite"
)

// boardServer serves the board API over boards kept in a fresh state
// file, as routes.go mounts it.
func boardServer(t *testing.T) (*httptest.Server, *boards.Metrics) {
	t.Helper()
	docs, err := sqlite.OpenDocs(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docs.Close() })
	m := boards.NewMetrics(nil)
	a := BoardAPI{Boards: boards.New(docs, boards.Options{Metrics: m})}
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/boards", a.List())
	mux.Handle("POST /api/v1/boards", a.List())
	mux.Handle("GET /api/v1/boards/{id}", a.Board())
	mux.Handle("PUT /api/v1/boards/{id}", a.Board())
	mux.Handle("DELETE /api/v1/boards/{id}", a.Board())
	mux.Handle("GET /api/v1/boards/{id}/versions", a.Versions())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, m
}

// call makes a request with a JSON body (none if ""), returning the status
// and the body.
func call(t *testing.T, method, u, body string) (int, string) {
	t.Helper()
	a := request(t, method, u, body)
	return a.code, string(a.body)
}

const boilerRoomJSON = `{"title":"Boiler room","panels":[
 {"title":"Temperatures","type":"timeseries","w":8,"series":[{"kind":"boiler","metric":"temperature"}]},
 {"title":"Tank","type":"gauge","min":0,"max":100,"series":[{"device":"tank-01","metric":"level"}]}]}`

// TestBoardAPI: a board created, read, listed, replaced, its versions
// listed, and deleted, through the API.
func TestBoardAPI(t *testing.T) {
	srv, _ := boardServer(t)
	base := srv.URL + "/api/v1/boards"

	code, body := call(t, "POST", base, boilerRoomJSON)
	var b boards.Board
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &b) != nil || b.ID == "" || b.Version != 1 || len(b.Panels) != 2 {
		t.Fatalf("POST = %d %s, want 201 with the board, its id and version 1", code, body)
	}
	if code, got := call(t, "GET", base+"/"+b.ID, ""); code != 200 || !strings.Contains(got, `"title":"Boiler room"`) {
		t.Errorf("GET the board = %d %s", code, got)
	}
	if code, got := call(t, "GET", base, ""); code != 200 || !strings.Contains(got, `"id":"`+b.ID+`"`) || !strings.Contains(got, `"panels":2`) || strings.Contains(got, "series") {
		t.Errorf("GET the list = %d %s, want the board in brief", code, got)
	}

	// A change to version 1 is saved as version 2, keeping 1.
	changed := strings.Replace(boilerRoomJSON, "Boiler room", "Boiler room 2", 1)
	changed = strings.Replace(changed, `{"title":`, `{"version":1,"title":`, 1)
	if code, got := call(t, "PUT", base+"/"+b.ID, changed); code != 200 || !strings.Contains(got, `"version":2`) {
		t.Errorf("PUT = %d %s, want 200 at version 2", code, got)
	}
	// Another change made to version 1 would undo it unseen: 409.
	if code, got := call(t, "PUT", base+"/"+b.ID, changed); code != http.StatusConflict || !strings.Contains(got, "saved again (version 2") {
		t.Errorf("PUT made to a version saved over = %d %s, want 409 saying so", code, got)
	}
	if code, got := call(t, "GET", base+"/"+b.ID+"/versions", ""); code != 200 || !strings.Contains(got, `"version":1,"title":"Boiler room"`) {
		t.Errorf("GET versions = %d %s", code, got)
	}
	if code, got := call(t, "PUT", base+"/"+b.ID, `{"id":"other","title":"x","panels":[]}`); code != 400 || !strings.Contains(got, `the body's id \"other\" is not the path's`) {
		t.Errorf("PUT of another id = %d %s", code, got)
	}

	if code, got := call(t, "DELETE", base+"/"+b.ID, ""); code != http.StatusNoContent {
		t.Errorf("DELETE = %d %s", code, got)
	}
	for _, path := range []string{"/" + b.ID, "/" + b.ID + "/versions"} {
		if code, got := call(t, "GET", base+path, ""); code != 404 || !strings.Contains(got, "there is no board") {
			t.Errorf("GET %s after DELETE = %d %s, want 404", path, code, got)
		}
	}
	if code, _ := call(t, "DELETE", base+"/"+b.ID, ""); code != 404 {
		t.Errorf("DELETE again = %d, want 404", code)
	}
}

// TestBoardAPIRefusesHostileInput: each board the API refuses gets a 400
// that names the mistake, is counted, and stores nothing.
func TestBoardAPIRefusesHostileInput(t *testing.T) {
	srv, m := boardServer(t)
	base := srv.URL + "/api/v1/boards"
	panel := `{"type":"stat","series":[{"device":"d","metric":"m"}]}`
	panels := func(n int) string { return strings.TrimSuffix(strings.Repeat(panel+",", n), ",") }
	cases := []struct {
		name, body, want string
		limit            bool // past a limit, rather than otherwise invalid
	}{
		{"huge", `{"title":"` + strings.Repeat("x", 1<<20) + `","panels":[]}`, "a board's JSON is at most 262144 bytes", true},
		{"deep", `{"title":"x","panels":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`, "nests at most 8 deep", true},
		{"many panels", `{"title":"x","panels":[` + panels(51) + `]}`, "a board has at most 50 panels; this one has 51", true},
		{"bad pattern", `{"title":"x","panels":[{"type":"stat","series":[{"pattern":"boiler-[","metric":"m"}]}]}`, `panel 1: series 1: the pattern "boiler-[" is not a pattern`, false},
		{"two selectors", `{"title":"x","panels":[{"type":"stat","series":[{"kind":"boiler","device":"b","metric":"m"}]}]}`, "panel 1: series 1: give exactly one of", false},
		{"unknown variable", `{"title":"x","panels":[{"type":"stat","series":[{"device":"$pump","metric":"m"}]}]}`, `device "$pump" names no variable`, false},
		{"unknown field", `{"title":"x","panels":[],"owner":"me"}`, `unknown field "owner"`, false},
		{"wrong type", `{"title":"x","panels":[{"type":"stat","w":"wide","series":[]}]}`, "panels.w must be int", false},
		{"two values", `{"title":"x","panels":[]} {"title":"y","panels":[]}`, "something after its end", false},
		{"empty", ``, "the board is empty", false},
	}
	var limits, invalid float64
	for _, c := range cases {
		code, got := call(t, "POST", base, c.body)
		var e struct{ Error string }
		if code != 400 || json.Unmarshal([]byte(got), &e) != nil || !strings.Contains(e.Error, c.want) {
			t.Errorf("%s: %d %.200s, want 400 saying %q", c.name, code, got, c.want)
		}
		if c.limit {
			limits++
		} else {
			invalid++
		}
	}
	if got := testutil.ToFloat64(m.Refused.WithLabelValues(boards.RefusedLimit)); got != limits {
		t.Errorf("refused past a limit: %v, want %v", got, limits)
	}
	if got := testutil.ToFloat64(m.Refused.WithLabelValues(boards.RefusedInvalid)); got != invalid {
		t.Errorf("refused as invalid: %v, want %v", got, invalid)
	}
	if code, got := call(t, "GET", base, ""); code != 200 || strings.TrimSpace(got) != "[]" {
		t.Errorf("after refusals the list is %d %s, want []", code, got)
	}

	// Not JSON, or a parameter where none is taken.
	req, _ := http.NewRequest("POST", base, strings.NewReader("title=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("a form posted: %d, want 400", resp.StatusCode)
	}
	if code, got := call(t, "GET", base+"?limit=5", ""); code != 400 || !strings.Contains(got, "takes no parameters") {
		t.Errorf("GET ?limit=5 = %d %s", code, got)
	}
}

// TestBoardExampleIsABoard: the Board schema's example in openapi.json is
// a board the API takes.
func TestBoardExampleIsABoard(t *testing.T) {
	ex := obj(obj(obj(loadDoc(t)["components"])["schemas"])["Board"])["example"]
	if _, err := boards.Decode(strings.NewReader(string(mustJSON(ex))), boards.Limits{}); err != nil {
		t.Errorf("the Board example is refused: %v", err)
	}
}
