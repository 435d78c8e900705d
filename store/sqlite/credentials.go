package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"iotdash/devices"
)

// Credentials keeps devices' MQTT credentials (broker.Credentials) in
// iotdash's state file: per device id, the hash of its secret and when it
// was made. It never sees a secret.
type Credentials struct {
	db *sql.DB
}

// OpenCredentials opens the device credentials in the state file at path
// (see OpenStateFile).
func OpenCredentials(path string) (*Credentials, error) {
	db, err := OpenStateFile(path, `CREATE TABLE IF NOT EXISTS device_credentials (device TEXT PRIMARY KEY, hash BLOB NOT NULL, created INTEGER NOT NULL) WITHOUT ROWID`)
	if err != nil {
		return nil, err
	}
	return &Credentials{db: db}, nil
}

// Add keeps hash as device id's secret hash, durably; a devices.EInvalid
// error if id already has one.
func (c *Credentials) Add(ctx context.Context, id string, hash []byte) error {
	res, err := c.db.ExecContext(ctx, `INSERT INTO device_credentials (device, hash, created) VALUES (?, ?, ?) ON CONFLICT (device) DO NOTHING`,
		id, hash, time.Now().UnixMilli())
	if err != nil {
		return unavailable("device credentials", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return devices.Errorf(devices.EInvalid, "device %q already has credentials; revoke them first", id)
	}
	return nil
}

// SecretHash returns device id's secret hash, or a devices.ENotFound error.
func (c *Credentials) SecretHash(ctx context.Context, id string) ([]byte, error) {
	var hash []byte
	err := c.db.QueryRowContext(ctx, `SELECT hash FROM device_credentials WHERE device = ?`, id).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, devices.Errorf(devices.ENotFound, "device %q has no credentials", id)
	}
	if err != nil {
		return nil, unavailable("device credentials", err)
	}
	return hash, nil
}

// List returns every device that has credentials, by id.
func (c *Credentials) List(ctx context.Context) ([]devices.Credential, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT device, created FROM device_credentials ORDER BY device`)
	if err != nil {
		return nil, unavailable("device credentials", err)
	}
	defer rows.Close()
	var out []devices.Credential
	for rows.Next() {
		var cr devices.Credential
		var ms int64
		if err := rows.Scan(&cr.Device, &ms); err != nil {
			return nil, unavailable("device credentials", err)
		}
		cr.Created = time.UnixMilli(ms).UTC()
		out = append(out, cr)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("device credentials", err)
	}
	return out, nil
}

// Revoke forgets device id's credentials, durably; a devices.ENotFound
// error if it had none.
func (c *Credentials) Revoke(ctx context.Context, id string) error {
	res, err := c.db.ExecContext(ctx, `DELETE FROM device_credentials WHERE device = ?`, id)
	if err != nil {
		return unavailable("device credentials", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return devices.Errorf(devices.ENotFound, "device %q has no credentials", id)
	}
	return nil
}

// Close closes the file.
func (c *Credentials) Close() error { return c.db.Close() }
