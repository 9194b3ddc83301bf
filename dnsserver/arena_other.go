//go:build !unix

package dnsserver

func newRings(_ *answerCache, count, n int) [][]byte {
	rings := make([][]byte, count)
	for i := range rings {
		rings[i] = make([]byte, n)
	}
	return rings
}
