package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"iotdash/devices"
)

// NotifierConfig is where notifications go.
type NotifierConfig struct {
	Store Store
	// Webhooks get every notification of a severity ("" for every
	// severity), besides the webhook of the alert's own rule.
	Webhooks map[string][]string
	// Secret signs each webhook body: X-Iotdash-Signature is
	// "sha256=" and the hex HMAC-SHA256 of the body with it.
	Secret []byte
	// AlertmanagerURL is a Prometheus Alertmanager's base URL, or "".
	AlertmanagerURL string
	// ExternalURL is the dashboard's address, for links in notifications.
	ExternalURL string
	Client      *http.Client
	Registerer  prometheus.Registerer
	Logger      *slog.Logger
}

// Notifier delivers notifications from a queue kept in the store, so that
// none is lost to a restart or to a receiver that is down: each waits,
// retried with a backoff of up to a minute, until its receiver takes it,
// in order for each receiver.
type Notifier struct {
	cfg    NotifierConfig
	log    *slog.Logger
	warn   *rate.Limiter
	wake   chan struct{}
	sent   *prometheus.CounterVec
	failed *prometheus.CounterVec

	mu      sync.Mutex
	seq     int64
	lastErr map[string]string // receiver → its last failure, "" once it works
}

// outboxEntry is one notification for one receiver.
type outboxEntry struct {
	Key      string   `json:"key"`
	Receiver string   `json:"receiver"` // a webhook URL, or "alertmanager"
	Alert    Instance `json:"alert"`
	Attempts int      `json:"attempts"`
	NextAt   int64    `json:"next_at"`
}

// NewNotifier returns a Notifier over cfg.Store's queue.
func NewNotifier(cfg NotifierConfig) *Notifier {
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	n := &Notifier{cfg: cfg, log: cfg.Logger, warn: rate.NewLimiter(rate.Every(10*time.Second), 3), wake: make(chan struct{}, 1),
		lastErr: map[string]string{},
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "iotdash_alert_notifications_total",
			Help: "Alert notifications delivered, by receiver kind (webhook, alertmanager)."}, []string{"receiver"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "iotdash_alert_notification_failures_total",
			Help: "Failed attempts to deliver an alert notification (each is retried), by receiver kind."}, []string{"receiver"}),
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(n.sent, n.failed)
	}
	return n
}

// Enqueue queues in's notification for every receiver it goes to.
func (n *Notifier) Enqueue(ctx context.Context, in Instance, ruleWebhook string) error {
	var receivers []string
	if ruleWebhook != "" {
		receivers = append(receivers, ruleWebhook)
	}
	for _, sev := range []string{"", in.Severity} {
		for _, u := range n.cfg.Webhooks[sev] {
			if !slices.Contains(receivers, u) {
				receivers = append(receivers, u)
			}
		}
	}
	if n.cfg.AlertmanagerURL != "" {
		receivers = append(receivers, "alertmanager")
	}
	return n.enqueue(ctx, receivers, in)
}

// enqueue puts in's notification to each receiver in the queue, and wakes
// Run.
func (n *Notifier) enqueue(ctx context.Context, receivers []string, in Instance) error {
	for _, r := range receivers {
		n.mu.Lock()
		n.seq = max(n.seq+1, time.Now().UnixNano())
		key := fmt.Sprintf("%020d", n.seq)
		n.mu.Unlock()
		b, _ := json.Marshal(outboxEntry{Key: key, Receiver: r, Alert: in})
		if err := n.cfg.Store.Put(ctx, "alert-outbox", key, b); err != nil {
			return err
		}
	}
	select {
	case n.wake <- struct{}{}:
	default:
	}
	return nil
}

// silenceReceiver is the queue's receiver that keeps an acknowledged
// alert's silence in Alertmanager.
const silenceReceiver = "alertmanager-silence"

// SyncSilence queues in's silence in Alertmanager to be made what in
// says: an alert that fires silenced is silenced there to the end of its
// silence, one that fires acknowledged until it resolves (30 days at
// most); any other has none. Without an Alertmanager it does nothing.
func (n *Notifier) SyncSilence(ctx context.Context, in Instance) error {
	if n.cfg.AlertmanagerURL == "" {
		return nil
	}
	return n.enqueue(ctx, []string{silenceReceiver}, in)
}

// Run delivers the queue, and keeps a Prometheus Alertmanager told of what
// is firing (it forgets an alert not sent again within its resolve
// timeout), until ctx ends.
func (n *Notifier) Run(ctx context.Context, firing func() []Instance) {
	// The queue is read when something is queued (Enqueue wakes it) and
	// when its next retry is due; first, as the last run left it.
	retry := time.NewTimer(0)
	defer retry.Stop()
	resend := time.NewTicker(30 * time.Second)
	defer resend.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
		case <-n.wake:
		case <-resend.C:
			if n.cfg.AlertmanagerURL != "" {
				var live []Instance
				for _, in := range firing() {
					if in.SilencedUntil < time.Now().UnixMilli() {
						live = append(live, in)
					}
				}
				if len(live) > 0 {
					n.record("alertmanager", n.toAlertmanager(ctx, live))
				}
			}
			continue
		}
		if next, ok := n.deliver(ctx); ok {
			retry.Reset(time.Until(time.UnixMilli(next)))
		} else {
			retry.Stop()
		}
	}
}

