//go:build !linux

package journal

import "os"

// datasync flushes f: elsewhere than Linux, with fsync.
func datasync(f *os.File) error { return f.Sync() }
