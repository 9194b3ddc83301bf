//go:build !linux

package main

import (
	"net"
	"time"
)

// rxClock: kernel receive timestamps are used on Linux only.
func rxClock(*net.UDPConn) bool { return false }

func rxTime([]byte) time.Time { return time.Time{} }
