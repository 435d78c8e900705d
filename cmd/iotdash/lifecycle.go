package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"
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

// closers runs shutdown steps in reverse order of registration, keeping the
// first error.
type closers []func() error

func (cs *closers) add(f func() error) { *cs = append(*cs, f) }

func (cs closers) close() error {
	var first error
	for i := len(cs) - 1; i >= 0; i-- {
		if err := cs[i](); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// task runs f in a goroutine and returns a function that cancels it and
// waits for it to end.
func task(parent context.Context, f func(ctx context.Context)) func() error {
	ctx, cancel := context.WithCancel(parent)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); f(ctx) }()
	return func() error { cancel(); wg.Wait(); return nil }
}
