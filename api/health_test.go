package api

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/internal/zone"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

type syncState string

func (s syncState) SyncProblem() string { return string(s) }

// TestHealthSaysWhichPartIsDown: storage down, node sync down, all well.
func TestHealthSaysWhichPartIsDown(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "h.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	idx := records.New(storage.DefaultTXTPolicy, time.Now)
	get := func(sync SyncStatus) (int, string) {
		cfg := Config{Zone: testZone, TXTPolicy: storage.DefaultTXTPolicy}
		d := testDeps(cfg, st, idx)
		d.Sync = sync
		h := New(cfg, d)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
		return rec.Code, rec.Body.String()
	}
	for _, tc := range []struct {
		name   string
		sync   SyncStatus
		status int
		body   string
	}{
		{"one node", nil, 200, `{"status":"ok","storage":"ok"}`},
		{"nodes in sync", syncState(""), 200, `{"status":"ok","storage":"ok"}`},
		{"sync lost", syncState("reconnecting to the database"), 503,
			`{"dns":"may miss other nodes' changes","status":"degraded","storage":"ok","sync":"reconnecting to the database"}`},
	} {
		if status, body := get(tc.sync); status != tc.status || body != tc.body+"\n" {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, body, tc.status, tc.body)
		}
	}
	st.Close()
	// Storage down says so first, whatever the sync state.
	want := `{"dns":"serving from memory","status":"degraded","storage":"unreachable"}` + "\n"
	if status, body := get(syncState("reconnecting to the database")); status != 503 || body != want {
		t.Errorf("storage down: %d %s, want 503 %s", status, body, want)
	}
}

// flakyStore fails SetTXT (as a full disk does, while reads and pings
// work) and Ping (as a pool with no free connection does) on demand.
type flakyStore struct {
	*sqlite.Store
	mu                    sync.Mutex
	failWrites, failPings bool
}

func (f *flakyStore) set(writes, pings bool) {
	f.mu.Lock()
	f.failWrites, f.failPings = writes, pings
	f.mu.Unlock()
}

func (f *flakyStore) SetTXT(ctx context.Context, sub, v string, at time.Time, p storage.TXTPolicy) ([]storage.TXTRecord, uint32, error) {
	f.mu.Lock()
	fail := f.failWrites
	f.mu.Unlock()
	if fail {
		return nil, 0, fmt.Errorf("sqlite: set txt: database or disk is full: %w", storage.ErrUnavailable)
	}
	return f.Store.SetTXT(ctx, sub, v, at, p)
}

func (f *flakyStore) Ping(ctx context.Context) error {
	f.mu.Lock()
	fail := f.failPings
	f.mu.Unlock()
	if fail {
		return errors.New("no connection available")
	}
	return f.Store.Ping(ctx)
}

// TestHealthReportsFailingWrites: /health is degraded while writes fail,
// even though storage answers pings, until a write succeeds; and a write
// that just succeeded vouches for storage when a ping cannot get through
// (issue 12: "ok" on a full disk, "storage unreachable" during a
// connection flood with storage fine).
func TestHealthReportsFailingWrites(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "h.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fs := &flakyStore{Store: st}
	clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	e := &env{store: st, idx: records.New(storage.DefaultTXTPolicy, clk.now)}
	cfg := Config{Zone: testZone, TXTPolicy: storage.DefaultTXTPolicy}
	e.h = New(cfg, Deps{Accounts: fs, Zone: zone.New(zone.Config{Zone: testZone, Policy: cfg.TXTPolicy, Now: clk.now}, fs, e.idx), Now: clk.now})
	a := e.register(t, "")
	update := func() int {
		return e.do("POST", "/update", `{"subdomain":"`+a.Subdomain+`","txt":"`+val1+`"}`, hdrs(a), "").status
	}
	health := func() (int, string) { r := e.do("GET", "/health", "", nil, ""); return r.status, r.body }

	fs.set(true, false) // disk full
	if s := update(); s != 503 {
		t.Fatalf("update on a full disk: %d", s)
	}
	clk.add(time.Minute) // long after the registration's successful write
	if s, b := health(); s != 503 || !strings.Contains(b, `"writes":"failing (unavailable) since 2030-01-01T00:00:00Z"`) || !strings.Contains(b, `"storage":"ok"`) {
		t.Fatalf("health while writes fail: %d %s", s, b)
	}
	fs.set(false, false) // space freed
	if s := update(); s != 200 {
		t.Fatalf("update after the disk was freed: %d", s)
	}
	if s, b := health(); s != 200 || b != `{"status":"ok","storage":"ok"}`+"\n" {
		t.Fatalf("health after a write succeeded: %d %s", s, b)
	}
	// Pings cannot get a connection, but a write just succeeded: ok.
	fs.set(false, true)
	if s, b := health(); s != 200 {
		t.Fatalf("health with a recent good write and no ping: %d %s", s, b)
	}
	// Long after it, the ping decides again.
	clk.add(time.Minute)
	if s, b := health(); s != 503 || !strings.Contains(b, `"storage":"unreachable"`) {
		t.Fatalf("health with no recent write and a failing ping: %d %s", s, b)
	}
}

// A node nobody writes through (a load balancer took it out on its 503)
// still sees storage recover: while writes fail, /health probes with a
// small write of its own, at most every few seconds.
func TestHealthProbesWritesWhileFailing(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "h.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fs := &flakyStore{Store: st}
	clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	e := &env{store: st, idx: records.New(storage.DefaultTXTPolicy, clk.now)}
	cfg := Config{Zone: testZone, TXTPolicy: storage.DefaultTXTPolicy}
	probes := 0
	probe := func(ctx context.Context) error {
		probes++
		fs.mu.Lock()
		defer fs.mu.Unlock()
		if fs.failWrites {
			return storage.ErrUnavailable
		}
		return nil
	}
	e.h = New(cfg, Deps{Accounts: fs, Zone: zone.New(zone.Config{Zone: testZone, Policy: cfg.TXTPolicy, Now: clk.now}, fs, e.idx), Now: clk.now, WriteProbe: probe})
	a := e.register(t, "")
	fs.set(true, false) // disk full
	if r := e.do("POST", "/update", `{"subdomain":"`+a.Subdomain+`","txt":"`+val1+`"}`, hdrs(a), ""); r.status != 503 {
		t.Fatalf("update on a full disk: %d", r.status)
	}
	health := func() int { return e.do("GET", "/health", "", nil, "").status }
	if s := health(); s != 503 || probes != 1 {
		t.Fatalf("health while writes fail: %d after %d probes", s, probes)
	}
	fs.set(false, false) // space freed; nobody updates through this node
	if s := health(); s != 503 || probes != 1 {
		t.Fatalf("health probed again within the probe interval: %d after %d probes", s, probes)
	}
	clk.add(6 * time.Second)
	if s := health(); s != 200 || probes != 2 {
		t.Fatalf("health after storage recovered, with no write through the node: %d after %d probes", s, probes)
	}
	if s := health(); s != 200 || probes != 2 {
		t.Fatalf("health probed while writes work: %d after %d probes", s, probes)
	}
}
