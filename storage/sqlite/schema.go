package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// queryer is what schemaVersion needs of a *sql.DB, *sql.Conn or *sql.Tx.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// schemaVersion returns the highest applied migration, 0 for a new database.
func schemaVersion(ctx context.Context, q queryer) (int, error) {
	var n int
	if err := q.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	var v int
	if err := q.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, err
	}
	return v, nil
}

// errSchemaTooNew says the database was migrated by a newer acmebroker.
func errSchemaTooNew(have, known int) error {
	return fmt.Errorf("database schema version %d is newer than this acmebroker (knows %d): upgrade acmebroker", have, known)
}

// migrate brings the database on c up to the last of ms, one transaction per
// migration, and returns the resulting version. A database that is already
// current is only read, so a read-only file opens fine.
func migrate(ctx context.Context, c *sql.Conn, ms []migration, now func() time.Time, log *slog.Logger) (int, error) {
	known := ms[len(ms)-1].Version
	v, err := schemaVersion(ctx, c)
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if v > known {
		return v, errSchemaTooNew(v, known)
	}
	for _, m := range ms {
		if m.Version <= v {
			continue
		}
		applied, err := applyMigration(ctx, c, m, known, now)
		if err != nil {
			return v, fmt.Errorf("apply migration %s: %w", m.Name, err)
		}
		if applied {
			log.Info("applied schema migration", "version", m.Version, "name", m.Name)
		}
		v = m.Version
	}
	return v, nil
}

// applyMigration runs m in its own write transaction. It re-reads the
// version under the write lock, so two processes opening the same new file
// at once apply each migration once; applied is false if the other won.
func applyMigration(ctx context.Context, c *sql.Conn, m migration, known int, now func() time.Time) (applied bool, err error) {
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			// The connection must not go back to use with a transaction open.
			_, rbErr := c.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
			err = errors.Join(err, ignoreNoTx(rbErr))
		}
	}()
	if _, err := c.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return false, err
	}
	v, err := schemaVersion(ctx, c)
	if err != nil {
		return false, err
	}
	if v > known {
		return false, errSchemaTooNew(v, known)
	}
	if v >= m.Version {
		_, err := c.ExecContext(ctx, "COMMIT")
		return false, err
	}
	if _, err := c.ExecContext(ctx, m.SQL); err != nil {
		return false, err
	}
	if _, err := c.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.Version, m.Name, now().UnixNano()); err != nil {
		return false, err
	}
	if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
		return false, err
	}
	return true, nil
}
