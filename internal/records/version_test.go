package records

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// TestVersions: every change of what TXT returns for a name moves its
// version (so the DNS answer cache drops what it built from it), reads do
// not, and TXTStamped says when the values served change by age alone.
func TestVersions(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	policy := storage.TXTPolicy{Always: 2, Window: 10 * time.Minute, Max: 16}
	x := New(policy, clock)
	const sub = "d2121c1a-55ec-49c1-832c-695d6a198111"
	other := "other"
	for i := 0; x.vers.ref(other) == x.vers.ref(sub); i++ { // a name with its own counter
		other = fmt.Sprintf("other%d", i)
	}
	stamp := func(name string) (uint32, []string) {
		t.Helper()
		vals, _, st := x.TXTStamped(nil, name)
		if cur := x.Version(st.Ref); cur != st.Version {
			t.Fatalf("%s: stamp version %d, counter %d", name, st.Version, cur)
		}
		return st.Version, vals
	}
	moves := func(what string, change func()) {
		t.Helper()
		before, _ := stamp(sub)
		otherBefore, _ := stamp(other)
		change()
		if after, _ := stamp(sub); after == before {
			t.Fatalf("%s: version of %s did not move", what, sub)
		}
		if after, _ := stamp(other); after != otherBefore {
			t.Fatalf("%s: version of an unrelated name moved", what)
		}
	}
	moves("add", func() { x.Add(sub, 1) })
	moves("set", func() { x.Set(sub, []storage.TXTRecord{{Value: "a", UpdatedAt: now}}, 2) })
	moves("set again", func() {
		x.Set(sub, []storage.TXTRecord{{Value: "c", UpdatedAt: now}, {Value: "b", UpdatedAt: now.Add(-time.Minute)},
			{Value: "a", UpdatedAt: now.Add(-2 * time.Minute)}}, 3)
	})
	v, _ := stamp(sub)
	x.TXT(nil, sub)
	if again, _ := stamp(sub); again != v {
		t.Fatal("a read moved the version")
	}
	// Three values: the oldest beyond the always-kept two leaves the window
	// 10 minutes after it was set; that is when the answer changes.
	_, _, st := x.TXTStamped(nil, sub)
	if want := now.Add(8 * time.Minute).UnixNano(); st.Until != want {
		t.Fatalf("until %d, want %d (the third value's time + window)", st.Until, want)
	}
	now = now.Add(8 * time.Minute)
	if _, vals := stamp(sub); len(vals) != 2 {
		t.Fatalf("after the window: %q", vals)
	}
	if _, _, st := x.TXTStamped(nil, sub); st.Until != 0 {
		t.Fatalf("two values left, until %d: want 0 (never by age)", st.Until)
	}
	moves("prune", func() {
		for _, s := range x.Due(now) {
			x.Pruned(s, now, 1, 4)
		}
	})
	moves("resync", func() {
		if _, err := x.Resync(context.Background(), snapshot{serial: 5}); err != nil {
			t.Fatal(err)
		}
	})
	// Registered again, then removed.
	x.Set(sub, []storage.TXTRecord{{Value: "d", UpdatedAt: now}}, 6)
	moves("remove", func() { x.Remove(sub, 7) })
}

// snapshot is a store holding no subdomain at serial.
type snapshot struct{ serial uint32 }

func (s snapshot) Snapshot(context.Context, func(storage.Subdomain) error) (uint32, error) {
	return s.serial, nil
}

// TestAppendTXT: AppendTXT copies out what TXTStamped returns, with the
// same stamp, for values held in place, spilled ones and persist records,
// and allocates nothing doing it (the DNS fast path builds answers from it).
func TestAppendTXT(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	x := New(storage.TXTPolicy{Always: 2, Window: 10 * time.Minute, Max: 16}, func() time.Time { return now })
	x.Set("inline", []storage.TXTRecord{{Value: "b", UpdatedAt: now}, {Value: "a", UpdatedAt: now.Add(-time.Second)}}, 1)
	x.Set("spilled", []storage.TXTRecord{{Value: "c", UpdatedAt: now}, {Value: "b", UpdatedAt: now.Add(-time.Minute)},
		{Value: "a", UpdatedAt: now.Add(-2 * time.Minute)}}, 2)
	x.Set("persist", []storage.TXTRecord{{Value: "v", UpdatedAt: now}}, 3)
	x.SetPersist("persist", []storage.PersistRecord{{Issuer: "ca.example", AccountURI: "https://ca.example/acct/1"}}, 4)
	x.Add("none", 5)
	x.Set("long", []storage.TXTRecord{{Value: string(make([]byte, 300)), UpdatedAt: now}}, 6)
	buf, ends := make([]byte, 0, 1024), make([]int, 0, 16)
	for _, sub := range []string{"inline", "spilled", "persist", "none", "long", "unknown"} {
		want, wantOK, wantSt := x.TXTStamped(nil, sub)
		b, e, ok, st := x.AppendTXT(buf[:0], ends[:0], sub)
		var got []string
		for i, end := range e {
			start := 0
			if i > 0 {
				start = e[i-1]
			}
			got = append(got, string(b[start:end]))
		}
		if ok != wantOK || st != wantSt || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: AppendTXT %q %v %+v, TXTStamped %q %v %+v", sub, got, ok, st, want, wantOK, wantSt)
		}
		if allocs := testing.AllocsPerRun(50, func() { x.AppendTXT(buf[:0], ends[:0], sub) }); allocs != 0 {
			t.Errorf("%s: %v allocations", sub, allocs)
		}
	}
}
