package records

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/storage"
)

func walkAll(x *Index) (uint32, map[string][]string) {
	w := x.Walk()
	out := map[string][]string{}
	var chunk []dnsserver.ZoneEntry
	for more := true; more; {
		chunk, more = w.Next(chunk[:0])
		for _, e := range chunk {
			if _, dup := out[e.Name]; dup {
				panic("walked twice: " + e.Name)
			}
			out[e.Name] = e.Values
		}
	}
	return w.Serial(), out
}

func TestWalk(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	x := New(storage.TXTPolicy{Always: 2, Window: 10 * time.Minute, Max: 16}, func() time.Time { return now })
	const n = 3*walkChunk + 7 // several chunks
	for i := range n {
		name := fmt.Sprintf("%08x-0000-4000-8000-000000000000", i)
		if i%5 == 0 {
			name = fmt.Sprintf("web%d", i)
		}
		x.Set(name, recs(now, 0), uint32(i+1))
	}
	x.Add("empty", n+1)
	x.Set("spilled", recs(now, 0, time.Second, 20*time.Minute), n+2) // c is out of the window
	serial, got := walkAll(x)
	if serial != n+2 || len(got) != n+2 {
		t.Fatalf("walk: serial %d, %d names; want %d, %d", serial, len(got), n+2, n+2)
	}
	if v := got["00000001-0000-4000-8000-000000000000"]; !slices.Equal(v, []string{"a"}) {
		t.Fatalf("uuid entry: %v", v)
	}
	if v := got["web5"]; !slices.Equal(v, []string{"a"}) {
		t.Fatalf("named entry: %v", v)
	}
	if v, ok := got["empty"]; !ok || len(v) != 0 {
		t.Fatalf("registered without values: %v %v", v, ok)
	}
	if v := got["spilled"]; !slices.Equal(v, []string{"a", "b"}) {
		t.Fatalf("aged-out value walked: %v", v)
	}

	// Removed during a walk: not returned.
	w := x.Walk()
	x.Remove("web0", n+3)
	var all []dnsserver.ZoneEntry
	for more := true; more; {
		all, more = w.Next(all)
	}
	for _, e := range all {
		if e.Name == "web0" {
			t.Fatal("a subdomain removed during the walk was returned")
		}
	}
}

func TestUUIDString(t *testing.T) {
	s := "d2121c1a-55ec-49c1-832c-695d6a198111"
	k, _ := uuidKey(s)
	if uuidString(k) != s {
		t.Fatalf("%s round-trips to %s", s, uuidString(k))
	}
}

func TestChangedSignal(t *testing.T) {
	x := New(storage.DefaultTXTPolicy, time.Now)
	x.Set("a", recs(time.Now(), 0), 5)
	select {
	case <-x.Changed():
	default:
		t.Fatal("no signal after the serial moved")
	}
	x.Set("a", recs(time.Now(), 0), 4) // older: serial stays
	select {
	case <-x.Changed():
		t.Fatal("signal without a serial change")
	default:
	}
}

func diffMap(diffs []dnsserver.ZoneDiff) map[string]string {
	m := map[string]string{}
	for _, d := range diffs {
		sort.Strings(d.Add)
		m[d.Name] = fmt.Sprint(d.Del, d.Add)
	}
	return m
}

func TestDiff(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clk := func() time.Time { return now }
	x := New(storage.TXTPolicy{Always: 2, Window: 10 * time.Minute, Max: 16}, clk)
	x.Set("keep", recs(now, 0), 10)
	x.Set("gone", recs(now, 0), 11)
	if _, _, ok := x.Diff(11); ok {
		t.Fatal("Diff without a journal")
	}
	x.EnableJournal(100)

	if s, d, ok := x.Diff(11); !ok || s != 11 || len(d) != 0 {
		t.Fatalf("current: %d %v %v", s, d, ok)
	}
	x.Set("keep", []storage.TXTRecord{{Value: "new", UpdatedAt: now}, {Value: "a", UpdatedAt: now.Add(-time.Second)}}, 12)
	x.Remove("gone", 13)
	x.Add("fresh", 14)
	x.Set("fresh", []storage.TXTRecord{{Value: "f1", UpdatedAt: now}}, 15)

	s, d, ok := x.Diff(11)
	want := map[string]string{"keep": "[] [a new]", "gone": "[a] []", "fresh": "[] [f1]"}
	if !ok || s != 15 || fmt.Sprint(diffMap(d)) != fmt.Sprint(want) {
		t.Fatalf("Diff(11) = %d %v %v; want 15 %v", s, diffMap(d), ok, want)
	}
	s, d, ok = x.Diff(13)
	// Changes at the client's own serial are sent too (harmless if it has them).
	want = map[string]string{"gone": "[a] []", "fresh": "[] [f1]"}
	if !ok || s != 15 || fmt.Sprint(diffMap(d)) != fmt.Sprint(want) {
		t.Fatalf("Diff(13) = %d %v %v; want 15 %v", s, diffMap(d), ok, want)
	}
	for _, from := range []uint32{10, 0, 12345, 16} { // before the journal, none, never seen, ahead
		if _, _, ok := x.Diff(from); ok && from != 16 {
			t.Fatalf("Diff(%d) claims to cover it", from)
		}
	}

	// Values pruned after aging out are deleted from secondaries at the
	// next change: a secondary may still hold them.
	x.Set("busy", []storage.TXTRecord{{Value: "v3", UpdatedAt: now}, {Value: "v2", UpdatedAt: now.Add(-time.Minute)}, {Value: "v1", UpdatedAt: now.Add(-2 * time.Minute)}}, 16)
	base := x.Serial()
	now = now.Add(time.Hour)
	if _, _, err := x.Prune(t.Context(), nopPruner{}); err != nil {
		t.Fatal(err)
	}
	_, d, ok = x.Diff(base)
	if !ok || fmt.Sprint(diffMap(d)) != fmt.Sprint(map[string]string{"busy": "[v1] [v2 v3]"}) {
		t.Fatalf("after prune: %v %v", diffMap(d), ok)
	}
}

type nopPruner struct{}

func (nopPruner) PruneTXT(_ context.Context, _ string, _ time.Time, _ storage.TXTPolicy) (int, error) {
	return 1, nil
}

func TestJournalBounded(t *testing.T) {
	x := New(storage.DefaultTXTPolicy, time.Now)
	x.Set("a", recs(time.Now(), 0), 1)
	x.EnableJournal(16)
	for i := uint32(2); i < 100; i++ {
		x.Set("a", recs(time.Now(), 0), i)
	}
	if len(x.zone.j.recs) > 16 {
		t.Fatalf("journal holds %d records, max 16", len(x.zone.j.recs))
	}
	if _, _, ok := x.Diff(1); ok {
		t.Fatal("Diff from a serial whose changes were dropped")
	}
	if _, d, ok := x.Diff(95); !ok || len(d) != 1 {
		t.Fatalf("Diff(95): %v %v", d, ok)
	}
}
