// Package api is iotdash's HTTP API for integrators and for the dashboard's
// range views: the fleet as JSON, history queries (JSON, CSV, and raw CSV
// exports streamed with flat memory), the health checks, and the OpenAPI
// document that describes them all (openapi.json, held to the handlers by
// openapi_test.go). It reads through small interfaces it declares (Reader,
// Fleet), so it works the same over the embedded store and InfluxDB. It
// renders no pages; that is the views package.
package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"iotdash/devices"
	"iotdash/store"
)

// Reader answers history queries.
type Reader interface {
	// Query answers q, returning an EInvalid error for a query it cannot
	// answer and EUnavailable when the store cannot be reached.
	Query(ctx context.Context, q store.Query) ([]store.Point, error)
	// Readings calls fn with every reading of q's series in [From, To), in
	// time order, a chunk at a time, with memory that does not grow with
	// the range; it returns fn's error, EInvalid for a query it cannot
	// answer and EUnavailable when the store cannot be reached.
	Readings(ctx context.Context, q store.Query, fn func([]store.Point) error) error
}

// Fleet is the devices known now.
type Fleet interface {
	// List returns every known device, ordered by id.
	List() []devices.Device
	// Get returns the device with id, and false if it is not known.
	Get(id string) (devices.Device, bool)
}

// writeJSON writes v as the response with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.Encode(v)
}

// writeError answers with the status that err's kind calls for and the
// message meant for the caller (devices.ErrorMessage); the cause behind it
// (a driver's text, an address) goes to the log only.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code, msg := http.StatusInternalServerError, "internal error"
	switch devices.ErrorKind(err) {
	case devices.EInvalid:
		code, msg = http.StatusBadRequest, devices.ErrorMessage(err)
	case devices.ENotFound:
		code, msg = http.StatusNotFound, devices.ErrorMessage(err)
	case devices.EUnavailable:
		code, msg = http.StatusServiceUnavailable, devices.ErrorMessage(err)
	}
	if code >= 500 {
		log.Error("request failed", "path", r.URL.Path, "status", code, "error", err)
	}
	writeJSON(w, code, map[string]string{"error": msg})
}

// requireJSON refuses a body that says it is other than JSON.
func requireJSON(r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return devices.Errorf(devices.EInvalid, "the body is JSON (Content-Type: application/json), not %s", ct)
	}
	return nil
}

// deviceJSON is a device as /api/v1/devices gives it.
type deviceJSON struct {
	ID       string                `json:"id"`
	Name     string                `json:"name"`
	Kind     string                `json:"kind"`
	Location string                `json:"location"`
	Status   devices.Status        `json:"status"`
	Since    *time.Time            `json:"since"`
	LastSeen *time.Time            `json:"last_seen"`
	Latest   map[string]latestJSON `json:"latest"`
	Limits   map[string][2]float64 `json:"limits,omitempty"`
}

type latestJSON struct {
	T    int64   `json:"t"`
	V    float64 `json:"v"`
	Unit string  `json:"unit,omitempty"`
}

// devicesParams are the parameters /api/v1/devices takes; any other is
// refused.
var devicesParams = []string{"status", "kind", "location", "q"}

