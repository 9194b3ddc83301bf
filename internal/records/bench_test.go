package records

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/acmebroker/acmebroker/storage"
)

// BenchmarkTXT looks up random registered names in an index of n accounts
// holding two values each: the DNS server's per-query work on the data.
func BenchmarkTXT(b *testing.B) {
	for _, n := range []int{500, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			now := time.Now()
			x := New(storage.DefaultTXTPolicy, func() time.Time { return now })
			names := make([]string, n)
			for i := range names {
				names[i] = uuid.NewString()
				x.Set(names[i], []storage.TXTRecord{
					{Value: fmt.Sprintf("%043d", i), UpdatedAt: now.Add(-time.Hour)},
					{Value: fmt.Sprintf("%043d", i+1), UpdatedAt: now.Add(-time.Hour - time.Second)},
				}, 1)
			}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapAlloc)/float64(n), "heap-B/account")
			rng := rand.New(rand.NewPCG(1, 2))
			dst := make([]string, 0, 16)
			b.ResetTimer()
			for b.Loop() {
				dst, _ = x.TXT(dst[:0], names[rng.IntN(n)])
			}
		})
	}
}
