package testenv

import (
	"bytes"
	"fmt"
	"os/exec"
	"runtime/pprof"
	"syscall"
	"time"
)

// StopWithin is how long iotdash has, once told to stop, to exit before a
// test calls it hung.
const StopWithin = 30 * time.Second

// dumpWithin is how long a hung program has to write its goroutines.
const dumpWithin = 5 * time.Second

// Terminate sends cmd SIGTERM, as a service manager or an operator's Ctrl-C
// does, and waits for its exit on exited (cmd.Wait's result). A program that
// has not exited within StopWithin is sent SIGQUIT, on which a Go program
// writes every goroutine's stack to its stderr: what holds it up is then in
// the output the test logs. It is killed if it has not exited a few seconds
// later. On return the program has exited, and exited has been read.
func Terminate(cmd *exec.Cmd, exited <-chan error) error {
	cmd.Process.Signal(syscall.SIGTERM)
	err, hang := awaitStop(exited, "of SIGTERM", func() string {
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
			return "sent SIGQUIT: its goroutines are in its stderr"
		case <-time.After(dumpWithin):
			cmd.Process.Kill()
			<-exited
			return "sent SIGQUIT, then killed, as it had not exited " + dumpWithin.String() + " later"
		}
	})
	if err != nil {
		return fmt.Errorf("iotdash exited with %w after SIGTERM", err)
	}
	return hang
}

// AwaitReturn waits for the result, on returned, of iotdash's run in this
// process once its context is cancelled, and returns it. If run has not
// returned within StopWithin, it returns a hang error that carries every
// goroutine's stack in the process (as SIGQUIT would print them, without
// ending the tests).
func AwaitReturn(returned <-chan error) (runErr, hang error) {
	return awaitStop(returned, "of its context's end", func() string {
		var b bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&b, 2)
		return "the goroutines of the test process:\n" + b.String()
	})
}

// awaitStop returns what exited yields or, if it yields nothing within
// StopWithin, a hang error with what hung returns (how the hang was
// recorded).
func awaitStop(exited <-chan error, after string, hung func() string) (exitErr, hang error) {
	select {
	case err := <-exited:
		return err, nil
	case <-time.After(StopWithin):
		return nil, fmt.Errorf("iotdash did not stop within %v %s; %s", StopWithin, after, hung())
	}
}
