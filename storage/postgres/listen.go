package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/acmebroker/acmebroker/storage"
)

// ErrNoNotify: the database has no LISTEN/NOTIFY (CockroachDB); other
// nodes' changes are seen by periodic resyncs only.
var ErrNoNotify = errors.New("the database has no LISTEN/NOTIFY")

// Listener receives the changes announced on the store's channel over a connection of
// its own (outside the pool: LISTEN is per session). It is used by one
// goroutine at a time and must be closed.
type Listener struct {
	conn *pgx.Conn
}

// Listen opens a connection and LISTENs on the store's channel. Changes committed
// after it returns are all delivered by Next, in commit order.
func (s *Store) Listen(ctx context.Context) (*Listener, error) {
	const op = "listen"
	if err := s.begin(ctx); err != nil {
		return nil, s.wrapErr(ctx, op, err)
	}
	if !s.notify {
		return nil, fmt.Errorf("postgres: %s: %w", op, ErrNoNotify)
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	conn, err := pgx.ConnectConfig(octx, s.connCfg.Copy())
	if err != nil {
		return nil, s.wrapErr(ctx, op, err)
	}
	if _, err := conn.Exec(octx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		if c := pgCode(err); c == "0A000" || c == "42601" { // feature_not_supported; syntax_error: no LISTEN at all
			return nil, fmt.Errorf("postgres: %s: %w (%v)", op, ErrNoNotify, err)
		}
		return nil, s.wrapErr(ctx, op, err)
	}
	return &Listener{conn: conn}, nil
}

// Next waits for the next change and returns the subdomain it concerned.
// When ctx ends first it returns ctx's error and the Listener stays usable;
// any other error means the connection is gone (wrapping
// storage.ErrUnavailable): close the Listener and listen again.
func (l *Listener) Next(ctx context.Context) (string, error) {
	n, err := l.conn.WaitForNotification(ctx)
	if err != nil {
		if ctx.Err() != nil && !l.conn.IsClosed() {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("postgres: wait for notification: %w: %w", storage.ErrUnavailable, err)
	}
	return n.Payload, nil
}

// Ping checks that the listening connection still answers.
func (l *Listener) Ping(ctx context.Context) error {
	if err := l.conn.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping listening connection: %w: %w", storage.ErrUnavailable, err)
	}
	return nil
}

// Close closes the connection.
func (l *Listener) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), defaultConnectTimeout)
	defer cancel()
	return l.conn.Close(ctx)
}
