package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// Named values and leases (migration 0006; see storage/values.go). Writes go
// through the writer like every other, so they are durable when they
// return.

// GetValue returns the named value, or ErrNotFound.
func (s *Store) GetValue(ctx context.Context, name string) (storage.Value, error) {
	op := "get value " + name
	if err := s.readable(ctx); err != nil {
		return storage.Value{}, wrapErr(ctx, op, err)
	}
	v := storage.Value{Name: name}
	var ns int64
	err := s.db.QueryRowContext(ctx, `SELECT data, modified_at FROM kv_values WHERE name = ?`, name).Scan(&v.Data, &ns)
	if err != nil {
		return storage.Value{}, wrapErr(ctx, op, err)
	}
	if v.Data == nil {
		v.Data = []byte{}
	}
	v.Modified = fromNanos(ns)
	return v, nil
}

// PutValue stores data under name, replacing what was there.
func (s *Store) PutValue(ctx context.Context, name string, data []byte, at time.Time) error {
	op := "put value " + name
	if err := storage.CheckValue(name, data, at); err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if data == nil {
		data = []byte{} // NOT NULL: an empty value is still a value
	}
	err := s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		_, err := c.ExecContext(ctx, `INSERT INTO kv_values (name, data, modified_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET data = excluded.data, modified_at = excluded.modified_at`,
			name, data, at.UnixNano())
		return err
	})
	return wrapErr(ctx, op, err)
}

// DeleteValue deletes the named value; ErrNotFound if there is none.
func (s *Store) DeleteValue(ctx context.Context, name string) error {
	op := "delete value " + name
	err := s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		return execOne(ctx, c, `DELETE FROM kv_values WHERE name = ?`, name)
	})
	return wrapErr(ctx, op, err)
}

// ListValues describes the values whose names start with prefix, in
// bytewise name order.
func (s *Store) ListValues(ctx context.Context, prefix string) ([]storage.ValueInfo, error) {
	op := "list values " + prefix
	if err := s.readable(ctx); err != nil {
		return nil, wrapErr(ctx, op, err)
	}
	// substr and length count characters; names are ASCII, so bytes.
	rows, err := s.db.QueryContext(ctx,
		`SELECT name, length(data), modified_at FROM kv_values WHERE substr(name, 1, length(?1)) = ?1`, prefix)
	if err != nil {
		return nil, wrapErr(ctx, op, err)
	}
	defer rows.Close()
	var out []storage.ValueInfo
	for rows.Next() {
		var vi storage.ValueInfo
		var ns int64
		if err := rows.Scan(&vi.Name, &vi.Size, &ns); err != nil {
			return nil, wrapErr(ctx, op, err)
		}
		vi.Modified = fromNanos(ns)
		out = append(out, vi)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr(ctx, op, err)
	}
	slices.SortFunc(out, func(a, b storage.ValueInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// TryLock takes or extends the lease name for owner; see storage.Store.
func (s *Store) TryLock(ctx context.Context, name, owner string, at time.Time, ttl time.Duration) (bool, error) {
	op := "lock " + name
	if err := storage.CheckLease(name, owner, at, ttl); err != nil {
		return false, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	var held bool
	err := s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		// The upsert changes the row only where the WHERE allows: a free
		// name, an expired lease, or the owner's own.
		res, err := c.ExecContext(ctx, `INSERT INTO leases (name, owner, expires_at) VALUES (?1, ?2, ?3)
			ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
			WHERE leases.owner = excluded.owner OR leases.expires_at <= ?4`,
			name, owner, at.Add(ttl).UnixNano(), at.UnixNano())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		held = n == 1
		return err
	})
	if err != nil {
		return false, wrapErr(ctx, op, err)
	}
	return held, nil
}

// Unlock releases the lease name if owner holds it.
func (s *Store) Unlock(ctx context.Context, name, owner string) error {
	op := "unlock " + name
	err := s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		_, err := c.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND owner = ?`, name, owner)
		return err
	})
	return wrapErr(ctx, op, err)
}
