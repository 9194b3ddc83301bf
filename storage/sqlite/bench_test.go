package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// BenchmarkFsync measures what one durable commit costs at least on this
// disk: append 4 KiB (a WAL frame) and fsync.
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for b.Loop() {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fsyncs/s")
}

// BenchmarkSetTXTParallel runs SetTXT from about 8 goroutines, each on its
// own subdomain, with the default policy. "fsync+5ms" holds the writer 5 ms
// after every commit, as a VM disk with a slow fsync would. writes/commit is
// the average group-commit batch.
func BenchmarkSetTXTParallel(b *testing.B) {
	for _, bc := range []struct {
		name    string
		callers int
		delay   time.Duration
	}{
		{"callers=8", 8, 0},
		{"callers=8/fsync+5ms", 8, 5 * time.Millisecond},
		{"callers=1", 1, 0},
		{"callers=1/fsync+5ms", 1, 5 * time.Millisecond},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var commits, writes atomic.Int64
			st, _ := openTemp(b, hooks{afterCommit: func(n int) {
				commits.Add(1)
				writes.Add(int64(n))
				if bc.delay > 0 {
					time.Sleep(bc.delay)
				}
			}})
			const subs = 64
			for i := range subs {
				mustCreate(b, st, acct(i))
			}
			commits.Store(0)
			writes.Store(0)
			var next atomic.Int64
			procs := runtime.GOMAXPROCS(0)
			b.SetParallelism((bc.callers + procs - 1) / procs)
			if bc.callers == 1 {
				// SetParallelism cannot go below GOMAXPROCS goroutines.
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if _, _, err := st.SetTXT(context.Background(), "sub-0", fmt.Sprint(i%40), time.Now(), storage.DefaultTXTPolicy); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					g := next.Add(1)
					sub := acct(int(g % subs)).Subdomain
					for i := 0; pb.Next(); i++ {
						if _, _, err := st.SetTXT(context.Background(), sub, fmt.Sprint(i%40), time.Now(), storage.DefaultTXTPolicy); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			if c := commits.Load(); c > 0 {
				b.ReportMetric(float64(writes.Load())/float64(c), "writes/commit")
			}
		})
	}
}

// BenchmarkAccount reads accounts from parallel goroutines (the API's
// authentication path).
func BenchmarkAccount(b *testing.B) {
	st, _ := openTemp(b, hooks{})
	const n = 1000
	fillAccounts(b, st, n)
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1) * 7919
		for pb.Next() {
			i++
			if _, err := st.Account(context.Background(), fmt.Sprintf("user-%d", i%n)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkSnapshot1M streams a million accounts (half with two values) and
// reports the peak heap in use while doing so.
func BenchmarkSnapshot1M(b *testing.B) { benchSnapshot(b, 0) }

// BenchmarkSnapshot1MPersist is BenchmarkSnapshot1M with one account in a
// hundred holding two dns-persist-01 records (read in one pass into memory
// before the accounts stream), a generous share: they are rare.
func BenchmarkSnapshot1MPersist(b *testing.B) { benchSnapshot(b, 100) }

func benchSnapshot(b *testing.B, persistEvery int) {
	st, _ := openTemp(b, hooks{})
	const n = 1_000_000
	fillAccounts(b, st, n)
	if persistEvery > 0 {
		const sub = `printf('%08x-0000-4000-8000-%012d', (i * 2654435761) % 4294967296, i)`
		if _, err := st.wconn.ExecContext(context.Background(), `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + ?1 FROM n WHERE i + ?1 < ?2)
			INSERT INTO persist_records (subdomain, issuer, account_uri, policy, persist_until, set_at)
			SELECT `+sub+`, 'letsencrypt.org', printf('https://acme-v02.api.letsencrypt.org/acme/acct/%d', i), 'wildcard', 0, 1 FROM n
			UNION ALL
			SELECT `+sub+`, 'pebble.letsencrypt.org', printf('https://127.0.0.1:14000/my-account/%d', i), '', 4102444800, 1 FROM n`,
			persistEvery, n); err != nil {
			b.Fatal(err)
		}
	}
	// Copy the fill's WAL into the database now, so that the background
	// checkpointer's work on it does not land in the timed passes.
	if _, err := st.wconn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseHeap := ms.HeapInuse
	var peak uint64
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for b.Loop() {
		count, persist := 0, 0
		if _, err := st.Snapshot(context.Background(), func(s storage.Subdomain) error {
			count++
			persist += len(s.Persist)
			if count%100_000 == 0 {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if count != n {
			b.Fatalf("%d subdomains, want %d", count, n)
		}
		if want := 0; persistEvery > 0 && persist != 2*n/persistEvery || persistEvery == 0 && persist != want {
			b.Fatalf("%d persist records", persist)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "subdomains/s")
	b.ReportMetric(float64(peak-min(peak, baseHeap))/(1<<20), "MiB-heap-growth")
	// CPU time of the whole process (SQLite's C code included) per pass:
	// unlike ns/op, hardly moved by other work on a shared machine.
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
