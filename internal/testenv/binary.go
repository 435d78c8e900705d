package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var iotdash struct {
	once sync.Once
	path string
	err  error
}

// Iotdash returns the path of the iotdash binary built from this module's
// source as it is now. It is built once per machine: into the user's cache
// under a hash of every file that goes into it (the tests aside), so that
// the packages whose tests run it (views, cmd/iotdash) share one build, at
// once or one after the other, until the source changes.
func Iotdash(t testing.TB) string {
	t.Helper()
	iotdash.once.Do(func() { iotdash.path, iotdash.err = buildIotdash("") })
	if iotdash.err != nil {
		t.Fatal(iotdash.err)
	}
	return iotdash.path
}

// IotdashVersion is Iotdash built as a release of version v would be
// (-ldflags -X iotdash/internal/version.Version=v): the same program under
// another version, as after an upgrade.
func IotdashVersion(t testing.TB, v string) string {
	t.Helper()
	bin, err := buildIotdash(v)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// buildIotdash builds cmd/iotdash, stamped with version v if not "".
func buildIotdash(v string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	sum, err := sourceHash(root)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "iotdash-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "iotdash-"+sum)
	var flags []string
	if v != "" {
		bin += "-" + v
		flags = []string{"-ldflags", "-X iotdash/internal/version.Version=" + v}
	}
	// One build at a time on the machine: the second package to ask
	// waits for the first's build and takes it.
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	tmp := bin + ".tmp"
	cmd := exec.Command("go", slices.Concat([]string{"build"}, flags, []string{"-o", tmp, "./cmd/iotdash"})...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	if v == "" {
		prune(dir, bin)
	}
	return bin, nil
}

// prune removes the builds of other sources no test has started for a day.
func prune(dir, keep string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if strings.HasPrefix(p, keep) || !strings.HasPrefix(e.Name(), "iotdash-") {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > 24*time.Hour {
			os.Remove(p)
		}
	}
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: no go.mod above the test's directory")
		}
		dir = parent
	}
}

// sourceKinds are the files that go into the binary: Go source and what
// it embeds.
var sourceKinds = []string{".go", ".mod", ".sum", ".js", ".css", ".json", ".yaml"}

// sourceHash is a hash of the names and contents of the module's files
// that go into the binary (not its tests, nor what .git, docs or testdata
// hold).
func sourceHash(root string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || name == "docs" || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, "_test.go") || !d.Type().IsRegular() || !slices.Contains(sourceKinds, filepath.Ext(name)) {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(h, "%s\x00", rel)
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
