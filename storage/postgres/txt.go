package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/acmebroker/acmebroker/storage"
)

// SetTXT adds value to subdomain's TXT set at time at (or moves an existing
// value's time to at), deletes what policy no longer keeps at that time, and
// returns the values kept, newest first, with the zone serial after the
// change. ErrNotFound if no account has that subdomain.
//
// Writes to one subdomain are serialised by a lock on its account row, so
// the set each returns includes every value committed before it: a node
// that puts the returned set in its DNS index never drops another
// request's value.
func (s *Store) SetTXT(ctx context.Context, subdomain, value string, at time.Time, policy storage.TXTPolicy) ([]storage.TXTRecord, uint32, error) {
	op := "set txt for " + subdomain
	if err := policy.CheckAt(at); err != nil {
		return nil, 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	var (
		kept   []storage.TXTRecord
		serial uint32
	)
	err := s.inTx(ctx, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		// One round trip: lock the account row (or find there is none),
		// upsert the value, read the subdomain's values back. The server
		// runs them in order, so the read sees every value committed
		// before the lock was granted.
		var recs []storage.TXTRecord
		b := &pgx.Batch{}
		b.Queue(`SELECT 1 FROM accounts WHERE subdomain = $1 FOR UPDATE`, subdomain).QueryRow(func(row pgx.Row) error {
			var one int
			err := row.Scan(&one)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("no account has this subdomain: %w", storage.ErrNotFound)
			}
			return err
		})
		b.Queue(`INSERT INTO txt_records (subdomain, value, updated_at) VALUES ($1, $2, $3)
			 ON CONFLICT (subdomain, value) DO UPDATE SET updated_at = excluded.updated_at`,
			subdomain, value, at.UnixNano())
		b.Queue(`SELECT value, updated_at FROM txt_records WHERE subdomain = $1`, subdomain).Query(func(rows pgx.Rows) error {
			var err error
			recs, err = pgx.CollectRows(rows, scanRecord)
			return err
		})
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		sortRecords(recs)
		kept = slices.Clip(policy.Keep(recs, at))
		// And one more: drop what the policy no longer keeps, advance the
		// serial, announce the change.
		var err error
		serial, err = s.bumpSerial(ctx, tx, subdomain, at, dropped(recs[len(kept):]))
		return err
	})
	if err != nil {
		return nil, 0, s.wrapErr(ctx, op, err)
	}
	return kept, serial, nil
}

// lockName locks the account row that owns sub until the transaction
// ends; ErrNotFound if there is none. Own names have no account: their
// writes (rare) lock the zone_meta row instead.
func lockName(ctx context.Context, tx pgx.Tx, sub string) error {
	var one int
	if storage.IsOwnName(sub) {
		return tx.QueryRow(ctx, `SELECT 1 FROM zone_meta WHERE id = 1 FOR UPDATE`).Scan(&one)
	}
	err := tx.QueryRow(ctx, `SELECT 1 FROM accounts WHERE subdomain = $1 FOR UPDATE`, sub).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("no account has this subdomain: %w", storage.ErrNotFound)
	}
	return err
}

// trimTXT deletes the values of sub that policy no longer keeps at time at
// and returns the kept ones, newest first, and how many it deleted.
func trimTXT(ctx context.Context, tx pgx.Tx, sub string, at time.Time, policy storage.TXTPolicy) ([]storage.TXTRecord, int, error) {
	q := txtQueries(sub)
	rows, err := tx.Query(ctx, q.values, sub)
	if err != nil {
		return nil, 0, err
	}
	recs, err := pgx.CollectRows(rows, scanRecord)
	if err != nil {
		return nil, 0, err
	}
	sortRecords(recs)
	kept := policy.Keep(recs, at)
	if drop := dropped(recs[len(kept):]); len(drop) > 0 {
		if _, err := tx.Exec(ctx, q.delete, sub, drop); err != nil {
			return nil, 0, err
		}
	}
	return slices.Clip(kept), len(recs) - len(kept), nil
}

const deleteValues = `DELETE FROM txt_records WHERE subdomain = $1 AND value = ANY($2)`

// txtStatements read and delete the values of one name.
type txtStatements struct{ values, delete string }

var (
	accountTXT = txtStatements{`SELECT value, updated_at FROM txt_records WHERE subdomain = $1`, deleteValues}
	ownTXT     = txtStatements{`SELECT value, updated_at FROM own_txt WHERE subdomain = $1`, `DELETE FROM own_txt WHERE subdomain = $1 AND value = ANY($2)`}
)

