package records

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func recs(now time.Time, ages ...time.Duration) []storage.TXTRecord {
	out := make([]storage.TXTRecord, len(ages))
	for i, a := range ages {
		out[i] = storage.TXTRecord{Value: string(rune('a' + i)), UpdatedAt: now.Add(-a)}
	}
	return out
}

func TestIndex(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	x := New(storage.TXTPolicy{Always: 2, Window: 10 * time.Minute, Max: 3}, clk.now)

	if _, ok := x.TXT(nil, "nobody"); ok {
		t.Fatal("unknown subdomain reported as registered")
	}
	x.Add("s1", 10)
	if v, ok := x.TXT(nil, "s1"); !ok || len(v) != 0 {
		t.Fatalf("registered, no values: %v %v", v, ok)
	}
	if x.Serial() != 10 {
		t.Fatalf("serial = %d", x.Serial())
	}

	x.Set("s1", recs(clk.now(), 0, time.Minute, 2*time.Minute, 3*time.Minute), 11)
	if v, _ := x.TXT(nil, "s1"); !slices.Equal(v, []string{"a", "b", "c"}) {
		t.Fatalf("Max not applied: %v", v)
	}
	clk.add(9 * time.Minute) // c is now 11 minutes old: out of the window
	if v, _ := x.TXT(nil, "s1"); !slices.Equal(v, []string{"a", "b"}) {
		t.Fatalf("window not applied: %v", v)
	}
	clk.add(time.Hour) // the 2 newest stay whatever their age
	if v, _ := x.TXT(nil, "s1"); !slices.Equal(v, []string{"a", "b"}) {
		t.Fatalf("2 newest dropped: %v", v)
	}

	// An older write arriving late does not overwrite a newer one.
	x.Set("s1", recs(clk.now(), 0), 9)
	if v, _ := x.TXT(nil, "s1"); len(v) != 2 {
		t.Fatalf("stale write applied: %v", v)
	}
	if x.Serial() != 11 {
		t.Fatalf("serial went back: %d", x.Serial())
	}
	// Add does not wipe values of a known subdomain.
	x.Add("s1", 12)
	if v, _ := x.TXT(nil, "s1"); len(v) != 2 {
		t.Fatalf("Add wiped values: %v", v)
	}
	if x.Len() != 1 {
		t.Fatalf("Len = %d", x.Len())
	}
}

func TestSerialArithmetic(t *testing.T) {
	if !serialLT(0, 1) || serialLT(1, 0) || !serialLT(0xfffffff0, 5) || serialLT(5, 0xfffffff0) || serialLT(7, 7) {
		t.Fatal("RFC 1982 comparison wrong")
	}
}

func TestIndexConcurrent(t *testing.T) {
	x := New(storage.DefaultTXTPolicy, time.Now)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				x.Set("s", recs(time.Now(), 0), uint32(g*1000+i+1))
				x.TXT(nil, "s")
			}
		}()
	}
	wg.Wait()
	if x.Serial() != 7500 {
		t.Fatalf("serial = %d, want the highest, 7500", x.Serial())
	}
}

func TestPruneMemoryAndStore(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p := storage.TXTPolicy{Always: 2, Window: 10 * time.Minute, Max: 16}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	nowFn := func() time.Time { return now }
	x := New(p, nowFn)
	for _, sub := range []string{"busy", "quiet"} {
		serial, err := st.CreateAccount(ctx, storage.Account{Username: sub + "-user", KeyHash: "h", Subdomain: sub, CreatedAt: now})
		if err != nil {
			t.Fatal(err)
		}
		x.Add(sub, serial)
	}
	for i := range 6 {
		recs, serial, err := st.SetTXT(ctx, "busy", fmt.Sprintf("v%d", i), now.Add(time.Duration(i)*time.Minute), p)
		if err != nil {
			t.Fatal(err)
		}
		x.Set("busy", recs, serial)
	}
	recs, serial, _ := st.SetTXT(ctx, "quiet", "q", now, p)
	x.Set("quiet", recs, serial)

	now = now.Add(13*time.Minute + 30*time.Second) // v0..v3 aged out; v4, v5 always kept
	subs, values, err := x.Prune(ctx, st)
	if err != nil || subs != 1 || values != 4 {
		t.Fatalf("Prune: %d subdomains, %d values, %v; want 1, 4", subs, values, err)
	}
	if got, _ := x.TXT(nil, "busy"); fmt.Sprint(got) != "[v5 v4]" {
		t.Fatalf("served after pruning: %v", got)
	}
	x.mu.RLock()
	inMemory := len(x.subs["busy"].recs)
	x.mu.RUnlock()
	if inMemory != 2 {
		t.Fatalf("%d values still held in memory", inMemory)
	}
	reloaded := New(p, nowFn)
	if err := reloaded.Load(ctx, st); err != nil {
		t.Fatal(err)
	}
	reloaded.mu.RLock()
	stored := len(reloaded.subs["busy"].recs)
	reloaded.mu.RUnlock()
	if stored != 2 {
		t.Fatalf("%d values still stored", stored)
	}
	if subs, values, _ := x.Prune(ctx, st); subs != 0 || values != 0 {
		t.Fatalf("second prune found %d/%d", subs, values)
	}
}
