package nodesync_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/nodesync"
	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/internal/zone"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

// sqlitePair opens one SQLite file twice: as the broker does (no
// announcements; it polls) and as an admin command does (announcing).
func sqlitePair(t *testing.T) (brokerSt, adminSt *sqlite.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "broker.db")
	var err error
	if brokerSt, err = sqlite.Open(context.Background(), path, sqlite.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { brokerSt.Close() })
	if adminSt, err = sqlite.Open(context.Background(), path, sqlite.Options{Announce: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adminSt.Close() })
	return brokerSt, adminSt
}

func addAccount(t *testing.T, st storage.Store, name string, values ...string) {
	t.Helper()
	ctx := context.Background()
	a := newAccount()
	a.Subdomain = name
	if _, err := st.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		if _, _, err := st.SetTXT(ctx, name, v, time.Now(), policy); err != nil {
			t.Fatal(err)
		}
	}
}

// What admin commands change in the file reaches the broker's index at
// the next poll: accounts created with values, deleted accounts; many
// changes at once come by one full resync. The broker's own writes are
// not announced, and applied changes are deleted from the table.
func TestPollerAppliesAdminChanges(t *testing.T) {
	ctx := context.Background()
	bst, ast := sqlitePair(t)
	addAccount(t, bst, "old", "v-old") // the broker's own, before start
	addAccount(t, ast, "gone", "v-gone")
	addAccount(t, ast, "offline", "v-offline") // an admin's, before start

	idx := records.New(policy, time.Now)
	p := nodesync.NewPoller(nodesync.PollConfig{Batch: 5}, bst, zone.New(zone.Config{Policy: policy}, bst, idx))
	if err := p.Mark(ctx); err != nil {
		t.Fatal(err)
	}
	if err := idx.Load(ctx, bst); err != nil {
		t.Fatal(err)
	}
	// What admins changed before the start is in the load; the table keeps
	// none of it.
	if names, _, err := bst.ChangesAfter(ctx, 0, 100); err != nil || len(names) != 0 {
		t.Fatalf("changes from before the start kept: %v %v", names, err)
	}

	addAccount(t, ast, "imported", "v1", "v2")
	if _, err := ast.DeleteAccount(ctx, accountOf(t, ast, "gone")); err != nil {
		t.Fatal(err)
	}
	addAccount(t, bst, "own", "v-own") // the broker's own write: not announced
	if err := p.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got, ok := served(idx, "imported"); !ok || !slices.Equal(sorted(got), []string{"v1", "v2"}) {
		t.Fatalf("imported after the poll: %v %v", got, ok)
	}
	if got, ok := served(idx, "gone"); ok {
		t.Fatalf("deleted account still served after the poll: %v", got)
	}
	if _, ok := served(idx, "own"); ok {
		t.Fatal("the broker's own write came through the feed (it should go to the index directly)")
	}
	if p.Applied() != 2 || p.Resyncs() != 0 {
		t.Fatalf("applied %d, resyncs %d; want 2, 0", p.Applied(), p.Resyncs())
	}

	// More changes than a batch: one resync brings them all.
	for i := range 7 {
		addAccount(t, ast, fmt.Sprintf("bulk%d", i), fmt.Sprintf("b%d", i))
	}
	if err := p.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if p.Resyncs() != 1 {
		t.Fatalf("resyncs %d after 7 changes with batch 5, want 1", p.Resyncs())
	}
	for i := range 7 {
		if got, ok := served(idx, fmt.Sprintf("bulk%d", i)); !ok || len(got) != 1 {
			t.Fatalf("bulk%d after the resync: %v %v", i, got, ok)
		}
	}
	if names, _, err := bst.ChangesAfter(ctx, 0, 100); err != nil || len(names) != 0 {
		t.Fatalf("changes left after applying them: %v %v", names, err)
	}
	if err := p.Poll(ctx); err != nil || p.Applied() != 2 || p.Resyncs() != 1 {
		t.Fatalf("an empty poll did work: %v applied %d resyncs %d", err, p.Applied(), p.Resyncs())
	}
}

// Run polls by itself until its context ends.
func TestPollerRun(t *testing.T) {
	ctx := context.Background()
	bst, ast := sqlitePair(t)
	idx := records.New(policy, time.Now)
	p := nodesync.NewPoller(nodesync.PollConfig{Interval: 10 * time.Millisecond}, bst, zone.New(zone.Config{Policy: policy}, bst, idx))
	if err := p.Mark(ctx); err != nil {
		t.Fatal(err)
	}
	if err := idx.Load(ctx, bst); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); p.Run(rctx) }()
	addAccount(t, ast, "late", "v")
	waitFor(t, "the admin's account to be served", func() bool { _, ok := served(idx, "late"); return ok })
	cancel()
	<-done
}

func accountOf(t *testing.T, st storage.Store, sub string) string {
	t.Helper()
	ai, err := st.AccountBySubdomain(context.Background(), sub)
	if err != nil {
		t.Fatalf("no account for %s: %v", sub, err)
	}
	return ai.Username
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
