//go:build unix

package dnsserver

import (
	"runtime"
	"syscall"
)

// newRings returns the rings of the answer cache c, n bytes each, mapped
// outside the Go heap: the garbage collector neither scans them (they hold
// no pointers anyway) nor counts them as live heap when it decides when to
// run next, so a large cache does not let the garbage of cache misses grow
// to its size. Untouched pages cost nothing. The mappings are released
// when c is no longer reachable.
func newRings(c *answerCache, count, n int) [][]byte {
	rings := make([][]byte, count)
	var mapped [][]byte
	for i := range rings {
		b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			b = make([]byte, n)
		} else {
			mapped = append(mapped, b)
		}
		rings[i] = b
	}
	runtime.AddCleanup(c, func(m [][]byte) {
		for _, b := range m {
			_ = syscall.Munmap(b)
		}
	}, mapped)
	return rings
}
