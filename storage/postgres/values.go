package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/acmebroker/acmebroker/storage"
)

// Named values and leases (migration 0002; see storage/values.go), shared by
// every node on the database: one node renews the API's certificate while
// holding a lease, the others read the result.

// GetValue returns the named value, or ErrNotFound.
func (s *Store) GetValue(ctx context.Context, name string) (storage.Value, error) {
	op := "get value " + name
	if err := s.begin(ctx); err != nil {
		return storage.Value{}, s.wrapErr(ctx, op, err)
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	v := storage.Value{Name: name}
	var ns int64
	if err := s.pool.QueryRow(octx, `SELECT data, modified_at FROM kv_values WHERE name = $1`, name).Scan(&v.Data, &ns); err != nil {
		return storage.Value{}, s.wrapErr(ctx, op, err)
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
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	if data == nil {
		data = []byte{} // NOT NULL: an empty value is still a value
	}
	return s.wrapErr(ctx, op, s.exec(ctx, `INSERT INTO kv_values (name, data, modified_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET data = excluded.data, modified_at = excluded.modified_at`,
		name, data, at.UnixNano()))
}

// DeleteValue deletes the named value; ErrNotFound if there is none.
func (s *Store) DeleteValue(ctx context.Context, name string) error {
	op := "delete value " + name
	return s.wrapErr(ctx, op, s.exec(ctx, `DELETE FROM kv_values WHERE name = $1`, name))
}

// ListValues describes the values whose names start with prefix, in
// bytewise name order (sorted here, whatever the database's collation).
func (s *Store) ListValues(ctx context.Context, prefix string) ([]storage.ValueInfo, error) {
	op := "list values " + prefix
	if err := s.begin(ctx); err != nil {
		return nil, s.wrapErr(ctx, op, err)
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(octx,
		`SELECT name, length(data), modified_at FROM kv_values WHERE substr(name, 1, length($1)) = $1`, prefix)
	if err != nil {
		return nil, s.wrapErr(ctx, op, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.ValueInfo, error) {
		var vi storage.ValueInfo
		var ns int64
		err := row.Scan(&vi.Name, &vi.Size, &ns)
		vi.Modified = fromNanos(ns)
		return vi, err
	})
	if err != nil {
		return nil, s.wrapErr(ctx, op, err)
	}
	slices.SortFunc(out, func(a, b storage.ValueInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// TryLock takes or extends the lease name for owner; see storage.Store.
// INSERT ... ON CONFLICT DO UPDATE locks the row it meets, so of nodes
// racing for a free or expired lease exactly one changes it.
func (s *Store) TryLock(ctx context.Context, name, owner string, at time.Time, ttl time.Duration) (bool, error) {
	op := "lock " + name
	if err := storage.CheckLease(name, owner, at, ttl); err != nil {
		return false, fmt.Errorf("postgres: %s: %w", op, err)
	}
	var held bool
	err := s.inTx(ctx, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
			WHERE leases.owner = excluded.owner OR leases.expires_at <= $4`,
			name, owner, at.Add(ttl).UnixNano(), at.UnixNano())
		held = err == nil && tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, s.wrapErr(ctx, op, err)
	}
	return held, nil
}

// Unlock releases the lease name if owner holds it.
func (s *Store) Unlock(ctx context.Context, name, owner string) error {
	op := "unlock " + name
	err := s.inTx(ctx, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM leases WHERE name = $1 AND owner = $2`, name, owner)
		return err
	})
	return s.wrapErr(ctx, op, err)
}
