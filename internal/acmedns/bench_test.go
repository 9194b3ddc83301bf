package acmedns_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/acmebroker/acmebroker/internal/acmedns"
	"github.com/acmebroker/acmebroker/internal/acmedns/acmednstest"
)

// fakeBcrypt is a well-formed bcrypt hash (cost 4, random salt and sum):
// the import checks the form, not the key, so no bcrypt work is needed to
// make a large source.
func fakeBcrypt() string {
	const alpha = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 53)
	rand.Read(b)
	for i := range b {
		b[i] = alpha[int(b[i])%len(alpha)]
	}
	return "$2a$04$" + string(b)
}

// writeLarge makes an acme-dns SQLite database of n accounts with two set
// values each, in one transaction.
func writeLarge(b *testing.B, path string, n int) {
	b.Helper()
	acmednstest.WriteSQLite(b, path, true, nil, nil) // the schema
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().Unix()
	for i := range n {
		sub := uuid.NewString()
		if _, err := tx.Exec(`INSERT INTO records(Username, Password, Subdomain, AllowFrom) values(?, ?, ?, '[]')`,
			uuid.NewString(), []byte(fakeBcrypt()), sub); err != nil {
			b.Fatal(err)
		}
		for j := range 2 {
			v := fmt.Sprintf("%042d%d", i, j)
			if _, err := tx.Exec(`INSERT INTO txt (Subdomain, Value, LastUpdate) values(?, ?, ?)`, sub, v, now-int64(j)); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkImport imports 5,000 acme-dns accounts with 2 values each into
// a fresh broker database per iteration; accounts/s is the figure.
func BenchmarkImport(b *testing.B) {
	const n = 5000
	dir := b.TempDir()
	src := filepath.Join(dir, "acme-dns.db")
	writeLarge(b, src, n)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		b.StopTimer()
		st := openStoreB(b, filepath.Join(dir, fmt.Sprintf("broker%d.db", i)))
		s, err := acmedns.Open(ctx, src)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		sum, err := acmedns.Import(ctx, s, st, acmedns.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if sum.Accounts.Imported != n || sum.Values.Imported != 2*n {
			b.Fatalf("imported %+v", sum)
		}
		s.Close()
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "accounts/s")
}
