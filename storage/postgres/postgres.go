// Package postgres is the PostgreSQL storage engine: a storage.Store that
// several broker nodes can share.
//
// Every change of the zone runs in one transaction that also advances the
// serial in zone_meta and, where the database has it, sends pg_notify on
// Channel (ChannelFor the schema) with the changed subdomain as payload. PostgreSQL delivers the
// notification when (and only if) the transaction commits, so a node that
// listens (Store.Listen) hears of every change another node made and can
// re-read that subdomain (Store.Subdomain).
//
// Portability: the SQL sticks to what PostgreSQL-compatible distributed
// databases (CockroachDB, YugabyteDB) also run: plain tables, ON CONFLICT,
// RETURNING, SELECT ... FOR UPDATE, CASE, = ANY($1) on a text array. It
// avoids, on purpose:
//   - sequences and SERIAL (CockroachDB's are slow and not gap-free either;
//     the zone serial is one row updated in the writing transaction);
//   - COLLATE on columns and reliance on the collation for ordering values
//     (CockroachDB has no column collation "C" and computes collation keys
//     at a cost; ties between values are ordered in Go). The one ordering
//     that must be bytewise, Accounts (an admin listing, not a hot path),
//     uses an expression COLLATE "C", which CockroachDB 22.2+ accepts;
//   - timestamptz arithmetic and now() (times are bigint Unix nanoseconds
//     given by the caller, so nodes never mix server and client clocks);
//   - PL/pgSQL functions and triggers (CockroachDB and older YugabyteDB lack
//     or limit them), LISTEN/NOTIFY on the write path when the database has
//     no pg_notify (probed at Open: CockroachDB has none, so there nodes
//     rely on the periodic resync);
//   - advisory locks as the only guard of migrations: where
//     pg_advisory_lock is missing, the primary key of schema_migrations
//     still stops two nodes from applying the same migration.
//
// Transactions that fail with a serialization failure or a deadlock (what
// the distributed databases report under contention) are retried a few
// times; so are statements that failed before reaching the server.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/acmebroker/acmebroker/storage"
)

// Channel is the LISTEN/NOTIFY channel on which every change of the zone
// is announced when the tables are in the schema "public"; the payload is
// the changed subdomain. Brokers whose tables are in another schema of the
// same database (a staging and a production broker, tests running side by
// side) use ChannelFor(schema), so they do not hear each other.
const Channel = "acmebroker_changes"

// ChannelFor is the channel of the broker whose tables are in schema.
func ChannelFor(schema string) string {
	if schema == "public" {
		return Channel
	}
	c := Channel + "_" + schema
	if len(c) > 63 { // PostgreSQL's identifier limit
		h := fnv.New64a()
		h.Write([]byte(schema))
		c = fmt.Sprintf("%s_%016x", Channel, h.Sum64())
	}
	return c
}

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Logger receives the store's few messages (migrations applied, no
	// NOTIFY support). nil discards them.
	Logger *slog.Logger
	// OpTimeout bounds each call whose ctx has no earlier deadline, so a
	// database that stopped answering (a network partition, not a refused
	// connection) turns into storage.ErrUnavailable instead of a hang.
	// Default 10s.
	OpTimeout time.Duration
	// MaxConns caps the pool. Default: pgx's (the larger of 4 and the
	// number of CPUs) unless the DSN sets pool_max_conns.
	MaxConns int32
}

const (
	defaultOpTimeout      = 10 * time.Second
	defaultConnectTimeout = 5 * time.Second
	maxAttempts           = 5 // of a transaction that hit a retryable error
	migrateTimeout        = 5 * time.Minute
)

// Store is a storage.Store on PostgreSQL. Open returns one; it is safe for
// concurrent use and must be closed.
type Store struct {
	pool      *pgxpool.Pool
	connCfg   *pgx.ConnConfig // for Listen's dedicated connection
	log       *slog.Logger
	opTimeout time.Duration
	notify    bool   // the database has pg_notify
	channel   string // ChannelFor the schema
	closed    atomic.Bool
}

var _ storage.Store = (*Store)(nil)

// errClosed is returned by every call made after Close.
var errClosed = fmt.Errorf("store is closed: %w", storage.ErrUnavailable)

// Open connects to the database at dsn (a postgres:// URL or a key=value
// string, as libpq takes), brings its schema up to date and returns the
// store. The database and the schema must exist; the tables are created in
// the first schema of the search_path ("public" unless the DSN sets
// search_path) by the first node to start.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if dsn == "" {
		return nil, errors.New("postgres: no DSN given: set storage.dsn to e.g. postgres://acmebroker@db.example.org/acmebroker")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message names the problem and hides any password.
		return nil, fmt.Errorf("postgres: storage.dsn is not a valid PostgreSQL URL or key=value string: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	listenCfg := cfg.ConnConfig.Copy()
	// A call that gives up (its ctx ends) asks the server to cancel the
	// statement, so the server stops working for nobody (and releases the
	// locks it waits on), and the connection stays usable; the socket
	// deadline follows only if the server does not answer. The LISTEN
	// connection keeps pgx's default (a deadline only): its waits time out
	// routinely and there is no statement to cancel.
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 2 * time.Second}
	}
	s := &Store{
		connCfg:   listenCfg,
		log:       log,
		opTimeout: opts.OpTimeout,
	}
	if s.opTimeout <= 0 {
		s.opTimeout = defaultOpTimeout
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	s.pool, err = pgxpool.NewWithConfig(octx, cfg)
	if err != nil {
		return nil, s.wrapErr(ctx, "open "+where, err)
	}
	fail := func(op string, err error) (*Store, error) {
		s.pool.Close()
		return nil, s.wrapErr(ctx, op, err)
	}
	if err := s.pool.Ping(octx); err != nil {
		return fail("connect to "+where, err)
	}
	// Migrating (or waiting for another node to finish) may take longer
	// than one call.
	mctx, mcancel := context.WithTimeout(ctx, migrateTimeout)
	version, schema, err := s.migrate(mctx, ms)
	mcancel()
	if err != nil {
		return fail("migrate schema", err)
	}
	s.channel = ChannelFor(schema)
	pctx, pcancel := s.opCtx(ctx)
	defer pcancel()
	if s.notify, err = s.probeNotify(pctx); err != nil {
		return fail("probe pg_notify", err)
	}
	if !s.notify {
		log.Warn("postgres: the database has no pg_notify (CockroachDB?): other nodes see changes only at their periodic resync (storage.resync_interval)")
	}
	log.Info("postgres storage opened", "database", where, "schema", schema, "schema_version", version, "notify", s.notify, "channel", s.channel)
	return s, nil
}