// txtQueries returns the statements for name's values: own names
// (storage.IsOwnName) have their own table (migration 0004).
func txtQueries(name string) txtStatements {
	if storage.IsOwnName(name) {
		return ownTXT
	}
	return accountTXT
}

func scanRecord(row pgx.CollectableRow) (storage.TXTRecord, error) {
	var r storage.TXTRecord
	var ns int64
	err := row.Scan(&r.Value, &ns)
	r.UpdatedAt = fromNanos(ns)
	return r, err
}

// dropped returns the values of recs (nil if none).
func dropped(recs []storage.TXTRecord) []string {
	if len(recs) == 0 {
		return nil
	}
	vals := make([]string, len(recs))
	for i, r := range recs {
		vals[i] = r.Value
	}
	return vals
}

// sortRecords orders recs newest first, ties by value bytewise: the order
// of storage.TXTPolicy.Keep and of the SQLite engine, whatever the
// database's collation.
func sortRecords(recs []storage.TXTRecord) {
	slices.SortFunc(recs, func(a, b storage.TXTRecord) int {
		if c := b.UpdatedAt.Compare(a.UpdatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
}

// PruneTXT deletes the values of subdomain that policy no longer keeps at
// time now (DNS stopped serving them when they aged out). If it deletes
// any, the zone serial moves, so that secondaries drop them too, and other
// nodes are told like for any change; see storage.Store.
func (s *Store) PruneTXT(ctx context.Context, subdomain string, now time.Time, policy storage.TXTPolicy) (int, uint32, error) {
	op := "prune txt of " + subdomain
	if err := policy.CheckAt(now); err != nil {
		return 0, 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	var (
		n      int
		serial uint32
	)
	err := s.inTx(ctx, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		n, serial = 0, 0 // a retried transaction starts over
		if err := lockName(ctx, tx, subdomain); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return nil // nothing to prune
			}
			return err
		}
		var err error
		if _, n, err = trimTXT(ctx, tx, subdomain, now, policy); err != nil || n == 0 {
			return err
		}
		serial, err = s.bumpSerial(ctx, tx, subdomain, now, nil)
		return err
	})
	if err != nil {
		return 0, 0, s.wrapErr(ctx, op, err)
	}
	return n, serial, nil
}

// nextSerial is the serial after old for a change at time at: old+1, or
// at's Unix time when that is larger; after 2^32-1 it wraps to 1, which RFC
// 1982 arithmetic reads as an increase. bumpSerial computes the same in
// SQL; this copy documents it and lets the tests check the statement.
func nextSerial(old uint32, at time.Time) uint32 {
	if old == math.MaxUint32 {
		return 1
	}
	next := old + 1
	if t := at.Unix(); t > int64(next) && t <= math.MaxUint32 {
		next = uint32(t)
	}
	return next
}

// Snapshot calls fn for every registered subdomain with its values, newest
// first, and its persist records, and returns the serial of that state. It reads in one
// REPEATABLE READ transaction, so the serial matches the data, and streams:
// memory holds one subdomain at a time. fn must not write to the store.
func (s *Store) Snapshot(ctx context.Context, fn func(storage.Subdomain) error) (uint32, error) {
	const op = "snapshot"
	if err := s.begin(ctx); err != nil {
		return 0, s.wrapErr(ctx, op, err)
	}
	// No OpTimeout: a large zone takes as long as it takes; a dead
	// connection still fails the read.
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, s.wrapErr(ctx, op, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	var serial int64
	if err := tx.QueryRow(ctx, `SELECT serial FROM zone_meta WHERE id = 1`).Scan(&serial); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			err = fmt.Errorf("zone_meta has no row: %w", errCorrupt)
		}
		return 0, s.wrapErr(ctx, op, err)
	}
	persist, err := allPersist(ctx, tx)
	if err != nil {
		return 0, s.wrapErr(ctx, op, err)
	}
	// Ordered by subdomain only to group each subdomain's rows; the order
	// between subdomains is the database's collation and does not matter.
	rows, err := tx.Query(ctx, `
		SELECT a.subdomain, t.value, t.updated_at
		FROM accounts AS a LEFT JOIN txt_records AS t ON t.subdomain = a.subdomain
		ORDER BY a.subdomain`)
	if err != nil {
		return 0, s.wrapErr(ctx, op, err)
	}
	defer rows.Close()

	var cur storage.Subdomain
	have := false
	emit := func() error {
		sortRecords(cur.Records)
		if err := fn(cur); err != nil {
			return fmt.Errorf("postgres: %s: %w", op, err)
		}
		return nil
	}
	for rows.Next() {
		var (
			sub   string
			value *string
			ns    *int64
		)
		if err := rows.Scan(&sub, &value, &ns); err != nil {
			return 0, s.wrapErr(ctx, op, err)
		}
		if !have || sub != cur.Name {
			if have {
				if err := emit(); err != nil {
					return 0, err
				}
			}
			cur, have = storage.Subdomain{Name: sub, Persist: persist[sub]}, true
		}
		if value != nil && ns != nil {
			cur.Records = append(cur.Records, storage.TXTRecord{Value: *value, UpdatedAt: fromNanos(*ns)})
		}
	}
	if err := rows.Err(); err != nil {
		return 0, s.wrapErr(ctx, op, err)
	}
	if have {
		if err := emit(); err != nil {
			return 0, err
		}
	}
	rows.Close()
	if err := ownSnapshot(ctx, tx, fn); err != nil {
		if cb, ok := err.(*callbackError); ok {
			return 0, fmt.Errorf("postgres: %s: %w", op, cb.err)
		}
		return 0, s.wrapErr(ctx, op, err)
	}
	return uint32(serial), nil
}

