package nodesync_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/acmebroker/acmebroker/internal/nodesync"
	"github.com/acmebroker/acmebroker/internal/pgtest"
	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/internal/zone"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/postgres"
)

var policy = storage.DefaultTXTPolicy

// node is one broker's storage and index, with a watcher.
type node struct {
	st  *postgres.Store
	idx *records.Index
	w   *nodesync.Watcher
}

func startNode(t *testing.T, dsn string, listen bool, resync time.Duration) *node {
	t.Helper()
	st, err := postgres.Open(context.Background(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	idx := records.New(policy, time.Now)
	if err := idx.Load(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	var n nodesync.Notifier
	if listen {
		n = nodesync.NotifierFunc(func(ctx context.Context) (nodesync.Subscription, error) {
			l, err := st.Listen(ctx)
			if err != nil {
				return nil, err
			}
			return l, nil
		})
	}
	w := nodesync.New(nodesync.Config{ResyncInterval: resync, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, zone.New(zone.Config{Policy: policy}, st, idx), n)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done }) // runs before st.Close
	return &node{st: st, idx: idx, w: w}
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func served(idx *records.Index, sub string) ([]string, bool) { return idx.TXT(nil, sub) }

func newAccount() storage.Account {
	return storage.Account{Username: uuid.NewString(), KeyHash: "h", Subdomain: uuid.NewString(), CreatedAt: time.Now()}
}

// TestChangesReachOtherNode: writes through node A's store show in node B's
// index (B's own store never wrote them), deletions too, and B's serial
// follows.
func TestChangesReachOtherNode(t *testing.T) {
	dsn := pgtest.Schema(t)
	a := startNode(t, dsn, true, time.Hour) // no periodic resync: only notifications
	b := startNode(t, dsn, true, time.Hour)
	waitFor(t, "B listening", b.w.Listening)
	ctx := context.Background()

	acc := newAccount()
	if _, err := a.st.CreateAccount(ctx, acc); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "registration on B", func() bool { _, ok := served(b.idx, acc.Subdomain); return ok })
	var serial uint32
	for i := range 20 {
		var err error
		_, serial, err = a.st.SetTXT(ctx, acc.Subdomain, fmt.Sprintf("value-%02d", i), time.Now(), policy)
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "last value on B", func() bool {
		v, _ := served(b.idx, acc.Subdomain)
		return slices.Contains(v, "value-19") && slices.Contains(v, "value-18")
	})
	if b.idx.Serial() != serial {
		waitFor(t, "B's serial", func() bool { return b.idx.Serial() == serial })
	}
	if _, err := a.st.DeleteAccount(ctx, acc.Username); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "deletion on B", func() bool { _, ok := served(b.idx, acc.Subdomain); return !ok })
	if b.w.Resyncs() != 1 { // the one after connecting
		t.Errorf("B resynced %d times; the changes should have come by notification", b.w.Resyncs())
	}
}

// TestResyncWithoutNotifications: with no notifier (CockroachDB) changes
// arrive at the periodic resync.
func TestResyncWithoutNotifications(t *testing.T) {
	dsn := pgtest.Schema(t)
	a := startNode(t, dsn, false, time.Hour)
	b := startNode(t, dsn, false, 50*time.Millisecond)
	ctx := context.Background()
	acc := newAccount()
	if _, err := a.st.CreateAccount(ctx, acc); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.st.SetTXT(ctx, acc.Subdomain, "polled", time.Now(), policy); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "value on B by resync", func() bool {
		v, _ := served(b.idx, acc.Subdomain)
		return slices.Equal(v, []string{"polled"})
	})
	if b.w.Listening() {
		t.Error("B claims to listen without a notifier")
	}
}