// Devices serves GET /api/v1/devices: every device with its metadata,
// status, last seen time and latest values, filtered by ?status= (online,
// stale, offline, unknown), ?kind=, ?location= (exact) and ?q= (text in the
// id, name, kind or location, as the overview's filter matches it).
func Devices(f Fleet) http.Handler {
	log := slog.New(slog.DiscardHandler) // every error here is the caller's
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			writeError(w, r, log, devices.Errorf(devices.EInvalid, "the query string is malformed: %v", err))
			return
		}
		get := map[string]string{}
		for name, vs := range v {
			if !slices.Contains(devicesParams, name) {
				writeError(w, r, log, devices.Errorf(devices.EInvalid, "unknown parameter %q; the parameters are %s", name, strings.Join(devicesParams, ", ")))
				return
			}
			if len(vs) > 1 {
				writeError(w, r, log, devices.Errorf(devices.EInvalid, "%s is given %d times; give it once", name, len(vs)))
				return
			}
			get[name] = vs[0]
		}
		if s := get["status"]; s != "" && !slices.Contains(devices.Statuses, devices.Status(s)) {
			writeError(w, r, log, devices.Errorf(devices.EInvalid, "status %q is not one of online, stale, offline, unknown", s))
			return
		}
		out := []deviceJSON{}
		for _, d := range f.List() {
			if (get["status"] != "" && string(d.Status) != get["status"]) ||
				(get["kind"] != "" && d.Meta.Kind != get["kind"]) ||
				(get["location"] != "" && d.Meta.Location != get["location"]) ||
				!d.Matches(get["q"]) {
				continue
			}
			out = append(out, newDeviceJSON(d))
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// Device serves GET /api/v1/devices/{id}: one device as /api/v1/devices
// gives it, or a 404 that names the id.
func Device(f Fleet) http.Handler {
	log := slog.New(slog.DiscardHandler)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !devices.ValidName(id) {
			writeError(w, r, log, devices.Errorf(devices.EInvalid, "device id %q is not 1 to 64 characters of [A-Za-z0-9._-]", id))
			return
		}
		d, ok := f.Get(id)
		if !ok {
			writeError(w, r, log, devices.Errorf(devices.ENotFound, "no device with the id %q is known", id))
			return
		}
		writeJSON(w, http.StatusOK, newDeviceJSON(d))
	})
}

func newDeviceJSON(d devices.Device) deviceJSON {
	j := deviceJSON{ID: d.ID, Name: d.Name(), Kind: d.Meta.Kind, Location: d.Meta.Location,
		Status: d.Status, Latest: make(map[string]latestJSON, len(d.Latest)), Limits: d.Meta.Limits}
	j.Since, j.LastSeen = timeOrNil(d.Since), timeOrNil(d.LastSeen)
	for m, v := range d.Latest {
		j.Latest[m] = latestJSON{T: v.T, V: v.V, Unit: d.Meta.Units[m]}
	}
	return j
}

// timeOrNil is ms as a UTC time, or nil for 0 (never).
func timeOrNil(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

// Router is what Fallback asks which pattern would serve a request;
// *http.ServeMux satisfies it.
type Router interface {
	Handler(r *http.Request) (h http.Handler, pattern string)
}

// Fallback answers what no API route serves, in the API's language: a JSON
// 405 with Allow for a path the API serves with another method, and a JSON
// 404 for any other path. Mount it at "/api/" on mux.
func Fallback(mux Router) http.Handler {
	log := slog.New(slog.DiscardHandler) // every error here is the caller's
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Which methods would the path be served by?
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "" && !strings.HasSuffix(pattern, "/api/") {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			use := strings.Join(allow, " or ")
			if allow[0] == http.MethodGet {
				allow = slices.Insert(allow, 1, http.MethodHead)
			}
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": r.Method + " is not allowed on " + r.URL.Path + "; use " + use})
			return
		}
		writeError(w, r, log, devices.Errorf(devices.ENotFound, "there is no API at %s; see /api/v1/openapi.json", r.URL.Path))
	})
}

// Check is one readiness condition: nil when it holds, else an error whose
// devices.ErrorMessage says what is wrong.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Health serves GET /healthz: the process is up.
func Health() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
}

// Ready serves GET /readyz: 200 when every check holds, else 503, with each
// check's state in the JSON body.
func Ready(checks ...Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		code := http.StatusOK
		out := map[string]string{}
		for _, c := range checks {
			if err := c.Fn(ctx); err != nil {
				code = http.StatusServiceUnavailable
				out[c.Name] = devices.ErrorMessage(err) // no address, no driver text
			} else {
				out[c.Name] = "ok"
			}
		}
		writeJSON(w, code, out)
	})
}
