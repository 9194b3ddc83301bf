package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/acmebroker/acmebroker/storage"
)

// accountInfoColumns reads accounts with their use. The correlated
// subqueries read the account's range of the txt_records primary key (at
// most txt_max values) and of the persist_records one (at most 8).
const accountInfoColumns = `
	SELECT a.username, a.key_hash, a.subdomain, a.allow_from, a.created_at, a.disabled,
	       (SELECT count(*) FROM txt_records AS t WHERE t.subdomain = a.subdomain),
	       (SELECT max(t.updated_at) FROM txt_records AS t WHERE t.subdomain = a.subdomain),
	       (SELECT count(*) FROM persist_records AS p WHERE p.subdomain = a.subdomain)
	FROM accounts AS a`

// accountsQuery lists accounts with their use; the walk follows the
// accounts.subdomain index, so nothing is sorted and rows stream
// (TestAccountsQueryPlan).
const accountsQuery = accountInfoColumns + `
	ORDER BY a.subdomain`

// Accounts calls fn for every account, in subdomain order, with the number
// of its TXT values and the time of the newest. It reads in one transaction
// and streams: memory holds one account at a time. fn must not write to the
// store.
//
// The newest value's time is the last update: values are deleted only by
// the TXT policy, which always keeps the newest ones.
func (s *Store) Accounts(ctx context.Context, fn func(storage.AccountInfo) error) error {
	const op = "list accounts"
	if err := s.readable(ctx); err != nil {
		return wrapErr(ctx, op, err)
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return wrapErr(ctx, op, err)
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, accountsQuery)
	if err != nil {
		return wrapErr(ctx, op, err)
	}
	defer rows.Close()
	for rows.Next() {
		ai, err := scanAccountInfo(rows)
		if err != nil {
			return wrapErr(ctx, op, err)
		}
		if err := fn(ai); err != nil {
			return fmt.Errorf("sqlite: %s: %w", op, err)
		}
	}
	return wrapErr(ctx, op, rows.Err())
}

// AccountBySubdomain returns the account holding subdomain name with its
// use, through the subdomain's unique index; ErrNotFound if none.
func (s *Store) AccountBySubdomain(ctx context.Context, name string) (storage.AccountInfo, error) {
	op := "account of subdomain " + name
	if err := s.readable(ctx); err != nil {
		return storage.AccountInfo{}, wrapErr(ctx, op, err)
	}
	ai, err := scanAccountInfo(s.db.QueryRowContext(ctx, accountInfoColumns+` WHERE a.subdomain = ?`, name))
	return ai, wrapErr(ctx, op, err)
}

func scanAccountInfo(row interface{ Scan(...any) error }) (storage.AccountInfo, error) {
	var (
		ai       storage.AccountInfo
		allow    string
		created  int64
		disabled int64
		last     sql.NullInt64
	)
	if err := row.Scan(&ai.Username, &ai.KeyHash, &ai.Subdomain, &allow, &created, &disabled, &ai.Values, &last, &ai.Persist); err != nil {
		return storage.AccountInfo{}, err
	}
	var err error
	if ai.AllowFrom, err = storage.DecodeAllowFrom(allow); err != nil {
		return storage.AccountInfo{}, fmt.Errorf("account %s: %w", ai.Username, err)
	}
	ai.CreatedAt = fromNanos(created)
	ai.Disabled = disabled != 0
	if last.Valid {
		ai.LastUpdate = fromNanos(last.Int64)
	}
	return ai, nil
}

// SetDisabled disables or enables an account. The zone does not change, so
// the serial stays.
func (s *Store) SetDisabled(ctx context.Context, username string, disabled bool) error {
	op := "enable account " + username
	if disabled {
		op = "disable account " + username
	}
	v := 0
	if disabled {
		v = 1
	}
	err := s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		return execOne(ctx, c, `UPDATE accounts SET disabled = ? WHERE username = ?`, v, username)
	})
	return wrapErr(ctx, op, err)
}

// Subdomain returns one registered subdomain with its values, newest first,
// its persist records and the zone serial, read in one transaction so they match. ErrNotFound
// comes with the serial too.
func (s *Store) Subdomain(ctx context.Context, name string) (storage.Subdomain, uint32, error) {
	op := "subdomain " + name
	if err := s.readable(ctx); err != nil {
		return storage.Subdomain{}, 0, wrapErr(ctx, op, err)
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return storage.Subdomain{}, 0, wrapErr(ctx, op, err)
	}
	defer func() { _ = tx.Rollback() }()
	var serial int64
	if err := tx.QueryRowContext(ctx, `SELECT serial FROM zone_meta WHERE id = 1`).Scan(&serial); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			err = fmt.Errorf("zone_meta has no row: %w", errCorrupt)
		}
		return storage.Subdomain{}, 0, wrapErr(ctx, op, err)
	}
	own := storage.IsOwnName(name)
	if !own {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM accounts WHERE subdomain = ?`, name).Scan(&one); err != nil {
			// ErrNoRows -> ErrNotFound, with the serial: a node removing the
			// subdomain applies it at that serial (internal/nodesync).
			return storage.Subdomain{}, uint32(serial), wrapErr(ctx, op, err)
		}
	}
	rows, err := tx.QueryContext(ctx, txtQueries(name).values, name)
	if err != nil {
		return storage.Subdomain{}, 0, wrapErr(ctx, op, err)
	}
	recs, err := scanRecords(rows)
	if err != nil {
		return storage.Subdomain{}, 0, wrapErr(ctx, op, err)
	}
	if own {
		if len(recs) == 0 {
			// An own name exists while it holds values.
			return storage.Subdomain{}, uint32(serial), wrapErr(ctx, op, storage.ErrNotFound)
		}
		return storage.Subdomain{Name: name, Records: recs}, uint32(serial), nil
	}
	persist, err := persistOf(ctx, tx, name)
	if err != nil {
		return storage.Subdomain{}, 0, wrapErr(ctx, op, err)
	}
	return storage.Subdomain{Name: name, Records: recs, Persist: persist}, uint32(serial), nil
}
