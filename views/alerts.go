package views

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"iotdash/alerts"
	"iotdash/api"
	"iotdash/auth"
	"iotdash/devices"
)

// AlertBook is what the alerts page reads and changes (alerts.Engine).
type AlertBook interface {
	Alerts(state string) []alerts.Instance
	Rules() []alerts.Rule
	PutRule(ctx context.Context, r alerts.Rule) (alerts.Rule, error)
	DeleteRule(ctx context.Context, id string) error
	Acknowledge(key, by, comment string) (alerts.Instance, error)
	Unacknowledge(key string) (alerts.Instance, error)
	Silence(key, by string, d time.Duration, comment string) (alerts.Instance, error)
	History(q alerts.HistoryQuery) []alerts.Episode
}

// Deliveries says how notifications fare (alerts.Notifier).
type Deliveries interface {
	Deliveries(ctx context.Context) ([]alerts.Delivery, error)
}

// AlertRow is one alert as the page shows it.
type AlertRow struct {
	alerts.Instance
	Value      string
	Since      Seen // when it began (pending) or fired
	Resolved   Seen
	Silenced   bool
	SilenceEnd string
}

// RuleRow is one rule as the page shows it.
type RuleRow struct {
	alerts.Rule
	Picks, Condition string
}

// EpisodeRow is one episode of the history as the page shows it.
type EpisodeRow struct {
	alerts.Episode
	Peak            string
	Fired, Resolved Seen
}

// HistoryFilter is what the history is filtered by: the query's device,
// rule, severity and from.
type HistoryFilter struct {
	Device, Rule, Severity, From string
}

// HistorySince are the spans the history filter offers, by its from.
var HistorySince = []struct{ From, Label string }{{"-1d", "the last day"}, {"-7d", "the last week"}, {"-30d", "the last 30 days"}, {"", "all that is kept"}}

// AlertsModel is the alerts page.
type AlertsModel struct {
	Page
	Firing, Pending, Resolved []AlertRow
	History                   []EpisodeRow
	Filter                    HistoryFilter
	Rules                     []RuleRow
	Deliveries                []alerts.Delivery
	CanChange                 bool // an operator or an admin
	Done, Problem             string
}

// AlertPages serves the alerts page, GET /alerts, and its forms (an
// operator's): POST /alerts/{key}/{ack,unack,silence} and POST /alerts/rules,
// /alerts/rules/{id}/{delete,off,on}.
type AlertPages struct {
	Book       AlertBook
	Deliveries Deliveries
	Options    Options
}

// Page serves GET /alerts.
func (a AlertPages) Page() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.show(w, r, "", nil) })
}

// Action serves the page's forms.
func (a AlertPages) Action() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		p, _ := auth.From(ctx)
		key, id, action := r.PathValue("key"), r.PathValue("id"), r.PathValue("action")
		var done string
		var err error
		switch {
		case key != "" && action == "ack":
			_, err = a.Book.Acknowledge(key, p.Name, r.PostFormValue("comment"))
			done = "Acknowledged."
		case key != "" && action == "unack":
			_, err = a.Book.Unacknowledge(key)
			done = "Withdrew the acknowledgement."
		case key != "" && action == "silence":
			var d time.Duration
			if d, err = time.ParseDuration(r.PostFormValue("for")); err != nil {
				err = devices.Errorf(devices.EInvalid, "%q is not a duration such as 1h or 30m", r.PostFormValue("for"))
				break
			}
			_, err = a.Book.Silence(key, p.Name, d, r.PostFormValue("comment"))
			done = "Silenced for " + formatDuration(d) + "."
		case id == "" && action == "":
			var rule alerts.Rule
			if rule, err = ruleFromForm(r); err == nil {
				rule, err = a.Book.PutRule(ctx, rule)
				done = "Added the rule " + rule.Name + "."
			}
		case action == "delete":
			err = a.Book.DeleteRule(ctx, id)
			done = "Removed the rule; its alerts resolve."
		case action == "off" || action == "on":
			var rule alerts.Rule
			for _, ru := range a.Book.Rules() {
				if ru.ID == id {
					rule = ru
				}
			}
			if rule.ID == "" {
				err = devices.Errorf(devices.ENotFound, "there is no alert rule %s", id)
				break
			}
			rule.Disabled = action == "off"
			_, err = a.Book.PutRule(ctx, rule)
			done = "Switched the rule " + action + "."
		default:
			err = devices.Errorf(devices.ENotFound, "there is no such alert action")
		}
		a.show(w, r, done, err)
	})
}

