package alerts

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Episode is one firing of one alert: when it fired and cleared, how far
// into its condition it went, and who acknowledged it.
type Episode struct {
	// ID is the time it fired (Unix ms, 13 digits) and the alert's key:
	// IDs sort oldest first.
	ID    string `json:"id"`
	Alert string `json:"alert"`
	Subject
	// FiredAt and ResolvedAt are Unix ms; ResolvedAt is 0 while it fires.
	FiredAt    int64   `json:"fired_at"`
	ResolvedAt int64   `json:"resolved_at,omitempty"`
	Peak       float64 `json:"peak"`
	AckedBy    string  `json:"acked_by,omitempty"`
	AckComment string  `json:"ack_comment,omitempty"`
}

// DefaultMaxHistory is how many episodes are kept when Config.MaxHistory
// is 0: the oldest go first.
const DefaultMaxHistory = 10_000

func episodeOf(in Instance) Episode {
	return Episode{ID: fmt.Sprintf("%013d-%s", in.FiredAt, in.Key), Alert: in.Key, Subject: in.Subject, FiredAt: in.FiredAt,
		ResolvedAt: in.ResolvedAt, Peak: in.Peak, AckedBy: in.AckedBy, AckComment: in.AckComment}
}

// loadHistory reads the episodes the store holds, dropping the oldest
// beyond the bound.
func (e *Engine) loadHistory(ctx context.Context) error {
	docs, err := e.cfg.Store.List(ctx, "alert-episode")
	if err != nil {
		return err
	}
	for _, d := range docs {
		var ep Episode
		if json.Unmarshal(d, &ep) == nil && ep.ID != "" {
			e.history[ep.ID] = ep
		}
	}
	for _, id := range e.trimHistory() {
		if err := e.cfg.Store.Delete(ctx, "alert-episode", id); err != nil {
			return err
		}
	}
	return nil
}

// record saves the episode of a fired alert, as it stands, and drops the
// oldest beyond the bound.
func (e *Engine) record(ctx context.Context, in Instance) error {
	ep := episodeOf(in)
	b, _ := json.Marshal(ep)
	if err := e.cfg.Store.Put(ctx, "alert-episode", ep.ID, b); err != nil {
		return err
	}
	e.mu.Lock()
	e.history[ep.ID] = ep
	old := e.trimHistory()
	e.mu.Unlock()
	for _, id := range old {
		if err := e.cfg.Store.Delete(ctx, "alert-episode", id); err != nil {
			e.log.Warn("removing an old alert episode", "episode", id, "error", err)
		}
	}
	return nil
}

// trimHistory drops the oldest episodes beyond the bound and returns their
// IDs; e.mu held (or not yet shared).
func (e *Engine) trimHistory() []string {
	over := len(e.history) - e.cfg.MaxHistory
	if over <= 0 {
		return nil
	}
	ids := make([]string, 0, len(e.history))
	for id := range e.history {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids[:over] {
		delete(e.history, id)
	}
	return ids[:over]
}

// HistoryQuery picks episodes: those of a device, a rule, a severity (each
// if not ""), that fired at some time from From to To (Unix ms; 0 for no
// bound), at most Limit of them (100 if 0), newest first.
type HistoryQuery struct {
	Device, Rule, Severity string
	From, To               int64
	Limit                  int
}

// MaxHistoryLimit is the most episodes one query returns.
const MaxHistoryLimit = 1000

// History returns the episodes q picks, newest first.
func (e *Engine) History(q HistoryQuery) []Episode {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	q.Limit = min(q.Limit, MaxHistoryLimit)
	e.mu.Lock()
	out := []Episode{}
	for _, ep := range e.history {
		switch {
		case q.Device != "" && ep.Device != q.Device,
			q.Rule != "" && ep.Rule != q.Rule,
			q.Severity != "" && ep.Severity != q.Severity,
			q.To != 0 && ep.FiredAt > q.To,
			q.From != 0 && ep.ResolvedAt != 0 && ep.ResolvedAt < q.From:
			continue
		}
		out = append(out, ep)
	}
	e.mu.Unlock()
	slices.SortFunc(out, func(a, b Episode) int { return cmp.Or(cmp.Compare(b.FiredAt, a.FiredAt), strings.Compare(a.ID, b.ID)) })
	return out[:min(len(out), q.Limit)]
}
