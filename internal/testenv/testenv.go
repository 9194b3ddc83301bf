// Package testenv decides what a test does when something it needs from the
// machine is missing (a PostgreSQL database, NSD, Knot, a tmpfs mount...):
// on a developer's machine it skips with a message that says how to get
// it; under CI (the environment variable CI set, as .ci/run does) it fails,
// so a missing tool can never turn a test into a silent skip.
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// Strict reports whether missing prerequisites fail tests instead of
// skipping them.
func Strict() bool { return os.Getenv("CI") != "" }

// Skip skips tb, or fails it under CI, with the message.
func Skip(tb testing.TB, args ...any) {
	tb.Helper()
	msg := fmt.Sprint(args...)
	if Strict() {
		tb.Fatal("CI is set, so this may not skip: " + msg)
	}
	tb.Skip(msg)
}

// Skipf is Skip with a format.
func Skipf(tb testing.TB, format string, args ...any) {
	tb.Helper()
	Skip(tb, fmt.Sprintf(format, args...))
}
