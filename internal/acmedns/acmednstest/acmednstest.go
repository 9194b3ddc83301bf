// Package acmednstest writes acme-dns databases for tests: the tables as
// acme-dns creates them (schema version 1, acme-dns v0.7 to v2.x) and the
// rows a test asks for, stored the way acme-dns stores them.
package acmednstest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/mattn/go-sqlite3"
	"golang.org/x/crypto/bcrypt"

	"github.com/acmebroker/acmebroker/internal/pgtest"
)

// The CREATE statements acme-dns runs at start-up (its db.go), verbatim
// apart from indentation.
const (
	acmeTable = `
	CREATE TABLE IF NOT EXISTS acmedns(
		Name TEXT,
		Value TEXT
	);`
	userTable = `
	CREATE TABLE IF NOT EXISTS records(
        Username TEXT UNIQUE NOT NULL PRIMARY KEY,
        Password TEXT UNIQUE NOT NULL,
        Subdomain TEXT UNIQUE NOT NULL,
		AllowFrom TEXT
    );`
	txtTable = `
    CREATE TABLE IF NOT EXISTS txt(
		Subdomain TEXT NOT NULL,
		Value   TEXT NOT NULL DEFAULT '',
		LastUpdate INT
	);`
	txtTablePG = `
    CREATE TABLE IF NOT EXISTS txt(
		rowid SERIAL,
		Subdomain TEXT NOT NULL,
		Value   TEXT NOT NULL DEFAULT '',
		LastUpdate INT
	);`
	// v2.0 adds this index; v1.x databases lack it.
	txtIndex = `
	CREATE INDEX IF NOT EXISTS idx_txt_subdomain ON txt (Subdomain);`
)

// Account is a row of records plus its txt rows.
type Account struct {
	Username  string
	Password  string // the plain key; stored as its bcrypt hash unless Hash is set
	Hash      *string
	Subdomain string
	AllowFrom *string // stored as is; nil = NULL
	Values    []Value // txt rows; acme-dns has at least two per subdomain, '' until set
}

// Value is a txt row.
type Value struct {
	Value      string
	LastUpdate int64
}

// Str returns a pointer to s, for Account fields that may be NULL.
func Str(s string) *string { return &s }

// NewKey returns a 40-character key as acme-dns hands them out.
func NewKey() string {
	return strings.ReplaceAll(uuid.NewString()+uuid.NewString(), "-", "")[:40]
}

// Good returns an account acme-dns could have registered: a UUID username
// and subdomain, a fresh key, allowfrom [] and two empty txt rows.
func Good() Account {
	return Account{
		Username:  uuid.NewString(),
		Password:  NewKey(),
		Subdomain: uuid.NewString(),
		AllowFrom: Str("[]"),
		Values:    []Value{{"", time.Now().Unix() - 1}, {"", time.Now().Unix() - 1}},
	}
}

// Orphan is a txt row whose subdomain has no account.
type Orphan struct {
	Subdomain string
	Value
}

// WriteSQLite creates the acme-dns SQLite database at path (v2 adds the
// txt index when v2 is true) holding accounts and orphan txt rows. The
// bcrypt hash is bound as []byte, as acme-dns does, so SQLite stores a BLOB.
func WriteSQLite(t testing.TB, path string, v2 bool, accounts []Account, orphans []Orphan) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stmts := []string{acmeTable, userTable, txtTable}
	if v2 {
		stmts = append(stmts, txtIndex)
	}
	fill(t, db, stmts, "?", accounts, orphans)
}

// PostgresDSN returns the DSN of ACMEBROKER_TEST_POSTGRES with a fresh
// schema made the search path; the schema is dropped when the test ends.
// It skips the test when the variable is not set.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := pgtest.BaseDSN(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("ACMEBROKER_TEST_POSTGRES: %v", err)
	}
	schema := "acmedns_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatalf("create schema on %s: %v", u.Redacted(), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// WritePostgres creates acme-dns's tables (PostgreSQL flavour) in the
// database of dsn and fills them.
func WritePostgres(t testing.TB, dsn string, accounts []Account, orphans []Orphan) {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fill(t, db, []string{acmeTable, userTable, txtTablePG, txtIndex}, "$", accounts, orphans)
}

func fill(t testing.TB, db *sql.DB, stmts []string, ph string, accounts []Account, orphans []Orphan) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := func(i int) string {
		if ph == "?" {
			return "?"
		}
		return fmt.Sprintf("$%d", i)
	}
	stmts = append(stmts, `INSERT INTO acmedns (Name, Value) values('db_version', '1')`)
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	insRec := fmt.Sprintf(`INSERT INTO records(Username, Password, Subdomain, AllowFrom) values(%s, %s, %s, %s)`, p(1), p(2), p(3), p(4))
	insTXT := fmt.Sprintf(`INSERT INTO txt (Subdomain, Value, LastUpdate) values(%s, %s, %s)`, p(1), p(2), p(3))
	for _, a := range accounts {
		var hash []byte
		if a.Hash != nil {
			hash = []byte(*a.Hash)
		} else {
			var err error
			if hash, err = bcrypt.GenerateFromPassword([]byte(a.Password), bcrypt.MinCost); err != nil {
				t.Fatal(err)
			}
		}
		var pw any = hash // a BLOB in SQLite, as acme-dns binds it
		if ph == "$" {
			pw = string(hash) // lib/pq sends []byte to a TEXT parameter as text
		}
		var allow any
		if a.AllowFrom != nil {
			allow = *a.AllowFrom
		}
		if _, err := db.ExecContext(ctx, insRec, a.Username, pw, a.Subdomain, allow); err != nil {
			t.Fatalf("insert record %s: %v", a.Username, err)
		}
		for _, v := range a.Values {
			if _, err := db.ExecContext(ctx, insTXT, a.Subdomain, v.Value, v.LastUpdate); err != nil {
				t.Fatalf("insert txt %s: %v", a.Subdomain, err)
			}
		}
	}
	for _, o := range orphans {
		if _, err := db.ExecContext(ctx, insTXT, o.Subdomain, o.Value.Value, o.LastUpdate); err != nil {
			t.Fatalf("insert txt %s: %v", o.Subdomain, err)
		}
	}
}
