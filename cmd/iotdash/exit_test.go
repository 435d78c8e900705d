package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"iotdash/internal/testenv"
)

// TestExitCodes: the built binary exits 0 for -h, 2 for a mistake in its
// flags or environment (named in one line), and 1 for a failure at run
// time.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, c := range []struct {
		args []string
		env  string
		code int
		says string
	}{
		{[]string{"-h"}, "", 0, "Usage"},
		{[]string{"-bogus"}, "", 2, "-bogus"},
		{nil, "IOTDASH_SIMULATE=twelve", 2, `IOTDASH_SIMULATE="twelve" is not a whole number`},
		{nil, "IOTDASH_SIMULATE_INTERVAL=often", 2, `IOTDASH_SIMULATE_INTERVAL="often" is not a duration`},
		{[]string{"-log-level", "loud"}, "", 2, "-log-level"},
		{[]string{"-alert-history", "0"}, "", 2, "-alert-history must be positive"},
		{[]string{"-board-follow", "10ms"}, "", 2, "-board-follow 10ms is less than a second"},
		{[]string{"-mqtt-connections", "0"}, "", 2, "-mqtt-connections 0 is not between 1 and 64"},
		{[]string{"-mqtt-read-pause", "1s"}, "", 2, "-mqtt-read-pause 1s is not between 0 and 10ms"},
		{[]string{"-http", taken.Addr().String()}, "", 1, "-http"},
	} {
		cmd := exec.Command(bin, append([]string{"-data", t.TempDir(), "-broker", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}, c.args...)...)
		cmd.Env = os.Environ()
		if c.env != "" {
			cmd.Env = append(cmd.Env, c.env)
		}
		if !strings.Contains(strings.Join(c.args, " "), "-http") {
			cmd.Args = append(cmd.Args, "-http", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))
		}
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if code != c.code || !strings.Contains(string(out), c.says) {
			t.Errorf("iotdash %v %s: exit %d, want %d saying %q:\n%s", c.args, c.env, code, c.code, c.says, out)
		}
	}
}
