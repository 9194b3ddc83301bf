package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// CreateAccount stores a and returns the zone serial after the change.
// ErrConflict if the username or the subdomain is taken.
func (s *Store) CreateAccount(ctx context.Context, a storage.Account) (uint32, error) {
	op := "create account " + a.Username
	if err := validAccount(a); err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	allow, err := storage.EncodeAllowFrom(a.AllowFrom)
	if err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	var serial uint32
	err = s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		var err error
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

// insertAccount adds a (allow is its encoded allowfrom) and advances the
// serial, inside the writer's transaction.
func insertAccount(ctx context.Context, c *sql.Conn, a storage.Account, allow string) (uint32, error) {
	if _, err := c.ExecContext(ctx,
		`INSERT INTO accounts (username, key_hash, subdomain, allow_from, created_at, disabled) VALUES (?, ?, ?, ?, ?, ?)`,
		a.Username, a.KeyHash, a.Subdomain, allow, a.CreatedAt.UnixNano(), a.Disabled); err != nil {
		return 0, err
	}
	return bumpSerial(ctx, c, a.CreatedAt)
}

// DeleteAccount removes the account; its TXT values and persist records go
// with it (ON DELETE CASCADE), and the serial moves because what DNS serves
// changes.
func (s *Store) DeleteAccount(ctx context.Context, username string) (uint32, error) {
	return s.deleteAccount(ctx, "delete account "+username, username, nil)
}

// DeleteUnusedAccount deletes the account if it was last used at or before
// cutoff; see storage.Store. The check is part of the DELETE statement, in
// the writer's transaction: no update can come between the two.
func (s *Store) DeleteUnusedAccount(ctx context.Context, username string, cutoff time.Time) (uint32, error) {
	return s.deleteAccount(ctx, "delete unused account "+username, username, &cutoff)
}

// lastUse is an account's last use: its newest value's time, or its
// creation if it has none.
const lastUse = `coalesce((SELECT max(t.updated_at) FROM txt_records AS t WHERE t.subdomain = a.subdomain), a.created_at)`

func (s *Store) deleteAccount(ctx context.Context, op, username string, cutoff *time.Time) (uint32, error) {
	q, args := `DELETE FROM accounts AS a WHERE a.username = ?`, []any{username}
	if cutoff != nil {
		// An account holding a persist record is in use however long ago
		// it last wrote: the record authorizes issuance by itself.
		q, args = q+` AND `+lastUse+` <= ? AND NOT EXISTS (SELECT 1 FROM persist_records AS p WHERE p.subdomain = a.subdomain)`,
			append(args, cutoff.UnixNano())
	}
	var serial uint32
	err := s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		var sub string
		err := c.QueryRowContext(ctx, q+` RETURNING subdomain`, args...).Scan(&sub)
		if errors.Is(err, sql.ErrNoRows) && cutoff != nil {
			// Kept, or not there at all?
			if err := c.QueryRowContext(ctx, `SELECT subdomain FROM accounts WHERE username = ?`, username).Scan(&sub); err != nil {
				return err // ErrNoRows: ErrNotFound
			}
			return storage.ErrInUse
		}
		if err != nil {
			return err // ErrNoRows: ErrNotFound
		}
		if err := s.announceChange(ctx, c, sub); err != nil {
			return err
		}
		serial, err = bumpSerial(ctx, c, time.Now())
		return err
	})
	if err != nil {
		return 0, wrapErr(ctx, op, err)
	}
	return serial, nil
}

// Account returns the account with that username, or ErrNotFound.
func (s *Store) Account(ctx context.Context, username string) (storage.Account, error) {
	op := "account " + username
	if err := s.readable(ctx); err != nil {
		return storage.Account{}, wrapErr(ctx, op, err)
	}
	a := storage.Account{Username: username}
	var allow string
	var created, disabled int64
	err := s.db.QueryRowContext(ctx,
		`SELECT key_hash, subdomain, allow_from, created_at, disabled FROM accounts WHERE username = ?`, username).
		Scan(&a.KeyHash, &a.Subdomain, &allow, &created, &disabled)
	if err != nil {
		return storage.Account{}, wrapErr(ctx, op, err)
	}
	if a.AllowFrom, err = storage.DecodeAllowFrom(allow); err != nil {
		return storage.Account{}, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	a.CreatedAt = fromNanos(created)
	a.Disabled = disabled != 0
	return a, nil
}

// UpdateKeyHash replaces an account's key hash. It does not change the zone,
// so it leaves the serial alone.
func (s *Store) UpdateKeyHash(ctx context.Context, username, oldHash, newHash string) error {
	op := "update key hash of " + username
	if newHash == "" {
		return fmt.Errorf("sqlite: %s: empty key hash", op)
	}
	err := s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		err := execOne(ctx, c, `UPDATE accounts SET key_hash = ? WHERE username = ? AND key_hash = ?`, newHash, username, oldHash)
		if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		var one int
		switch err := c.QueryRowContext(ctx, `SELECT 1 FROM accounts WHERE username = ?`, username).Scan(&one); {
		case errors.Is(err, sql.ErrNoRows):
			return storage.ErrNotFound
		case err != nil:
			return err
		}
		return fmt.Errorf("the key was changed by another request: %w", storage.ErrConflict)
	})
	return wrapErr(ctx, op, err)
}

func validAccount(a storage.Account) error {
	switch {
	case a.Username == "":
		return errors.New("empty username")
	case a.Subdomain == "":
		return errors.New("empty subdomain")
	case a.KeyHash == "":
		return errors.New("empty key hash")
	}
	return storage.ValidTime("created_at", a.CreatedAt)
}

// fromNanos is the inverse of time.Time.UnixNano, in UTC.
func fromNanos(ns int64) time.Time { return time.Unix(0, ns).UTC() }
