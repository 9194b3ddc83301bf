package api

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/records"
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
