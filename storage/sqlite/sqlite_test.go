package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) func(t *testing.T) storage.Store {
		path := filepath.Join(t.TempDir(), "acmebroker.db")
		return func(t *testing.T) storage.Store { return openT(t, path) }
	})
}

// openT opens path and fails the test on error. The caller closes.
func openT(t testing.TB, dsn string) *Store {
	t.Helper()
	st, err := Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", dsn, err)
	}
	return st
}

// openTemp opens a store on a new file and closes it at cleanup.
func openTemp(t testing.TB, h hooks) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "acmebroker.db")
	st, err := open(context.Background(), path, Options{}, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	return st, path
}

var t0 = time.Date(2030, 6, 7, 8, 9, 10, 123456789, time.UTC)

func acct(n int) storage.Account {
	return storage.Account{
		Username:  fmt.Sprintf("user-%d", n),
		KeyHash:   "hash",
		Subdomain: fmt.Sprintf("sub-%d", n),
		CreatedAt: t0,
	}
}

// TestPragmas checks the settings on several pooled connections at once, so
// that connections opened after the first have them too.
func TestPragmas(t *testing.T) {
	st, _ := openTemp(t, hooks{})
	ctx := context.Background()
	var conns []*sql.Conn
	for range 3 {
		c, err := st.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	conns = append(conns, st.wconn)
	for i, c := range conns {
		for _, p := range []struct {
			pragma, want string
		}{
			{"journal_mode", "wal"},
			{"synchronous", "2"}, // FULL
			{"foreign_keys", "1"},
			{"busy_timeout", "5000"},
		} {
			var got string
			if err := c.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != p.want {
				t.Errorf("connection %d: PRAGMA %s = %s, want %s", i, p.pragma, got, p.want)
			}
		}
	}
	for _, c := range conns[:3] {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBusyTimeoutOption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	st, err := Open(context.Background(), path, Options{BusyTimeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var got int
	if err := st.db.QueryRowContext(context.Background(), "PRAGMA busy_timeout").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != 1500 {
		t.Errorf("busy_timeout = %d, want 1500", got)
	}
}

func TestOpenDSN(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		dsn     string
		wantErr string
	}{
		{"plain path", filepath.Join(dir, "a.db"), ""},
		{"path with URI characters", filepath.Join(dir, "we?ird#name%.db"), ""},
		{"file URI", "file:" + filepath.Join(dir, "b.db"), ""},
		{"file URI with params", "file:" + filepath.Join(dir, "c.db") + "?cache=private&_synchronous=OFF", ""},
		{"file URI localhost", "file://localhost" + filepath.Join(dir, "d.db"), ""},
		{"missing directory", filepath.Join(dir, "nope", "a.db"), "directory " + filepath.Join(dir, "nope") + " does not exist: create it first"},
		{"missing directory URI", "file:" + filepath.Join(dir, "nope", "a.db"), "does not exist: create it first"},
		{"parent is a file", filepath.Join(dir, "a.db", "x.db"), "is not a directory"},
		{"empty", "", "no database path given"},
		{"memory", ":memory:", "in-memory databases are not supported"},
		{"memory URI", "file::memory:?cache=shared", "in-memory databases are not supported"},
		{"memory mode", "file:x?mode=memory", "in-memory databases are not supported"},
		{"remote host", "file://example.org/x.db", "only local files"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := Open(context.Background(), tc.dsn, Options{})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				// synchronous stays FULL even if the URI asks otherwise.
				var sync int
				if err := st.db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
					t.Errorf("synchronous = %d (%v), want 2", sync, err)
				}
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				st.Close()
				t.Fatalf("Open(%q) succeeded, want error containing %q", tc.dsn, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Open(%q) error = %q, want it to contain %q", tc.dsn, err, tc.wantErr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "we?ird#name%.db")); err != nil {
		t.Errorf("file with URI characters not created under its own name: %v", err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	st := openT(t, path)
	if _, err := st.wconn.ExecContext(context.Background(),
		`INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future', 0)`); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), path, Options{})
	want := fmt.Sprintf("database schema version 99 is newer than this acmebroker (knows %d): upgrade acmebroker", knownVersion(t))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open error = %v, want it to contain %q", err, want)
	}
}

func knownVersion(t *testing.T) int {
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	return ms[len(ms)-1].Version
}

func TestMigrationsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	for i := range 3 {
		st := openT(t, path)
		if i == 0 {
			mustCreate(t, st, acct(1))
		}
		var n, maxV int
		if err := st.db.QueryRow(`SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &maxV); err != nil {
			t.Fatal(err)
		}
		if want := knownVersion(t); n != want || maxV != want {
			t.Errorf("open %d: schema_migrations has %d rows up to %d, want %d", i, n, maxV, want)
		}
		if _, err := st.Account(context.Background(), "user-1"); err != nil {
			t.Errorf("open %d: %v", i, err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadMigrations(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name    string
		fs      fstest.MapFS
		want    []string
		wantErr string
	}{
		{
			name: "sorted by number, not name",
			fs: fstest.MapFS{
				"m/0010_ten.sql": file("10"), "m/0002_two.sql": file("2"), "m/0001_one.sql": file("1"),
				"m/3_three.sql": file("3"), "m/0004_four.sql": file("4"), "m/0005_five.sql": file("5"),
				"m/0006_six.sql": file("6"), "m/0007_seven.sql": file("7"), "m/0008_eight.sql": file("8"),
				"m/0009_nine.sql": file("9"), "m/README.md": file("ignored"),
			},
			want: []string{"0001_one", "0002_two", "3_three", "0004_four", "0005_five", "0006_six", "0007_seven", "0008_eight", "0009_nine", "0010_ten"},
		},
		{name: "gap", fs: fstest.MapFS{"m/0001_a.sql": file(""), "m/0003_c.sql": file("")}, wantErr: "version 2 is missing"},
		{name: "duplicate", fs: fstest.MapFS{"m/0001_a.sql": file(""), "m/0001_b.sql": file("")}, wantErr: "same version"},
		{name: "no number", fs: fstest.MapFS{"m/init.sql": file("")}, wantErr: "name must be"},
		{name: "zero", fs: fstest.MapFS{"m/0000_init.sql": file("")}, wantErr: "name must be"},
		{name: "plus sign", fs: fstest.MapFS{"m/+1_init.sql": file("")}, wantErr: "name must be"},
		{name: "empty", fs: fstest.MapFS{"m/x.txt": file("")}, wantErr: "no *.sql files"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := loadMigrations(tc.fs, "m")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for i, m := range ms {
				names = append(names, m.Name)
				if m.Version != i+1 || m.SQL != fmt.Sprint(i+1) {
					t.Errorf("migration %d = %+v", i, m)
				}
			}
			if !slices.Equal(names, tc.want) {
				t.Errorf("names = %v, want %v", names, tc.want)
			}
		})
	}
	// The embedded migrations load.
	knownVersion(t)
}

func TestNextSerial(t *testing.T) {
	at := time.Unix(2_000_000_000, 0)
	tests := []struct {
		name string
		old  uint32
		at   time.Time
		want uint32
	}{
		{"fresh database takes the time", 0, at, 2_000_000_000},
		{"older time counts up", 2_100_000_000, at, 2_100_000_001},
		{"same second counts up", 2_000_000_000, at, 2_000_000_001},
		{"newer time jumps", 5, at, 2_000_000_000},
		{"time before 1970 ignored", 7, time.Unix(-5, 0), 8},
		{"time past uint32 ignored", 7, time.Unix(math.MaxUint32+10, 0), 8},
		{"wraps to 1", math.MaxUint32, at, 1},
		{"reaches max", math.MaxUint32 - 1, at, math.MaxUint32},
	}
	for _, tc := range tests {
		if got := nextSerial(tc.old, tc.at); got != tc.want {
			t.Errorf("%s: nextSerial(%d, %v) = %d, want %d", tc.name, tc.old, tc.at, got, tc.want)
		}
	}
}

func TestSerialWrapsInDatabase(t *testing.T) {
	st, _ := openTemp(t, hooks{})
	mustCreate(t, st, acct(1))
	if _, err := st.wconn.ExecContext(context.Background(), `UPDATE zone_meta SET serial = 4294967295`); err != nil {
		t.Fatal(err)
	}
	_, serial, err := st.SetTXT(context.Background(), "sub-1", "v", t0, storage.DefaultTXTPolicy)
	if err != nil || serial != 1 {
		t.Fatalf("SetTXT after serial 2^32-1 = %d, %v; want 1", serial, err)
	}
}

// TestNanosecondTimes: this engine keeps nanoseconds (the suite asks for µs).
func TestNanosecondTimes(t *testing.T) {
	st, _ := openTemp(t, hooks{})
	a := acct(1)
	a.CreatedAt = time.Date(2030, 1, 2, 3, 4, 5, 999_999_999, time.FixedZone("x", -7*3600))
	mustCreate(t, st, a)
	got, err := st.Account(context.Background(), a.Username)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(a.CreatedAt) || got.CreatedAt.Nanosecond() != 999_999_999 {
		t.Errorf("CreatedAt = %v, want %v", got.CreatedAt, a.CreatedAt)
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 1, time.UTC)
	recs, _, err := st.SetTXT(context.Background(), a.Subdomain, "v", at, storage.DefaultTXTPolicy)
	if err != nil || len(recs) != 1 || !recs[0].UpdatedAt.Equal(at) {
		t.Errorf("SetTXT = %v, %v", recs, err)
	}
}

func TestInvalidInput(t *testing.T) {
	st, _ := openTemp(t, hooks{})
	ctx := context.Background()
	mustCreate(t, st, acct(1))
	for _, tc := range []struct {
		name string
		a    func(*storage.Account)
	}{
		{"empty username", func(a *storage.Account) { a.Username = "" }},
		{"empty subdomain", func(a *storage.Account) { a.Subdomain = "" }},
		{"empty key hash", func(a *storage.Account) { a.KeyHash = "" }},
		{"zero time", func(a *storage.Account) { a.CreatedAt = time.Time{} }},
		{"time out of range", func(a *storage.Account) { a.CreatedAt = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"invalid prefix", func(a *storage.Account) { a.AllowFrom = []netip.Prefix{{}} }},
	} {
		a := acct(2)
		tc.a(&a)
		if _, err := st.CreateAccount(ctx, a); err == nil {
			t.Errorf("CreateAccount(%s) succeeded", tc.name)
		}
	}
	if _, _, err := st.SetTXT(ctx, "sub-1", "v", t0, storage.TXTPolicy{}); err == nil {
		t.Error("SetTXT with a policy that keeps nothing succeeded")
	}
	if _, _, err := st.SetTXT(ctx, "sub-1", "v", time.Time{}, storage.DefaultTXTPolicy); err == nil {
		t.Error("SetTXT at the zero time succeeded")
	}
	if err := st.UpdateKeyHash(ctx, "user-1", "h", ""); err == nil {
		t.Error("UpdateKeyHash to an empty hash succeeded")
	}
}

func TestAllowFromEncoding(t *testing.T) {
	ps := []netip.Prefix{
		netip.MustParsePrefix("10.1.2.3/8"), // host bits kept as given
		netip.MustParsePrefix("::ffff:192.0.2.1/128"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("::/0"),
	}
	s, err := storage.EncodeAllowFrom(ps)
	if err != nil {
		t.Fatal(err)
	}
	if s != `["10.1.2.3/8","::ffff:192.0.2.1/128","2001:db8::/32","::/0"]` {
		t.Errorf("encoded = %s", s)
	}
	// A mapped prefix reads back as the IPv4 prefix it means (sources are
	// compared unmapped; stored as given, it never matched).
	want := slices.Clone(ps)
	want[1] = netip.MustParsePrefix("192.0.2.1/32")
	got, err := storage.DecodeAllowFrom(s)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("decode = %v, %v; want %v", got, err, want)
	}
	for in, want := range map[string]string{
		``:                     `[]`,
		`[]`:                   `[]`,
		`["192.0.2.1"]`:        `[192.0.2.1/32]`,
		`["2001:db8::1"]`:      `[2001:db8::1/128]`,
		`["192.0.2.0/24", ""]`: `error`,
		`"192.0.2.0/24"`:       `error`,
		`[1]`:                  `error`,
	} {
		got, err := storage.DecodeAllowFrom(in)
		s := fmt.Sprint(got)
		if err != nil {
			s = "error"
		}
		if s != want {
			t.Errorf("storage.DecodeAllowFrom(%q) = %s (%v), want %s", in, s, err, want)
		}
	}
	if s, _ := storage.EncodeAllowFrom(nil); s != "[]" {
		t.Errorf("storage.EncodeAllowFrom(nil) = %s, want []", s)
	}
}

func mustCreate(t testing.TB, st *Store, a storage.Account) uint32 {
	t.Helper()
	serial, err := st.CreateAccount(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	return serial
}

// gate holds the writer before its next batch until opened, and counts the
// requests queued meanwhile.
type gate struct {
	open    chan struct{}
	once    sync.Once
	queued  chan struct{}
	mu      sync.Mutex
	batches []int
}

func newGate() *gate {
	return &gate{open: make(chan struct{}), queued: make(chan struct{}, 1024)}
}

func (g *gate) hooks() hooks {
	return hooks{
		beforeBatch: func() { <-g.open },
		enqueued:    func() { g.queued <- struct{}{} },
		afterCommit: func(n int) {
			g.mu.Lock()
			g.batches = append(g.batches, n)
			g.mu.Unlock()
		},
	}
}

func (g *gate) waitQueued(n int) {
	for range n {
		<-g.queued
	}
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func (g *gate) committed() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.batches)
}

// TestGroupCommitOneBatch queues writes while the writer is held, one of
// which clashes, and checks that they commit as one batch in which only the
// clashing write fails.
func TestGroupCommitOneBatch(t *testing.T) {
	g := newGate()
	st, _ := openTemp(t, g.hooks())
	defer g.release()
	const n = 12
	type result struct {
		i   int
		err error
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	create := func(i int, a storage.Account) {
		wg.Go(func() {
			_, err := st.CreateAccount(context.Background(), a)
			results <- result{i, err}
		})
	}
	for i := range n - 1 {
		create(i, acct(i))
	}
	g.waitQueued(n - 1)
	// Queued last, so it runs after account 3 in the same transaction.
	clash := acct(n - 1)
	clash.Subdomain = acct(3).Subdomain
	create(n-1, clash)
	g.waitQueued(1)
	g.release()
	wg.Wait()
	close(results)
	for r := range results {
		if r.i == n-1 {
			if !errors.Is(r.err, storage.ErrConflict) {
				t.Errorf("clashing write: %v, want ErrConflict", r.err)
			}
			if _, err := st.Account(context.Background(), clash.Username); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("clashing account stored (Account error %v)", err)
			}
			continue
		}
		if r.err != nil {
			t.Errorf("write %d: %v", r.i, r.err)
		}
		if _, err := st.Account(context.Background(), acct(r.i).Username); err != nil {
			t.Errorf("account %d: %v", r.i, err)
		}
	}
	if got := g.committed(); !slices.Equal(got, []int{n}) {
		t.Errorf("batches committed = %v, want one of %d", got, n)
	}
}

// TestCancelWhileQueued: a request whose caller gives up before the writer
// takes it is skipped, and the caller gets ctx's error at once.
func TestCancelWhileQueued(t *testing.T) {
	g := newGate()
	st, _ := openTemp(t, g.hooks())
	defer g.release()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := st.CreateAccount(ctx, acct(1))
		errc <- err
	}()
	g.waitQueued(1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateAccount error = %v, want context.Canceled", err)
	}
	g.release()
	// The next write goes through the same writer, so once it is answered the
	// cancelled one has been seen (and skipped).
	mustCreate(t, st, acct(2))
	if _, err := st.Account(context.Background(), "user-1"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("cancelled CreateAccount was written (Account error %v)", err)
	}
	if got := g.committed(); !slices.Equal(got, []int{1}) {
		t.Errorf("batches committed = %v, want [1] (the cancelled request skipped)", got)
	}
}

// TestCloseDrainsQueue: writes queued before Close are committed by it.
func TestCloseDrainsQueue(t *testing.T) {
	g := newGate()
	path := filepath.Join(t.TempDir(), "db")
	st, err := open(context.Background(), path, Options{}, g.hooks())
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := st.CreateAccount(context.Background(), acct(i))
			errs <- err
		}()
	}
	g.waitQueued(n)
	closed := make(chan error)
	go func() { closed <- st.Close() }()
	g.release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("queued write: %v", err)
		}
	}
	st2 := openT(t, path)
	defer st2.Close()
	for i := range n {
		if _, err := st2.Account(context.Background(), acct(i).Username); err != nil {
			t.Errorf("account %d after Close: %v", i, err)
		}
	}
	if _, err := st.CreateAccount(context.Background(), acct(99)); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("CreateAccount after Close error = %v, want ErrUnavailable", err)
	}
}

func TestIntegrityAfterConcurrency(t *testing.T) {
	st, path := openTemp(t, hooks{})
	const workers, accounts = 16, 8
	for i := range accounts {
		mustCreate(t, st, acct(i))
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range 50 {
				var err error
				switch i % 5 {
				case 4:
					_, err = st.CreateAccount(context.Background(), acct(1000+w*100+i))
				case 3:
					// Another worker may change the same key in between:
					// its compare-and-swap then loses, which is no failure.
					var a storage.Account
					if a, err = st.Account(context.Background(), acct(w%accounts).Username); err == nil {
						err = st.UpdateKeyHash(context.Background(), a.Username, a.KeyHash, fmt.Sprint(w, "-", i))
						if errors.Is(err, storage.ErrConflict) {
							err = nil
						}
					}
				default:
					_, _, err = st.SetTXT(context.Background(), acct((w+i)%accounts).Subdomain,
						fmt.Sprintf("%d-%d", w, i), t0.Add(time.Duration(i)*time.Minute), storage.DefaultTXTPolicy)
				}
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st2 := openT(t, path)
	defer st2.Close()
	var res string
	if err := st2.db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Errorf("integrity_check = %q, %v", res, err)
	}
	rows, err := st2.db.Query("PRAGMA foreign_key_check")
	if err != nil {
		t.Fatal(err)
	}
	if rows.Next() {
		t.Error("foreign_key_check reports violations")
	}
	rows.Close()
	// The policy held: no subdomain has more than Max values.
	if _, err := st2.Snapshot(context.Background(), func(s storage.Subdomain) error {
		if len(s.Records) > storage.DefaultTXTPolicy.Max {
			return fmt.Errorf("%s has %d values", s.Name, len(s.Records))
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// TestReadOnlyUnavailable opens a database read-only (as a file on a
// read-only mount would be): reads work, writes fail with ErrUnavailable.
// (File modes cannot be used: the tests may run as root.)
func TestReadOnlyUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	st := openT(t, path)
	mustCreate(t, st, acct(1))
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(context.Background(), "file:"+path+"?mode=ro", Options{})
	if err != nil {
		t.Fatalf("Open read-only: %v", err)
	}
	defer ro.Close()
	ctx := context.Background()
	if _, err := ro.Account(ctx, "user-1"); err != nil {
		t.Errorf("Account on a read-only store: %v", err)
	}
	if err := ro.Ping(ctx); err != nil {
		t.Errorf("Ping on a read-only store: %v", err)
	}
	if _, err := ro.CreateAccount(ctx, acct(2)); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("CreateAccount on a read-only store: %v, want ErrUnavailable", err)
	}
	if _, _, err := ro.SetTXT(ctx, "sub-1", "v", t0, storage.DefaultTXTPolicy); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("SetTXT on a read-only store: %v, want ErrUnavailable", err)
	}
	// The writer recovers from failed batches: reads still work.
	if _, err := ro.Account(ctx, "user-1"); err != nil {
		t.Errorf("Account after failed writes: %v", err)
	}
}

// TestLockedUnavailable: another process holding the write lock longer than
// the busy timeout makes writes fail with ErrUnavailable, and the store
// works again once the lock is gone.
func TestLockedUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	st, err := Open(context.Background(), path, Options{BusyTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mustCreate(t, st, acct(1))

	other, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.wconn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	_, _, err = st.SetTXT(context.Background(), "sub-1", "v", t0, storage.DefaultTXTPolicy)
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("SetTXT while locked: %v, want ErrUnavailable", err)
	}
	if _, err := other.wconn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.SetTXT(context.Background(), "sub-1", "v", t0, storage.DefaultTXTPolicy); err != nil {
		t.Errorf("SetTXT after the lock is gone: %v", err)
	}
}

// TestSnapshotQueryPlan: the snapshot query must stream (no temporary
// b-tree for ORDER BY), which is what keeps a million accounts out of
// memory; and SetTXT's read must use the index.
func TestSnapshotQueryPlan(t *testing.T) {
	st, _ := openTemp(t, hooks{})
	for _, q := range []string{
		snapshotQuery,
		valuesQuery,
	} {
		rows, err := st.db.Query("EXPLAIN QUERY PLAN "+q, "x")
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "; ")
		if strings.Contains(joined, "TEMP B-TREE") || strings.Contains(joined, "SCAN t") {
			t.Errorf("query plan sorts or scans:\n%s\n%s", q, joined)
		}
		t.Logf("plan: %s", joined)
	}
}

// TestSnapshotStreams fills a database directly with many accounts and
// checks that Snapshot returns each once, in order, with its values newest
// first. (That it streams is TestSnapshotQueryPlan's job; the heap it needs
// for a million accounts is in BenchmarkSnapshot1M.)
func TestSnapshotStreams(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 20_000
	}
	st, _ := openTemp(t, hooks{})
	start := time.Now()
	fillAccounts(t, st, n)
	t.Logf("fill %d accounts: %v", n, time.Since(start))
	start = time.Now()
	defer func() { t.Logf("snapshot: %v", time.Since(start)) }()
	count, values := 0, 0
	prev := ""
	serial, err := st.Snapshot(context.Background(), func(s storage.Subdomain) error {
		if s.Name <= prev {
			return fmt.Errorf("subdomain %s after %s", s.Name, prev)
		}
		prev = s.Name
		count++
		values += len(s.Records)
		for i := 1; i < len(s.Records); i++ {
			if s.Records[i].UpdatedAt.After(s.Records[i-1].UpdatedAt) {
				return fmt.Errorf("%s: records not newest first", s.Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count != n || values != n/2*2 {
		t.Errorf("Snapshot: %d subdomains, %d values; want %d, %d", count, values, n, n/2*2)
	}
	if serial == 0 {
		t.Error("serial 0")
	}
}

// fillAccounts inserts n accounts, every other one with two TXT values,
// straight into the database in one transaction (through the API it would
// take minutes). Subdomains look like the UUIDs the API hands out.
func fillAccounts(t testing.TB, st *Store, n int) {
	t.Helper()
	const sub = `printf('%08x-0000-4000-8000-%012d', (i * 2654435761) % 4294967296, i)`
	const nums = `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1) `
	ctx := context.Background()
	c := st.wconn // idle: nothing else writes during the fill
	exec := func(q string, args ...any) {
		if _, err := c.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("fill: %v", err)
		}
	}
	exec("BEGIN IMMEDIATE")
	for _, q := range []string{
		nums + `INSERT INTO accounts (username, key_hash, subdomain, allow_from, created_at)
		 SELECT printf('user-%d', i), '$2a$10$abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNO', ` + sub + `, '[]', ?2 FROM n`,
		nums + `INSERT INTO txt_records (subdomain, value, updated_at)
		 SELECT ` + sub + `, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', ?2 FROM n WHERE i % 2 = 0
		 UNION ALL
		 SELECT ` + sub + `, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', ?2 + 1 FROM n WHERE i % 2 = 0`,
	} {
		exec(q, n, t0.UnixNano())
	}
	exec(`UPDATE zone_meta SET serial = serial + 1`)
	exec("COMMIT")
}

// FuzzDecodeAllowFrom: whatever a row holds, decoding does not panic, and
// what decodes re-encodes to something that decodes to the same prefixes.
func FuzzDecodeAllowFrom(f *testing.F) {
	for _, s := range []string{``, `[]`, `["192.0.2.0/24","2001:db8::/32"]`, `["10.1.2.3/8"]`, `["192.0.2.1"]`,
		`["fe80::1%eth0"]`, `["::ffff:1.2.3.4/104"]`, `[null]`, `{}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := storage.DecodeAllowFrom(s)
		if err != nil {
			return
		}
		enc, err := storage.EncodeAllowFrom(ps)
		if err != nil {
			t.Fatalf("decoded %q to %v, which does not encode: %v", s, ps, err)
		}
		again, err := storage.DecodeAllowFrom(enc)
		if err != nil || !slices.Equal(again, ps) {
			t.Fatalf("%q -> %v -> %s -> %v, %v", s, ps, enc, again, err)
		}
	})
}

// TestCheckpointOffTheWriter: the writer never checkpoints (so no commit
// waits for one); the checkpointer copies the whole WAL back.
func TestCheckpointOffTheWriter(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "c.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var auto int
	if err := st.wconn.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("writer's wal_autocheckpoint = %d (%v), want 0", auto, err)
	}
	now := time.Now()
	for i := range 50 {
		a := storage.Account{Username: fmt.Sprintf("u%d", i), KeyHash: "h", Subdomain: fmt.Sprintf("s%d", i), CreatedAt: now}
		if _, err := st.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.checkpoint(); err != nil {
		t.Fatal(err)
	}
	// A second passive checkpoint reports how many WAL frames exist and how
	// many are in the database: all of them, if the first one worked.
	var busy, frames, done int
	if err := st.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done); err != nil {
		t.Fatal(err)
	}
	if frames == 0 || done != frames {
		t.Fatalf("after checkpoint: %d of %d WAL frames in the database", done, frames)
	}
}
