package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/acmebroker/acmebroker/storage"
)

// Accounts calls fn for every account, in subdomain order (bytewise, as
// SQLite's, whatever the database's collation), with its number of values
// and the time of its newest. It streams from one query: memory holds one
// account at a time. fn must not write to the store.
func (s *Store) Accounts(ctx context.Context, fn func(storage.AccountInfo) error) error {
	const op = "list accounts"
	if err := s.begin(ctx); err != nil {
		return s.wrapErr(ctx, op, err)
	}
	// No OpTimeout: fn may take its time (an admin paging through output).
	rows, err := s.pool.Query(ctx, accountInfoColumns+`
		ORDER BY a.subdomain COLLATE "C"`) // an expression COLLATE: CockroachDB 22.2+ takes it too
	if err != nil {
		return s.wrapErr(ctx, op, err)
	}
	defer rows.Close()
	for rows.Next() {
		info, err := scanAccountInfo(rows)
		if err != nil {
			return s.wrapErr(ctx, op, err)
		}
		if err := fn(info); err != nil {
			return fmt.Errorf("postgres: %s: %w", op, err)
		}
	}
	return s.wrapErr(ctx, op, rows.Err())
}

// AccountBySubdomain returns the account holding subdomain name with its
// use, through the subdomain's unique index; ErrNotFound if none.
func (s *Store) AccountBySubdomain(ctx context.Context, name string) (storage.AccountInfo, error) {
	op := "account of subdomain " + name
	if err := s.begin(ctx); err != nil {
		return storage.AccountInfo{}, s.wrapErr(ctx, op, err)
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	info, err := scanAccountInfo(s.pool.QueryRow(octx, accountInfoColumns+` WHERE a.subdomain = $1`, name))
	return info, s.wrapErr(ctx, op, err)
}

// accountInfoColumns reads accounts with the number of their values, the
// newest value's time and the number of their persist records.
const accountInfoColumns = `
	SELECT a.username, a.key_hash, a.subdomain, a.allow_from, a.created_at, a.disabled,
	       (SELECT count(*) FROM txt_records AS t WHERE t.subdomain = a.subdomain),
	       (SELECT max(t.updated_at) FROM txt_records AS t WHERE t.subdomain = a.subdomain),
	       (SELECT count(*) FROM persist_records AS p WHERE p.subdomain = a.subdomain)
	FROM accounts AS a`

func scanAccountInfo(row pgx.Row) (storage.AccountInfo, error) {
	var (
		info  storage.AccountInfo
		allow string
		ctime int64
		n     int64
		last  *int64
		pn    int64
	)
	if err := row.Scan(&info.Username, &info.KeyHash, &info.Subdomain, &allow, &ctime, &info.Disabled, &n, &last, &pn); err != nil {
		return storage.AccountInfo{}, err
	}
	var err error
	if info.AllowFrom, err = storage.DecodeAllowFrom(allow); err != nil {
		return storage.AccountInfo{}, fmt.Errorf("account %s: %w", info.Username, err)
	}
	info.CreatedAt = fromNanos(ctime)
	info.Values = int(n)
	info.Persist = int(pn)
	if last != nil {
		info.LastUpdate = fromNanos(*last)
	}
	return info, nil
}
