// Package storetest is the conformance suite every storage backend passes:
// the same readings written, the same queries asked, the same answers
// required, computed here from the readings rather than read back from a
// store.
package storetest

import (
	"context"
	"testing"

	"iotdash/devices"
	"iotdash/store"
)

// Store is what the suite needs of a backend.
type Store interface {
	// Append stores readings durably before it returns. Storing a reading
	// that is already there (same device, metric and time) changes nothing
	// but its value.
	Append(ctx context.Context, rs []devices.Reading) error
	// Query answers q; see store.Query.
	Query(ctx context.Context, q store.Query) ([]store.Point, error)
}

// Run runs the suite. open returns a new, empty store for each subtest; the
// store must be closed by open's own t.Cleanup. Device names are unique per
// subtest, so a backend that cannot be emptied (a shared InfluxDB) still
// passes.
func Run(t *testing.T, open func(t *testing.T) Store) {
	_ = context.Background
	t.Fatal("storetest: not written yet")
}
