package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/acmebroker/acmebroker/internal/pgtest"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/storagetest"
)

func TestConformance(t *testing.T) {
	pgtest.BaseDSN(t)
	storagetest.Run(t, func(t *testing.T) func(t *testing.T) storage.Store {
		dsn := pgtest.Schema(t)
		return func(t *testing.T) storage.Store {
			return open(t, dsn)
		}
	})
}

func open(t *testing.T, dsn string) *Store {
	t.Helper()
	st, err := Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// fresh opens a store on a new schema, closed when t ends.
func fresh(t *testing.T) (*Store, string) {
	t.Helper()
	dsn := pgtest.Schema(t)
	st := open(t, dsn)
	t.Cleanup(func() { st.Close() })
	return st, dsn
}

var t0 = time.Date(2031, 3, 4, 5, 6, 7, 891_234_567, time.UTC)

func acct(n int) storage.Account {
	return storage.Account{
		Username:  fmt.Sprintf("user-%04d-0000-4000-8000-000000000000", n),
		KeyHash:   fmt.Sprintf("$b2$hash-%04d", n),
		Subdomain: fmt.Sprintf("sub-%04d", n),
		CreatedAt: t0.Add(time.Duration(n) * time.Second),
	}
}

// TestSerialStatementMatchesNextSerial sets the stored serial to the edge
// cases and checks that the SQL in bumpSerial computes what nextSerial does.
func TestSerialStatementMatchesNextSerial(t *testing.T) {
	st, _ := fresh(t)
	ctx := context.Background()
	a := acct(1)
	if _, err := st.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		old uint32
		at  time.Time
	}{
		{0, time.Unix(1, 0)},
		{100, time.Unix(50, 0)},
		{100, time.Unix(101, 0)},
		{100, time.Unix(102, 0)},
		{2_000_000_000, t0},
		{math.MaxUint32 - 1, t0},
		{math.MaxUint32, t0},
		{5, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)}, // beyond uint32 seconds: +1
		{5, time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}, // negative Unix time
	}
	for i, tc := range tests {
		if _, err := st.pool.Exec(ctx, `UPDATE zone_meta SET serial = $1 WHERE id = 1`, int64(tc.old)); err != nil {
			t.Fatal(err)
		}
		_, got, err := st.SetTXT(ctx, a.Subdomain, fmt.Sprint(i), tc.at, storage.DefaultTXTPolicy)
		if err != nil {
			t.Fatal(err)
		}
		if want := nextSerial(tc.old, tc.at); got != want {
			t.Errorf("old %d at %d: serial %d, want %d", tc.old, tc.at.Unix(), got, want)
		}
	}
}

