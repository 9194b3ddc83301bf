//go:build unix

package broker

import (
	"fmt"
	"syscall"
)

// raiseOpenFiles raises the soft RLIMIT_NOFILE to the hard limit (the Go
// runtime already does this at start on Linux; this makes sure, on every
// Unix) and returns the soft limit now in force.
func raiseOpenFiles() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if r.Cur < r.Max {
		raised := syscall.Rlimit{Cur: r.Max, Max: r.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			r = raised
		}
	}
	return uint64(r.Cur), nil
}
