package records

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// A write older than a removal, arriving after it, does not bring the name
// back (the delete race of the attack review); a newer one (the name
// registered again) does; ForgetRemoved drops tombstones once the writer
// says no older write can come.
func TestRemoveTombstone(t *testing.T) {
	now := time.Now()
	x := New(storage.DefaultTXTPolicy, func() time.Time { return now })
	x.Add("a", 10)
	x.Set("a", recs(now, 0), 11)
	gen := x.RemovalGen()
	x.Remove("a", 13)
	if x.RemovalGen() != gen+1 || x.Tombstones() != 1 {
		t.Fatalf("removal generation %d -> %d, %d tombstones", gen, x.RemovalGen(), x.Tombstones())
	}
	x.Set("a", recs(now, 0), 12) // stored before the delete, applied after
	x.Add("a", 12)
	if v, ok := x.TXT(nil, "a"); ok {
		t.Fatalf("a late write brought the deleted name back: %v", v)
	}
	x.Set("a", recs(now, 0), 14) // registered again since
	if _, ok := x.TXT(nil, "a"); !ok {
		t.Fatal("a write newer than the removal was ignored")
	}
	// A removal older than what memory holds (a node learning of an old
	// delete after the name came back) leaves the entry.
	x.Remove("a", 13)
	if _, ok := x.TXT(nil, "a"); !ok {
		t.Fatal("an old removal removed a newer entry")
	}

	x.ForgetRemoved(gen) // a write begun before the removal is still in flight
	if x.Tombstones() != 1 {
		t.Fatalf("%d tombstones after forgetting up to before the removal", x.Tombstones())
	}
	x.ForgetRemoved(x.RemovalGen())
	if x.Tombstones() != 0 {
		t.Fatalf("%d tombstones left", x.Tombstones())
	}
	x.ForgetRemoved(x.RemovalGen()) // nothing left: no-op
}

// A name removed twice keeps its newer tombstone while the older one is
// forgotten.
func TestTombstoneReburied(t *testing.T) {
	x := New(storage.DefaultTXTPolicy, time.Now)
	x.Add("a", 1)
	x.Remove("a", 2)
	g1 := x.RemovalGen()
	x.Add("b", 3)
	x.Remove("b", 4)
	x.Add("a", 5)
	x.Remove("a", 6)
	x.ForgetRemoved(g1 + 1) // the first burial of a, and b's
	x.Set("a", nil, 5)
	if _, ok := x.TXT(nil, "a"); ok {
		t.Fatal("a write older than the second removal came back")
	}
	if x.Tombstones() != 1 {
		t.Fatalf("%d tombstones, want a's second", x.Tombstones())
	}
}

// Resync does not bring back a name deleted after its snapshot was read.
func TestResyncKeepsNewerRemoval(t *testing.T) {
	x := New(storage.DefaultTXTPolicy, time.Now)
	x.Add("a", 5)
	x.Remove("a", 9) // deleted at 9, after the snapshot (8) below
	snap := fixedSnapshot{serial: 8, subs: []storage.Subdomain{{Name: "a"}}}
	if _, err := x.Resync(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	if _, ok := x.TXT(nil, "a"); ok {
		t.Fatal("resync brought back a name deleted after its snapshot")
	}
}

type fixedSnapshot struct {
	serial uint32
	subs   []storage.Subdomain
}

func (f fixedSnapshot) Snapshot(_ context.Context, fn func(storage.Subdomain) error) (uint32, error) {
	for _, s := range f.subs {
		if err := fn(s); err != nil {
			return 0, err
		}
	}
	return f.serial, nil
}

// Pruned frees the memory of aged-out values (the values left fit in
// place again) and, with a serial, moves the zone's.
func TestPrunedFreesMemory(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	x := New(storage.DefaultTXTPolicy, func() time.Time { return now })
	var rs []storage.TXTRecord
	for i := 5; i >= 0; i-- {
		rs = append(rs, storage.TXTRecord{Value: fmt.Sprintf("v%d", i), UpdatedAt: now.Add(time.Duration(i) * time.Minute)})
	}
	x.Set("busy", rs, 7)
	now = now.Add(13*time.Minute + 30*time.Second) // v0..v3 aged out; v4, v5 always kept
	due := x.Due(now)
	if fmt.Sprint(due) != "[busy]" {
		t.Fatalf("due: %v", due)
	}
	x.Pruned("busy", now, 4, 8)
	if x.held("busy") != 2 || x.Serial() != 8 || len(x.Due(now)) != 0 {
		t.Fatalf("after pruning: %d held, serial %d, due %v", x.held("busy"), x.Serial(), x.Due(now))
	}
	if got, _ := x.TXT(nil, "busy"); fmt.Sprint(got) != "[v5 v4]" {
		t.Fatalf("served after pruning: %v", got)
	}
}
