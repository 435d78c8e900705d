package sqlite_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"iotdash/broker"
	"iotdash/devices"
	"iotdash/store/sqlite"
)

var _ broker.Credentials = (*sqlite.Credentials)(nil)

// TestCredentials: a device's credentials are added once, read back by id,
// listed, kept across a reopen of the state file beside the registry, and
// revoked.
func TestCredentials(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fleet.db")
	reg, err := sqlite.OpenRegistry(path) // the same state file, another table
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	c, err := sqlite.OpenCredentials(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Add(ctx, "pump-1", []byte("hash-1")); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(ctx, "pump-1", []byte("hash-2")); devices.ErrorKind(err) != devices.EInvalid {
		t.Errorf("adding pump-1 again: got %v, want an %s error", err, devices.EInvalid)
	}
	if err := c.Add(ctx, "boiler", []byte("hash-3")); err != nil {
		t.Fatal(err)
	}
	c.Close()

	c, err = sqlite.OpenCredentials(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := c.SecretHash(ctx, "pump-1"); err != nil || !bytes.Equal(got, []byte("hash-1")) {
		t.Errorf("SecretHash(pump-1) = %q, %v; want hash-1", got, err)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 2 || list[0].Device != "boiler" || list[1].Device != "pump-1" || list[0].Created.IsZero() {
		t.Errorf("List = %v, %v; want boiler and pump-1 with their times", list, err)
	}
	if err := c.Revoke(ctx, "pump-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SecretHash(ctx, "pump-1"); devices.ErrorKind(err) != devices.ENotFound {
		t.Errorf("SecretHash of a revoked device: got %v, want %s", err, devices.ENotFound)
	}
	if err := c.Revoke(ctx, "pump-1"); devices.ErrorKind(err) != devices.ENotFound {
		t.Errorf("revoking twice: got %v, want %s", err, devices.ENotFound)
	}
}
