// Package version names the build of iotdash that runs, so that what may
// differ between two builds (a cached history answer, a page's scripts)
// is not taken from one for the other.
//
// It is not a release process: a release sets Version at link time; any
// other build is named by what Go stamps into it.
package version

import (
	"runtime/debug"
	"sync"
)

// Version is set at link time by a release
// (go build -ldflags "-X iotdash/internal/version.Version=1.2.0").
var Version string

// String is Version if set; else the module version Go stamps from the
// source's version control (a commit, "+dirty" when the tree had changes);
// else the commit alone; else "" (a build without any of them, such as
// go build -trimpath outside a repository, is not told from another).
func String() string { return name() }

var name = sync.OnceValue(func() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			return s.Value
		}
	}
	return ""
})
