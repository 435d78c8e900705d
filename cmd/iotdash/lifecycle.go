package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"
	"time"
)

// usageError is a mistake in the flags or the environment: exit code 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// exitCode says err and returns the exit code for it: 0 for none (and for
// -h), 2 for a usage mistake, 1 for a failure at run time.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "iotdash:", err)
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

// shutdownTimeout bounds the whole shutdown, every step of it: a part
// that has not stopped by then is left behind and named in the error.
const shutdownTimeout = 20 * time.Second

// closers runs shutdown steps in reverse order of registration, all within
// one deadline, keeping the first error. A step that waits is given the
// deadline's context.
type closers []func(ctx context.Context) error

func (cs *closers) add(f func(ctx context.Context) error) { *cs = append(*cs, f) }

func (cs closers) close(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var first error
	for i := len(cs) - 1; i >= 0; i-- {
		if err := cs[i](ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// closer is a shutdown step of a Close that waits for nothing.
func closer(f func() error) func(context.Context) error {
	return func(context.Context) error { return f() }
}

// task runs f, the part named what, in a goroutine and returns the
// shutdown step that cancels it and waits for it to end.
func task(parent context.Context, what string, f func(ctx context.Context)) func(context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); f(ctx) }()
	return func(sctx context.Context) error { cancel(); return wait(sctx, what, wg.Wait) }
}

// wait runs f and returns when it does, or with an error that names what
// when ctx ends first (f is left to finish on its own).
func wait(ctx context.Context, what string, f func()) error {
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shutdown: %s did not stop in time: %w", what, ctx.Err())
	}
}
