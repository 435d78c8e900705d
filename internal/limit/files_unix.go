//go:build unix

package limit

import "syscall"

// RaiseOpenFiles raises the process's open-file limit (RLIMIT_NOFILE) to
// at least want where the system allows it: the soft limit up to the hard
// one (Go's os package has already done that much at start), and the hard
// one too for a process allowed to (root). It returns the soft limit in
// force afterwards; err says why it could not reach want.
func RaiseOpenFiles(want uint64) (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur >= want {
		return l.Cur, nil
	}
	raised := syscall.Rlimit{Cur: want, Max: max(l.Max, want)}
	err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised)
	if err == nil {
		return want, nil
	}
	// Not allowed past the hard limit: take what it allows.
	if l.Cur < l.Max && syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: l.Max, Max: l.Max}) == nil {
		l.Cur = l.Max
	}
	return l.Cur, err
}
