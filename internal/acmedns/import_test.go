package acmedns_test

import (
	"context"
	"database/sql"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/acmebroker/acmebroker/internal/acmedns"
	"github.com/acmebroker/acmebroker/internal/acmedns/acmednstest"
	"github.com/acmebroker/acmebroker/internal/secret"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

const (
	val1 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1"
	val2 = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2"
	val3 = "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC3"
	val4 = "DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD4"
)

// dataset is an acme-dns database with good accounts and every kind of bad
// row. want maps a username to the reason its row fails ("" = imported).
type dataset struct {
	accounts []acmednstest.Account
	orphans  []acmednstest.Orphan
	want     map[string]string
	// wantValues: subdomain -> values the broker must serve after import.
	wantValues map[string][]storage.TXTRecord
	// counts expected of a first import.
	accounts1, values1 acmedns.Counts
}

func newDataset() dataset {
	d := dataset{want: map[string]string{}, wantValues: map[string][]storage.TXTRecord{}}
	t1, t2 := time.Now().Add(-time.Hour).Unix(), time.Now().Add(-50*time.Minute).Unix()
	add := func(a acmednstest.Account, why string) acmednstest.Account {
		d.accounts = append(d.accounts, a)
		d.want[a.Username] = why
		return a
	}

	// Good: two values set (v1: both rows used).
	g1 := acmednstest.Good()
	g1.Values = []acmednstest.Value{{Value: val1, LastUpdate: t1}, {Value: val2, LastUpdate: t2}}
	add(g1, "")
	d.wantValues[g1.Subdomain] = []storage.TXTRecord{{Value: val2, UpdatedAt: time.Unix(t2, 0)}, {Value: val1, UpdatedAt: time.Unix(t1, 0)}}
	// Good: allowfrom list, one value set, one empty row, and one value
	// that is not a DNS-01 digest (fails alone; the account imports).
	g2 := acmednstest.Good()
	g2.AllowFrom = acmednstest.Str(`["127.0.0.0/8","::1/128"]`)
	g2.Values = []acmednstest.Value{{Value: "", LastUpdate: 0}, {Value: val3, LastUpdate: t1}, {Value: "not a digest", LastUpdate: t2}}
	add(g2, "")
	d.wantValues[g2.Subdomain] = []storage.TXTRecord{{Value: val3, UpdatedAt: time.Unix(t1, 0)}}
	// Good: never updated (v2 style rows: '' at 0).
	g3 := acmednstest.Good()
	g3.Values = []acmednstest.Value{{Value: "", LastUpdate: 0}, {Value: "", LastUpdate: 0}}
	add(g3, "")
	// Good: an upper-case username is the same UUID.
	g4 := acmednstest.Good()
	g4.Username = strings.ToUpper(g4.Username)
	add(g4, "")

	bad := func(mut func(*acmednstest.Account), why string) {
		a := acmednstest.Good()
		a.Values = []acmednstest.Value{{Value: val4, LastUpdate: t1}, {Value: "", LastUpdate: t1}}
		mut(&a)
		add(a, why)
	}
	bad(func(a *acmednstest.Account) { a.Hash = acmednstest.Str("") }, "empty Password")
	bad(func(a *acmednstest.Account) { a.Hash = acmednstest.Str("$2a$10$tooshort") }, "not a valid bcrypt hash")
	bad(func(a *acmednstest.Account) { a.Hash = acmednstest.Str("plaintext-password") }, "not a bcrypt hash")
	bad(func(a *acmednstest.Account) { a.Subdomain = "" }, "empty Subdomain")
	bad(func(a *acmednstest.Account) { a.Subdomain = "bad_label!" }, "not one DNS label")
	bad(func(a *acmednstest.Account) { a.Username = "not-a-uuid" }, "not a UUID")
	bad(func(a *acmednstest.Account) { a.Username = "" }, "empty Username")
	bad(func(a *acmednstest.Account) { a.AllowFrom = nil }, "empty AllowFrom")
	bad(func(a *acmednstest.Account) { a.AllowFrom = acmednstest.Str(`["10.0.0.300/8"]`) }, "not a CIDR")
	bad(func(a *acmednstest.Account) { a.AllowFrom = acmednstest.Str(`["192.0.2.1"]`) }, "not a CIDR")
	bad(func(a *acmednstest.Account) { a.AllowFrom = acmednstest.Str(`{broken`) }, "not a JSON list")
	// Two rows whose subdomains differ only in case: the same DNS name.
	// The upper-case one sorts first and is imported; the other fails.
	dupSub := uuid.NewString()
	first := acmednstest.Good()
	first.Subdomain = strings.ToUpper(dupSub)
	first.Values = []acmednstest.Value{{Value: val4, LastUpdate: t1}}
	add(first, "")
	d.wantValues[dupSub] = []storage.TXTRecord{{Value: val4, UpdatedAt: time.Unix(t1, 0)}}
	bad(func(a *acmednstest.Account) { a.Subdomain = dupSub }, "duplicate subdomain")

	d.orphans = []acmednstest.Orphan{
		{Subdomain: uuid.NewString(), Value: acmednstest.Value{Value: val1, LastUpdate: t1}},
		{Subdomain: uuid.NewString(), Value: acmednstest.Value{Value: "", LastUpdate: t1}}, // empty: not a value, not reported
	}
	d.accounts1 = acmedns.Counts{Imported: 5, Failed: 12}
	// values: g1 2, g2 1 (+1 bad), first 1; 12 bad rows' one value each, orphan 1.
	d.values1 = acmedns.Counts{Imported: 4, Failed: 1 + 12 + 1}
	return d
}

func openStoreB(t testing.TB, path string) *sqlite.Store { return openStore(t, path) }

func openStore(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

type result struct {
	sum    acmedns.Summary
	events []acmedns.Event
}

func runImport(t *testing.T, from string, dst acmedns.Store, dry bool) result {
	t.Helper()
	ctx := context.Background()
	src, err := acmedns.Open(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var r result
	var st acmedns.Store
	if dst != nil {
		st = dst
	}
	r.sum, err = acmedns.Import(ctx, src, st, acmedns.Options{DryRun: dry, Report: func(e acmedns.Event) { r.events = append(r.events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func snapshot(t *testing.T, st storage.Store) (map[string][]storage.TXTRecord, uint32) {
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

// check asserts the first import of d did what it should.
func check(t *testing.T, d dataset, r result, st storage.Store) {
	t.Helper()
	ctx := context.Background()
	if r.sum.Accounts != d.accounts1 || r.sum.Values != d.values1 {
		t.Errorf("summary: accounts %+v values %+v, want %+v %+v", r.sum.Accounts, r.sum.Values, d.accounts1, d.values1)
	}
	// Every account row is reported once, with its reason.
	seen := map[string]int{}
	for _, e := range r.events {
		if e.IsTXT() {
			continue
		}
		seen[e.Username]++
		why := d.want[e.Username]
		switch {
		case why == "" && e.Outcome != acmedns.Imported:
			t.Errorf("account %q: %v (%s), want imported", e.Username, e.Outcome, e.Detail)
		case why != "" && (e.Outcome != acmedns.Failed || !strings.Contains(e.Detail, why)):
			t.Errorf("account %q: %v (%s), want failed with %q", e.Username, e.Outcome, e.Detail, why)
		}
	}
	for u := range d.want {
		if seen[u] != 1 {
			t.Errorf("account %q reported %d times, want once", u, seen[u])
		}
	}
	orphanReported := false
	for _, e := range r.events {
		if e.IsTXT() && e.Subdomain == d.orphans[0].Subdomain {
			orphanReported = e.Outcome == acmedns.Failed && strings.Contains(e.Detail, "no account")
		}
		if e.Value == "" && e.Subdomain == d.orphans[1].Subdomain {
			t.Errorf("empty orphan row reported: %+v", e)
		}
	}
	if !orphanReported {
		t.Error("the orphan txt row was not reported as failed")
	}

	// The imported accounts hold the acme-dns bcrypt hash, which verifies
	// the original key.
	for _, a := range d.accounts {
		if d.want[a.Username] != "" {
			continue
		}
		got, err := st.Account(ctx, strings.ToLower(a.Username))
		if err != nil {
			t.Fatalf("account %s: %v", a.Username, err)
		}
		if got.Subdomain != strings.ToLower(a.Subdomain) {
			t.Errorf("account %s: subdomain %q, want %q", a.Username, got.Subdomain, strings.ToLower(a.Subdomain))
		}
		if !strings.HasPrefix(got.KeyHash, "$2a$") {
			t.Errorf("account %s: key hash is not the imported bcrypt hash", a.Username)
		}
		if ok, _, err := secret.Verify(got.KeyHash, a.Password); !ok || err != nil {
			t.Errorf("account %s: the original key does not verify (%v)", a.Username, err)
		}
		if *a.AllowFrom != "[]" {
			want := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
			if !slices.Equal(got.AllowFrom, want) {
				t.Errorf("account %s: allowfrom %v, want %v", a.Username, got.AllowFrom, want)
			}
		} else if len(got.AllowFrom) != 0 {
			t.Errorf("account %s: allowfrom %v, want anywhere", a.Username, got.AllowFrom)
		}
	}
	// No failed account got in.
	for u, why := range d.want {
		if why == "" {
			continue
		}
		if id, err := uuid.Parse(u); err == nil {
			if _, err := st.Account(ctx, id.String()); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("failed account %s is in the store (err %v)", u, err)
			}
		}
	}
	vals, _ := snapshot(t, st)
	if len(vals) != 5 {
		t.Errorf("store has %d subdomains, want 5", len(vals))
	}
	for sub, want := range d.wantValues {
		got := vals[sub]
		if !slices.EqualFunc(got, want, func(a, b storage.TXTRecord) bool { return a.Value == b.Value && a.UpdatedAt.Equal(b.UpdatedAt) }) {
			t.Errorf("values of %s: %v, want %v", sub, got, want)
		}
	}
}

// checkSecond asserts a second import changed nothing: every imported row
// is skipped, the bad ones fail again, and the zone serial stays.
func checkSecond(t *testing.T, d dataset, r result, before uint32, st storage.Store) {
	t.Helper()
	wantA := acmedns.Counts{Skipped: d.accounts1.Imported, Failed: d.accounts1.Failed}
	wantV := acmedns.Counts{Skipped: d.values1.Imported, Failed: d.values1.Failed}
	if r.sum.Accounts != wantA || r.sum.Values != wantV {
		t.Errorf("second run: accounts %+v values %+v, want %+v %+v", r.sum.Accounts, r.sum.Values, wantA, wantV)
	}
	if _, after := snapshot(t, st); after != before {
		t.Errorf("second run moved the zone serial %d -> %d", before, after)
	}
}

func TestImportSQLite(t *testing.T) {
	for _, name := range []string{"v1", "v2", "upgraded from v0"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			d := newDataset()
			src := filepath.Join(dir, "acme-dns.db")
			acmednstest.WriteSQLite(t, src, name == "v2", d.accounts, d.orphans)
			if name == "upgraded from v0" {
				// acme-dns cannot drop the v0 columns of records in SQLite
				// when it upgrades; they stay, empty.
				db, err := sql.Open("sqlite3", src)
				if err != nil {
					t.Fatal(err)
				}
				for _, q := range []string{`ALTER TABLE records ADD COLUMN Value TEXT`, `ALTER TABLE records ADD COLUMN LastActive INT`} {
					if _, err := db.Exec(q); err != nil {
						t.Fatal(err)
					}
				}
				db.Close()
			}
			st := openStore(t, filepath.Join(dir, "broker.db"))

			r := runImport(t, src, st, false)
			check(t, d, r, st)
			_, serial := snapshot(t, st)
			checkSecond(t, d, runImport(t, src, st, false), serial, st)
		})
	}
}

func TestImportPostgres(t *testing.T) {
	dsn := acmednstest.PostgresDSN(t)
	d := newDataset()
	acmednstest.WritePostgres(t, dsn, d.accounts, d.orphans)
	st := openStore(t, filepath.Join(t.TempDir(), "broker.db"))
	r := runImport(t, dsn, st, false)
	check(t, d, r, st)
	_, serial := snapshot(t, st)
	checkSecond(t, d, runImport(t, dsn, st, false), serial, st)
}

func TestDryRunWritesNothing(t *testing.T) {
	dir := t.TempDir()
	d := newDataset()
	src := filepath.Join(dir, "acme-dns.db")
	acmednstest.WriteSQLite(t, src, true, d.accounts, d.orphans)

	// Into no store at all (the broker's database does not exist yet).
	r := runImport(t, src, nil, true)
	if r.sum.Accounts != d.accounts1 || r.sum.Values != d.values1 {
		t.Errorf("dry run: accounts %+v values %+v, want %+v %+v", r.sum.Accounts, r.sum.Values, d.accounts1, d.values1)
	}
	// Into an existing store: it stays as it was.
	st := openStore(t, filepath.Join(dir, "broker.db"))
	_, before := snapshot(t, st)
	r = runImport(t, src, st, true)
	if r.sum.Accounts != d.accounts1 || r.sum.Values != d.values1 {
		t.Errorf("dry run: accounts %+v values %+v, want %+v %+v", r.sum.Accounts, r.sum.Values, d.accounts1, d.values1)
	}
	vals, after := snapshot(t, st)
	if len(vals) != 0 || after != before {
		t.Errorf("dry run wrote: %d subdomains, serial %d -> %d", len(vals), before, after)
	}
}

func TestImportClashesWithBroker(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b := acmednstest.Good(), acmednstest.Good()
	src := filepath.Join(dir, "acme-dns.db")
	acmednstest.WriteSQLite(t, src, false, []acmednstest.Account{a, b}, nil)
	st := openStore(t, filepath.Join(dir, "broker.db"))
	hash, _ := secret.Hash(acmednstest.NewKey())
	// The broker already has a's subdomain under another username, and b's
	// username with another subdomain.
	if _, err := st.CreateAccount(ctx, storage.Account{Username: uuid.NewString(), KeyHash: hash, Subdomain: a.Subdomain, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateAccount(ctx, storage.Account{Username: b.Username, KeyHash: hash, Subdomain: "other", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, dry := range []bool{true, false} {
		r := runImport(t, src, st, dry)
		if r.sum.Accounts != (acmedns.Counts{Failed: 2}) {
			t.Fatalf("dry=%v: %+v, want 2 failed", dry, r.sum.Accounts)
		}
		for _, e := range r.events {
			want := "another account with this subdomain"
			if e.Username == b.Username {
				want = "another subdomain (other)"
			}
			if !strings.Contains(e.Detail, want) {
				t.Errorf("dry=%v %s: %q, want it to say %q", dry, e.Username, e.Detail, want)
			}
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := acmedns.Open(ctx, filepath.Join(dir, "missing.db")); err == nil || !strings.Contains(err.Error(), "config.cfg") {
		t.Errorf("missing file: %v", err)
	}
	// acme-dns before v0.7 kept no db_version.
	old := filepath.Join(dir, "old.db")
	acmednstest.WriteSQLite(t, old, false, nil, nil)
	db, err := sql.Open("sqlite3", old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM acmedns`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := acmedns.Open(ctx, old); err == nil || !strings.Contains(err.Error(), "before v0.7") {
		t.Errorf("no db_version: %v", err)
	}
	// The broker's own database is not an acme-dns one.
	openStore(t, filepath.Join(dir, "broker.db"))
	if _, err := acmedns.Open(ctx, filepath.Join(dir, "broker.db")); err == nil || !strings.Contains(err.Error(), "not an acme-dns database") {
		t.Errorf("broker database: %v", err)
	}
}