// TestConcurrentOpenMigratesOnce starts several stores on one empty schema
// at the same moment, as nodes starting together do.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	dsn := pgtest.Schema(t)
	const nodes = 6
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	stores := make([]*Store, nodes)
	start := make(chan struct{})
	for i := range nodes {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = Open(context.Background(), dsn, Options{})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	var n, v int
	if err := stores[0].pool.QueryRow(context.Background(), `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	ms, _ := loadMigrations(migrationFiles, "migrations")
	if n != len(ms) || v != len(ms) {
		t.Fatalf("schema_migrations has %d rows up to version %d, want %d", n, v, len(ms))
	}
	// Every node works on the result.
	for i, st := range stores {
		if _, err := st.CreateAccount(context.Background(), acct(i)); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	st, dsn := fresh(t)
	if _, err := st.pool.Exec(context.Background(), `INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future', 0)`); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), dsn, Options{})
	if err == nil {
		t.Fatal("Open accepted a schema from a newer version")
	}
	t.Log(err)
}

func TestLoadMigrations(t *testing.T) {
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil || len(ms) == 0 || ms[0].Version != 1 {
		t.Fatalf("embedded migrations: %v %v", ms, err)
	}
	for name, files := range map[string]fstest.MapFS{
		"gap":       {"m/0001_a.sql": {}, "m/0003_c.sql": {}},
		"duplicate": {"m/0001_a.sql": {}, "m/0001_b.sql": {}},
		"bad name":  {"m/first.sql": {}},
		"none":      {"m/readme.txt": {}},
	} {
		if _, err := loadMigrations(files, "m"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestUnreachableIsUnavailable: a server that refuses connections is
// storage.ErrUnavailable, with a message that says where.
func TestUnreachableIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = Open(context.Background(), "postgres://postgres@"+addr+"/x?sslmode=disable&connect_timeout=2", Options{})
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Open on a closed port: %v, want ErrUnavailable", err)
	}
	t.Log(err)
}

func TestBadDSN(t *testing.T) {
	for _, dsn := range []string{"", "postgres://u:secretpw@host:notaport/db"} {
		_, err := Open(context.Background(), dsn, Options{})
		if err == nil {
			t.Fatalf("Open(%q) accepted", dsn)
		}
		if strings.Contains(err.Error(), "secretpw") {
			t.Fatalf("the error shows the password: %v", err)
		}
	}
}

// TestTerminatedSessionsRecover ends the store's server sessions, as a
// server restart or an admin does, and checks that the store works again
// without being reopened, and that what fails meanwhile is ErrUnavailable.
func TestTerminatedSessionsRecover(t *testing.T) {
	dsn := pgtest.Schema(t) + "&application_name=victim_" + fmt.Sprint(time.Now().UnixNano())
	st := open(t, dsn)
	defer st.Close()
	ctx := context.Background()
	a := acct(1)
	if _, err := st.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, pgtest.BaseDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	app := st.connCfg.RuntimeParams["application_name"]
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no session of the store found to terminate")
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		_, _, err := st.SetTXT(ctx, a.Subdomain, fmt.Sprint(i), t0, storage.DefaultTXTPolicy)
		if err == nil {
			break
		}
		if !errors.Is(err, storage.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("SetTXT after %d sessions were terminated: %v", n, err)
		}
		t.Logf("attempt %d: %v", i, err)
	}
}

func TestSubdomain(t *testing.T) {
	st, _ := fresh(t)
	ctx := context.Background()
	a, b := acct(1), acct(2)
	for _, x := range []storage.Account{a, b} {
		if _, err := st.CreateAccount(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	st.SetTXT(ctx, a.Subdomain, "zz", t0, storage.DefaultTXTPolicy)
	st.SetTXT(ctx, a.Subdomain, "aa", t0, storage.DefaultTXTPolicy) // same time: ordered by value
	_, last, err := st.SetTXT(ctx, a.Subdomain, "new", t0.Add(time.Second), storage.DefaultTXTPolicy)
	if err != nil {
		t.Fatal(err)
	}
	got, serial, err := st.Subdomain(ctx, a.Subdomain)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"new", "aa", "zz"}
	if serial != last || got.Name != a.Subdomain || len(got.Records) != 3 {
		t.Fatalf("Subdomain = %+v serial %d, want %v serial %d", got, serial, want, last)
	}
	for i, r := range got.Records {
		if r.Value != want[i] {
			t.Fatalf("Subdomain values %v, want %v", got.Records, want)
		}
	}
	if !got.Records[0].UpdatedAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("time %v, want %v (nanoseconds kept)", got.Records[0].UpdatedAt, t0.Add(time.Second))
	}
	empty, _, err := st.Subdomain(ctx, b.Subdomain)
	if err != nil || len(empty.Records) != 0 || empty.Name != b.Subdomain {
		t.Fatalf("Subdomain(no values) = %+v, %v", empty, err)
	}
	_, nfSerial, err := st.Subdomain(ctx, "nope")
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Subdomain(unknown) = %v, want ErrNotFound", err)
	}
	if nfSerial != last {
		t.Fatalf("Subdomain(unknown) serial %d, want the current %d", nfSerial, last)
	}
}

