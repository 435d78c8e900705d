package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"iotdash/devices"
)

// Registry keeps the fleet (devices.Registry) in a SQLite file of its own,
// one JSON document per device, so that it outlives a restart whichever
// store holds the readings.
type Registry struct {
	db   *sql.DB
	save *sql.Stmt
}

var _ devices.Registry = (*Registry)(nil)

// OpenStateFile opens the SQLite file at path that keeps iotdash's own
// state (the fleet, and whatever else one instance keeps: people, device
// credentials), creating it (readable by its owner only) when it does not
// exist, and runs schema, each statement idempotent (CREATE … IF NOT
// EXISTS). Every part opens it with its own schema; one process may hold
// several handles on the file.
func OpenStateFile(path string, schema ...string) (*sql.DB, error) {
	if strings.ContainsAny(path, "?#") {
		return nil, devices.Errorf(devices.EInvalid, "state file path %q must not hold a '?' or '#'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, unavailable("state directory", err)
	}
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600); err == nil {
		f.Close()
	}
	v := url.Values{}
	v.Add("_pragma", "busy_timeout(10000)")
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "synchronous(FULL)")
	db, err := sql.Open("sqlite", path+"?"+v.Encode()+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	for _, stmt := range schema {
		if _, err := db.ExecContext(context.Background(), stmt); err != nil {
			db.Close()
			return nil, unavailable("state file schema", err)
		}
	}
	return db, nil
}

// OpenRegistry opens the registry in the file at path, creating it (readable
// by its owner only) when it does not exist.
func OpenRegistry(path string) (*Registry, error) {
	db, err := OpenStateFile(path, `CREATE TABLE IF NOT EXISTS devices (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID`)
	if err != nil {
		return nil, err
	}
	r := &Registry{db: db}
	if r.save, err = db.Prepare(`INSERT INTO devices (id, doc) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc`); err != nil {
		db.Close()
		return nil, unavailable("registry", err)
	}
	return r, nil
}

// Load returns every saved device. A document that cannot be read (from a
// newer version, or damaged) is left out.
func (r *Registry) Load(ctx context.Context) ([]devices.Device, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT id, doc FROM devices ORDER BY id`)
	if err != nil {
		return nil, unavailable("registry", err)
	}
	defer rows.Close()
	var out []devices.Device
	for rows.Next() {
		var id, doc string
		if err := rows.Scan(&id, &doc); err != nil {
			return nil, unavailable("registry", err)
		}
		var d devices.Device
		if json.Unmarshal([]byte(doc), &d) != nil || d.ID != id {
			continue
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("registry", err)
	}
	return out, nil
}

// Save writes ds in one transaction, durably.
func (r *Registry) Save(ctx context.Context, ds []devices.Device) error {
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return unavailable("registry", err)
	}
	defer tx.Rollback()
	st := tx.StmtContext(ctx, r.save)
	for _, d := range ds {
		doc, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("registry: %s: %w", d.ID, err)
		}
		if _, err := st.ExecContext(ctx, d.ID, doc); err != nil {
			return unavailable("registry", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return unavailable("registry", err)
	}
	return nil
}

// Close closes the file.
func (r *Registry) Close() error { return r.db.Close() }
