// Package pgtest gives tests a PostgreSQL database of their own: a fresh
// schema in the database named by ACMEBROKER_TEST_POSTGRES (Schema), or a
// private server they may stop and start (Start). Tests that need it skip
// when the variable is not set.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/acmebroker/acmebroker/internal/testenv"
)

// EnvDSN names the environment variable with the test database's DSN.
const EnvDSN = "ACMEBROKER_TEST_POSTGRES"

// BaseDSN returns the DSN of the test database, or skips t.
func BaseDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		testenv.Skipf(t, "PostgreSQL tests skipped: %s is not set; start a throwaway database and set it with: eval \"$(scripts/test-postgres)\" (.ci/run does)", EnvDSN)
	}
	return dsn
}

// Schema creates an empty schema in the test database, drops it (with
// everything in it) when t ends, and returns a DSN whose search_path is
// that schema. Tests in parallel, in any package, each get their own.
func Schema(t testing.TB) string {
	t.Helper()
	base := BaseDSN(t)
	b := make([]byte, 8)
	rand.Read(b)
	name := "acmebroker_t_" + hex.EncodeToString(b)
	execSQL(t, base, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize())
	t.Cleanup(func() {
		execSQL(t, base, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE")
	})
	return WithSearchPath(t, base, name)
}

// WithSearchPath returns dsn with its search_path set to schema.
func WithSearchPath(t testing.TB, dsn, schema string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("%s: %v", EnvDSN, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

func execSQL(t testing.TB, dsn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v (is PostgreSQL running?)", EnvDSN, err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}