func TestAccountsAndDisabled(t *testing.T) {
	st, _ := fresh(t)
	ctx := context.Background()
	a, b := acct(2), acct(1)
	a.AllowFrom = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	for _, x := range []storage.Account{a, b} {
		if _, err := st.CreateAccount(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	st.SetTXT(ctx, a.Subdomain, "x", t0, storage.DefaultTXTPolicy)
	_, before, _ := st.SetTXT(ctx, a.Subdomain, "y", t0.Add(time.Minute), storage.DefaultTXTPolicy)
	if err := st.SetDisabled(ctx, a.Username, true); err != nil {
		t.Fatal(err)
	}
	if err := st.SetDisabled(ctx, "nobody", true); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SetDisabled(unknown) = %v, want ErrNotFound", err)
	}
	got, err := st.Account(ctx, a.Username)
	if err != nil || !got.Disabled {
		t.Fatalf("Account after disabling: %+v %v", got, err)
	}
	var infos []storage.AccountInfo
	if err := st.Accounts(ctx, func(i storage.AccountInfo) error { infos = append(infos, i); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].Subdomain != b.Subdomain || infos[1].Subdomain != a.Subdomain {
		t.Fatalf("Accounts order: %+v", infos)
	}
	ia := infos[1]
	if !ia.Disabled || ia.Values != 2 || !ia.LastUpdate.Equal(t0.Add(time.Minute)) || len(ia.AllowFrom) != 1 {
		t.Fatalf("Accounts info of a: %+v", ia)
	}
	if ib := infos[0]; ib.Disabled || ib.Values != 0 || !ib.LastUpdate.IsZero() {
		t.Fatalf("Accounts info of b: %+v", ib)
	}
	// Disabling does not change the zone.
	if _, serial, _ := st.Subdomain(ctx, a.Subdomain); serial != before {
		t.Fatalf("serial moved from %d to %d by SetDisabled", before, serial)
	}
	if err := st.SetDisabled(ctx, a.Username, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Account(ctx, a.Username); got.Disabled {
		t.Fatal("still disabled after enabling")
	}
	stop := errors.New("stop")
	if err := st.Accounts(ctx, func(storage.AccountInfo) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("Accounts does not pass fn's error on: %v", err)
	}
	// Bytewise order: "-" (0x2d) sorts before letters, which a linguistic
	// collation would ignore.
	for i, sub := range []string{"x-c", "xb"} {
		x := acct(10 + i)
		x.Subdomain = sub
		if _, err := st.CreateAccount(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	var subs []string
	if err := st.Accounts(ctx, func(i storage.AccountInfo) error { subs = append(subs, i.Subdomain); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(subs) {
		t.Fatalf("Accounts not in bytewise subdomain order: %v", subs)
	}
}

// TestNotifyOnCommitOnly: every zone change is announced with its subdomain,
// after commit; a failed write announces nothing.
func TestNotifyOnCommitOnly(t *testing.T) {
	st, _ := fresh(t)
	ctx := context.Background()
	l, err := st.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	next := func() (string, error) {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return l.Next(c)
	}
	a := acct(1)
	if _, err := st.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateAccount(ctx, a); !errors.Is(err, storage.ErrConflict) { // fails: no notification
		t.Fatal(err)
	}
	if _, _, err := st.SetTXT(ctx, "nope", "v", t0, storage.DefaultTXTPolicy); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	if _, _, err := st.SetTXT(ctx, a.Subdomain, "v", t0, storage.DefaultTXTPolicy); err != nil {
		t.Fatal(err)
	}
	if err := st.UpdateKeyHash(ctx, a.Username, a.KeyHash, "other"); err != nil { // not a zone change
		t.Fatal(err)
	}
	if _, err := st.DeleteAccount(ctx, a.Username); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		sub, err := next()
		if err != nil || sub != a.Subdomain {
			t.Fatalf("notification %d: %q %v, want %q", i, sub, err, a.Subdomain)
		}
	}
	// Nothing else: the failed writes and the key change sent none.
	c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if sub, err := l.Next(c); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unexpected notification %q %v", sub, err)
	}
	// The listener survives a wait that timed out.
	b := acct(2)
	if _, err := st.CreateAccount(ctx, b); err != nil {
		t.Fatal(err)
	}
	if sub, err := next(); err != nil || sub != b.Subdomain {
		t.Fatalf("after a timed-out wait: %q %v", sub, err)
	}
}

// TestTimeoutIsUnavailable: a statement stuck behind a lock past the
// store's OpTimeout fails with ErrUnavailable (the database is not
// answering in time); past the caller's own deadline it fails with the
// caller's context error.
func TestTimeoutIsUnavailable(t *testing.T) {
	dsn := pgtest.Schema(t)
	st, err := Open(context.Background(), dsn, Options{OpTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	a := acct(1)
	if _, err := st.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	// Another session holds the account row.
	other, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM accounts WHERE subdomain = $1 FOR UPDATE`, a.Subdomain); err != nil {
		t.Fatal(err)
	}

	_, _, err = st.SetTXT(ctx, a.Subdomain, "v", t0, storage.DefaultTXTPolicy)
	if !errors.Is(err, storage.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SetTXT past OpTimeout: %v, want ErrUnavailable", err)
	}
	t.Log(err)

	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, _, err = st.SetTXT(cctx, a.Subdomain, "v", t0, storage.DefaultTXTPolicy)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SetTXT past the caller's deadline: %v, want context.DeadlineExceeded", err)
	}
	// Once the lock goes, the store works.
	tx.Rollback(ctx)
	if _, _, err := st.SetTXT(ctx, a.Subdomain, "v", t0, storage.DefaultTXTPolicy); err != nil {
		t.Fatal(err)
	}
}

func TestClassify(t *testing.T) {
	for code, want := range map[string]error{
		"23505": storage.ErrConflict,
		"23503": storage.ErrNotFound,
		"57P01": storage.ErrUnavailable, // admin_shutdown
		"57P02": storage.ErrUnavailable, // crash_shutdown
		"57P03": storage.ErrUnavailable, // cannot_connect_now (starting up)
		"08006": storage.ErrUnavailable, // connection_failure
		"53300": storage.ErrUnavailable, // too_many_connections
		"53100": storage.ErrUnavailable, // disk_full
		"25006": storage.ErrUnavailable, // read_only_sql_transaction (a standby)
		"40001": storage.ErrUnavailable, // serialization_failure, after the retries
		"42601": nil,                    // syntax_error: a bug, not an outage
		"42P01": errCorrupt,             // undefined_table
	} {
		err := fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: code, Message: "m"})
		if got := classify(err); got != want {
			t.Errorf("classify(%s) = %v, want %v", code, got, want)
		}
	}
	for _, err := range []error{io.EOF, io.ErrUnexpectedEOF, &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, errors.New("closed pool")} {
		if got := classify(err); got != storage.ErrUnavailable {
			t.Errorf("classify(%v) = %v, want ErrUnavailable", err, got)
		}
	}
}

func TestChannelFor(t *testing.T) {
	long := strings.Repeat("s", 63)
	for schema, want := range map[string]string{
		"public":     "acmebroker_changes",
		"staging":    "acmebroker_changes_staging",
		long:         "",
		long + "x":   "",
		"Mixed Case": "acmebroker_changes_Mixed Case",
	} {
		got := ChannelFor(schema)
		if want != "" && got != want || len(got) > 63 {
			t.Errorf("ChannelFor(%q) = %q", schema, got)
		}
	}
	if ChannelFor(long) == ChannelFor(long+"x") {
		t.Error("two long schemas share a channel")
	}
}

// TestSchemasDoNotHearEachOther: brokers in two schemas of one database
// keep their notifications apart.
func TestSchemasDoNotHearEachOther(t *testing.T) {
	st1, _ := fresh(t)
	st2, _ := fresh(t)
	ctx := context.Background()
	l, err := st1.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := st2.CreateAccount(ctx, acct(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := st1.CreateAccount(ctx, acct(1)); err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if sub, err := l.Next(c); err != nil || sub != acct(1).Subdomain {
		t.Fatalf("first notification %q %v, want only the own schema's %q", sub, err, acct(1).Subdomain)
	}
}
