package dnssec

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkSign is the cost of one answer's signatures: made (a cache
// miss: a new RRset each time) and from the cache (the same RRset).
//
//	go test -run '^$' -bench Sign -cpu 1 ./internal/dnssec/
func BenchmarkSign(b *testing.B) {
	for _, alg := range []uint8{ECDSAP256SHA256, ED25519} {
		ks, _ := NewKeyset(testZone, alg, false, time.Now())
		s, _ := NewSigner(SignerConfig{Zone: testZone}, ks)
		b.Run(AlgorithmName(alg)+"/miss", func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				if _, err := s.Sign(nil, txtSet(fmt.Sprintf("n%d.%s", i, testZone), "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo", 1)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(AlgorithmName(alg)+"/hit", func(b *testing.B) {
			set := txtSet("hit."+testZone, "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo", 1)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sign(nil, set); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