// deliver sends what is due in the queue, oldest first; a receiver that
// fails is not sent anything later in this round, so that a resolution
// never overtakes its firing. It returns when what is left is next due
// (Unix ms), and false when nothing is left.
func (n *Notifier) deliver(ctx context.Context) (int64, bool) {
	docs, err := n.cfg.Store.List(ctx, "alert-outbox")
	if err != nil {
		if n.warn.Allow() {
			n.log.Error("reading the alert notification queue", "error", err)
		}
		return time.Now().Add(time.Second).UnixMilli(), true
	}
	now := time.Now().UnixMilli()
	// A receiver's entries wait behind its first one not sent: until
	// that one is due.
	waiting := map[string]int64{}
	for _, d := range docs {
		var e outboxEntry
		if json.Unmarshal(d, &e) != nil || e.Key == "" {
			continue
		}
		if _, ok := waiting[e.Receiver]; ok {
			continue
		}
		if e.NextAt > now {
			waiting[e.Receiver] = e.NextAt
			continue
		}
		var err error
		switch e.Receiver {
		case "alertmanager":
			err = n.toAlertmanager(ctx, []Instance{e.Alert})
		case silenceReceiver:
			err = n.syncSilence(ctx, e.Alert)
		default:
			err = n.toWebhook(ctx, e.Receiver, e.Alert)
		}
		n.record(e.Receiver, err)
		if err == nil {
			n.cfg.Store.Delete(ctx, "alert-outbox", e.Key)
			continue
		}
		e.Attempts++
		e.NextAt = now + min(int64(1000)<<min(e.Attempts-1, 6), 60_000)
		waiting[e.Receiver] = e.NextAt
		b, _ := json.Marshal(e)
		n.cfg.Store.Put(ctx, "alert-outbox", e.Key, b)
	}
	if len(waiting) == 0 {
		return 0, false
	}
	return slices.Min(slices.Collect(maps.Values(waiting))), true
}

func kind(receiver string) string {
	if receiver == "alertmanager" || receiver == silenceReceiver {
		return "alertmanager"
	}
	return "webhook"
}

func (n *Notifier) record(receiver string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err == nil {
		n.sent.WithLabelValues(kind(receiver)).Inc()
		n.lastErr[receiver] = ""
		return
	}
	n.failed.WithLabelValues(kind(receiver)).Inc()
	n.lastErr[receiver] = err.Error()
	if n.warn.Allow() {
		n.log.Warn("delivering an alert notification failed; it is retried", "receiver", receiver, "error", err)
	}
}

// Delivery is how notifications to one receiver fare.
type Delivery struct {
	Receiver  string `json:"receiver"`
	Queued    int    `json:"queued"`
	LastError string `json:"last_error,omitempty"`
}