// TestListenerReconnects kills B's listening session; changes made while
// it was gone must still reach B (by the resync after reconnecting).
func TestListenerReconnects(t *testing.T) {
	base := pgtest.Schema(t)
	app := "nodeb" + fmt.Sprint(time.Now().UnixNano())
	dsnB := base + "&application_name=" + app
	a := startNode(t, base, true, time.Hour)
	b := startNode(t, dsnB, true, time.Hour)
	waitFor(t, "B listening", b.w.Listening)
	ctx := context.Background()
	acc := newAccount()
	if _, err := a.st.CreateAccount(ctx, acc); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "registration on B", func() bool { _, ok := served(b.idx, acc.Subdomain); return ok })

	admin, err := pgx.Connect(ctx, pgtest.BaseDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	// Terminate B's sessions (its pool and its listener) and, in the same
	// breath, write from A: B cannot get this notification.
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n); err != nil || n == 0 {
		t.Fatalf("terminated %d sessions: %v", n, err)
	}
	if _, _, err := a.st.SetTXT(ctx, acc.Subdomain, "while-away", time.Now(), policy); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "value written while B was disconnected", func() bool {
		v, _ := served(b.idx, acc.Subdomain)
		return slices.Contains(v, "while-away")
	})
	waitFor(t, "B listening again", b.w.Listening)
	waitFor(t, "B's sync problem to clear", func() bool { return b.w.SyncProblem() == "" })
	if b.w.Resyncs() < 2 {
		t.Errorf("B resynced %d times, want a resync after reconnecting", b.w.Resyncs())
	}
	// And notifications work again.
	if _, _, err := a.st.SetTXT(ctx, acc.Subdomain, "after", time.Now(), policy); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "value after reconnecting", func() bool {
		v, _ := served(b.idx, acc.Subdomain)
		return slices.Contains(v, "after")
	})
}

// TestUnsupportedNotifier: a notifier that says the database cannot
// notify turns the watcher to resync-only, without failing.
func TestUnsupportedNotifier(t *testing.T) {
	dsn := pgtest.Schema(t)
	a := startNode(t, dsn, false, time.Hour)
	st, err := postgres.Open(context.Background(), dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	idx := records.New(policy, time.Now)
	n := nodesync.NotifierFunc(func(context.Context) (nodesync.Subscription, error) {
		return nil, fmt.Errorf("wrapped: %w", nodesync.ErrUnsupported)
	})
	w := nodesync.New(nodesync.Config{ResyncInterval: 20 * time.Millisecond}, zone.New(zone.Config{Policy: policy}, st, idx), n)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	acc := newAccount()
	if _, err := a.st.CreateAccount(context.Background(), acc); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "registration by resync", func() bool { _, ok := idx.TXT(nil, acc.Subdomain); return ok })
	if w.Listening() {
		t.Error("the watcher claims to listen on a database without notifications")
	}
}

// TestPersistReachesOtherNode: a persist record set and removed through
// node A reaches node B's index by notification (PostgreSQL) and, with
// notifications off, by the periodic resync; B keeps A's challenge values
// beside it.
func TestPersistReachesOtherNode(t *testing.T) {
	dsn := pgtest.Schema(t)
	a := startNode(t, dsn, true, time.Hour)
	b := startNode(t, dsn, true, time.Hour)
	c := startNode(t, dsn, false, 50*time.Millisecond)
	waitFor(t, "B listening", b.w.Listening)
	ctx := context.Background()
	acc := newAccount()
	if _, err := a.st.CreateAccount(ctx, acc); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.st.SetTXT(ctx, acc.Subdomain, "value", time.Now(), policy); err != nil {
		t.Fatal(err)
	}
	rec := storage.PersistRecord{Issuer: "letsencrypt.org", AccountURI: "https://acme.example/acct/1", SetAt: time.Now()}
	if _, _, err := a.st.SetPersist(ctx, acc.Subdomain, rec); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]*node{"B (notified)": b, "C (resync)": c} {
		waitFor(t, "the record on "+name, func() bool {
			v, _ := served(n.idx, acc.Subdomain)
			return slices.Equal(v, []string{"value", rec.Value()})
		})
	}
	if _, _, err := a.st.DeletePersist(ctx, acc.Subdomain, rec.Issuer); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]*node{"B (notified)": b, "C (resync)": c} {
		waitFor(t, "the removal on "+name, func() bool {
			v, _ := served(n.idx, acc.Subdomain)
			return slices.Equal(v, []string{"value"})
		})
	}
}
