package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/acmebroker/acmebroker/storage"
)

// CreateAccountWithToken stores a and counts it against the token, in one
// transaction that locks the token row: a token never registers more
// accounts than its limit, even with registrations racing on several nodes.
func (s *Store) CreateAccountWithToken(ctx context.Context, a storage.Account, tokenID string) (uint32, error) {
	op := "create account " + a.Username + " with token " + tokenID
	allow, err := checkAccount(a)
	if err != nil {
		return 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	var serial uint32
	err = s.inTx(ctx, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		t, err := scanToken(tx.QueryRow(ctx, tokenColumns+` WHERE id = $1 FOR UPDATE`, tokenID))
		if err != nil {
			return err
		}
		if why := t.Usable(a.CreatedAt); why != "" {
			return fmt.Errorf("%w: %s", storage.ErrTokenInvalid, why)
		}
		if err := execOne(ctx, tx, `UPDATE tokens SET accounts = accounts + 1 WHERE id = $1`, tokenID); err != nil {
			return err
		}
		serial, err = s.insertAccount(ctx, tx, a, allow)
		return err
	})
	if err != nil {
		return 0, s.wrapErr(ctx, op, err)
	}
	return serial, nil
}

// CreateToken stores t. ErrConflict if the ID is taken.
func (s *Store) CreateToken(ctx context.Context, t storage.Token) error {
	op := "create token " + t.ID
	if err := t.Check(); err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	allow, err := storage.EncodeAllowFrom(t.AllowFrom)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return s.wrapErr(ctx, op, s.exec(ctx,
		`INSERT INTO tokens (id, secret_hash, comment, max_accounts, accounts, allow_from, expires_at, created_at, revoked_at)
		 VALUES ($1, $2, $3, $4, 0, $5, $6, $7, 0)`,
		t.ID, t.Hash, t.Comment, t.MaxAccounts, allow, nanosOrZero(t.ExpiresAt), t.CreatedAt.UnixNano()))
}

// Token returns the token with that ID, or ErrNotFound.
func (s *Store) Token(ctx context.Context, id string) (storage.Token, error) {
	op := "token " + id
	if err := s.begin(ctx); err != nil {
		return storage.Token{}, s.wrapErr(ctx, op, err)
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	t, err := scanToken(s.pool.QueryRow(octx, tokenColumns+` WHERE id = $1`, id))
	return t, s.wrapErr(ctx, op, err)
}

// Tokens returns every token, oldest first.
func (s *Store) Tokens(ctx context.Context) ([]storage.Token, error) {
	const op = "list tokens"
	if err := s.begin(ctx); err != nil {
		return nil, s.wrapErr(ctx, op, err)
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(octx, tokenColumns+` ORDER BY created_at, id`)
	if err != nil {
		return nil, s.wrapErr(ctx, op, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.Token, error) { return scanToken(row) })
	return out, s.wrapErr(ctx, op, err)
}

// RevokeToken marks the token revoked (the first revocation time stays).
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	op := "revoke token " + id
	if err := storage.ValidTime("revoked_at", at); err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	err := s.inTx(ctx, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		err := execOne(ctx, tx, `UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at = 0`, at.UnixNano(), id)
		if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		// Already revoked (fine) or no such token.
		var one int
		return tx.QueryRow(ctx, `SELECT 1 FROM tokens WHERE id = $1`, id).Scan(&one)
	})
	return s.wrapErr(ctx, op, err)
}

const tokenColumns = `SELECT id, secret_hash, comment, max_accounts, accounts, allow_from, expires_at, created_at, revoked_at FROM tokens`

func scanToken(row pgx.Row) (storage.Token, error) {
	var t storage.Token
	var allow string
	var expires, created, revoked int64
	if err := row.Scan(&t.ID, &t.Hash, &t.Comment, &t.MaxAccounts, &t.Accounts, &allow, &expires, &created, &revoked); err != nil {
		return storage.Token{}, err
	}
	var err error
	if t.AllowFrom, err = storage.DecodeAllowFrom(allow); err != nil {
		return storage.Token{}, err
	}
	t.CreatedAt = fromNanos(created)
	if expires != 0 {
		t.ExpiresAt = fromNanos(expires)
	}
	if revoked != 0 {
		t.RevokedAt = fromNanos(revoked)
	}
	return t, nil
}