// probeNotify reports whether the database has pg_notify.
func (s *Store) probeNotify(ctx context.Context) (bool, error) {
	_, err := s.pool.Exec(ctx, `SELECT pg_notify($1, '')`, Channel+"_probe")
	if err == nil {
		return true, nil
	}
	if pgCode(err) == "42883" || pgCode(err) == "0A000" { // undefined_function, feature_not_supported
		return false, nil
	}
	return false, err
}

// Notifies reports whether writes announce themselves (on ChannelFor the
// schema).
func (s *Store) Notifies() bool { return s.notify }

// opCtx bounds a call by OpTimeout unless ctx ends earlier.
func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= s.opTimeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.opTimeout)
}

// begin checks what every call checks first.
func (s *Store) begin(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	return ctx.Err()
}

// inTx runs fn in a transaction, retrying it when the database asks for a
// retry (serialization failure, deadlock) or when the attempt failed before
// reaching the server (a pooled connection that died with the server).
func (s *Store) inTx(ctx context.Context, opts pgx.TxOptions, fn func(ctx context.Context, tx pgx.Tx) error) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	for attempt := 1; ; attempt++ {
		began := false
		err := pgx.BeginTxFunc(octx, s.pool, opts, func(tx pgx.Tx) error {
			began = true
			return fn(octx, tx)
		})
		// A failure before the transaction began (a pooled connection that
		// died with the server, or a server refusing connections while it
		// restarts) changed nothing either.
		again := retryable(err) || (!began && classify(err) == storage.ErrUnavailable)
		if err == nil || attempt == maxAttempts || !again || octx.Err() != nil {
			return err
		}
		// Back off a little, with jitter, so racing transactions part.
		d := time.Duration(attempt) * time.Duration(1+rand.IntN(5)) * time.Millisecond
		select {
		case <-time.After(d):
		case <-octx.Done():
			return err
		}
	}
}

// exec runs one statement that must change exactly one row (else
// ErrNotFound), retrying like inTx.
func (s *Store) exec(ctx context.Context, sql string, args ...any) error {
	return s.inTx(ctx, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
		return execOne(ctx, tx, sql, args...)
	})
}

func execOne(ctx context.Context, tx pgx.Tx, sql string, args ...any) error {
	tag, err := tx.Exec(ctx, sql, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// bumpSerial advances the zone serial for a change made at time at (see
// nextSerial, which this statement mirrors) and announces the change of
// subdomain, in one round trip; SetTXT adds the deletion of the values its
// policy dropped (drop). It runs last in the writing transaction: the
// zone_meta row lock it takes is held only until the commit.
func (s *Store) bumpSerial(ctx context.Context, tx pgx.Tx, subdomain string, at time.Time, drop []string) (uint32, error) {
	b := &pgx.Batch{}
	if len(drop) > 0 {
		b.Queue(deleteValues, subdomain, drop)
	}
	var serial int64
	b.Queue(`UPDATE zone_meta SET serial = CASE
			WHEN serial >= 4294967295 THEN 1
			WHEN $1::bigint > serial + 1 AND $1::bigint <= 4294967295 THEN $1::bigint
			ELSE serial + 1 END
		WHERE id = 1 RETURNING serial`, at.Unix()).QueryRow(func(row pgx.Row) error {
		return row.Scan(&serial)
	})
	if s.notify {
		b.Queue(`SELECT pg_notify($1, $2)`, s.channel, subdomain)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("zone_meta has no row: %w", errCorrupt)
		}
		return 0, err
	}
	return uint32(serial), nil
}

// Ping checks that the database answers and holds the broker's schema.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.begin(ctx); err != nil {
		return s.wrapErr(ctx, "ping", err)
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	var serial int64
	err := s.pool.QueryRow(octx, `SELECT serial FROM zone_meta WHERE id = 1`).Scan(&serial)
	if errors.Is(err, pgx.ErrNoRows) {
		err = fmt.Errorf("zone_meta has no row: %w", errCorrupt)
	}
	return s.wrapErr(ctx, "ping", err)
}

// Close refuses new calls, waits for those in flight to return their
// connections (so pending writes finish) and closes the pool.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.pool.Close()
	return nil
}

// retryable: the transaction did not commit and running it again may work.
func retryable(err error) bool {
	switch pgCode(err) {
	case "40001", "40P01": // serialization_failure, deadlock_detected
		return true
	}
	return pgconn.SafeToRetry(err)
}
