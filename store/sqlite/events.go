package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"iotdash/devices"
)

// DefaultEventsPerDevice is how many events Events keeps of each device
// when OpenEvents is given 0: the newest, by when they began. A device
// that changes presence every minute keeps about the last 8 hours of it;
// one that changes a few times a day, months.
const DefaultEventsPerDevice = 1000

// Events keeps the fleet's events (devices.EventLog: presence episodes and
// out-of-range episodes) in iotdash's state file, the newest few of each
// device (see OpenEvents).
type Events struct {
	db        *sql.DB
	perDevice int
}

var _ devices.EventLog = (*Events)(nil)

// OpenEvents opens the events in the state file at path (see
// OpenStateFile), keeping at most perDevice of each device
// (DefaultEventsPerDevice if perDevice <= 0): each Record drops the
// oldest beyond them of the devices it wrote.
func OpenEvents(path string, perDevice int) (*Events, error) {
	db, err := OpenStateFile(path,
		`CREATE TABLE IF NOT EXISTS events (device TEXT NOT NULL, kind TEXT NOT NULL, metric TEXT NOT NULL, start INTEGER NOT NULL,
			stop INTEGER NOT NULL, status TEXT NOT NULL, peak REAL NOT NULL, low REAL NOT NULL, high REAL NOT NULL,
			PRIMARY KEY (device, kind, metric, status, start)) WITHOUT ROWID`,
		`CREATE INDEX IF NOT EXISTS events_by_device ON events (device, start)`,
		`CREATE INDEX IF NOT EXISTS events_by_start ON events (start)`)
	if err != nil {
		return nil, err
	}
	if perDevice <= 0 {
		perDevice = DefaultEventsPerDevice
	}
	return &Events{db: db, perDevice: perDevice}, nil
}

// Record saves es in one transaction, durably: an event of a key already
// saved replaces it. It then drops, of each device in es, the events
// beyond the newest perDevice.
func (ev *Events) Record(ctx context.Context, es []devices.Event) error {
	tx, err := ev.db.BeginTx(ctx, nil)
	if err != nil {
		return unavailable("event log", err)
	}
	defer tx.Rollback()
	put, err := tx.PrepareContext(ctx, `INSERT INTO events (device, kind, metric, start, stop, status, peak, low, high) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (device, kind, metric, status, start) DO UPDATE SET stop = excluded.stop, peak = excluded.peak, low = excluded.low, high = excluded.high`)
	if err != nil {
		return unavailable("event log", err)
	}
	defer put.Close()
	touched := map[string]struct{}{}
	for _, e := range es {
		if _, err := put.ExecContext(ctx, e.Device, e.Kind, e.Metric, e.From, e.To, string(e.Status), e.Peak, e.Low, e.High); err != nil {
			return unavailable("event log", err)
		}
		touched[e.Device] = struct{}{}
	}
	prune, err := tx.PrepareContext(ctx, `DELETE FROM events WHERE device = ?1 AND start <
		(SELECT start FROM events WHERE device = ?1 ORDER BY start DESC LIMIT 1 OFFSET ?2)`)
	if err != nil {
		return unavailable("event log", err)
	}
	defer prune.Close()
	for d := range touched {
		if _, err := prune.ExecContext(ctx, d, ev.perDevice-1); err != nil {
			return unavailable("event log", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return unavailable("event log", err)
	}
	return nil
}

// Events returns the events q picks, newest first. An invalid q gives
// EInvalid.
func (ev *Events) Events(ctx context.Context, q devices.EventQuery) ([]devices.Event, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	if q.Device != "" {
		where, args = append(where, "device = ?"), append(args, q.Device)
	}
	if q.Kind != "" {
		where, args = append(where, "kind = ?"), append(args, q.Kind)
	}
	if q.To != 0 {
		where, args = append(where, "start < ?"), append(args, q.To)
	}
	if q.From != 0 {
		where, args = append(where, "(stop = 0 OR stop >= ?)"), append(args, q.From)
	}
	if q.Ongoing {
		where = append(where, "stop = 0")
	}
	query := `SELECT device, kind, metric, start, stop, status, peak, low, high FROM events`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += fmt.Sprintf(" ORDER BY start DESC, device, kind, metric LIMIT %d", q.Limit)
	rows, err := ev.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, unavailable("event log", err)
	}
	defer rows.Close()
	out := []devices.Event{}
	for rows.Next() {
		var e devices.Event
		var status string
		if err := rows.Scan(&e.Device, &e.Kind, &e.Metric, &e.From, &e.To, &status, &e.Peak, &e.Low, &e.High); err != nil {
			return nil, unavailable("event log", err)
		}
		e.Status = devices.Status(status)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("event log", err)
	}
	return out, nil
}

// Close closes the file.
func (ev *Events) Close() error { return ev.db.Close() }
