package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// Own names (storage.IsOwnName): TXT values the broker serves for itself,
// in the own_txt table (migration 0008). They are part of the zone: every
// change moves the serial.

// SetOwnTXT adds value to the own name's values; see storage.Store.
func (s *Store) SetOwnTXT(ctx context.Context, name, value string, at time.Time, policy storage.TXTPolicy) ([]storage.TXTRecord, uint32, error) {
	op := "set own txt for " + name
	if err := checkOwn(name, policy, at); err != nil {
		return nil, 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	var (
		kept   []storage.TXTRecord
		serial uint32
	)
	err := s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		if _, err := c.ExecContext(ctx,
			`INSERT INTO own_txt (subdomain, value, updated_at) VALUES (?, ?, ?)
			 ON CONFLICT (subdomain, value) DO UPDATE SET updated_at = excluded.updated_at`,
			name, value, at.UnixNano()); err != nil {
			return err
		}
		var err error
		if kept, _, err = trimTXT(ctx, c, name, at, policy); err != nil {
			return err
		}
		if err := s.announceChange(ctx, c, name); err != nil {
			return err
		}
		serial, err = bumpSerial(ctx, c, at)
		return err
	})
	if err != nil {
		return nil, 0, wrapErr(ctx, op, err)
	}
	return kept, serial, nil
}

// DeleteOwnTXT removes value from the own name's values; see
// storage.Store.
func (s *Store) DeleteOwnTXT(ctx context.Context, name, value string, at time.Time) ([]storage.TXTRecord, uint32, error) {
	op := "delete own txt of " + name
	if err := checkOwn(name, storage.DefaultTXTPolicy, at); err != nil {
		return nil, 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	var (
		left   []storage.TXTRecord
		serial uint32
	)
	err := s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		left, serial = nil, 0
		res, err := c.ExecContext(ctx, ownTXT.delete, name, value)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		rows, err := c.QueryContext(ctx, ownTXT.values, name)
		if err != nil {
			return err
		}
		if left, err = scanRecords(rows); err != nil {
			return err
		}
		if err := s.announceChange(ctx, c, name); err != nil {
			return err
		}
		serial, err = bumpSerial(ctx, c, at)
		return err
	})
	if err != nil {
		return nil, 0, wrapErr(ctx, op, err)
	}
	return left, serial, nil
}

func checkOwn(name string, policy storage.TXTPolicy, at time.Time) error {
	if !storage.IsOwnName(name) {
		return fmt.Errorf("%q is not an own name (an underscore label such as _acme-challenge, then subdomain labels)", name)
	}
	return policy.CheckAt(at)
}

// ownSnapshot calls fn for every own name that holds values, inside
// Snapshot's transaction.
func ownSnapshot(ctx context.Context, tx *sql.Tx, fn func(storage.Subdomain) error) error {
	rows, err := tx.QueryContext(ctx, `SELECT subdomain, value, updated_at FROM own_txt ORDER BY subdomain, value`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var cur storage.Subdomain
	emit := func() error {
		if cur.Name == "" {
			return nil
		}
		newestFirst(cur.Records)
		return fn(cur)
	}
	for rows.Next() {
		var (
			name string
			r    storage.TXTRecord
			ns   int64
		)
		if err := rows.Scan(&name, &r.Value, &ns); err != nil {
			return err
		}
		if name != cur.Name {
			if err := emit(); err != nil {
				return &callbackError{err}
			}
			cur = storage.Subdomain{Name: name}
		}
		r.UpdatedAt = fromNanos(ns)
		cur.Records = append(cur.Records, r)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := emit(); err != nil {
		return &callbackError{err}
	}
	return nil
}

// callbackError marks an error of Snapshot's fn, passed on as it is.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }
func (e *callbackError) Unwrap() error { return e.err }
