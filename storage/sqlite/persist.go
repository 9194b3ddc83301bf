package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// SetPersist stores rec among subdomain's persist records (replacing the
// one of the same issuer) and returns them all with the zone serial after
// the change; see storage.Store.
func (s *Store) SetPersist(ctx context.Context, subdomain string, rec storage.PersistRecord) ([]storage.PersistRecord, uint32, error) {
	op := "set persist record of " + subdomain
	if err := rec.CheckSet(); err != nil {
		return nil, 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	var (
		recs   []storage.PersistRecord
		serial uint32
	)
	err := s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		var err error
		if recs, err = persistOf(ctx, c, subdomain); err != nil {
			return err
		}
		if len(recs) >= storage.MaxPersistRecords && !slices.ContainsFunc(recs, func(r storage.PersistRecord) bool { return r.Issuer == rec.Issuer }) {
			return fmt.Errorf("the account holds %d persist records already, for other issuers: %w", len(recs), storage.ErrTooMany)
		}
		if _, err := c.ExecContext(ctx,
			`INSERT INTO persist_records (subdomain, issuer, account_uri, policy, persist_until, set_at) VALUES (?, ?, ?, ?, ?, ?)
			 ON CONFLICT (subdomain, issuer) DO UPDATE SET account_uri = excluded.account_uri, policy = excluded.policy,
			   persist_until = excluded.persist_until, set_at = excluded.set_at`,
			subdomain, rec.Issuer, rec.AccountURI, rec.Policy, rec.UntilUnix(), rec.SetAt.UnixNano()); err != nil {
			if isForeignKey(err) {
				return fmt.Errorf("no account has this subdomain: %w", storage.ErrNotFound)
			}
			return err
		}
		if recs, err = persistOf(ctx, c, subdomain); err != nil {
			return err
		}
		if err := s.announceChange(ctx, c, subdomain); err != nil {
			return err
		}
		serial, err = bumpSerial(ctx, c, rec.SetAt)
		return err
	})
	if err != nil {
		return nil, 0, wrapErr(ctx, op, err)
	}
	return recs, serial, nil
}

// DeletePersist removes subdomain's persist record of issuer; see
// storage.Store.
func (s *Store) DeletePersist(ctx context.Context, subdomain, issuer string) ([]storage.PersistRecord, uint32, error) {
	op := "delete persist record of " + subdomain
	var (
		recs   []storage.PersistRecord
		serial uint32
	)
	err := s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		recs, serial = nil, 0
		if err := accountExists(ctx, c, subdomain); err != nil {
			return err
		}
		res, err := c.ExecContext(ctx, `DELETE FROM persist_records WHERE subdomain = ? AND issuer = ?`, subdomain, issuer)
		if err != nil {
			return err
		}
		if recs, err = persistOf(ctx, c, subdomain); err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		if err := s.announceChange(ctx, c, subdomain); err != nil {
			return err
		}
		serial, err = bumpSerial(ctx, c, time.Now())
		return err
	})
	if err != nil {
		return nil, 0, wrapErr(ctx, op, err)
	}
	return recs, serial, nil
}

// PersistRecords returns subdomain's persist records; ErrNotFound if no
// account has the subdomain.
func (s *Store) PersistRecords(ctx context.Context, subdomain string) ([]storage.PersistRecord, error) {
	op := "persist records of " + subdomain
	if err := s.readable(ctx); err != nil {
		return nil, wrapErr(ctx, op, err)
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, wrapErr(ctx, op, err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := accountExists(ctx, tx, subdomain); err != nil {
		return nil, wrapErr(ctx, op, err)
	}
	recs, err := persistOf(ctx, tx, subdomain)
	return recs, wrapErr(ctx, op, err)
}

// querier is what the persist reads need of a *sql.Conn or *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// accountExists returns storage.ErrNotFound if no account has sub.
func accountExists(ctx context.Context, q querier, sub string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM accounts WHERE subdomain = ?`, sub).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("no account has this subdomain: %w", storage.ErrNotFound)
	}
	return err
}

// persistColumns are a persist record's columns as scanPersist reads them;
// the primary key orders them by issuer (bytewise).
const persistColumns = `issuer, account_uri, policy, persist_until, set_at`

// persistOf reads sub's persist records, by issuer.
func persistOf(ctx context.Context, q querier, sub string) ([]storage.PersistRecord, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+persistColumns+` FROM persist_records WHERE subdomain = ? ORDER BY issuer`, sub)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var recs []storage.PersistRecord
	for rows.Next() {
		r, err := scanPersist(rows)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, rows.Err()
}

// persistGroup is one subdomain's persist records.
type persistGroup struct {
	sub  string
	recs []storage.PersistRecord
}

// allPersist reads every persist record, grouped by subdomain in subdomain
// order (bytewise, as the snapshot walks the accounts). Few accounts have
// any, so the snapshot holds them in memory and hands each account its own
// as it streams past, instead of joining a third table per row; it merges
// the two walks rather than looking each account up in a map, which cost a
// tenth of a million-account snapshot.
func allPersist(ctx context.Context, q querier) ([]persistGroup, error) {
	rows, err := q.QueryContext(ctx, `SELECT subdomain, `+persistColumns+` FROM persist_records ORDER BY subdomain, issuer`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var groups []persistGroup
	for rows.Next() {
		var sub string
		r, err := scanPersist(rows, &sub)
		if err != nil {
			return nil, err
		}
		if n := len(groups); n > 0 && groups[n-1].sub == sub {
			groups[n-1].recs = append(groups[n-1].recs, r)
		} else {
			groups = append(groups, persistGroup{sub: sub, recs: []storage.PersistRecord{r}})
		}
	}
	return groups, rows.Err()
}

// scanPersist reads persistColumns, after the destinations in first.
func scanPersist(rows *sql.Rows, first ...any) (storage.PersistRecord, error) {
	var (
		r          storage.PersistRecord
		until, set int64
	)
	if err := rows.Scan(append(first, &r.Issuer, &r.AccountURI, &r.Policy, &until, &set)...); err != nil {
		return r, err
	}
	r.PersistUntil = storage.UntilFromUnix(until)
	r.SetAt = fromNanos(set)
	return r, nil
}
