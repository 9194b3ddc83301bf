package records

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

func persistRecs(issuers ...string) []storage.PersistRecord {
	out := make([]storage.PersistRecord, len(issuers))
	for i, is := range issuers {
		out[i] = storage.PersistRecord{Issuer: is, AccountURI: "https://acme." + is + "/acct/7"}
	}
	return out
}

func pv(issuer string) string { return issuer + "; accounturi=https://acme." + issuer + "/acct/7" }

func txtOf(x *Index, sub string) []string {
	v, _ := x.TXT(nil, sub)
	return v
}

// TestPersistServed: persist records are served beside the challenge
// values, never counted by txt_max nor aged by txt_window, and survive the
// changes of the values (and the values theirs), in place or spilled.
func TestPersistServed(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	x := New(storage.TXTPolicy{Always: 1, Window: 10 * time.Minute, Max: 2}, clk.now)
	x.Add("s", 1)
	x.SetPersist("s", persistRecs("a.example", "b.example", "c.example"), 2)
	if got := txtOf(x, "s"); !slices.Equal(got, []string{pv("a.example"), pv("b.example"), pv("c.example")}) {
		t.Fatalf("persist only: %v", got)
	}
	// Two values: the policy's Max of 2 counts them, not the records.
	x.Set("s", recs(clk.now(), 0, time.Minute), 3)
	want := []string{"a", "b", pv("a.example"), pv("b.example"), pv("c.example")}
	if got := txtOf(x, "s"); !slices.Equal(got, want) {
		t.Fatalf("values and persist: %v, want %v", got, want)
	}
	// The window ages the second value out; the records stay.
	clk.add(time.Hour)
	if got := txtOf(x, "s"); !slices.Equal(got, []string{"a", pv("a.example"), pv("b.example"), pv("c.example")}) {
		t.Fatalf("after the window: %v", got)
	}
	if due := x.Due(clk.now()); !slices.Equal(due, []string{"s"}) {
		t.Fatalf("Due = %v", due)
	}
	x.Pruned("s", clk.now(), 1, 4)
	if got := txtOf(x, "s"); !slices.Equal(got, []string{"a", pv("a.example"), pv("b.example"), pv("c.example")}) {
		t.Fatalf("after the prune: %v", got)
	}
	if due := x.Due(clk.now()); len(due) != 0 {
		t.Fatalf("a subdomain with persist records and nothing to prune is due: %v", due)
	}
	// A new value keeps the records; dropping the records keeps the value
	// and puts the entry back in place.
	x.Set("s", []storage.TXTRecord{{Value: "new", UpdatedAt: clk.now()}}, 5)
	x.SetPersist("s", persistRecs("b.example"), 6)
	if got := txtOf(x, "s"); !slices.Equal(got, []string{"new", pv("b.example")}) {
		t.Fatalf("after both changed: %v", got)
	}
	x.SetPersist("s", nil, 7)
	if got := txtOf(x, "s"); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("after the last record went: %v", got)
	}
	x.mu.RLock()
	i, _ := x.find("s")
	inPlace := x.at(i).n >= 0
	x.mu.RUnlock()
	if !inPlace {
		t.Fatal("an entry without persist records and with one short value stayed spilled")
	}
	// An older write than the one applied is ignored.
	x.SetPersist("s", persistRecs("late.example"), 6)
	if got := txtOf(x, "s"); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("an older SetPersist was applied: %v", got)
	}
	if x.Serial() != 7 {
		t.Fatalf("serial %d, want 7", x.Serial())
	}
}

// TestPersistRemoved: removing the subdomain removes its records, a late
// SetPersist older than the removal does not bring them back, and the name
// registered again starts without any.
func TestPersistRemoved(t *testing.T) {
	x := New(storage.DefaultTXTPolicy, time.Now)
	x.Add("s", 1)
	x.SetPersist("s", persistRecs("a.example"), 2)
	x.Remove("s", 4)
	x.SetPersist("s", persistRecs("a.example"), 3) // late
	if v, ok := x.TXT(nil, "s"); ok {
		t.Fatalf("removed subdomain served %v", v)
	}
	x.Add("s", 5)
	if v, ok := x.TXT(nil, "s"); !ok || len(v) != 0 {
		t.Fatalf("registered again: %v %v", v, ok)
	}
}

// TestPersistReplace: Replace sets values and records at once (a change
// learned from storage); Set alone would keep the old records.
func TestPersistReplace(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	x := New(storage.DefaultTXTPolicy, func() time.Time { return now })
	x.Add("s", 1)
	x.SetPersist("s", persistRecs("a.example"), 2)
	x.Replace(storage.Subdomain{Name: "S", Records: vals(now, "v"), Persist: persistRecs("b.example")}, 3)
	if got := txtOf(x, "s"); !slices.Equal(got, []string{"v", pv("b.example")}) {
		t.Fatalf("after Replace: %v", got)
	}
	x.Replace(storage.Subdomain{Name: "s"}, 4)
	if v, ok := x.TXT(nil, "s"); !ok || len(v) != 0 {
		t.Fatalf("after Replace with nothing: %v %v", v, ok)
	}
}

