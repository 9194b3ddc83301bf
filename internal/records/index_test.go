package records

import (
	"slices"
	"strings"
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

// held is the number of values the index holds for sub, served or not.
func (x *Index) held(sub string) int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, ok := x.find(sub)
	if !ok {
		return 0
	}
	if e := x.at(i); e.n >= 0 {
		return int(e.n)
	}
	return len(x.spill[i].recs)
}

func TestUUIDKey(t *testing.T) {
	for _, s := range []string{"d2121c1a-55ec-49c1-832c-695d6a198111", "00000000-0000-0000-0000-000000000000"} {
		if _, ok := uuidKey(s); !ok {
			t.Errorf("%s not taken as a UUID", s)
		}
	}
	for _, s := range []string{"D2121C1A-55EC-49C1-832C-695D6A198111", "d2121c1a55ec49c1832c695d6a198111", "d2121c1a-55ec-49c1-832c-695d6a19811g",
		"d2121c1a-55ec-49c1-832c-695d6a19811", "d2121c1a-55ec-49c1-832c_695d6a198111", "web1", ""} {
		if _, ok := uuidKey(s); ok {
			t.Errorf("%q taken as a canonical UUID", s)
		}
	}
	a, _ := uuidKey("d2121c1a-55ec-49c1-832c-695d6a198111")
	b, _ := uuidKey("d2121c1a-55ec-49c1-832c-695d6a198112")
	if a == b {
		t.Error("two UUIDs share a key")
	}
}

// TestInlineAndSpilled: names of both kinds, values in place and spilled,
// moving between the two as the number of values changes.
func TestInlineAndSpilled(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	x := New(storage.TXTPolicy{Always: 2, Window: 10 * time.Minute, Max: 16}, func() time.Time { return now })
	long := strings.Repeat("L", 100)
	names := []string{"d2121c1a-55ec-49c1-832c-695d6a198111", "web1"}
	for n, name := range names {
		serial := uint32(10 * (n + 1))
		x.Add(name, serial)
		steps := [][]storage.TXTRecord{
			recs(now, 0),
			recs(now, 0, time.Second),
			recs(now, 0, time.Second, 2*time.Second), // spills
			recs(now, 0),                             // back in place
			{{Value: long, UpdatedAt: now}},          // too long for in place
			nil,
		}
		for k, rs := range steps {
			serial++
			x.Set(strings.ToUpper(name), rs, serial) // any case in, one entry
			got, ok := x.TXT(nil, name)
			want := make([]string, len(rs))
			for i, r := range rs {
				want[i] = r.Value
			}
			if !ok || !slices.Equal(got, want) {
				t.Fatalf("%s step %d: %v %v, want %v", name, k, got, ok, want)
			}
		}
	}
	if x.Len() != 2 {
		t.Fatalf("Len %d", x.Len())
	}
	if _, ok := x.TXT(nil, "d2121c1a-55ec-49c1-832c-695d6a198112"); ok {
		t.Fatal("an unregistered UUID found")
	}
}

func TestRemove(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	x := New(storage.DefaultTXTPolicy, func() time.Time { return now })
	u := "d2121c1a-55ec-49c1-832c-695d6a198111"
	x.Set(u, recs(now, 0), 5)
	x.Set("web1", recs(now, 0, time.Second, 2*time.Second), 6) // spilled
	x.Remove(u, 7)
	x.Remove("WEB1", 8)
	for _, s := range []string{u, "web1"} {
		if _, ok := x.TXT(nil, s); ok {
			t.Fatalf("%s still served after Remove", s)
		}
	}
	if x.Len() != 0 || x.Serial() != 8 || len(x.spill) != 0 {
		t.Fatalf("Len %d, serial %d, spilled %d", x.Len(), x.Serial(), len(x.spill))
	}
	// The freed entry is reused, starting empty.
	x.Add("other", 9)
	if v, ok := x.TXT(nil, "other"); !ok || len(v) != 0 || x.count != 2 {
		t.Fatalf("reused entry: %v %v, %d allocated", v, ok, x.count)
	}
}
