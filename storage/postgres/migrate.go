package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/acmebroker/acmebroker/storage/internal/migrations"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one schema change of this engine's.
type migration = migrations.Migration

// loadMigrations returns the engine's *.sql files of dir in order (see
// migrations.Load).
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) { return migrations.Load(fsys, dir) }

// errSchemaTooNew says the database was migrated by a newer acmebroker.
func errSchemaTooNew(have, known int) error {
	return fmt.Errorf("database schema version %d is newer than this acmebroker (knows %d): upgrade acmebroker", have, known)
}

// migrate brings the schema up to the last of ms and returns the version.
//
// Several nodes may start at once. One session-level advisory lock, keyed
// by the schema, lets one node migrate while the others wait and then find
// nothing to do. Each migration is one transaction that also inserts its
// row in schema_migrations, so where advisory locks do not exist (some
// distributed databases) the primary key still lets only one node apply it:
// the other's transaction fails and it re-reads the version.
func (s *Store) migrate(ctx context.Context, ms []migration) (version int, schema string, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, "", err
	}
	defer conn.Release()
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return 0, "", err
	}
	if schema == "" {
		return 0, "", errors.New("no schema to create tables in: the search_path names none that exists (create it, or fix search_path in storage.dsn)")
	}
	key := lockKey(schema)
	locked := true
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		if c := pgCode(err); c != "42883" && c != "0A000" {
			return 0, "", fmt.Errorf("take the migration lock: %w", err)
		}
		locked = false
		s.log.Warn("postgres: no advisory locks in this database; migrations rely on schema_migrations' primary key")
	}
	if locked {
		defer func() {
			// A fresh context: the lock must go even if ctx ended, or the
			// connection must (Hijack-free: closing it drops the lock).
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
				_ = conn.Conn().Close(uctx)
			}
		}()
	}

	known := ms[len(ms)-1].Version
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer NOT NULL PRIMARY KEY,
		name       text    NOT NULL,
		applied_at bigint  NOT NULL
	)`); err != nil && pgCode(err) != "23505" && pgCode(err) != "42P07" {
		// 23505/42P07: another node created it at the same moment (no lock).
		return 0, "", fmt.Errorf("create schema_migrations: %w", err)
	}
	for attempt := 0; ; attempt++ {
		v, err := schemaVersion(ctx, conn)
		if err != nil {
			return 0, "", fmt.Errorf("read schema version: %w", err)
		}
		if v > known {
			return v, schema, errSchemaTooNew(v, known)
		}
		if v == known {
			return v, schema, nil
		}
		m := ms[v] // the next one
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.Version, m.Name, time.Now().UnixNano()); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, m.SQL)
			return err
		})
		switch {
		case err == nil:
			s.log.Info("applied schema migration", "version", m.Version, "name", m.Name)
		case (pgCode(err) == "23505" || retryable(err)) && attempt < 3*known:
			// Another node applied it meanwhile: read the version again.
		default:
			return v, schema, fmt.Errorf("apply migration %s: %w", m.Name, err)
		}
	}
}

func schemaVersion(ctx context.Context, c *pgxpool.Conn) (int, error) {
	var v int
	err := c.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

// lockKey is the advisory lock key of the migrations of one schema, so
// brokers in different schemas of one database do not wait for each other.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("acmebroker migrations\x00" + schema))
	return int64(h.Sum64())
}