// TestPersistTransfers: persist records are in the zone a walk gives, in
// the differences IXFR sends (added, replaced, removed, and gone with
// their subdomain), and a walk started before a change gives them as they
// were.
func TestPersistTransfers(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	x := New(storage.TXTPolicy{Always: 1, Window: time.Minute, Max: 3}, func() time.Time { return now })
	x.Set("s", vals(now, "v1"), 1)
	x.Set("t", vals(now, "t1"), 2)
	x.EnableJournal(100)

	x.SetPersist("s", persistRecs("a.example"), 3)
	if _, d, ok := x.Diff(2); !ok || fmt.Sprint(diffMap(d)) != fmt.Sprint(map[string]string{"s": "[] [" + pv("a.example") + "]"}) {
		t.Fatalf("Diff(2) after a record was set: %v %v", diffMap(d), ok)
	}
	w := x.Walk() // at serial 3
	x.SetPersist("s", persistRecs("a.example", "b.example"), 4)
	x.Set("s", vals(now, "v2", "v1"), 5)
	if _, zone := walkAll(x); !slices.Equal(zone["s"], []string{"v2", "v1", pv("a.example"), pv("b.example")}) {
		t.Fatalf("walk: %v", zone["s"])
	}
	var old []string
	for more := true; more; {
		var es []dnsserver.ZoneEntry
		es, more = w.Next(nil)
		for _, e := range es {
			if e.Name == "s" {
				old = e.Values
			}
		}
	}
	if !slices.Equal(old, []string{"v1", pv("a.example")}) {
		t.Fatalf("a walk begun at serial 3 gave %v", old)
	}
	// The value that aged out stays published until pruned, the records
	// with it.
	now = now.Add(time.Hour)
	if _, zone := walkAll(x); !slices.Equal(zone["s"], []string{"v2", "v1", pv("a.example"), pv("b.example")}) {
		t.Fatalf("walk after the window: %v", zone["s"])
	}
	x.Pruned("s", now, 1, 6)
	if _, d, ok := x.Diff(5); !ok || fmt.Sprint(diffMap(d)) != fmt.Sprint(map[string]string{"s": "[v1] []"}) {
		t.Fatalf("Diff(5) after the prune: %v %v", diffMap(d), ok)
	}
	x.SetPersist("s", persistRecs("b.example"), 7)
	if _, d, ok := x.Diff(6); !ok || fmt.Sprint(diffMap(d)) != fmt.Sprint(map[string]string{"s": "[" + pv("a.example") + "] []"}) {
		t.Fatalf("Diff(6) after a record was deleted: %v %v", diffMap(d), ok)
	}
	x.Remove("s", 8)
	if _, d, ok := x.Diff(7); !ok || fmt.Sprint(diffMap(d)) != fmt.Sprint(map[string]string{"s": "[" + pv("b.example") + " v2] []"}) {
		t.Fatalf("Diff(7) after the subdomain went: %v %v", diffMap(d), ok)
	}
}

// TestPersistLoadAndResync: Load brings the records from storage, and the
// published view of a reloaded index (EnableJournal after Load) has them;
// Resync brings records another node set or deleted, and finds nothing to
// do when they match.
func TestPersistLoadAndResync(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().Truncate(time.Microsecond)
	a, b := uuid.NewString(), "named"
	for _, sub := range []string{a, b} {
		if _, err := st.CreateAccount(ctx, storage.Account{Username: uuid.NewString(), KeyHash: "h", Subdomain: sub, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	setP := func(sub, issuer string) {
		t.Helper()
		r := persistRecs(issuer)[0]
		r.SetAt = now
		if _, _, err := st.SetPersist(ctx, sub, r); err != nil {
			t.Fatal(err)
		}
	}
	setP(a, "a.example")
	if _, _, err := st.SetTXT(ctx, a, "value", now, storage.DefaultTXTPolicy); err != nil {
		t.Fatal(err)
	}
	x := New(storage.DefaultTXTPolicy, time.Now)
	if err := x.Load(ctx, st); err != nil {
		t.Fatal(err)
	}
	x.EnableJournal(100)
	if got := txtOf(x, a); !slices.Equal(got, []string{"value", pv("a.example")}) {
		t.Fatalf("loaded: %v", got)
	}
	if _, zone := walkAll(x); !slices.Equal(zone[a], []string{"value", pv("a.example")}) {
		t.Fatalf("published after load: %v", zone[a])
	}
	if stats, err := x.Resync(ctx, st); err != nil || stats.Changed != 0 || stats.Removed != 0 {
		t.Fatalf("resync of an index in step: %+v %v", stats, err)
	}
	// Another node: a record for b, and a's deleted.
	setP(b, "b.example")
	if _, _, err := st.DeletePersist(ctx, a, "a.example"); err != nil {
		t.Fatal(err)
	}
	before := x.Serial()
	stats, err := x.Resync(ctx, st)
	if err != nil || stats.Changed != 2 {
		t.Fatalf("resync: %+v %v", stats, err)
	}
	if got := txtOf(x, a); !slices.Equal(got, []string{"value"}) {
		t.Fatalf("a after the resync: %v", got)
	}
	if got := txtOf(x, b); !slices.Equal(got, []string{pv("b.example")}) {
		t.Fatalf("b after the resync: %v", got)
	}
	if _, d, ok := x.Diff(before); !ok || fmt.Sprint(diffMap(d)) != fmt.Sprint(map[string]string{a: "[" + pv("a.example") + "] []", b: "[] [" + pv("b.example") + "]"}) {
		t.Fatalf("Diff across the resync: %v %v", diffMap(d), ok)
	}
}
