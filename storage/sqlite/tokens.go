package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// UpdateAllowFrom replaces an account's allowed sources. Like the key hash,
// it does not change the zone, so the serial stays.
func (s *Store) UpdateAllowFrom(ctx context.Context, username string, allow []netip.Prefix) error {
	op := "update allowfrom of " + username
	enc, err := storage.EncodeAllowFrom(allow)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	err = s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		return execOne(ctx, c, `UPDATE accounts SET allow_from = ? WHERE username = ?`, enc, username)
	})
	return wrapErr(ctx, op, err)
}

// CreateAccountWithToken stores a and counts it against the token, in one
// transaction: a token never registers more accounts than its limit, even
// with many registrations racing.
func (s *Store) CreateAccountWithToken(ctx context.Context, a storage.Account, tokenID string) (uint32, error) {
	op := "create account " + a.Username + " with token " + tokenID
	if err := validAccount(a); err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	allow, err := storage.EncodeAllowFrom(a.AllowFrom)
	if err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	var serial uint32
	err = s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		t, err := scanToken(c.QueryRowContext(ctx, tokenColumns+` WHERE id = ?`, tokenID))
		if err != nil {
			return err
		}
		if why := t.Usable(a.CreatedAt); why != "" {
			return fmt.Errorf("%w: %s", storage.ErrTokenInvalid, why)
		}
		if err := execOne(ctx, c, `UPDATE tokens SET accounts = accounts + 1 WHERE id = ?`, tokenID); err != nil {
			return err
		}
		if serial, err = insertAccount(ctx, c, a, allow); err != nil {
			return err
		}
		return s.announceChange(ctx, c, a.Subdomain)
	})
	if err != nil {
		return 0, wrapErr(ctx, op, err)
	}
	return serial, nil
}

// CreateToken stores t. ErrConflict if the ID is taken.
func (s *Store) CreateToken(ctx context.Context, t storage.Token) error {
	op := "create token " + t.ID
	if err := t.Check(); err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	allow, err := storage.EncodeAllowFrom(t.AllowFrom)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	err = s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		_, err := c.ExecContext(ctx, `INSERT INTO tokens (id, secret_hash, comment, max_accounts, accounts, allow_from, expires_at, created_at, revoked_at)
			VALUES (?, ?, ?, ?, 0, ?, ?, ?, 0)`,
			t.ID, t.Hash, t.Comment, t.MaxAccounts, allow, nanosOrZero(t.ExpiresAt), t.CreatedAt.UnixNano())
		return err
	})
	return wrapErr(ctx, op, err)
}

// Token returns the token with that ID, or ErrNotFound.
func (s *Store) Token(ctx context.Context, id string) (storage.Token, error) {
	op := "token " + id
	if err := s.readable(ctx); err != nil {
		return storage.Token{}, wrapErr(ctx, op, err)
	}
	t, err := scanToken(s.db.QueryRowContext(ctx, tokenColumns+` WHERE id = ?`, id))
	return t, wrapErr(ctx, op, err)
}

// Tokens returns every token, oldest first.
func (s *Store) Tokens(ctx context.Context) ([]storage.Token, error) {
	const op = "list tokens"
	if err := s.readable(ctx); err != nil {
		return nil, wrapErr(ctx, op, err)
	}
	rows, err := s.db.QueryContext(ctx, tokenColumns+` ORDER BY created_at, id`)
	if err != nil {
		return nil, wrapErr(ctx, op, err)
	}
	defer rows.Close()
	var out []storage.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, wrapErr(ctx, op, err)
		}
		out = append(out, t)
	}
	return out, wrapErr(ctx, op, rows.Err())
}

// RevokeToken marks the token revoked (the first revocation time stays).
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	op := "revoke token " + id
	if err := storage.ValidTime("revoked_at", at); err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	err := s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		if err := execOne(ctx, c, `UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at = 0`, at.UnixNano(), id); !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		// Already revoked (fine) or no such token.
		var one int
		return c.QueryRowContext(ctx, `SELECT 1 FROM tokens WHERE id = ?`, id).Scan(&one)
	})
	return wrapErr(ctx, op, err)
}

const tokenColumns = `SELECT id, secret_hash, comment, max_accounts, accounts, allow_from, expires_at, created_at, revoked_at FROM tokens`

func scanToken(row interface{ Scan(...any) error }) (storage.Token, error) {
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

// execOne runs a statement that must change exactly one row: ErrNotFound
// when it changes none.
func execOne(ctx context.Context, c *sql.Conn, query string, args ...any) error {
	res, err := c.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}

func nanosOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// readable is the check every read does first.
func (s *Store) readable(ctx context.Context) error {
	if s.isClosed.Load() {
		return errClosed
	}
	return ctx.Err()
}
