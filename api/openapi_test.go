package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"iotdash/alerts"
	"iotdash/auth"
	"iotdash/boards"
	"iotdash/devices"
	"iotdash/internal/testenv"
	"iotdash/push"
	"iotdash/store"
	"iotdash/store/influx"
	"iotdash/store/sqlite"
)

// doc is the OpenAPI document, decoded with numbers kept as written.
type doc map[string]any

func loadDoc(t *testing.T) doc {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(openAPI))
	dec.UseNumber()
	var d doc
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return d
}

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }

// openAPIExamples are the readings the examples of openapi.json are the
// real answers to.
var openAPIExamples = []devices.Reading{
	{Device: "boiler-1", Metric: "temperature", Time: 1767225600000, Value: 61.5},
	{Device: "boiler-1", Metric: "temperature", Time: 1767225601000, Value: 62},
	{Device: "boiler-1", Metric: "temperature", Time: 1767225602000, Value: 60.5},
	{Device: "boiler-1", Metric: "temperature", Time: 1767225603000, Value: 62.5},
	{Device: "boiler-1", Metric: "temperature", Time: 1767225604000, Value: 61},
	{Device: "boiler-1", Metric: "temperature", Time: 1767225660000, Value: 61},
	{Device: "boiler-1", Metric: "temperature", Time: 1767225720000, Value: 62},
	{Device: "boiler-1", Metric: "temperature", Time: 1767225721000, Value: 62.5},
}

// openAPIEvents are the events the examples of /api/v1/events are made of.
var openAPIEvents = []devices.Event{
	{Device: "boiler-1", Kind: devices.EventRange, Metric: "temperature", From: 1767225660000, To: 1767225720000, Peak: 95.5, Low: 5, High: 90},
	{Device: "boiler-2", Kind: devices.EventPresence, Status: devices.StatusOffline, From: 1767225600000},
}

// apiServer serves the API's paths as cmd/iotdash's routes.go does, from
// the real handlers over a real store, behind sign-in. Its URL signs in as
// an admin (HTTP Basic); Anonymous is the same server signed in as no one.
type apiServer struct {
	*httptest.Server
	Anonymous string
	Viewer    string      // signed in as vera, a viewer
	storeDown atomic.Bool // /readyz's store check fails
	hub       *push.Hub
	events    *sqlite.Events
	board     string // the id of a board saved twice
}

