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

// SetPersist stores rec among subdomain's persist records (replacing the
// one of the same issuer) and returns them all with the zone serial after
// the change; see storage.Store. The account row's lock orders concurrent
// changes of one account, so the limit holds under races.
func (s *Store) SetPersist(ctx context.Context, subdomain string, rec storage.PersistRecord) ([]storage.PersistRecord, uint32, error) {
	op := "set persist record of " + subdomain
	if err := rec.CheckSet(); err != nil {
		return nil, 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	var (
		recs   []storage.PersistRecord
		serial uint32
	)
	err := s.inTx(ctx, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		if err := lockName(ctx, tx, subdomain); err != nil {
			return err
		}
		var err error
		if recs, err = persistOf(ctx, tx, subdomain); err != nil {
			return err
		}
		if len(recs) >= storage.MaxPersistRecords && !slices.ContainsFunc(recs, func(r storage.PersistRecord) bool { return r.Issuer == rec.Issuer }) {
			return fmt.Errorf("the account holds %d persist records already, for other issuers: %w", len(recs), storage.ErrTooMany)
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO persist_records (subdomain, issuer, account_uri, policy, persist_until, set_at) VALUES ($1, $2, $3, $4, $5, $6)
			 ON CONFLICT (subdomain, issuer) DO UPDATE SET account_uri = excluded.account_uri, policy = excluded.policy,
			   persist_until = excluded.persist_until, set_at = excluded.set_at`,
			subdomain, rec.Issuer, rec.AccountURI, rec.Policy, rec.UntilUnix(), rec.SetAt.UnixNano()); err != nil {
			return err
		}
		if recs, err = persistOf(ctx, tx, subdomain); err != nil {
			return err
		}
		serial, err = s.bumpSerial(ctx, tx, subdomain, rec.SetAt, nil)
		return err
	})
	if err != nil {
		return nil, 0, s.wrapErr(ctx, op, err)
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
	err := s.inTx(ctx, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		recs, serial = nil, 0 // a retried transaction starts over
		if err := lockName(ctx, tx, subdomain); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM persist_records WHERE subdomain = $1 AND issuer = $2`, subdomain, issuer)
		if err != nil {
			return err
		}
		if recs, err = persistOf(ctx, tx, subdomain); err != nil || tag.RowsAffected() == 0 {
			return err
		}
		serial, err = s.bumpSerial(ctx, tx, subdomain, time.Now(), nil)
		return err
	})
	if err != nil {
		return nil, 0, s.wrapErr(ctx, op, err)
	}
	return recs, serial, nil
}

// PersistRecords returns subdomain's persist records, read with its
// account by one statement; ErrNotFound if no account has the subdomain.
func (s *Store) PersistRecords(ctx context.Context, subdomain string) ([]storage.PersistRecord, error) {
	op := "persist records of " + subdomain
	if err := s.begin(ctx); err != nil {
		return nil, s.wrapErr(ctx, op, err)
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(octx, `
		SELECT p.issuer, p.account_uri, p.policy, p.persist_until, p.set_at
		FROM accounts AS a LEFT JOIN persist_records AS p ON p.subdomain = a.subdomain
		WHERE a.subdomain = $1`, subdomain)
	if err != nil {
		return nil, s.wrapErr(ctx, op, err)
	}
	defer rows.Close()
	var recs []storage.PersistRecord
	found := false
	for rows.Next() {
		found = true
		var issuer, uri, policy *string
		var until, set *int64
		if err := rows.Scan(&issuer, &uri, &policy, &until, &set); err != nil {
			return nil, s.wrapErr(ctx, op, err)
		}
		if issuer != nil {
			recs = append(recs, persistRecord(*issuer, *uri, *policy, *until, *set))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrapErr(ctx, op, err)
	}
	if !found {
		return nil, s.wrapErr(ctx, op, fmt.Errorf("no account has this subdomain: %w", storage.ErrNotFound))
	}
	sortPersist(recs)
	return recs, nil
}

const persistColumns = `issuer, account_uri, policy, persist_until, set_at`

// persistOf reads sub's persist records, by issuer.
func persistOf(ctx context.Context, tx pgx.Tx, sub string) ([]storage.PersistRecord, error) {
	rows, err := tx.Query(ctx, `SELECT `+persistColumns+` FROM persist_records WHERE subdomain = $1`, sub)
	if err != nil {
		return nil, err
	}
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.PersistRecord, error) {
		var issuer, uri, policy string
		var until, set int64
		err := row.Scan(&issuer, &uri, &policy, &until, &set)
		return persistRecord(issuer, uri, policy, until, set), err
	})
	sortPersist(recs)
	return recs, err
}

// allPersist reads every persist record, by subdomain: few accounts have
// any, so the snapshot holds them in memory and hands each account its own
// as it streams the accounts, instead of joining a third table per row.
func allPersist(ctx context.Context, tx pgx.Tx) (map[string][]storage.PersistRecord, error) {
	rows, err := tx.Query(ctx, `SELECT subdomain, `+persistColumns+` FROM persist_records`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := map[string][]storage.PersistRecord{}
	for rows.Next() {
		var sub, issuer, uri, policy string
		var until, set int64
		if err := rows.Scan(&sub, &issuer, &uri, &policy, &until, &set); err != nil {
			return nil, err
		}
		m[sub] = append(m[sub], persistRecord(issuer, uri, policy, until, set))
	}
	for _, recs := range m {
		sortPersist(recs)
	}
	return m, rows.Err()
}

func persistRecord(issuer, uri, policy string, until, set int64) storage.PersistRecord {
	return storage.PersistRecord{Issuer: issuer, AccountURI: uri, Policy: policy, PersistUntil: storage.UntilFromUnix(until), SetAt: fromNanos(set)}
}

// sortPersist orders records by issuer bytewise, as SQLite's primary key
// does, whatever the database's collation.
func sortPersist(recs []storage.PersistRecord) {
	slices.SortFunc(recs, func(a, b storage.PersistRecord) int { return strings.Compare(a.Issuer, b.Issuer) })
}
