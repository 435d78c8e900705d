package limit_test

import (
	"testing"

	"iotdash/internal/limit"
)

// RaiseOpenFiles never lowers the limit, and asked for what is already
// allowed it says so without an error.
func TestRaiseOpenFiles(t *testing.T) {
	now, err := limit.RaiseOpenFiles(1)
	if err != nil || now < 1 {
		t.Fatalf("RaiseOpenFiles(1) = %d, %v; want the limit in force and no error", now, err)
	}
	again, err := limit.RaiseOpenFiles(now)
	if err != nil || again != now {
		t.Fatalf("RaiseOpenFiles(%d) = %d, %v; want it unchanged", now, again, err)
	}
	// Past the hard limit: raised where the process may (root), else the
	// limit in force and an error; never lower than before.
	if got, err := limit.RaiseOpenFiles(now + 1000); got < now || (err == nil && got != now+1000) {
		t.Fatalf("RaiseOpenFiles(%d) = %d, %v", now+1000, got, err)
	}
}
