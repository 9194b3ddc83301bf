// Package sqlite is the SQLite storage engine: a storage.Store kept in one
// database file.
//
// Durability: the file runs in WAL mode with synchronous=FULL, so a write
// that returned nil has been fsynced and survives a crash of the process or
// of the machine.
//
// Throughput: all writes go through one goroutine that commits whatever is
// queued as a single transaction (group commit, see writer.go), so many
// concurrent writers share each fsync. Reads use a pool of connections and
// run beside the writer, as WAL allows.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/acmebroker/acmebroker/storage"
)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Logger receives the store's few messages (migrations applied, failed
	// write batches). nil discards them.
	Logger *slog.Logger
	// BusyTimeout is how long a statement waits for a lock held by another
	// process (a backup, the sqlite3 shell) before failing with
	// storage.ErrUnavailable. Default 5s.
	BusyTimeout time.Duration
	// Announce records every subdomain whose DNS answer a write changes in
	// the changes table, for a broker serving from the same file to pick
	// up (see changes.go). The admin commands set it; the broker does not.
	Announce bool
}

const defaultBusyTimeout = 5 * time.Second

// Store is a storage.Store on a SQLite file. Open returns one; it is safe for
// concurrent use and must be closed.
type Store struct {
	db    *sql.DB   // pooled connections for reads
	wconn *sql.Conn // the writer goroutine's own connection
	log   *slog.Logger
	now   func() time.Time // only for schema_migrations.applied_at
	hooks hooks

	reqs       chan *request // queued writes, see writer.go
	mu         sync.RWMutex  // held for reading while sending on reqs; Close takes it to close reqs
	closed     bool          // guarded by mu
	isClosed   atomic.Bool   // closed, for the read paths that take no lock
	writerDone chan struct{}
	stopCkpt   chan struct{} // closed by Close: stops the checkpointer
	ckptDone   chan struct{}
	closeOnce  sync.Once
	closeErr   error

	announce bool // Options.Announce

	path   string      // the database file
	fileID os.FileInfo // its identity when opened, see checkFile
}

var _ storage.Store = (*Store)(nil)

// Open opens (creating it if needed) the database at dsn, brings its schema
// up to date and starts the writer. dsn is a file path ("acmebroker.db") or
// a SQLite file: URI ("file:/var/lib/acmebroker/db.sqlite?mode=ro"); the
// file's directory must exist. In-memory databases are refused: every
// pooled connection would get its own.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	return open(ctx, dsn, opts, hooks{})
}

func open(ctx context.Context, dsn string, opts Options, h hooks) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = defaultBusyTimeout
	}
	connDSN, path, err := buildDSN(dsn, busy)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", dsn, err)
	}
	if connDSN, err = noCreate(connDSN, path); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", dsn, err)
	}
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}

	db := sql.OpenDB(connector{dsn: connDSN, drv: &sqlite3.SQLiteDriver{}})
	// One connection is the writer's for the life of the store; the others
	// serve reads. Each connection has its own page cache, so keep them few.
	readers := max(4, runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(readers + 1)
	db.SetMaxIdleConns(readers + 1)

	s := &Store{
		db:         db,
		log:        log,
		now:        time.Now,
		hooks:      h,
		announce:   opts.Announce,
		reqs:       make(chan *request, maxBatch),
		writerDone: make(chan struct{}),
		stopCkpt:   make(chan struct{}),
		ckptDone:   make(chan struct{}),
	}
	fail := func(err error) (*Store, error) {
		if s.wconn != nil {
			_ = s.wconn.Close()
		}
		_ = db.Close()
		return nil, wrapErr(ctx, "open "+path, err)
	}

	s.wconn, err = db.Conn(ctx)
	if err != nil {
		return fail(err)
	}
	if err := checkPragmas(ctx, s.wconn); err != nil {
		return fail(err)
	}
	version, err := migrate(ctx, s.wconn, ms, s.now, log)
	if err != nil {
		return fail(err)
	}
	s.path = path
	if s.fileID, err = os.Stat(path); err != nil {
		return fail(err)
	}

	// Checkpoints copy the WAL back into the database file. SQLite runs
	// them inside the commit that crosses 1000 WAL pages, so with a large
	// database (random pages, big WAL) every twentieth batch of updates
	// stalled behind one. The checkpointer does them beside the writer.
	if _, err := s.wconn.ExecContext(ctx, "PRAGMA wal_autocheckpoint = 0"); err != nil {
		return fail(err)
	}
	go s.runWriter()
	go s.runCheckpointer(checkpointInterval)
	log.Info("sqlite storage opened", "path", path, "schema_version", version)
	return s, nil
}

