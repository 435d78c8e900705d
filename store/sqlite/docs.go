package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"iotdash/devices"
)

// Docs keeps documents by kind and key in iotdash's state file: users,
// sessions and API tokens (auth.Store), and what else one instance keeps
// that several will one day share.
type Docs struct {
	db *sql.DB
}

// OpenDocs opens the documents in the state file at path (see
// OpenStateFile).
func OpenDocs(path string) (*Docs, error) {
	db, err := OpenStateFile(path, `CREATE TABLE IF NOT EXISTS docs (kind TEXT NOT NULL, key TEXT NOT NULL, doc BLOB NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID`)
	if err != nil {
		return nil, err
	}
	return &Docs{db: db}, nil
}

// Get returns the document of kind and key, or a devices.ENotFound error.
func (d *Docs) Get(ctx context.Context, kind, key string) ([]byte, error) {
	var doc []byte
	err := d.db.QueryRowContext(ctx, `SELECT doc FROM docs WHERE kind = ? AND key = ?`, kind, key).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, devices.Errorf(devices.ENotFound, "no %s %q", kind, key)
	}
	if err != nil {
		return nil, unavailable("state file", err)
	}
	return doc, nil
}

// Put stores doc as the document of kind and key, durably.
func (d *Docs) Put(ctx context.Context, kind, key string, doc []byte) error {
	if _, err := d.db.ExecContext(ctx, `INSERT INTO docs (kind, key, doc) VALUES (?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc`, kind, key, doc); err != nil {
		return unavailable("state file", err)
	}
	return nil
}

// Delete removes the document of kind and key, if there is one.
func (d *Docs) Delete(ctx context.Context, kind, key string) error {
	if _, err := d.db.ExecContext(ctx, `DELETE FROM docs WHERE kind = ? AND key = ?`, kind, key); err != nil {
		return unavailable("state file", err)
	}
	return nil
}

// List returns every document of kind, by key.
func (d *Docs) List(ctx context.Context, kind string) ([][]byte, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT doc FROM docs WHERE kind = ? ORDER BY key`, kind)
	if err != nil {
		return nil, unavailable("state file", err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return nil, unavailable("state file", err)
		}
		out = append(out, doc)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("state file", err)
	}
	return out, nil
}

// Close closes the file.
func (d *Docs) Close() error { return d.db.Close() }
