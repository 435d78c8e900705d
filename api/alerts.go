package api

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"iotdash/alerts"
	"iotdash/auth"
	"iotdash/devices"
	"iotdash/internal/jsondoc"
)

// Alerts is what the alert API reads and changes (alerts.Engine).
type Alerts interface {
	Rules() []alerts.Rule
	Rule(id string) (alerts.Rule, error)
	PutRule(ctx context.Context, r alerts.Rule) (alerts.Rule, error)
	DeleteRule(ctx context.Context, id string) error
	Alerts(state string) []alerts.Instance
	Acknowledge(key, by, comment string) (alerts.Instance, error)
	Unacknowledge(key string) (alerts.Instance, error)
	Silence(key, by string, d time.Duration, comment string) (alerts.Instance, error)
	History(q alerts.HistoryQuery) []alerts.Episode
}

// AlertAPI serves the alert rules and alerts:
//
//	GET    /api/v1/alerts?state=firing        the alerts (pending, firing, resolved)
//	GET    /api/v1/alerts/history?device=…    episodes: fired, cleared, peak, acknowledged
//	POST   /api/v1/alerts/{id}/ack            {"comment": "…"}
//	POST   /api/v1/alerts/{id}/silence        {"for": "1h", "comment": "…"}
//	POST   /api/v1/alerts/{id}/unack          the acknowledgement and silence withdrawn
//	GET    /api/v1/alerts/rules               every rule
//	POST   /api/v1/alerts/rules               a new rule (201)
//	GET    /api/v1/alerts/rules/{id}          one rule
//	PUT    /api/v1/alerts/rules/{id}          a rule, replaced
//	DELETE /api/v1/alerts/rules/{id}          (204)
type AlertAPI struct {
	Alerts Alerts
	Logger *slog.Logger
}

func (a AlertAPI) log() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

// List serves GET /api/v1/alerts.
func (a AlertAPI) List() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		for k := range q {
			if k != "state" {
				writeError(w, r, a.log(), devices.Errorf(devices.EInvalid, "unknown parameter %q: /api/v1/alerts takes state", k))
				return
			}
		}
		state := q.Get("state")
		switch state {
		case "", alerts.StatePending, alerts.StateFiring, alerts.StateResolved:
		default:
			writeError(w, r, a.log(), devices.Errorf(devices.EInvalid, "state %q is none of pending, firing, resolved", state))
			return
		}
		list := a.Alerts.Alerts(state)
		if list == nil {
			list = []alerts.Instance{}
		}
		writeJSON(w, http.StatusOK, list)
	})
}

// History serves GET /api/v1/alerts/history.
func (a AlertAPI) History() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseHistory(r.URL.Query(), time.Now())
		if err != nil {
			writeError(w, r, a.log(), err)
			return
		}
		writeJSON(w, http.StatusOK, a.Alerts.History(q))
	})
}

// ParseHistory reads a history query: device, rule, severity, from and to
// (as ParseTime takes them; no bound if absent) and limit (1 to
// alerts.MaxHistoryLimit). A mistake is an EInvalid error that names it.
func ParseHistory(v url.Values, now time.Time) (alerts.HistoryQuery, error) {
	var q alerts.HistoryQuery
	for k, vs := range v {
		if !slices.Contains([]string{"device", "rule", "severity", "from", "to", "limit"}, k) {
			return q, devices.Errorf(devices.EInvalid, "unknown parameter %q: the alert history takes device, rule, severity, from, to and limit", k)
		}
		if len(vs) > 1 {
			return q, devices.Errorf(devices.EInvalid, "%s is given %d times; give it once", k, len(vs))
		}
	}
	q.Device, q.Rule, q.Severity = v.Get("device"), v.Get("rule"), v.Get("severity")
	if q.Severity != "" && !slices.Contains(alerts.Severities, q.Severity) {
		return q, devices.Errorf(devices.EInvalid, "severity %q is none of %s", q.Severity, strings.Join(alerts.Severities, ", "))
	}
	var err error
	for _, t := range []struct {
		name string
		ms   *int64
	}{{"from", &q.From}, {"to", &q.To}} {
		if s := v.Get(t.name); s != "" {
			if *t.ms, err = ParseTime(s, "", now); err != nil {
				return q, devices.Errorf(devices.EInvalid, "%s: %v", t.name, err)
			}
		}
	}
	if q.From != 0 && q.To != 0 && q.From >= q.To {
		return q, devices.Errorf(devices.EInvalid, "from must be before to")
	}
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 1 || q.Limit > alerts.MaxHistoryLimit {
			return q, devices.Errorf(devices.EInvalid, "limit %q is not a number from 1 to %d", s, alerts.MaxHistoryLimit)
		}
	}
	return q, nil
}

