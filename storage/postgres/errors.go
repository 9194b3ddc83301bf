package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/acmebroker/acmebroker/storage"
)

// errCorrupt marks a database that is not (or no longer) an acmebroker
// database. It is deliberately not ErrUnavailable: retrying does not help.
var errCorrupt = errors.New("the database does not hold a valid acmebroker schema: restore it from a backup")

// wrapErr gives err the operation's context and the storage sentinel it
// stands for. ctx is the caller's: if it ended, its error is what the caller
// tests for; if only the store's own OpTimeout ran out, the database is
// unavailable. PostgreSQL messages name constraints, not values, so key
// hashes stay out of errors.
func (s *Store) wrapErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		err = storage.ErrNotFound // "not found" says it; the driver's text adds nothing
	}
	kind := classify(err)
	switch {
	case kind == storage.ErrConflict || kind == storage.ErrNotFound:
		// A definite answer from the database beats a late cancellation.
	case ctx.Err() != nil:
		if errors.Is(err, ctx.Err()) {
			return fmt.Errorf("postgres: %s: %w", op, err)
		}
		return fmt.Errorf("postgres: %s: %w (%v)", op, ctx.Err(), err)
	case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err):
		return fmt.Errorf("postgres: %s: %w: the database did not answer within %s", op, storage.ErrUnavailable, s.opTimeout)
	case pgCode(err) == "57014":
		// Cancelled, but not by the caller: by the store's OpTimeout (or a
		// statement_timeout set on the server).
		return fmt.Errorf("postgres: %s: %w: the database did not answer in time (%v)", op, storage.ErrUnavailable, err)
	}
	if kind == nil || errors.Is(err, kind) {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return fmt.Errorf("postgres: %s: %w: %w", op, kind, err)
}

// classify returns the sentinel err stands for, or nil.
func classify(err error) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return storage.ErrNotFound
	case errors.Is(err, storage.ErrConflict):
		return storage.ErrConflict
	case errors.Is(err, storage.ErrTokenInvalid):
		return storage.ErrTokenInvalid
	case errors.Is(err, errCorrupt):
		return errCorrupt
	}
	switch code := pgCode(err); {
	case code == "23505": // unique_violation
		return storage.ErrConflict
	case code == "23503": // foreign_key_violation: the subdomain has no account
		return storage.ErrNotFound
	case code == "42P01": // undefined_table: someone dropped the schema
		return errCorrupt
	case code != "":
		if unavailableCode(code) {
			return storage.ErrUnavailable
		}
		return nil
	}
	if unavailable(err) {
		return storage.ErrUnavailable
	}
	return nil
}

// unavailableCode: SQLSTATEs that say the server cannot serve now but may
// later (shutting down, starting, out of resources, read-only standby,
// retries exhausted).
func unavailableCode(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), // connection_exception
		strings.HasPrefix(code, "53"),  // insufficient_resources (disk full, too many connections)
		strings.HasPrefix(code, "57P"), // admin_shutdown, crash_shutdown, cannot_connect_now
		strings.HasPrefix(code, "58"),  // system_error (I/O)
		code == "25006",                // read_only_sql_transaction: a standby, or default_transaction_read_only
		code == "40001", code == "40P01",
		code == "57014": // query_canceled by statement_timeout (the caller's cancel is caught first)
		return true
	}
	return false
}

// unavailable: err is a failure to reach or talk to the server, not an
// answer from it.
func unavailable(err error) bool {
	if err == nil || pgCode(err) != "" {
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		// pgx's own words for a connection it has given up on, and for the
		// pool after Close.
		strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "closed pool")
}

// pgCode is the SQLSTATE of a server error, "" for other errors.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
