package records

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/storage"
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
