package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// SetTXT adds value to subdomain's TXT set at time at (or moves an existing
// value's time to at), deletes what policy no longer keeps at that time, and
// returns the values kept, newest first, with the zone serial after the
// change. ErrNotFound if no account has that subdomain.
//
// Values with equal times are ordered by value, here and in Snapshot. A value
// set with an at older than the values already kept sorts behind them and
// may be dropped at once by the policy it was set with.
func (s *Store) SetTXT(ctx context.Context, subdomain, value string, at time.Time, policy storage.TXTPolicy) ([]storage.TXTRecord, uint32, error) {
	op := "set txt for " + subdomain
	if err := policy.CheckAt(at); err != nil {
		return nil, 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	var (
		kept   []storage.TXTRecord
		serial uint32
	)
	err := s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		var err error
		kept, err = setTXT(ctx, c, subdomain, value, at, policy)
		if err != nil {
			return err
		}
		if err := s.announceChange(ctx, c, subdomain); err != nil {
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

// setTXT is SetTXT's work inside the writer's transaction.
func setTXT(ctx context.Context, c *sql.Conn, sub, value string, at time.Time, policy storage.TXTPolicy) ([]storage.TXTRecord, error) {
	if _, err := c.ExecContext(ctx,
		`INSERT INTO txt_records (subdomain, value, updated_at) VALUES (?, ?, ?)
		 ON CONFLICT (subdomain, value) DO UPDATE SET updated_at = excluded.updated_at`,
		sub, value, at.UnixNano()); err != nil {
		if isForeignKey(err) {
			return nil, fmt.Errorf("no account has this subdomain: %w", storage.ErrNotFound)
		}
		return nil, err
	}
	kept, _, err := trimTXT(ctx, c, sub, at, policy)
	return kept, err
}

// trimTXT deletes the values of sub that policy no longer keeps at time at
// and returns the kept ones, newest first, and how many it deleted.
func trimTXT(ctx context.Context, c *sql.Conn, sub string, at time.Time, policy storage.TXTPolicy) ([]storage.TXTRecord, int, error) {
	q := txtQueries(sub)
	rows, err := c.QueryContext(ctx, q.values, sub)
	if err != nil {
		return nil, 0, err
	}
	recs, err := scanRecords(rows)
	if err != nil {
		return nil, 0, err
	}
	kept := policy.Keep(recs, at)
	for _, r := range recs[len(kept):] {
		if _, err := c.ExecContext(ctx, q.delete, sub, r.Value); err != nil {
			return nil, 0, err
		}
	}
	return slices.Clip(kept), len(recs) - len(kept), nil
}

// PruneTXT deletes the values of subdomain that policy no longer keeps at
// time now (they have aged out of the window; DNS stopped serving them
// then). If it deletes any, the zone serial moves so that secondaries drop
// them too; see storage.Store.
func (s *Store) PruneTXT(ctx context.Context, subdomain string, now time.Time, policy storage.TXTPolicy) (int, uint32, error) {
	op := "prune txt of " + subdomain
	if err := policy.CheckAt(now); err != nil {
		return 0, 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	var (
		n      int
		serial uint32
	)
	err := s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		var err error
		_, n, err = trimTXT(ctx, c, subdomain, now, policy)
		if err != nil || n == 0 {
			return err
		}
		if err := s.announceChange(ctx, c, subdomain); err != nil {
			return err
		}
		serial, err = bumpSerial(ctx, c, now)
		return err
	})
	if err != nil {
		return 0, 0, wrapErr(ctx, op, err)
	}
	return n, serial, nil
}

// valuesQuery reads one subdomain's values through the primary key
// (subdomain, value); scanRecords puts them newest first.
const valuesQuery = `SELECT value, updated_at FROM txt_records WHERE subdomain = ?`

// txtStatements read and delete the values of one name.
type txtStatements struct{ values, delete string }

var (
	accountTXT = txtStatements{valuesQuery, `DELETE FROM txt_records WHERE subdomain = ? AND value = ?`}
	ownTXT     = txtStatements{`SELECT value, updated_at FROM own_txt WHERE subdomain = ?`, `DELETE FROM own_txt WHERE subdomain = ? AND value = ?`}
)

// txtQueries returns the statements for name's values: own names
// (storage.IsOwnName) have their own table (migration 0008).
func txtQueries(name string) txtStatements {
	if storage.IsOwnName(name) {
		return ownTXT
	}
	return accountTXT
}

// newestFirst orders a subdomain's values newest first, equal times by
// value: the order of TXTPolicy.Keep and of every answer.
func newestFirst(recs []storage.TXTRecord) {
	slices.SortFunc(recs, func(a, b storage.TXTRecord) int {
		if c := b.UpdatedAt.Compare(a.UpdatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
}

// scanRecords reads value, updated_at rows, newest first.
func scanRecords(rows *sql.Rows) ([]storage.TXTRecord, error) {
	defer rows.Close()
	var recs []storage.TXTRecord
	for rows.Next() {
		var r storage.TXTRecord
		var ns int64
		if err := rows.Scan(&r.Value, &ns); err != nil {
			return nil, err
		}
		r.UpdatedAt = fromNanos(ns)
		recs = append(recs, r)
	}
	newestFirst(recs)
	return recs, rows.Err()
}

// bumpSerial advances the zone serial for a change made at time at, inside
// the writer's transaction, and returns the new serial.
func bumpSerial(ctx context.Context, c *sql.Conn, at time.Time) (uint32, error) {
	var old int64
	if err := c.QueryRowContext(ctx, `SELECT serial FROM zone_meta WHERE id = 1`).Scan(&old); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("zone_meta has no row: %w", errCorrupt)
		}
		return 0, err
	}
	next := nextSerial(uint32(old), at)
	if _, err := c.ExecContext(ctx, `UPDATE zone_meta SET serial = ? WHERE id = 1`, next); err != nil {
		return 0, err
	}
	return next, nil
}

// nextSerial is the serial after old for a change at time at: old+1, or at's
// Unix time when that is larger, so serials read as timestamps and stay
// ahead of any a previous database handed out. It never goes back, because
// old is persisted with every change. After 2^32-1 it wraps to 1, which RFC
// 1982 serial arithmetic reads as an increase (in the year 2106 at the
// earliest, or after 4 billion writes).
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

// snapshotQuery walks every account with its values, in subdomain order.
const snapshotQuery = `
	SELECT a.subdomain, t.value, t.updated_at
	FROM accounts AS a LEFT JOIN txt_records AS t ON t.subdomain = a.subdomain
	ORDER BY a.subdomain, t.value`

// Snapshot calls fn for every registered subdomain, in subdomain order, with
// its values newest first and its persist records, and returns the serial
// of that state. It reads in
// one transaction, so the serial matches the data, and streams: memory holds
// one subdomain at a time, whatever the number of accounts. fn must not
// write to the store (the snapshot would not see it).
func (s *Store) Snapshot(ctx context.Context, fn func(storage.Subdomain) error) (uint32, error) {
	const op = "snapshot"
	if s.isClosed.Load() {
		return 0, wrapErr(ctx, op, errClosed)
	}
	if err := ctx.Err(); err != nil {
		return 0, wrapErr(ctx, op, err)
	}
	// A deferred transaction: reads only, so it never blocks the writer.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, wrapErr(ctx, op, err)
	}
	defer func() { _ = tx.Rollback() }()

	var serial int64
	if err := tx.QueryRowContext(ctx, `SELECT serial FROM zone_meta WHERE id = 1`).Scan(&serial); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			err = fmt.Errorf("zone_meta has no row: %w", errCorrupt)
		}
		return 0, wrapErr(ctx, op, err)
	}
	persist, err := allPersist(ctx, tx)
	if err != nil {
		return 0, wrapErr(ctx, op, err)
	}
	// The accounts.subdomain index gives the outer order and the
	// txt_records primary key the inner one, so SQLite streams rows
	// without sorting (see TestSnapshotQueryPlan); each subdomain's few
	// values are put newest first here.
	rows, err := tx.QueryContext(ctx, snapshotQuery)
	if err != nil {
		return 0, wrapErr(ctx, op, err)
	}
	defer rows.Close()

	var cur storage.Subdomain
	have := false
	for rows.Next() {
		var (
			sub   string
			value sql.NullString
			ns    sql.NullInt64
		)
		if err := rows.Scan(&sub, &value, &ns); err != nil {
			return 0, wrapErr(ctx, op, err)
		}
		if !have || sub != cur.Name {
			if have {
				newestFirst(cur.Records)
				if err := fn(cur); err != nil {
					return 0, fmt.Errorf("sqlite: %s: %w", op, err)
				}
			}
			// Both walks are in subdomain order (bytewise), so each
			// account's records are at the head of what is left.
			for len(persist) > 0 && persist[0].sub < sub {
				persist = persist[1:] // no account (cannot happen with the foreign key on)
			}
			cur, have = storage.Subdomain{Name: sub}, true
			if len(persist) > 0 && persist[0].sub == sub {
				cur.Persist, persist = persist[0].recs, persist[1:]
			}
		}
		if value.Valid {
			cur.Records = append(cur.Records, storage.TXTRecord{Value: value.String, UpdatedAt: fromNanos(ns.Int64)})
		}
	}
	if err := rows.Err(); err != nil {
		return 0, wrapErr(ctx, op, err)
	}
	if have {
		newestFirst(cur.Records)
		if err := fn(cur); err != nil {
			return 0, fmt.Errorf("sqlite: %s: %w", op, err)
		}
	}
	if err := ownSnapshot(ctx, tx, fn); err != nil {
		if cb, ok := err.(*callbackError); ok {
			return 0, fmt.Errorf("sqlite: %s: %w", op, cb.err)
		}
		return 0, wrapErr(ctx, op, err)
	}
	return uint32(serial), nil
}
