package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/acmebroker/acmebroker/storage"
)

// CreateAccount stores a and returns the zone serial after the change.
// ErrConflict if the username or the subdomain is taken.
func (s *Store) CreateAccount(ctx context.Context, a storage.Account) (uint32, error) {
	op := "create account " + a.Username
	allow, err := checkAccount(a)
	if err != nil {
		return 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	var serial uint32
	err = s.inTx(ctx, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		serial, err = s.insertAccount(ctx, tx, a, allow)
		return err
	})
	if err != nil {
		return 0, s.wrapErr(ctx, op, err)
	}
	return serial, nil
}

// insertAccount adds a (allow is its encoded allowfrom) and advances the
// serial, inside the caller's transaction.
func (s *Store) insertAccount(ctx context.Context, tx pgx.Tx, a storage.Account, allow string) (uint32, error) {
	if _, err := tx.Exec(ctx,
		`INSERT INTO accounts (username, key_hash, subdomain, allow_from, created_at, disabled) VALUES ($1, $2, $3, $4, $5, $6)`,
		a.Username, a.KeyHash, a.Subdomain, allow, a.CreatedAt.UnixNano(), a.Disabled); err != nil {
		return 0, err
	}
	return s.bumpSerial(ctx, tx, a.Subdomain, a.CreatedAt, nil)
}

// DeleteAccount removes the account; its TXT values and persist records go
// with it (ON DELETE CASCADE), and the serial moves because what DNS serves
// changes.
func (s *Store) DeleteAccount(ctx context.Context, username string) (uint32, error) {
	return s.deleteAccount(ctx, "delete account "+username, username, nil)
}

// DeleteUnusedAccount deletes the account if it was last used at or before
// cutoff; see storage.Store.
func (s *Store) DeleteUnusedAccount(ctx context.Context, username string, cutoff time.Time) (uint32, error) {
	return s.deleteAccount(ctx, "delete unused account "+username, username, &cutoff)
}

func (s *Store) deleteAccount(ctx context.Context, op, username string, cutoff *time.Time) (uint32, error) {
	var serial uint32
	err := s.inTx(ctx, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		if cutoff != nil {
			if err := checkUnused(ctx, tx, username, *cutoff); err != nil {
				return err
			}
		}
		var sub string
		if err := tx.QueryRow(ctx, `DELETE FROM accounts WHERE username = $1 RETURNING subdomain`, username).Scan(&sub); err != nil {
			return err
		}
		var err error
		serial, err = s.bumpSerial(ctx, tx, sub, time.Now(), nil)
		return err
	})
	if err != nil {
		return 0, s.wrapErr(ctx, op, err)
	}
	return serial, nil
}

// checkUnused returns storage.ErrInUse if the account was last used (its
// newest value, else its creation) after cutoff, and locks its row for the
// rest of tx. FOR UPDATE conflicts with the key-share lock an inserted
// value's foreign key takes, and the next statement sees whatever update
// committed before the lock was granted.
func checkUnused(ctx context.Context, tx pgx.Tx, username string, cutoff time.Time) error {
	var sub string
	var created int64
	if err := tx.QueryRow(ctx, `SELECT subdomain, created_at FROM accounts WHERE username = $1 FOR UPDATE`, username).Scan(&sub, &created); err != nil {
		return err
	}
	var last int64
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(updated_at), $2) FROM txt_records WHERE subdomain = $1`, sub, created).Scan(&last); err != nil {
		return err
	}
	if last > cutoff.UnixNano() {
		return storage.ErrInUse
	}
	// A persist record authorizes issuance with no update at all: its
	// account is in use. (The row lock above also orders this against a
	// persist record being set.)
	var persist bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM persist_records WHERE subdomain = $1)`, sub).Scan(&persist); err != nil {
		return err
	}
	if persist {
		return storage.ErrInUse
	}
	return nil
}

const accountColumns = `SELECT username, key_hash, subdomain, allow_from, created_at, disabled FROM accounts`

// Account returns the account with that username, or ErrNotFound.
func (s *Store) Account(ctx context.Context, username string) (storage.Account, error) {
	op := "account " + username
	if err := s.begin(ctx); err != nil {
		return storage.Account{}, s.wrapErr(ctx, op, err)
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	a, err := scanAccount(s.pool.QueryRow(octx, accountColumns+` WHERE username = $1`, username))
	if err != nil {
		return storage.Account{}, s.wrapErr(ctx, op, err)
	}
	return a, nil
}

func scanAccount(row pgx.Row) (storage.Account, error) {
	var (
		a       storage.Account
		allow   string
		created int64
	)
	if err := row.Scan(&a.Username, &a.KeyHash, &a.Subdomain, &allow, &created, &a.Disabled); err != nil {
		return storage.Account{}, err
	}
	var err error
	if a.AllowFrom, err = storage.DecodeAllowFrom(allow); err != nil {
		return storage.Account{}, err
	}
	a.CreatedAt = fromNanos(created)
	return a, nil
}

// UpdateKeyHash replaces an account's key hash. The zone does not change,
// so neither does the serial.
func (s *Store) UpdateKeyHash(ctx context.Context, username, oldHash, newHash string) error {
	op := "update key hash of " + username
	if newHash == "" {
		return fmt.Errorf("postgres: %s: empty key hash", op)
	}
	err := s.inTx(ctx, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		err := execOne(ctx, tx, `UPDATE accounts SET key_hash = $1 WHERE username = $2 AND key_hash = $3`, newHash, username, oldHash)
		if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		var one int
		switch err := tx.QueryRow(ctx, `SELECT 1 FROM accounts WHERE username = $1`, username).Scan(&one); {
		case errors.Is(err, pgx.ErrNoRows):
			return storage.ErrNotFound
		case err != nil:
			return err
		}
		return fmt.Errorf("the key was changed by another request: %w", storage.ErrConflict)
	})
	return s.wrapErr(ctx, op, err)
}

// UpdateAllowFrom replaces an account's allowed sources; the serial stays.
func (s *Store) UpdateAllowFrom(ctx context.Context, username string, allow []netip.Prefix) error {
	op := "update allowfrom of " + username
	enc, err := storage.EncodeAllowFrom(allow)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return s.wrapErr(ctx, op, s.exec(ctx, `UPDATE accounts SET allow_from = $1 WHERE username = $2`, enc, username))
}

// SetDisabled disables or enables an account; the serial stays.
func (s *Store) SetDisabled(ctx context.Context, username string, disabled bool) error {
	op := fmt.Sprintf("set disabled=%t for %s", disabled, username)
	return s.wrapErr(ctx, op, s.exec(ctx, `UPDATE accounts SET disabled = $1 WHERE username = $2`, disabled, username))
}

// checkAccount validates a and returns its encoded allowfrom.
func checkAccount(a storage.Account) (string, error) {
	switch {
	case a.Username == "":
		return "", errors.New("empty username")
	case a.Subdomain == "":
		return "", errors.New("empty subdomain")
	case a.KeyHash == "":
		return "", errors.New("empty key hash")
	}
	if err := storage.ValidTime("created_at", a.CreatedAt); err != nil {
		return "", err
	}
	return storage.EncodeAllowFrom(a.AllowFrom)
}

func fromNanos(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func nanosOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
