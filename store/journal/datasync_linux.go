package journal

import (
	"os"
	"syscall"
)

// datasync flushes f's data, and its metadata only where reading the data
// needs it (fdatasync(2)): with segments made ahead (preallocate) that is
// the data alone.
func datasync(f *os.File) error {
	return syscall.Fdatasync(int(f.Fd()))
}
