package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/acmebroker/acmebroker/storage"
)

// Own names (storage.IsOwnName): TXT values the broker serves for itself,
// in the own_txt table (migration 0004). They are part of the zone: every
// change moves the serial and is announced to the other nodes, which re-read
// the name (Subdomain) as they do an account's.

// SetOwnTXT adds value to the own name's values; see storage.Store.
func (s *Store) SetOwnTXT(ctx context.Context, name, value string, at time.Time, policy storage.TXTPolicy) ([]storage.TXTRecord, uint32, error) {
	op := "set own txt for " + name
	if err := checkOwn(name, policy, at); err != nil {
		return nil, 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	var (
		kept   []storage.TXTRecord
		serial uint32
	)
	err := s.inTx(ctx, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		// The zone_meta lock first: writes to own names (two nodes
		// answering challenges at once) are ordered, so each reads the
		// values the one before it committed.
		if err := lockName(ctx, tx, name); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO own_txt (subdomain, value, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (subdomain, value) DO UPDATE SET updated_at = excluded.updated_at`,
			name, value, at.UnixNano()); err != nil {
			return err
		}
		var err error
		if kept, _, err = trimTXT(ctx, tx, name, at, policy); err != nil {
			return err
		}
		serial, err = s.bumpSerial(ctx, tx, name, at, nil)
		return err
	})
	if err != nil {
		return nil, 0, s.wrapErr(ctx, op, err)
	}
	return kept, serial, nil
}

// DeleteOwnTXT removes value from the own name's values; see
// storage.Store.
func (s *Store) DeleteOwnTXT(ctx context.Context, name, value string, at time.Time) ([]storage.TXTRecord, uint32, error) {
	op := "delete own txt of " + name
	if err := checkOwn(name, storage.DefaultTXTPolicy, at); err != nil {
		return nil, 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	var (
		left   []storage.TXTRecord
		serial uint32
	)
	err := s.inTx(ctx, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		left, serial = nil, 0 // a retried transaction starts over
		if err := lockName(ctx, tx, name); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, ownTXT.delete, name, []string{value})
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		rows, err := tx.Query(ctx, ownTXT.values, name)
		if err != nil {
			return err
		}
		if left, err = pgx.CollectRows(rows, scanRecord); err != nil {
			return err
		}
		sortRecords(left)
		serial, err = s.bumpSerial(ctx, tx, name, at, nil)
		return err
	})
	if err != nil {
		return nil, 0, s.wrapErr(ctx, op, err)
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
// Snapshot's transaction. An error of fn comes back as a *callbackError.
func ownSnapshot(ctx context.Context, tx pgx.Tx, fn func(storage.Subdomain) error) error {
	rows, err := tx.Query(ctx, `SELECT subdomain, value, updated_at FROM own_txt ORDER BY subdomain`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var cur storage.Subdomain
	emit := func() error {
		if cur.Name == "" {
			return nil
		}
		sortRecords(cur.Records)
		if err := fn(cur); err != nil {
			return &callbackError{err}
		}
		return nil
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
				return err
			}
			cur = storage.Subdomain{Name: name}
		}
		r.UpdatedAt = fromNanos(ns)
		cur.Records = append(cur.Records, r)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return emit()
}

// callbackError marks an error of Snapshot's fn, passed on as it is.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }
func (e *callbackError) Unwrap() error { return e.err }
