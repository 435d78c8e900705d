package testenv

import (
	"io"
	"net/http"
	"os"
	"testing"
)

// SaveProfile fetches a profile from url (a /debug/pprof/ address of a
// running iotdash) into path. A benchmark runs it beside the load, so a
// failure is logged, not fatal: the figures stand without the profile.
func SaveProfile(t testing.TB, url, path string) {
	resp, err := http.Get(url)
	if err != nil {
		t.Logf("profile: %v", err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(path, data, 0o644)
	}
	if err != nil {
		t.Logf("profile: %v", err)
	}
}