// Act serves POST /api/v1/alerts/{id}/{action}: ack, silence or unack.
func (a AlertAPI) Act() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			For     alerts.Duration `json:"for"`
			Comment string          `json:"comment"`
		}
		if r.ContentLength != 0 {
			if err := decodeBody(r, &body, "an action"); err != nil {
				writeError(w, r, a.log(), err)
				return
			}
		}
		p, _ := auth.From(r.Context())
		var in alerts.Instance
		var err error
		switch r.PathValue("action") {
		case "ack":
			in, err = a.Alerts.Acknowledge(r.PathValue("id"), p.Name, body.Comment)
		case "unack":
			in, err = a.Alerts.Unacknowledge(r.PathValue("id"))
		case "silence":
			in, err = a.Alerts.Silence(r.PathValue("id"), p.Name, time.Duration(body.For), body.Comment)
		default:
			err = devices.Errorf(devices.ENotFound, "an alert is acknowledged (ack), silenced (silence), or either withdrawn (unack)")
		}
		if err != nil {
			writeError(w, r, a.log(), err)
			return
		}
		writeJSON(w, http.StatusOK, in)
	})
}

// Rules serves GET and POST /api/v1/alerts/rules.
func (a AlertAPI) Rules() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			writeJSON(w, http.StatusOK, a.Alerts.Rules())
			return
		}
		var rule alerts.Rule
		if err := decodeBody(r, &rule, "an alert rule"); err != nil {
			writeError(w, r, a.log(), err)
			return
		}
		rule.ID = ""
		rule, err := a.Alerts.PutRule(r.Context(), rule)
		if err != nil {
			writeError(w, r, a.log(), err)
			return
		}
		w.Header().Set("Location", "/api/v1/alerts/rules/"+rule.ID)
		writeJSON(w, http.StatusCreated, rule)
	})
}

// Rule serves GET, PUT and DELETE /api/v1/alerts/rules/{id}.
func (a AlertAPI) Rule() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		switch r.Method {
		case http.MethodGet:
			rule, err := a.Alerts.Rule(id)
			if err != nil {
				writeError(w, r, a.log(), err)
				return
			}
			writeJSON(w, http.StatusOK, rule)
		case http.MethodDelete:
			if err := a.Alerts.DeleteRule(r.Context(), id); err != nil {
				writeError(w, r, a.log(), err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			var rule alerts.Rule
			if err := decodeBody(r, &rule, "an alert rule"); err != nil {
				writeError(w, r, a.log(), err)
				return
			}
			if rule.ID != "" && rule.ID != id {
				writeError(w, r, a.log(), devices.Errorf(devices.EInvalid, "the body's id %q is not the path's %q", rule.ID, id))
				return
			}
			rule.ID = id
			rule, err := a.Alerts.PutRule(r.Context(), rule)
			if err != nil {
				writeError(w, r, a.log(), err)
				return
			}
			writeJSON(w, http.StatusOK, rule)
		}
	})
}

// decodeBody reads a JSON body of at most 64 KiB into v, what v is (see
// jsondoc.Decode); an unknown field, a wrong type or anything after the
// value is an EInvalid error that says which.
func decodeBody(r *http.Request, v any, what string) error {
	if err := requireJSON(r); err != nil {
		return err
	}
	return jsondoc.Decode(r.Body, 64<<10, v, what)
}
