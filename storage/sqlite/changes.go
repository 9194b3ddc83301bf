package sqlite

import (
	"context"
	"database/sql"
)

// The changes table (migration 0005) carries what admin commands change to
// a broker serving from the same file. A Store opened with Options.Announce
// records there, in the same transaction, every subdomain whose DNS answer
// its writes change; the broker's Store does not (its own writes go to its
// index directly) and reads the table with ChangesAfter instead
// (internal/nodesync.Poller).

// announce records that sub's answer changed, when the Store announces.
// Called inside the writer's transaction.
func (s *Store) announceChange(ctx context.Context, c *sql.Conn, sub string) error {
	if !s.announce {
		return nil
	}
	_, err := c.ExecContext(ctx, `REPLACE INTO changes (subdomain) VALUES (?)`, sub)
	return err
}

// ChangeMark returns the newest change's number (0 if none is recorded).
// Every change recorded later gets a higher number.
func (s *Store) ChangeMark(ctx context.Context) (int64, error) {
	const op = "read change mark"
	if err := s.readable(ctx); err != nil {
		return 0, wrapErr(ctx, op, err)
	}
	var seq int64
	err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM changes`).Scan(&seq)
	return seq, wrapErr(ctx, op, err)
}

// ChangesAfter returns up to limit changed subdomains recorded after mark,
// oldest first, and the mark to pass next time (mark itself if none).
func (s *Store) ChangesAfter(ctx context.Context, mark int64, limit int) ([]string, int64, error) {
	const op = "read changes"
	if err := s.readable(ctx); err != nil {
		return nil, mark, wrapErr(ctx, op, err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT seq, subdomain FROM changes WHERE seq > ? ORDER BY seq LIMIT ?`, mark, limit)
	if err != nil {
		return nil, mark, wrapErr(ctx, op, err)
	}
	defer rows.Close()
	var names []string
	next := mark
	for rows.Next() {
		var name string
		if err := rows.Scan(&next, &name); err != nil {
			return nil, mark, wrapErr(ctx, op, err)
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		return nil, mark, wrapErr(ctx, op, err)
	}
	return names, next, nil
}

// ForgetChanges deletes the changes recorded up to mark (applied).
func (s *Store) ForgetChanges(ctx context.Context, mark int64) error {
	err := s.write(ctx, func(ctx context.Context, c *sql.Conn) error {
		_, err := c.ExecContext(ctx, `DELETE FROM changes WHERE seq <= ?`, mark)
		return err
	})
	return wrapErr(ctx, "forget changes", err)
}