func newAPIServer(t *testing.T) *apiServer {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "iotdash.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Append(context.Background(), openAPIExamples); err != nil {
		t.Fatal(err)
	}
	s := &apiServer{}
	fleet := devices.NewFleet(nil)
	fleet.SetMeta("boiler-1", devices.Meta{Name: "Boiler 1", Kind: "boiler", Location: "plant room",
		Units: map[string]string{"temperature": "°C"}, Limits: map[string][2]float64{"temperature": {5, 90}}})
	fleet.Seen("boiler-1", openAPIExamples)
	fleet.SetPresence("boiler-2", devices.StatusOffline)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "iotdash_rejected_total", Help: "Messages or readings rejected, by reason."}, []string{"reason"}))
	s.hub = push.NewHub(push.Options{})
	t.Cleanup(s.hub.Close)

	docs, err := sqlite.OpenDocs(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docs.Close() })
	people := auth.New(auth.Config{Store: docs})
	if _, _, err := people.Bootstrap(context.Background(), "api-admin-password"); err != nil {
		t.Fatal(err)
	}
	if err := people.AddUser(context.Background(), "vera", auth.Viewer, "vera-password"); err != nil {
		t.Fatal(err)
	}
	viewer := func(h http.Handler) http.Handler { return people.Require(auth.Viewer, h) }
	if s.events, err = sqlite.OpenEvents(filepath.Join(t.TempDir(), "state.db"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.events.Close() })
	if err := s.events.Record(context.Background(), openAPIEvents); err != nil {
		t.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/devices", viewer(Devices(fleet)))
	mux.Handle("GET /api/v1/devices/{id}", viewer(Device(fleet)))
	queryOpts := QueryOptions{Fleet: fleet, Logger: slog.New(slog.DiscardHandler)}
	mux.Handle("GET /api/v1/query", viewer(CachedHistory(Query(st, queryOpts), queryOpts, 7*24*time.Hour)))
	mux.Handle("GET /api/v1/openapi.json", viewer(OpenAPI()))
	mux.Handle("GET /api/v1/events", viewer(Events(s.events, time.UTC, nil)))
	mux.Handle("GET /healthz", Health())
	mux.Handle("GET /readyz", Ready(
		Check{Name: "broker", Fn: func(context.Context) error { return nil }},
		Check{Name: "store", Fn: func(context.Context) error {
			if s.storeDown.Load() {
				return errors.New("history store: ping failed")
			}
			return nil
		}},
	))
	mux.Handle("GET /metrics", people.Require(auth.Admin, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	mux.Handle("GET /ws", viewer(s.hub))
	bs := boards.New(docs, boards.Options{})
	b, err := bs.Create(context.Background(), boards.Board{Title: "Boilers", Panels: []boards.Panel{
		{Title: "Temperatures", Type: boards.TimeSeries, Series: []boards.Series{{Selector: devices.Selector{Kind: "boiler"}, Metric: "temperature"}}}}}, "admin")
	if err == nil {
		b.Title = "Boiler room"
		b, err = bs.Save(context.Background(), b.ID, b, "admin")
	}
	if err != nil {
		t.Fatal(err)
	}
	s.board = b.ID
	boardAPI := BoardAPI{Boards: bs}
	mux.Handle("GET /api/v1/boards", viewer(boardAPI.List()))
	mux.Handle("GET /api/v1/boards/{id}", viewer(boardAPI.Board()))
	mux.Handle("GET /api/v1/boards/{id}/versions", viewer(boardAPI.Versions()))
	operator := func(h http.Handler) http.Handler { return people.Require(auth.Operator, h) }
	mux.Handle("POST /api/v1/boards", operator(boardAPI.List()))
	mux.Handle("PUT /api/v1/boards/{id}", operator(boardAPI.Board()))
	mux.Handle("DELETE /api/v1/boards/{id}", operator(boardAPI.Board()))
	mountAlerts(t, mux, people, docs, fleet)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	s.Anonymous = s.URL
	s.Viewer = strings.Replace(s.URL, "://", "://vera:vera-password@", 1)
	s.URL = strings.Replace(s.URL, "://", "://admin:api-admin-password@", 1)
	return s
}

// alertScenarios make each documented response of the alerts API happen,
// as "METHOD path code", over the alert rule boiler-hot (boiler-1's
// temperature above 60, firing over openAPIExamples).
func alertScenarios(s *apiServer) map[string]func(t *testing.T) answer {
	const alert = "/api/v1/alerts/boiler-hot:boiler-1:temperature"
	rule := `{"name":"Boiler too hot","device":"boiler-1","metric":"temperature","op":">","value":60,"clear":59,"severity":"critical","runbook":"Open valve V3."}`
	return map[string]func(t *testing.T) answer{
		"GET /api/v1/alerts 200":           func(t *testing.T) answer { return s.get(t, "/api/v1/alerts?state=firing") },
		"GET /api/v1/alerts 400":           func(t *testing.T) answer { return s.get(t, "/api/v1/alerts?state=burning") },
		"GET /api/v1/alerts 401":           func(t *testing.T) answer { return fetchURL(t, s.Anonymous+"/api/v1/alerts") },
		"GET /api/v1/alerts/history 200":   func(t *testing.T) answer { return s.get(t, "/api/v1/alerts/history?device=boiler-1&from=-7d") },
		"GET /api/v1/alerts/history 400":   func(t *testing.T) answer { return s.get(t, "/api/v1/alerts/history?limit=0") },
		"GET /api/v1/alerts/history 401":   func(t *testing.T) answer { return fetchURL(t, s.Anonymous+"/api/v1/alerts/history") },
		"POST /api/v1/alerts/{id}/ack 200": func(t *testing.T) answer { return s.send(t, "POST", alert+"/ack", `{"comment":"valve ordered"}`) },
		"POST /api/v1/alerts/{id}/ack 400": func(t *testing.T) answer { return s.send(t, "POST", alert+"/ack", `{"comment":5}`) },
		"POST /api/v1/alerts/{id}/ack 401": func(t *testing.T) answer { return request(t, "POST", s.Anonymous+alert+"/ack", "") },
		"POST /api/v1/alerts/{id}/ack 403": func(t *testing.T) answer { return request(t, "POST", s.Viewer+alert+"/ack", "") },
		"POST /api/v1/alerts/{id}/ack 404": func(t *testing.T) answer { return s.send(t, "POST", "/api/v1/alerts/nope/ack", "") },
		"POST /api/v1/alerts/{id}/silence 200": func(t *testing.T) answer {
			return s.send(t, "POST", alert+"/silence", `{"for":"1h","comment":"maintenance"}`)
		},
		"POST /api/v1/alerts/{id}/silence 400": func(t *testing.T) answer { return s.send(t, "POST", alert+"/silence", `{"for":"forever"}`) },
		"POST /api/v1/alerts/{id}/silence 401": func(t *testing.T) answer { return request(t, "POST", s.Anonymous+alert+"/silence", "") },
		"POST /api/v1/alerts/{id}/silence 403": func(t *testing.T) answer { return request(t, "POST", s.Viewer+alert+"/silence", `{"for":"1h"}`) },
		"POST /api/v1/alerts/{id}/silence 404": func(t *testing.T) answer { return s.send(t, "POST", "/api/v1/alerts/nope/silence", `{"for":"1h"}`) },
		"POST /api/v1/alerts/{id}/unack 200": func(t *testing.T) answer {
			s.send(t, "POST", alert+"/ack", "")
			return s.send(t, "POST", alert+"/unack", "")
		},
		"POST /api/v1/alerts/{id}/unack 400": func(t *testing.T) answer {
			s.send(t, "POST", alert+"/unack", "")
			return s.send(t, "POST", alert+"/unack", "")
		},
		"POST /api/v1/alerts/{id}/unack 401": func(t *testing.T) answer { return request(t, "POST", s.Anonymous+alert+"/unack", "") },
		"POST /api/v1/alerts/{id}/unack 403": func(t *testing.T) answer { return request(t, "POST", s.Viewer+alert+"/unack", "") },
		"POST /api/v1/alerts/{id}/unack 404": func(t *testing.T) answer { return s.send(t, "POST", "/api/v1/alerts/nope/unack", "") },
		"GET /api/v1/alerts/rules 200":       func(t *testing.T) answer { return s.get(t, "/api/v1/alerts/rules") },
		"GET /api/v1/alerts/rules 401":       func(t *testing.T) answer { return fetchURL(t, s.Anonymous+"/api/v1/alerts/rules") },
		"POST /api/v1/alerts/rules 201":      func(t *testing.T) answer { return s.send(t, "POST", "/api/v1/alerts/rules", rule) },
		"POST /api/v1/alerts/rules 400": func(t *testing.T) answer {
			return s.send(t, "POST", "/api/v1/alerts/rules", `{"name":"Boiler too hot","device":"boiler-1","metric":"temperature","op":"=="}`)
		},
		"POST /api/v1/alerts/rules 401":     func(t *testing.T) answer { return request(t, "POST", s.Anonymous+"/api/v1/alerts/rules", rule) },
		"POST /api/v1/alerts/rules 403":     func(t *testing.T) answer { return request(t, "POST", s.Viewer+"/api/v1/alerts/rules", rule) },
		"GET /api/v1/alerts/rules/{id} 200": func(t *testing.T) answer { return s.get(t, "/api/v1/alerts/rules/boiler-hot") },
		"GET /api/v1/alerts/rules/{id} 401": func(t *testing.T) answer { return fetchURL(t, s.Anonymous+"/api/v1/alerts/rules/boiler-hot") },
		"GET /api/v1/alerts/rules/{id} 404": func(t *testing.T) answer { return s.get(t, "/api/v1/alerts/rules/nope") },
		"PUT /api/v1/alerts/rules/{id} 200": func(t *testing.T) answer { return s.send(t, "PUT", "/api/v1/alerts/rules/boiler-hot", rule) },
		"PUT /api/v1/alerts/rules/{id} 400": func(t *testing.T) answer {
			return s.send(t, "PUT", "/api/v1/alerts/rules/boiler-hot", `{"name":"Boiler too hot","device":"boiler-1","metric":"temperature","op":">","value":60,"clear":61}`)
		},
		"PUT /api/v1/alerts/rules/{id} 401": func(t *testing.T) answer {
			return request(t, "PUT", s.Anonymous+"/api/v1/alerts/rules/boiler-hot", rule)
		},
		"PUT /api/v1/alerts/rules/{id} 403": func(t *testing.T) answer { return request(t, "PUT", s.Viewer+"/api/v1/alerts/rules/boiler-hot", rule) },
		"DELETE /api/v1/alerts/rules/{id} 204": func(t *testing.T) answer {
			a := s.send(t, "POST", "/api/v1/alerts/rules", rule)
			return s.send(t, "DELETE", a.hdr.Get("Location"), "")
		},
		"DELETE /api/v1/alerts/rules/{id} 400": func(t *testing.T) answer { return s.send(t, "DELETE", "/api/v1/alerts/rules/limits", "") },
		"DELETE /api/v1/alerts/rules/{id} 401": func(t *testing.T) answer {
			return request(t, "DELETE", s.Anonymous+"/api/v1/alerts/rules/boiler-hot", "")
		},
		"DELETE /api/v1/alerts/rules/{id} 403": func(t *testing.T) answer { return request(t, "DELETE", s.Viewer+"/api/v1/alerts/rules/boiler-hot", "") },
		"DELETE /api/v1/alerts/rules/{id} 404": func(t *testing.T) answer { return s.send(t, "DELETE", "/api/v1/alerts/rules/nope", "") },
	}
}

// answer is a response read whole.
type answer struct {
	code int
	ct   string
	hdr  http.Header
	body []byte
}

func (s *apiServer) get(t *testing.T, path string, header ...string) answer {
	t.Helper()
	return fetchURL(t, s.URL+path, header...)
}

// send makes a request with a JSON body ("" for none), signed in as an
// admin.
func (s *apiServer) send(t *testing.T, method, path, body string) answer {
	t.Helper()
	return request(t, method, s.URL+path, body)
}

func fetchURL(t *testing.T, u string, header ...string) answer {
	t.Helper()
	return request(t, "GET", u, "", header...)
}

// TestOpenAPIDocumentsTheHandlers holds openapi.json to the real handlers:
// every documented response code is produced (and only those), every
// answer fits its documented schema, every example is a real answer or
// fits the schema, and /api/v1/query takes exactly the documented
// parameters.
func TestOpenAPIDocumentsTheHandlers(t *testing.T) {
	d := loadDoc(t)
	s := newAPIServer(t)

	paths := obj(d["paths"])
	var got []string
	for p := range paths {
		got = append(got, p)
	}
	sort.Strings(got)
	want := []string{"/api/v1/alerts", "/api/v1/alerts/history", "/api/v1/alerts/rules", "/api/v1/alerts/rules/{id}", "/api/v1/alerts/{id}/ack", "/api/v1/alerts/{id}/silence", "/api/v1/alerts/{id}/unack", "/api/v1/boards", "/api/v1/boards/{id}", "/api/v1/boards/{id}/versions", "/api/v1/devices", "/api/v1/devices/{id}", "/api/v1/events", "/api/v1/openapi.json", "/api/v1/query", "/healthz", "/metrics", "/readyz", "/ws"}
	if !slices.Equal(got, want) {
		t.Errorf("documented paths: got %v, want %v", got, want)
	}

	// How to make each documented response happen: "path code" for GET,
	// "METHOD path code" for the others.
	board := `{"title":"Boiler room","panels":[{"title":"Temperatures","type":"timeseries","series":[{"kind":"boiler","metric":"temperature"}]}]}`
	viewer := strings.Replace(s.Anonymous, "://", "://vera:vera-password@", 1)
	q := "/api/v1/query?device=boiler-1&metric=temperature&from=1767225600000&to=1767225780000"
	scenarios := map[string]func(t *testing.T) answer{
		"GET /api/v1/query 200": func(t *testing.T) answer { return s.get(t, q) },
		"GET /api/v1/query 400": func(t *testing.T) answer { return s.get(t, q+"&agg=median") },
		"GET /api/v1/query 500": func(t *testing.T) answer {
			// An InfluxDB without the configured database.
			db := testenv.StartInfluxDB(t)
			st, err := influx.New(influx.Config{URL: db.URL, Bucket: "no_such_db/autogen"})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			return serve(t, Query(st, QueryOptions{Logger: slog.New(slog.DiscardHandler)}), q+"&step=1m")
		},
		"GET /api/v1/query 503": func(t *testing.T) answer {
			st, err := sqlite.Open(filepath.Join(t.TempDir(), "closed.db"))
			if err != nil {
				t.Fatal(err)
			}
			st.Append(context.Background(), openAPIExamples)
			st.Close()
			return serve(t, Query(st, QueryOptions{Logger: slog.New(slog.DiscardHandler)}), q+"&step=1m")
		},
		"GET /api/v1/events 200": func(t *testing.T) answer { return s.get(t, "/api/v1/events?from=2026-01-01T00:00:00Z&kind=range") },
		"GET /api/v1/events 400": func(t *testing.T) answer { return s.get(t, "/api/v1/events?kind=alarm") },
		"GET /api/v1/events 401": func(t *testing.T) answer { return fetchURL(t, s.Anonymous+"/api/v1/events") },
		"GET /api/v1/events 503": func(t *testing.T) answer {
			ev, err := sqlite.OpenEvents(filepath.Join(t.TempDir(), "closed.db"), 0)
			if err != nil {
				t.Fatal(err)
			}
			ev.Close()
			return serve(t, Events(ev, time.UTC, nil), "/api/v1/events")
		},
		"GET /api/v1/query 304": func(t *testing.T) answer {
			return s.get(t, q, "If-None-Match", s.get(t, q).hdr.Get("ETag"))
		},
		"GET /api/v1/boards 200":               func(t *testing.T) answer { return s.get(t, "/api/v1/boards") },
		"GET /api/v1/boards 400":               func(t *testing.T) answer { return s.get(t, "/api/v1/boards?title=Boilers") },
		"GET /api/v1/boards 401":               func(t *testing.T) answer { return fetchURL(t, s.Anonymous+"/api/v1/boards") },
		"GET /api/v1/boards/{id} 200":          func(t *testing.T) answer { return s.get(t, "/api/v1/boards/"+s.board) },
		"GET /api/v1/boards/{id} 404":          func(t *testing.T) answer { return s.get(t, "/api/v1/boards/nope") },
		"GET /api/v1/boards/{id} 401":          func(t *testing.T) answer { return fetchURL(t, s.Anonymous+"/api/v1/boards/"+s.board) },
		"GET /api/v1/boards/{id}/versions 200": func(t *testing.T) answer { return s.get(t, "/api/v1/boards/"+s.board+"/versions") },
		"GET /api/v1/boards/{id}/versions 404": func(t *testing.T) answer { return s.get(t, "/api/v1/boards/nope/versions") },
		"GET /api/v1/boards/{id}/versions 401": func(t *testing.T) answer { return fetchURL(t, s.Anonymous+"/api/v1/boards/"+s.board+"/versions") },
		"POST /api/v1/boards 201":              func(t *testing.T) answer { return request(t, "POST", s.URL+"/api/v1/boards", board) },
		"POST /api/v1/boards 400": func(t *testing.T) answer {
			return request(t, "POST", s.URL+"/api/v1/boards", strings.Replace(board, `"kind"`, `"pattern":"boiler-[","kind"`, 1))
		},
		"POST /api/v1/boards 401":     func(t *testing.T) answer { return request(t, "POST", s.Anonymous+"/api/v1/boards", board) },
		"POST /api/v1/boards 403":     func(t *testing.T) answer { return request(t, "POST", viewer+"/api/v1/boards", board) },
		"PUT /api/v1/boards/{id} 200": func(t *testing.T) answer { return request(t, "PUT", s.URL+"/api/v1/boards/"+s.board, board) },
		"PUT /api/v1/boards/{id} 400": func(t *testing.T) answer { return request(t, "PUT", s.URL+"/api/v1/boards/"+s.board, `{"title":""}`) },
		"PUT /api/v1/boards/{id} 404": func(t *testing.T) answer { return request(t, "PUT", s.URL+"/api/v1/boards/nope", board) },
		"PUT /api/v1/boards/{id} 409": func(t *testing.T) answer {
			return request(t, "PUT", s.URL+"/api/v1/boards/"+s.board, `{"version":1,`+board[1:])
		},
		"PUT /api/v1/boards/{id} 401":    func(t *testing.T) answer { return request(t, "PUT", s.Anonymous+"/api/v1/boards/"+s.board, board) },
		"PUT /api/v1/boards/{id} 403":    func(t *testing.T) answer { return request(t, "PUT", viewer+"/api/v1/boards/"+s.board, board) },
		"DELETE /api/v1/boards/{id} 404": func(t *testing.T) answer { return request(t, "DELETE", s.URL+"/api/v1/boards/nope", "") },
		"DELETE /api/v1/boards/{id} 401": func(t *testing.T) answer { return request(t, "DELETE", s.Anonymous+"/api/v1/boards/"+s.board, "") },
		"DELETE /api/v1/boards/{id} 403": func(t *testing.T) answer { return request(t, "DELETE", viewer+"/api/v1/boards/"+s.board, "") },
		"DELETE /api/v1/boards/{id} 204": func(t *testing.T) answer {
			a := request(t, "POST", s.URL+"/api/v1/boards", board)
			var b struct{ ID string }
			json.Unmarshal(a.body, &b)
			return request(t, "DELETE", s.URL+"/api/v1/boards/"+b.ID, "")
		},
		"GET /api/v1/query 404":        func(t *testing.T) answer { return s.get(t, q+"&metric=levle") },
		"GET /api/v1/devices 200":      func(t *testing.T) answer { return s.get(t, "/api/v1/devices?status=online&q=BOIL") },
		"GET /api/v1/devices 400":      func(t *testing.T) answer { return s.get(t, "/api/v1/devices?state=offline") },
		"GET /api/v1/devices/{id} 200": func(t *testing.T) answer { return s.get(t, "/api/v1/devices/boiler-1") },
		"GET /api/v1/devices/{id} 400": func(t *testing.T) answer { return s.get(t, "/api/v1/devices/a%20b") },
		"GET /api/v1/devices/{id} 404": func(t *testing.T) answer { return s.get(t, "/api/v1/devices/nope") },
		"GET /api/v1/openapi.json 200": func(t *testing.T) answer { return s.get(t, "/api/v1/openapi.json") },
		"GET /healthz 200":             func(t *testing.T) answer { return s.get(t, "/healthz") },
		"GET /readyz 200":              func(t *testing.T) answer { return s.get(t, "/readyz") },
		"GET /readyz 503": func(t *testing.T) answer {
			s.storeDown.Store(true)
			defer s.storeDown.Store(false)
			return s.get(t, "/readyz")
		},
		"GET /metrics 200": func(t *testing.T) answer { return s.get(t, "/metrics") },
		"GET /metrics 401": func(t *testing.T) answer { return fetchURL(t, s.Anonymous+"/metrics") },
		"GET /metrics 403": func(t *testing.T) answer {
			return fetchURL(t, strings.Replace(s.Anonymous, "://", "://vera:vera-password@", 1)+"/metrics")
		},
		"GET /api/v1/query 401":        func(t *testing.T) answer { return fetchURL(t, s.Anonymous+q) },
		"GET /api/v1/devices 401":      func(t *testing.T) answer { return fetchURL(t, s.Anonymous+"/api/v1/devices") },
		"GET /api/v1/devices/{id} 401": func(t *testing.T) answer { return fetchURL(t, s.Anonymous+"/api/v1/devices/boiler-1") },
		"GET /api/v1/openapi.json 401": func(t *testing.T) answer { return fetchURL(t, s.Anonymous+"/api/v1/openapi.json") },
		"GET /ws 401":                  func(t *testing.T) answer { return fetchURL(t, s.Anonymous+"/ws") },
		"GET /ws 101": func(t *testing.T) answer {
			c, resp, err := websocket.Dial(context.Background(), s.URL+"/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			c.Close(websocket.StatusNormalClosure, "")
			return answer{code: resp.StatusCode}
		},
		"GET /ws 400": func(t *testing.T) answer {
			return s.get(t, "/ws", "Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "12", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		},
		"GET /ws 403": func(t *testing.T) answer {
			return s.get(t, "/ws", "Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Origin", "https://elsewhere.example")
		},
		"GET /ws 426": func(t *testing.T) answer { return s.get(t, "/ws") },
		"GET /ws 503": func(t *testing.T) answer {
			hub := push.NewHub(push.Options{})
			hub.Close()
			return serve(t, hub, "/ws")
		},
		"GET /ws 429": func(t *testing.T) answer {
			hub := push.NewHub(push.Options{MaxPerAddr: 1})
			srv := httptest.NewServer(hub)
			defer srv.Close()
			defer hub.Close()
			c, _, err := websocket.Dial(context.Background(), srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			return fetchURL(t, srv.URL)
		},
		"GET /api/v1/query 429": func(t *testing.T) answer {
			st, err := sqlite.Open(filepath.Join(t.TempDir(), "held.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			held := heldReader{st, make(chan struct{}), make(chan struct{})}
			srv := httptest.NewServer(Query(held, QueryOptions{MaxExports: 1, Logger: slog.New(slog.DiscardHandler)}))
			defer srv.Close()
			raw := srv.URL + q + "&step=raw&format=csv"
			first := make(chan struct{})
			go func() { fetchURL(t, raw); close(first) }()
			<-held.started
			defer func() { close(held.release); <-first }()
			return fetchURL(t, raw)
		},
	}
	for key, sc := range alertScenarios(s) {
		scenarios[key] = sc
	}
	done := map[string]bool{}
	for path, item := range paths {
		for method, op := range obj(item) {
			switch method {
			case "parameters", "summary", "description", "servers":
				continue // the path's own, not an operation
			case "get", "post", "put", "delete":
			default:
				t.Errorf("%s: method %s: the test makes GET, POST, PUT and DELETE happen", path, method)
				continue
			}
			for code, r := range obj(obj(op)["responses"]) {
				key := strings.ToUpper(method) + " " + path + " " + code
				sc := scenarios[key]
				if sc == nil {
					t.Errorf("%s: documented, but the test has no way to make it happen", key)
					continue
				}
				done[key] = true
				a := sc(t)
				if fmt.Sprint(a.code) != code {
					t.Errorf("%s: the handler answered %d", key, a.code)
					continue
				}
				content := obj(obj(r)["content"])
				if len(content) == 0 || a.code == http.StatusSwitchingProtocols {
					continue
				}
				media := obj(content[a.ct])
				if media == nil {
					t.Errorf("%s: answered with %s, documented %v", key, a.ct, keys(content))
					continue
				}
				if a.ct == "application/json" {
					if err := d.validate(media["schema"], decode(t, a.body), "$"); err != nil {
						t.Errorf("%s: the answer does not fit its schema: %v\n%s", key, err, a.body)
					}
				}
			}
		}
	}
	for key := range scenarios {
		if !done[key] {
			t.Errorf("%s: the handler gives it, the document does not say so", key)
		}
	}
}

// request makes a request of method with a JSON body (none if "") and
// the headers given as name, value, ….
func request(t *testing.T, method, u, body string, header ...string) answer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	return answer{resp.StatusCode, ct, resp.Header, b}
}

// mountAlerts serves the alerts API as routes.go does, over an engine
// whose rule boiler-hot fires on openAPIExamples.
func mountAlerts(t *testing.T, mux *http.ServeMux, people *auth.Service, docs alerts.Store, fleet *devices.Fleet) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	book, err := alerts.New(ctx, alerts.Config{Store: docs, Fleet: fleet})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); book.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	clear := 59.0
	if _, err := book.PutRule(ctx, alerts.Rule{ID: "boiler-hot", Name: "Boiler too hot", Device: "boiler-1", Metric: "temperature",
		Op: ">", Value: 60, Clear: &clear, Severity: "critical", Runbook: "Open valve V3."}); err != nil {
		t.Fatal(err)
	}
	book.Observe(openAPIExamples)
	a := AlertAPI{Alerts: book}
	for _, r := range []struct {
		pattern string
		role    auth.Role
		h       http.Handler
	}{
		{"GET /api/v1/alerts", auth.Viewer, a.List()},
		{"GET /api/v1/alerts/history", auth.Viewer, a.History()},
		{"POST /api/v1/alerts/{id}/{action}", auth.Operator, a.Act()},
		{"GET /api/v1/alerts/rules", auth.Viewer, a.Rules()},
		{"POST /api/v1/alerts/rules", auth.Operator, a.Rules()},
		{"GET /api/v1/alerts/rules/{id}", auth.Viewer, a.Rule()},
		{"PUT /api/v1/alerts/rules/{id}", auth.Operator, a.Rule()},
		{"DELETE /api/v1/alerts/rules/{id}", auth.Operator, a.Rule()},
	} {
		mux.Handle(r.pattern, people.Require(r.role, r.h))
	}
}

// heldReader is a real store whose exports, once started, wait until
// release is closed: a download still streaming.
type heldReader struct {
	*sqlite.Store
	started, release chan struct{}
}

func (h heldReader) Readings(ctx context.Context, q store.Query, fn func([]store.Point) error) error {
	h.started <- struct{}{}
	<-h.release
	return h.Store.Readings(ctx, q, fn)
}

// serve asks one handler directly.
func serve(t *testing.T, h http.Handler, path string) answer {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	return fetchURL(t, srv.URL+path)
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestOpenAPIExamplesAreRealAnswers: each example of /api/v1/query whose
// summary is a query string is exactly what the handler answers to it,
// over the readings openAPIExamples; every other JSON example fits its
// schema, and so does every component's.
func TestOpenAPIExamplesAreRealAnswers(t *testing.T) {
	d := loadDoc(t)
	s := newAPIServer(t)
	checked := 0
	for path, item := range obj(d["paths"]) {
		for _, op := range obj(item) {
			for code, r := range obj(obj(op)["responses"]) {
				for ct, m := range obj(obj(r)["content"]) {
					media := obj(m)
					examples := map[string]any{}
					for name, ex := range obj(media["examples"]) {
						examples[name] = ex
					}
					if ex, ok := media["example"]; ok {
						examples[""] = map[string]any{"value": ex}
					}
					for name, ex := range examples {
						where := fmt.Sprintf("%s %s %s example %q", path, code, ct, name)
						value := obj(ex)["value"]
						if ct == "application/json" {
							if err := d.validate(media["schema"], value, "$"); err != nil {
								t.Errorf("%s does not fit its schema: %v", where, err)
							}
						}
						summary, _ := obj(ex)["summary"].(string)
						if path != "/api/v1/query" || !strings.HasPrefix(summary, "device=") {
							continue
						}
						a := s.get(t, path+"?"+summary)
						checked++
						if fmt.Sprint(a.code) != code || a.ct != ct {
							t.Errorf("%s: the handler answered %d %s", where, a.code, a.ct)
							continue
						}
						if ct == "application/json" {
							if !equalJSON(decode(t, a.body), value) {
								t.Errorf("%s:\n handler %s\n example %v", where, a.body, value)
							}
						} else if string(a.body) != value {
							t.Errorf("%s:\n handler %q\n example %q", where, a.body, value)
						}
					}
				}
			}
		}
	}
	if checked < 9 {
		t.Errorf("only %d examples were run as queries", checked)
	}

	// The documented Content-Disposition is the real one.
	hdr := obj(obj(obj(obj(obj(obj(obj(d["paths"])["/api/v1/query"])["get"])["responses"])["200"])["headers"])["Content-Disposition"])
	a := s.get(t, "/api/v1/query?device=boiler-1&metric=temperature&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&step=raw&format=csv")
	if got := a.hdr.Get("Content-Disposition"); got != hdr["example"] {
		t.Errorf("Content-Disposition: handler %s, example %s", got, hdr["example"])
	}

	// The WebSocket frames' examples fit their schemas, and so does what
	// the hub really sends.
	comps := obj(obj(d["components"])["schemas"])
	for _, name := range []string{"Subscribe", "Subscribed", "Readings", "Status", "Gap", "Notice"} {
		sc := comps[name]
		if err := d.validate(sc, decode(t, mustJSON(obj(sc)["example"])), "$"); err != nil {
			t.Errorf("%s example: %v", name, err)
		}
	}
	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, s.URL+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, mustJSON(obj(comps["Subscribe"])["example"])); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Subscribed", "Readings", "Status"} {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.validate(comps[want], decode(t, b), "$"); err != nil {
			t.Errorf("frame %s is not a %s: %v", b, want, err)
		}
		switch want {
		case "Subscribed":
			s.hub.Publish(openAPIExamples[:1])
		case "Readings":
			s.hub.PublishStatus("boiler-1", devices.StatusOffline)
		}
	}
}

// TestOpenAPIRequestExamples: every example of a request body fits its
// schema and is taken by its handler, sent by an admin to the path with
// its parameters' examples, with a documented 2xx answer.
func TestOpenAPIRequestExamples(t *testing.T) {
	d := loadDoc(t)
	s := newAPIServer(t)
	type call struct {
		method, path, url, example string
		body                       any
		op                         map[string]any
	}
	var calls []call
	for path, item := range obj(d["paths"]) {
		params := asSlice(obj(item)["parameters"])
		for method, op := range obj(item) {
			op := obj(op)
			body := d.resolve(op["requestBody"])
			if body == nil {
				continue
			}
			u := path
			for _, p := range append(params, asSlice(op["parameters"])...) {
				p := d.resolve(p)
				if p["in"] == "path" {
					u = strings.ReplaceAll(u, "{"+p["name"].(string)+"}", url.PathEscape(fmt.Sprint(p["example"])))
				}
			}
			if strings.HasPrefix(path, "/api/v1/boards/{id}") {
				// A board's id is made when it is saved: the one the test saved.
				u = strings.ReplaceAll(path, "{id}", s.board)
			}
			media := obj(obj(body["content"])["application/json"])
			if ex, ok := media["example"]; ok {
				calls = append(calls, call{method, path, u, "", ex, op})
			}
			for name, ex := range obj(media["examples"]) {
				calls = append(calls, call{method, path, u, name, obj(ex)["value"], op})
			}
			if _, ok := media["schema"]; !ok {
				t.Errorf("%s %s: a request body without a schema", method, path)
			}
		}
	}
	// POST before PUT before DELETE: what adds or acts on the examples'
	// objects, then what replaces them, then what removes them.
	rank := map[string]int{"post": 0, "put": 1, "delete": 2}
	slices.SortFunc(calls, func(a, b call) int {
		return cmp.Or(cmp.Compare(rank[a.method], rank[b.method]), strings.Compare(a.path, b.path), strings.Compare(a.example, b.example))
	})
	for _, c := range calls {
		where := fmt.Sprintf("%s %s request example %q", c.method, c.path, c.example)
		media := obj(obj(d.resolve(c.op["requestBody"])["content"])["application/json"])
		if err := d.validate(media["schema"], c.body, "$"); err != nil {
			t.Errorf("%s does not fit its schema: %v", where, err)
		}
		a := s.send(t, strings.ToUpper(c.method), c.url, string(mustJSON(c.body)))
		if _, ok := obj(c.op["responses"])[fmt.Sprint(a.code)]; !ok || a.code/100 != 2 {
			t.Errorf("%s: %s %s answered %d %s", where, c.method, c.url, a.code, a.body)
		}
	}
	if len(calls) == 0 {
		t.Error("no request example was sent")
	}
}

// resolve follows a $ref to the component it names (of any section).
func (d doc) resolve(v any) map[string]any {
	m := obj(v)
	ref, ok := m["$ref"].(string)
	if !ok {
		return m
	}
	parts := strings.Split(strings.TrimPrefix(ref, "#/"), "/")
	var at any = map[string]any(d)
	for _, p := range parts {
		at = obj(at)[p]
	}
	return obj(at)
}

// TestOpenAPIQueryParameters: /api/v1/query reads exactly the documented
// parameters, and takes each with its documented example.
func TestOpenAPIQueryParameters(t *testing.T) {
	d := loadDoc(t)
	s := newAPIServer(t)
	op := obj(obj(obj(d["paths"])["/api/v1/query"])["get"])
	examples := url.Values{}
	var documented []string
	for _, p := range op["parameters"].([]any) {
		p := obj(p)
		name := p["name"].(string)
		documented = append(documented, name)
		switch ex := p["example"].(type) {
		case []any:
			for _, e := range ex {
				examples.Add(name, fmt.Sprint(e))
			}
		case string:
			examples.Set(name, ex)
		default:
			t.Errorf("parameter %s has no example", name)
		}
		schema := obj(p["schema"])
		if enum, ok := schema["enum"].([]any); ok {
			for _, e := range enum {
				v := url.Values{"device": examples["device"], "metric": examples["metric"], name: {fmt.Sprint(e)}}
				if a := s.get(t, "/api/v1/query?"+v.Encode()); a.code != http.StatusOK {
					t.Errorf("%s=%v, documented: %d %s", name, e, a.code, a.body)
				}
			}
		}
	}
	slices.Sort(documented)
	read := slices.Sorted(slices.Values(queryParams))
	if !slices.Equal(documented, read) {
		t.Errorf("documented parameters %v, the handler reads %v", documented, read)
	}
	for _, name := range documented {
		v := url.Values{"device": examples["device"], "metric": examples["metric"], name: examples[name]}
		if a := s.get(t, "/api/v1/query?"+v.Encode()); a.code != http.StatusOK {
			t.Errorf("%s=%v, its documented example: %d %s", name, examples[name], a.code, a.body)
		}
	}
	if a := s.get(t, "/api/v1/query?"+examples.Encode()); a.code != http.StatusOK {
		t.Errorf("every example at once (%s): %d %s", examples.Encode(), a.code, a.body)
	}
	// A parameter the document does not name is refused.
	if a := s.get(t, "/api/v1/query?device=boiler-1&metric=temperature&limit=10"); a.code != http.StatusBadRequest {
		t.Errorf("an undocumented parameter: %d %s", a.code, a.body)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func decode(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	return v
}

// equalJSON compares decoded JSON values, numbers by value.
func equalJSON(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		fx, _ := x.Float64()
		fy, _ := y.Float64()
		return fx == fy
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if !equalJSON(v, y[k]) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}

// validate checks v against a JSON Schema, of the keywords openapi.json
// uses: $ref, oneOf, type, enum, const, pattern, properties, required,
// additionalProperties, items, prefixItems, minItems and maxItems.
func (d doc) validate(schema any, v any, at string) error {
	s := obj(schema)
	if s == nil {
		return fmt.Errorf("%s: no schema", at)
	}
	if ref, ok := s["$ref"].(string); ok {
		name, ok := strings.CutPrefix(ref, "#/components/schemas/")
		target := obj(obj(d["components"])["schemas"])[name]
		if !ok || target == nil {
			return fmt.Errorf("%s: unknown $ref %s", at, ref)
		}
		return d.validate(target, v, at)
	}
	if alts, ok := s["oneOf"].([]any); ok {
		n := 0
		var errs []error
		for _, alt := range alts {
			if err := d.validate(alt, v, at); err != nil {
				errs = append(errs, err)
			} else {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%s: fits %d of oneOf's schemas, not 1: %v", at, n, errors.Join(errs...))
		}
	}
	if typ, ok := s["type"]; ok {
		var types []string
		switch x := typ.(type) {
		case string:
			types = []string{x}
		case []any:
			for _, t := range x {
				types = append(types, t.(string))
			}
		}
		if !slices.ContainsFunc(types, func(t string) bool { return isType(v, t) }) {
			return fmt.Errorf("%s: %v (%T) is not %v", at, v, v, types)
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return equalJSON(e, v) }) {
		return fmt.Errorf("%s: %v is not one of %v", at, v, enum)
	}
	if c, ok := s["const"]; ok && !equalJSON(c, v) {
		return fmt.Errorf("%s: %v is not %v", at, v, c)
	}
	if p, ok := s["pattern"].(string); ok {
		if str, ok := v.(string); ok && !regexp.MustCompile(p).MatchString(str) {
			return fmt.Errorf("%s: %q does not match %s", at, str, p)
		}
	}
	if m, ok := v.(map[string]any); ok {
		props := obj(s["properties"])
		for _, r := range asSlice(s["required"]) {
			if _, ok := m[r.(string)]; !ok {
				return fmt.Errorf("%s: %s is required", at, r)
			}
		}
		for k, val := range m {
			if ps, ok := props[k]; ok {
				if err := d.validate(ps, val, at+"."+k); err != nil {
					return err
				}
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					return fmt.Errorf("%s: %s is not a documented property", at, k)
				}
			case map[string]any:
				if err := d.validate(ap, val, at+"."+k); err != nil {
					return err
				}
			}
		}
	}
	if a, ok := v.([]any); ok {
		if n, ok := s["minItems"].(json.Number); ok && len(a) < atoi(n) {
			return fmt.Errorf("%s: %d items, fewer than %s", at, len(a), n)
		}
		if n, ok := s["maxItems"].(json.Number); ok && len(a) > atoi(n) {
			return fmt.Errorf("%s: %d items, more than %s", at, len(a), n)
		}
		prefix := asSlice(s["prefixItems"])
		for i, item := range a {
			sc := s["items"]
			if i < len(prefix) {
				sc = prefix[i]
			}
			if sc == nil {
				continue
			}
			if err := d.validate(sc, item, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func atoi(n json.Number) int {
	i, _ := n.Int64()
	return int(i)
}

func isType(v any, t string) bool {
	switch x := v.(type) {
	case nil:
		return t == "null"
	case bool:
		return t == "boolean"
	case string:
		return t == "string"
	case json.Number:
		if t == "number" {
			return true
		}
		_, err := x.Int64()
		return t == "integer" && err == nil
	case map[string]any:
		return t == "object"
	case []any:
		return t == "array"
	}
	return false
}

// TestOpenAPILint: the document passes Redocly's recommended rules (a
// linter nobody here wrote): security declared for every operation,
// servers, valid schemas and examples. Warnings are printed, not failed.
func TestOpenAPILint(t *testing.T) {
	bin := testenv.Redocly(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "lint", "--extends", "recommended", "--format", "stylish", "openapi.json")
	cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redocly lint --extends recommended openapi.json: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