// buildDSN turns the user's dsn into the URI handed to the driver (with the
// connection settings every pooled connection must have) and the file path
// for messages. Settings are URI parameters rather than statements run after
// connecting, so a connection the pool opens later cannot miss them.
func buildDSN(dsn string, busy time.Duration) (conn, path string, err error) {
	if dsn == "" {
		return "", "", errors.New("no database path given: set storage.dsn to a file such as acmebroker.db")
	}
	var rawPath string
	q := url.Values{}
	if rest, ok := strings.CutPrefix(dsn, "file:"); ok {
		var rawQuery string
		rawPath, rawQuery, _ = strings.Cut(rest, "?")
		if q, err = url.ParseQuery(rawQuery); err != nil {
			return "", "", fmt.Errorf("bad URI parameters: %w", err)
		}
		p := rawPath
		if auth, ok := strings.CutPrefix(p, "//"); ok {
			host, rest, _ := strings.Cut(auth, "/")
			if host != "" && host != "localhost" {
				return "", "", fmt.Errorf("file URI names host %q: only local files are supported", host)
			}
			p = "/" + rest
		}
		if path, err = url.PathUnescape(p); err != nil {
			return "", "", fmt.Errorf("bad file URI path: %w", err)
		}
		if q.Get("mode") == "memory" || q.Get("vfs") == "memdb" {
			path = ":memory:"
		}
	} else {
		if path, err = filepath.Abs(dsn); err != nil {
			return "", "", err
		}
		if dsn == ":memory:" {
			path = dsn
		}
		rawPath = strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path)
	}
	if path == ":memory:" || path == "" {
		return "", "", errors.New("in-memory databases are not supported (each pooled connection would see its own): give a file path")
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("directory %s does not exist: create it first", dir)
	} else if err != nil {
		return "", "", err
	} else if !fi.IsDir() {
		return "", "", fmt.Errorf("%s is not a directory", dir)
	}

	// Ours override the caller's: durability is not negotiable here.
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_foreign_keys", "1")
	q.Set("_busy_timeout", strconv.FormatInt(busy.Milliseconds(), 10))
	// Per-connection cache of prepared statements, keyed by query text.
	q.Set("_stmt_cache_size", "32")
	return "file:" + rawPath + "?" + q.Encode(), path, nil
}

// noCreate creates the database file if it is missing and returns a DSN
// that opens it without creating it (mode=rw), unless the caller chose a
// mode. Otherwise a connection the pool opens after the file was removed
// would quietly create an empty database in its place.
func noCreate(connDSN, path string) (string, error) {
	base, rawQuery, _ := strings.Cut(connDSN, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", err
	}
	if q.Get("mode") != "" {
		return connDSN, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	q.Set("mode", "rw")
	return base + "?" + q.Encode(), nil
}

// checkFile reports (as storage.ErrUnavailable) a database file that was
// removed or replaced since Open. SQLite keeps using the open file: writes
// to a removed one succeed and vanish at the next start, and a replaced
// one is not the file being written. Putting the same file back (a rename)
// heals it; a different file needs a restart, which loads it.
func (s *Store) checkFile() error {
	if s.fileID == nil {
		return nil
	}
	fi, err := os.Stat(s.path)
	switch {
	case err != nil:
		return fmt.Errorf("database file %s is gone (%v): put it back, or restore it and restart the broker; writes are refused meanwhile: %w",
			s.path, err, storage.ErrUnavailable)
	case !os.SameFile(fi, s.fileID):
		return fmt.Errorf("database file %s was replaced by another file while open: restart the broker to use it; writes are refused meanwhile: %w",
			s.path, storage.ErrUnavailable)
	}
	return nil
}

// checkPragmas verifies on a live connection that the settings took: a
// file system without shared memory, for one, silently keeps the rollback
// journal.
func checkPragmas(ctx context.Context, c *sql.Conn) error {
	var mode string
	if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal_mode is %q, not WAL: put the database on a local file system", mode)
	}
	var syncMode int
	if err := c.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
		return err
	}
	if syncMode != 2 {
		return fmt.Errorf("synchronous is %d, not 2 (FULL)", syncMode)
	}
	return nil
}

// connector opens connections through the driver value directly, so the
// store does not depend on the driver's global registration name.
type connector struct {
	dsn string
	drv *sqlite3.SQLiteDriver
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.drv }

// Ping checks that the database file can be read.
func (s *Store) Ping(ctx context.Context) error {
	if s.isClosed.Load() {
		return wrapErr(ctx, "ping", errClosed)
	}
	if err := ctx.Err(); err != nil {
		return wrapErr(ctx, "ping", err)
	}
	if err := s.checkFile(); err != nil {
		return wrapErr(ctx, "ping", err)
	}
	var serial int64
	err := s.db.QueryRowContext(ctx, "SELECT serial FROM zone_meta WHERE id = 1").Scan(&serial)
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("zone_meta has no row: %w", errCorrupt)
	}
	return wrapErr(ctx, "ping", err)
}

// Close stops accepting writes, commits those already queued, waits for the
// writer and closes the database. Later calls return the first's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.isClosed.Store(true)
		close(s.reqs)
		s.mu.Unlock()
		<-s.writerDone
		close(s.stopCkpt)
		<-s.ckptDone
		err := errors.Join(s.wconn.Close(), s.db.Close())
		if err != nil {
			s.closeErr = fmt.Errorf("sqlite: close: %w", err)
		}
	})
	return s.closeErr
}

// checkpointInterval: how often the WAL is copied back into the database.
const checkpointInterval = 500 * time.Millisecond

// runCheckpointer checkpoints the WAL in PASSIVE mode (it never waits for,
// or blocks, the writer or readers) until Close, and once more at the end.
func (s *Store) runCheckpointer(every time.Duration) {
	defer close(s.ckptDone)
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		stop := false
		select {
		case <-t.C:
		case <-s.stopCkpt:
			stop = true
		}
		err := s.checkpoint()
		switch {
		case err != nil && !failing:
			s.log.Warn("sqlite checkpoint failed; the WAL file grows until it succeeds", "err", err)
			failing = true
		case err == nil && failing:
			s.log.Info("sqlite checkpoint works again")
			failing = false
		}
		if stop {
			return
		}
	}
}

// checkpoint copies what it can of the WAL into the database file without
// waiting for anyone.
func (s *Store) checkpoint() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.db.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
	return err
}
