//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package client

import (
	"errors"
	"os"
)

var errLocked = errors.New("locked by another process")

// The client runs on Unix-like systems; elsewhere it refuses to share a
// state directory without locks.
func tryLockFile(*os.File) error { return errors.New("file locks are not supported on this system") }

func unlockFile(*os.File) error { return nil }