// Deliveries says, for each receiver, what waits in the queue and why the
// last attempt failed, if it did.
func (n *Notifier) Deliveries(ctx context.Context) ([]Delivery, error) {
	docs, err := n.cfg.Store.List(ctx, "alert-outbox")
	if err != nil {
		return nil, err
	}
	queued := map[string]int{}
	for _, d := range docs {
		var e outboxEntry
		if json.Unmarshal(d, &e) == nil {
			queued[e.Receiver]++
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Delivery
	seen := map[string]bool{}
	for r, msg := range n.lastErr {
		out = append(out, Delivery{Receiver: r, Queued: queued[r], LastError: msg})
		seen[r] = true
	}
	for r, q := range queued {
		if !seen[r] {
			out = append(out, Delivery{Receiver: r, Queued: q})
		}
	}
	return out, nil
}

// amAlert is an alert as Alertmanager takes and sends it.
type amAlert struct {
	Status       string            `json:"status,omitempty"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint,omitempty"`
}

func (n *Notifier) amAlert(in Instance) amAlert {
	a := amAlert{
		Status: "firing",
		Labels: map[string]string{"alertname": in.Name, "device": in.Device, "metric": in.Metric, "severity": in.Severity, "rule": in.Rule},
		Annotations: map[string]string{"summary": in.Device + ": " + in.Summary,
			"value": string(devices.AppendNumber(nil, in.Value))},
		StartsAt:     time.UnixMilli(in.FiredAt).UTC(),
		GeneratorURL: strings.TrimSuffix(n.cfg.ExternalURL, "/") + "/devices/" + in.Device,
	}
	if in.Runbook != "" {
		a.Annotations["runbook"] = in.Runbook
	}
	if in.AckedBy != "" {
		a.Annotations["acknowledged_by"] = in.AckedBy
	}
	if in.State == StateResolved {
		a.Status, a.EndsAt = "resolved", time.UnixMilli(in.ResolvedAt).UTC()
	}
	sum := sha256.Sum256([]byte(in.Key))
	a.Fingerprint = hex.EncodeToString(sum[:8])
	return a
}

// toWebhook posts in in Alertmanager's webhook format (version 4), so that
// receivers written for Alertmanager take it as they are.
func (n *Notifier) toWebhook(ctx context.Context, url string, in Instance) error {
	a := n.amAlert(in)
	body, _ := json.Marshal(map[string]any{
		"version": "4", "receiver": "iotdash", "status": a.Status, "truncatedAlerts": 0,
		"groupKey":          "{}:{rule=\"" + in.Rule + "\", device=\"" + in.Device + "\", metric=\"" + in.Metric + "\"}",
		"groupLabels":       map[string]string{"alertname": in.Name},
		"commonLabels":      a.Labels,
		"commonAnnotations": a.Annotations,
		"externalURL":       n.cfg.ExternalURL,
		"alerts":            []amAlert{a},
	})
	return n.post(ctx, url, body)
}

// toAlertmanager posts alerts to Alertmanager's API (v2). A firing alert
// ends in five minutes unless sent again (Run sends it every 30 s); a
// resolved one ends when it cleared.
func (n *Notifier) toAlertmanager(ctx context.Context, ins []Instance) error {
	as := make([]amAlert, len(ins))
	for i, in := range ins {
		as[i] = n.amAlert(in)
		as[i].Status, as[i].Fingerprint = "", ""
		if in.State != StateResolved {
			as[i].EndsAt = time.Now().Add(5 * time.Minute).UTC()
		}
	}
	body, _ := json.Marshal(as)
	return n.post(ctx, strings.TrimSuffix(n.cfg.AlertmanagerURL, "/")+"/api/v2/alerts", body)
}

// silenceBy marks the silences iotdash makes, so that it expires only
// its own.
const silenceBy = "iotdash"

// ackHorizon is how long an acknowledged alert's silence in Alertmanager
// lasts if the alert does not resolve first.
const ackHorizon = 30 * 24 * time.Hour

// syncSilence makes in's silence in Alertmanager what in says: it
// expires the silences iotdash made for the alert, then, if the alert
// fires acknowledged or silenced, makes one that matches it (its rule,
// device and metric labels) until it resolves. Each step is safe to
// repeat, so a retry after a failure halfway makes no second silence.
func (n *Notifier) syncSilence(ctx context.Context, in Instance) error {
	base := strings.TrimSuffix(n.cfg.AlertmanagerURL, "/")
	matchers := []map[string]any{
		{"name": "rule", "value": in.Rule, "isRegex": false, "isEqual": true},
		{"name": "device", "value": in.Device, "isRegex": false, "isEqual": true},
	}
	filter := url.Values{"filter": {fmt.Sprintf("rule=%q", in.Rule), fmt.Sprintf("device=%q", in.Device)}}
	if in.Metric != "" {
		matchers = append(matchers, map[string]any{"name": "metric", "value": in.Metric, "isRegex": false, "isEqual": true})
		filter.Add("filter", fmt.Sprintf("metric=%q", in.Metric))
	}
	var existing []struct {
		ID        string `json:"id"`
		CreatedBy string `json:"createdBy"`
		Status    struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := n.call(ctx, http.MethodGet, base+"/api/v2/silences?"+filter.Encode(), nil, &existing); err != nil {
		return err
	}
	for _, s := range existing {
		if s.Status.State != "expired" && strings.HasPrefix(s.CreatedBy, silenceBy) {
			if err := n.call(ctx, http.MethodDelete, base+"/api/v2/silence/"+url.PathEscape(s.ID), nil, nil); err != nil {
				return err
			}
		}
	}
	now := time.Now()
	if in.State != StateFiring || (in.AckedBy == "" && in.SilencedUntil <= now.UnixMilli()) {
		return nil
	}
	ends := now.Add(ackHorizon)
	if in.SilencedUntil > now.UnixMilli() {
		ends = time.UnixMilli(in.SilencedUntil) // a silence for a while: that while
	}
	comment := "Acknowledged in iotdash"
	if in.AckComment != "" {
		comment += ": " + in.AckComment
	}
	body, _ := json.Marshal(map[string]any{"matchers": matchers, "startsAt": now.UTC(), "endsAt": ends.UTC(),
		"createdBy": silenceBy + " (" + in.AckedBy + ")", "comment": comment})
	return n.call(ctx, http.MethodPost, base+"/api/v2/silences", body, nil)
}

func (n *Notifier) post(ctx context.Context, url string, body []byte) error {
	return n.call(ctx, http.MethodPost, url, body, nil)
}

// call sends a request with a JSON body (nil for none) and reads a JSON
// answer into out (if not nil); an answer other than 2xx is an error.
func (n *Notifier) call(ctx context.Context, method, url string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "iotdash")
	if len(n.cfg.Secret) > 0 {
		mac := hmac.New(sha256.New, n.cfg.Secret)
		mac.Write(body)
		req.Header.Set("X-Iotdash-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s answered %s", method, url, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
			return fmt.Errorf("%s %s: reading the answer: %w", method, url, err)
		}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}