// ruleFromForm reads the add-rule form: name, picks (device, kind,
// location or pattern) and pick, metric, op, value, clear, for, window,
// severity, runbook.
func ruleFromForm(r *http.Request) (alerts.Rule, error) {
	f := r.PostFormValue
	rule := alerts.Rule{Name: f("name"), Metric: strings.TrimSpace(f("metric")), Op: f("op"), Severity: f("severity"), Runbook: f("runbook")}
	pick := strings.TrimSpace(f("pick"))
	switch f("picks") {
	case "device":
		rule.Device = pick
	case "kind":
		rule.Kind = pick
	case "location":
		rule.Location = pick
	case "pattern":
		rule.Pattern = pick
	default:
		return rule, devices.Errorf(devices.EInvalid, "rule: pick devices by device, kind, location or pattern")
	}
	num := func(name string) (float64, error) {
		v, err := strconv.ParseFloat(strings.TrimSpace(f(name)), 64)
		if err != nil {
			return 0, devices.Errorf(devices.EInvalid, "rule: %s %q is not a number", name, f(name))
		}
		return v, nil
	}
	var err error
	if strings.TrimSpace(f("value")) != "" || rule.Op != alerts.OpNoData {
		if rule.Value, err = num("value"); err != nil {
			return rule, err
		}
	}
	if strings.TrimSpace(f("clear")) != "" {
		c, err := num("clear")
		if err != nil {
			return rule, err
		}
		rule.Clear = &c
	}
	if s := strings.TrimSpace(f("for")); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return rule, devices.Errorf(devices.EInvalid, "rule: for %q is not a duration such as 30s or 2m", s)
		}
		rule.For = alerts.Duration(d)
	}
	if s := strings.TrimSpace(f("window")); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return rule, devices.Errorf(devices.EInvalid, "rule: window %q is not a duration such as 10m or 1h", s)
		}
		rule.Window = alerts.Duration(d)
	}
	return rule, nil
}

func (a AlertPages) show(w http.ResponseWriter, r *http.Request, done string, actionErr error) {
	log := orDiscard(a.Options.Logger)
	now := a.Options.now(r)
	p, _ := auth.From(r.Context())
	m := AlertsModel{Page: Page{Title: "Alerts", Kind: "alerts", Live: "-", NowMs: now.UnixMilli(), TZ: zoneName(now.Location())},
		CanChange: p.Role >= auth.Operator, Done: done}
	status := http.StatusOK
	if actionErr != nil {
		m.Done = ""
		status, m.Problem = problem(log, r, actionErr)
	}
	for _, in := range a.Book.Alerts("") {
		row := AlertRow{Instance: in, Value: float(in.Value), Since: newSeen(max(in.FiredAt, in.Since), now)}
		if in.SilencedUntil > now.UnixMilli() {
			row.Silenced, row.SilenceEnd = true, formatAt(in.SilencedUntil, now.Location())
		}
		switch in.State {
		case alerts.StateFiring:
			m.Firing = append(m.Firing, row)
		case alerts.StatePending:
			m.Pending = append(m.Pending, row)
		default:
			row.Resolved = newSeen(in.ResolvedAt, now)
			m.Resolved = append(m.Resolved, row)
		}
	}
	q := r.URL.Query()
	m.Filter = HistoryFilter{Device: q.Get("device"), Rule: q.Get("rule"), Severity: q.Get("severity"), From: q.Get("from")}
	if hq, err := api.ParseHistory(q, now); err != nil {
		status, m.Problem = problem(log, r, err)
	} else {
		for _, ep := range a.Book.History(hq) {
			m.History = append(m.History, EpisodeRow{Episode: ep, Peak: float(ep.Peak),
				Fired: newSeen(ep.FiredAt, now), Resolved: newSeen(ep.ResolvedAt, now)})
		}
	}
	for _, ru := range a.Book.Rules() {
		m.Rules = append(m.Rules, RuleRow{Rule: ru, Picks: picks(ru), Condition: ru.Condition()})
	}
	if a.Deliveries != nil {
		if ds, err := a.Deliveries.Deliveries(r.Context()); err == nil {
			m.Deliveries = ds
		}
	}
	render(w, r, log, status, AlertsPage(m))
}

func picks(r alerts.Rule) string {
	switch {
	case r.Device != "":
		return "device " + r.Device
	case r.Kind != "":
		return "every " + r.Kind
	case r.Location != "":
		return "every device in " + r.Location
	case r.Pattern != "":
		return "devices " + r.Pattern
	}
	return "every device with limits"
}
