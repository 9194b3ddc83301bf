package records

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

// TestResync changes the store behind the index's back (as another node
// sharing the database does) and checks that Resync brings the index to
// what a fresh Load gives, without undoing an entry newer than its
// snapshot.
func TestResync(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	policy := storage.TXTPolicy{Always: 2, Window: time.Hour, Max: 5}
	mk := func(name string) storage.Account {
		return storage.Account{Username: uuid.NewString(), KeyHash: "h", Subdomain: name, CreatedAt: now}
	}
	set := func(sub, v string, at time.Time) uint32 {
		t.Helper()
		_, serial, err := st.SetTXT(ctx, sub, v, at, policy)
		if err != nil {
			t.Fatal(err)
		}
		return serial
	}
	// Subdomains: UUID and other names, in place and spilled (3 values).
	keep, change, gone, spill := uuid.NewString(), "change", uuid.NewString(), "spill"
	accts := map[string]storage.Account{}
	for _, n := range []string{keep, change, gone, spill} {
		accts[n] = mk(n)
		if _, err := st.CreateAccount(ctx, accts[n]); err != nil {
			t.Fatal(err)
		}
		set(n, "v1-"+n, now)
	}
	set(spill, "v2", now.Add(time.Second))
	set(spill, "v3", now.Add(2*time.Second))

	x := New(policy, time.Now)
	if err := x.Load(ctx, st); err != nil {
		t.Fatal(err)
	}

	// Another node: changes two, deletes one, adds two.
	set(change, "v2-change", now.Add(time.Minute))
	set(spill, "v4", now.Add(time.Minute))
	if _, err := st.DeleteAccount(ctx, accts[gone].Username); err != nil {
		t.Fatal(err)
	}
	added := uuid.NewString()
	if _, err := st.CreateAccount(ctx, mk(added)); err != nil {
		t.Fatal(err)
	}
	set(added, "v-added", now)
	if _, err := st.CreateAccount(ctx, mk("empty")); err != nil {
		t.Fatal(err)
	}
	// This node: an entry written after the snapshot (a newer serial)
	// that the snapshot does not have.
	_, snapSerial := snapshotOf(t, st)
	x.Set("local-newer", []storage.TXTRecord{{Value: "mine", UpdatedAt: now}}, snapSerial+100)

	stats, err := x.Resync(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Serial != snapSerial || stats.Changed != 4 || stats.Removed != 1 {
		t.Errorf("stats = %+v, want serial %d, 4 changed (change, spill, added, empty), 1 removed", stats, snapSerial)
	}

	want := New(policy, time.Now)
	if err := want.Load(ctx, st); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{keep, change, gone, spill, added, "empty"} {
		got, gok := x.TXT(nil, n)
		exp, eok := want.TXT(nil, n)
		if gok != eok || !slices.Equal(got, exp) {
			t.Errorf("%s after resync: %v %v, want %v %v", n, got, gok, exp, eok)
		}
	}
	if v, ok := x.TXT(nil, "local-newer"); !ok || !slices.Equal(v, []string{"mine"}) {
		t.Errorf("resync removed an entry newer than its snapshot: %v %v", v, ok)
	}
	if x.Len() != want.Len()+1 {
		t.Errorf("Len = %d, want %d", x.Len(), want.Len()+1)
	}
	if x.Serial() != snapSerial+100 {
		t.Errorf("serial went back to %d", x.Serial())
	}

	// Nothing left to do: a second resync changes nothing.
	if stats, err := x.Resync(ctx, st); err != nil || stats.Changed != 0 || stats.Removed != 0 {
		t.Errorf("second resync: %+v %v", stats, err)
	}
}

// TestResyncKeepsNewerWrite: a value written (with a newer serial) after the
// snapshot that Resync applies is not overwritten by it.
func TestResyncKeepsNewerWrite(t *testing.T) {
	ctx := context.Background()
	policy := storage.DefaultTXTPolicy
	x := New(policy, time.Now)
	old := []storage.TXTRecord{{Value: "old", UpdatedAt: time.Unix(100, 0)}}
	snap := snapshotFunc(func(fn func(storage.Subdomain) error) (uint32, error) {
		// While the snapshot streams, this node writes a newer value.
		x.Set("a", []storage.TXTRecord{{Value: "new", UpdatedAt: time.Unix(200, 0)}}, 20)
		return 10, fn(storage.Subdomain{Name: "a", Records: old})
	})
	if _, err := x.Resync(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if v, _ := x.TXT(nil, "a"); !slices.Equal(v, []string{"new"}) {
		t.Fatalf("resync overwrote a newer write: %v", v)
	}
}

func TestResyncError(t *testing.T) {
	x := New(storage.DefaultTXTPolicy, time.Now)
	x.Add("a", 5)
	_, err := x.Resync(context.Background(), snapshotFunc(func(func(storage.Subdomain) error) (uint32, error) {
		return 0, fmt.Errorf("database gone")
	}))
	if err == nil {
		t.Fatal("no error")
	}
	if _, ok := x.TXT(nil, "a"); !ok {
		t.Fatal("a failed resync removed what memory held")
	}
}

func TestUUIDString(t *testing.T) {
	for range 100 {
		s := uuid.NewString()
		k, ok := uuidKey(s)
		if !ok || uuidString(k) != s {
			t.Fatalf("%s -> %v -> %s", s, k, uuidString(k))
		}
	}
}

type snapshotFunc func(fn func(storage.Subdomain) error) (uint32, error)

func (f snapshotFunc) Snapshot(_ context.Context, fn func(storage.Subdomain) error) (uint32, error) {
	return f(fn)
}

func snapshotOf(t *testing.T, st Snapshotter) (map[string][]storage.TXTRecord, uint32) {
	t.Helper()
	m := map[string][]storage.TXTRecord{}
	serial, err := st.Snapshot(context.Background(), func(s storage.Subdomain) error {
		m[s.Name] = s.Records
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, serial
}

// BenchmarkResync reconciles an index of 100k accounts (two values each)
// with a snapshot that differs in 1% of them: the in-memory side of a
// periodic resync, without the database.
func BenchmarkResync(b *testing.B) {
	const n = 100_000
	now := time.Now()
	x := New(storage.DefaultTXTPolicy, func() time.Time { return now })
	subs := make([]storage.Subdomain, n)
	for i := range subs {
		recs := []storage.TXTRecord{
			{Value: fmt.Sprintf("%043d", i), UpdatedAt: now.Add(-time.Hour)},
			{Value: fmt.Sprintf("%043d", i+1), UpdatedAt: now.Add(-2 * time.Hour)},
		}
		subs[i] = storage.Subdomain{Name: uuid.NewString(), Records: recs}
		x.Set(subs[i].Name, recs, 1)
	}
	serial := uint32(2)
	snap := snapshotFunc(func(fn func(storage.Subdomain) error) (uint32, error) {
		for i, s := range subs {
			if i%100 == int(serial%100) {
				s.Records = []storage.TXTRecord{{Value: fmt.Sprint(serial), UpdatedAt: now}}
			}
			if err := fn(s); err != nil {
				return 0, err
			}
		}
		return serial, nil
	})
	for b.Loop() {
		serial++
		if _, err := x.Resync(context.Background(), snap); err != nil {
			b.Fatal(err)
		}
	}
}
