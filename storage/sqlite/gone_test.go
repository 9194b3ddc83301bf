package sqlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/acmebroker/acmebroker/storage"
)

// TestFileRemovedOrReplaced: with the database file removed, writes are
// refused as unavailable (SQLite alone acknowledges them into the unlinked
// file, and they vanish at the next start), Ping says why, and no empty
// database appears in its place; renamed back, the store works again. A
// different file at the path is refused until a restart, which then loads it.
func TestFileRemovedOrReplaced(t *testing.T) {
	ctx := context.Background()
	st, path := openTemp(t, hooks{})
	a := acct(1)
	if _, err := st.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.SetTXT(ctx, a.Subdomain, "before", t0, storage.DefaultTXTPolicy); err != nil {
		t.Fatal(err)
	}
	aside := filepath.Join(filepath.Dir(path), "aside.db")
	if err := os.Rename(path, aside); err != nil {
		t.Fatal(err)
	}
	_, _, err := st.SetTXT(ctx, a.Subdomain, "while-gone", t0.Add(1), storage.DefaultTXTPolicy)
	if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "is gone") {
		t.Fatalf("SetTXT with the file gone: %v, want ErrUnavailable saying it is gone", err)
	}
	if err := st.Ping(ctx); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Ping with the file gone: %v", err)
	}
	// Reads on a new connection must not create an empty database.
	for range 8 {
		st.Account(ctx, a.Username)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a database file appeared at %s while it was gone: %v", path, err)
	}

	if err := os.Rename(aside, path); err != nil {
		t.Fatal(err)
	}
	recs, _, err := st.SetTXT(ctx, a.Subdomain, "after", t0.Add(2), storage.DefaultTXTPolicy)
	if err != nil || len(recs) != 2 || recs[0].Value != "after" || recs[1].Value != "before" {
		t.Fatalf("SetTXT after the file came back: %v %v (the refused value must not be there)", recs, err)
	}
	if err := st.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	// Replaced by another file (a restored copy): refused, then a fresh
	// open reads the new file.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(aside, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(aside, path); err != nil {
		t.Fatal(err)
	}
	_, _, err = st.SetTXT(ctx, a.Subdomain, "replaced", t0.Add(3), storage.DefaultTXTPolicy)
	if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("SetTXT with the file replaced: %v, want ErrUnavailable saying restart", err)
	}
}

// TestAccountsQueryPlan: Accounts streams (no sort of all accounts in a
// temporary b-tree) and reads each account's values through the primary key.
func TestAccountsQueryPlan(t *testing.T) {
	st, _ := openTemp(t, hooks{})
	rows, err := st.db.Query("EXPLAIN QUERY PLAN " + accountsQuery)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	joined := strings.Join(plan, "; ")
	if strings.Contains(joined, "TEMP B-TREE") || strings.Contains(joined, "SCAN t") || !strings.Contains(joined, "SEARCH t USING PRIMARY KEY (subdomain=?)") {
		t.Errorf("Accounts query plan sorts or scans values:\n%s", joined)
	}
	t.Logf("plan: %s", joined)
}
