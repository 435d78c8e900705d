//go:build !unix

package limit

// RaiseOpenFiles does nothing where there is no RLIMIT_NOFILE; it returns
// want, as no such limit holds the process back.
func RaiseOpenFiles(want uint64) (uint64, error) { return want, nil }