// Subdomain returns one registered subdomain with its values, newest
// first, its persist records and the zone serial, read by one statement
// (so together).
// ErrNotFound if no account has it; the serial is returned with it then
// too, so a node that removes the subdomain can advance its own.
func (s *Store) Subdomain(ctx context.Context, name string) (storage.Subdomain, uint32, error) {
	op := "subdomain " + name
	if err := s.begin(ctx); err != nil {
		return storage.Subdomain{}, 0, s.wrapErr(ctx, op, err)
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	// The persist records come in the same statement (so from the same
	// snapshot), as rows of their own after the values: their serial is
	// NULL.
	query := `
		SELECT z.serial, a.subdomain, t.value, t.updated_at,
		       NULL::text, NULL::text, NULL::text, NULL::bigint, NULL::bigint
		FROM zone_meta AS z
		LEFT JOIN accounts AS a ON a.subdomain = $1
		LEFT JOIN txt_records AS t ON t.subdomain = a.subdomain
		WHERE z.id = 1
		UNION ALL
		SELECT NULL, NULL, NULL, NULL, p.issuer, p.account_uri, p.policy, p.persist_until, p.set_at
		FROM persist_records AS p WHERE p.subdomain = $1`
	if storage.IsOwnName(name) {
		// An own name exists while it holds values; it has no persist
		// records.
		query = `
		SELECT z.serial, t.subdomain, t.value, t.updated_at,
		       NULL::text, NULL::text, NULL::text, NULL::bigint, NULL::bigint
		FROM zone_meta AS z
		LEFT JOIN own_txt AS t ON t.subdomain = $1
		WHERE z.id = 1`
	}
	rows, err := s.pool.Query(octx, query, name)
	if err != nil {
		return storage.Subdomain{}, 0, s.wrapErr(ctx, op, err)
	}
	defer rows.Close()
	var (
		serial int64
		found  bool
		n      int
		out    = storage.Subdomain{Name: name}
	)
	for rows.Next() {
		var (
			zserial             *int64
			sub                 *string
			value               *string
			ns                  *int64
			issuer, uri, policy *string
			until, set          *int64
		)
		if err := rows.Scan(&zserial, &sub, &value, &ns, &issuer, &uri, &policy, &until, &set); err != nil {
			return storage.Subdomain{}, 0, s.wrapErr(ctx, op, err)
		}
		if zserial == nil { // a persist record
			if issuer != nil && uri != nil && policy != nil && until != nil && set != nil {
				out.Persist = append(out.Persist, persistRecord(*issuer, *uri, *policy, *until, *set))
			}
			continue
		}
		n++
		serial = *zserial
		found = found || sub != nil
		if value != nil && ns != nil {
			out.Records = append(out.Records, storage.TXTRecord{Value: *value, UpdatedAt: fromNanos(*ns)})
		}
	}
	if err := rows.Err(); err != nil {
		return storage.Subdomain{}, 0, s.wrapErr(ctx, op, err)
	}
	switch {
	case n == 0:
		return storage.Subdomain{}, 0, s.wrapErr(ctx, op, fmt.Errorf("zone_meta has no row: %w", errCorrupt))
	case !found:
		return storage.Subdomain{}, uint32(serial), s.wrapErr(ctx, op, storage.ErrNotFound)
	}
	sortRecords(out.Records)
	sortPersist(out.Persist)
	return out, uint32(serial), nil
}
