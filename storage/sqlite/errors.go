package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/mattn/go-sqlite3"

	"github.com/acmebroker/acmebroker/storage"
)

// errClosed is returned by every call made after Close.
var errClosed = fmt.Errorf("store is closed: %w", storage.ErrUnavailable)

// errCorrupt marks a database file SQLite cannot trust. It is deliberately
// not ErrUnavailable: retrying does not help, an operator must restore it.
var errCorrupt = errors.New("database file is corrupt or not an acmebroker database: restore it from a backup")

// wrapErr gives err the operation's context and the storage sentinel it
// stands for. It never adds argument values beyond what op names, and SQLite
// messages name columns, not values, so key hashes stay out of errors.
func wrapErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		err = storage.ErrNotFound // "not found" says it; the driver's text adds nothing
	}
	kind := classify(err)
	switch {
	case kind == storage.ErrConflict || kind == storage.ErrNotFound:
		// A definite answer from the database beats a late cancellation.
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("sqlite: %s: %w", op, err)
	case ctx.Err() != nil:
		// The driver reports a cancelled statement as "interrupted"; callers
		// test for the context's error.
		return fmt.Errorf("sqlite: %s: %w (%v)", op, ctx.Err(), err)
	}
	if kind == nil || errors.Is(err, kind) {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return fmt.Errorf("sqlite: %s: %w: %w", op, kind, err)
}

// classify returns the sentinel err stands for, or nil.
func classify(err error) error {
	switch {
	case errors.Is(err, sql.ErrNoRows), errors.Is(err, storage.ErrNotFound):
		return storage.ErrNotFound
	case errors.Is(err, storage.ErrConflict):
		return storage.ErrConflict
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, sql.ErrConnDone):
		return storage.ErrUnavailable
	case errors.Is(err, errCorrupt):
		return errCorrupt
	}
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return nil
	}
	switch se.Code {
	case sqlite3.ErrConstraint:
		switch se.ExtendedCode {
		case sqlite3.ErrConstraintUnique, sqlite3.ErrConstraintPrimaryKey:
			return storage.ErrConflict
		}
	case sqlite3.ErrBusy, sqlite3.ErrLocked, sqlite3.ErrFull, sqlite3.ErrIoErr, sqlite3.ErrReadonly,
		sqlite3.ErrCantOpen, sqlite3.ErrPerm, sqlite3.ErrNomem, sqlite3.ErrProtocol, sqlite3.ErrAuth:
		return storage.ErrUnavailable
	case sqlite3.ErrCorrupt, sqlite3.ErrNotADB:
		return errCorrupt
	}
	return nil
}

// isForeignKey reports a FOREIGN KEY constraint failure.
func isForeignKey(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintForeignKey
}

// ignoreNoTx drops the error of a ROLLBACK that found no transaction, which
// is what SQLite leaves after it has rolled back by itself (disk full, I/O
// error).
func ignoreNoTx(err error) error {
	if err != nil && strings.Contains(err.Error(), "no transaction is active") {
		return nil
	}
	return err
}
