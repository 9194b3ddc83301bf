package metrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

func TestAPIByRoutePattern(t *testing.T) {
	m := newMetrics(t)
	r := chi.NewRouter()
	r.Route("/acme", func(r chi.Router) {
		r.Post("/update", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("{}")) })
		r.Get("/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
		r.Get("/thing/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	})
	srv := httptest.NewServer(m.API(r))
	defer srv.Close()
	for _, c := range []struct{ method, path string }{
		{"POST", "/acme/update"},
		{"POST", "/acme/update"},
		{"GET", "/acme/health"},
		{"GET", "/acme/thing/d2121c1a-55ec-49c1-832c-695d6a198111"}, // the parameter never becomes a label
		{"GET", "/acme/update"},
		{"GET", "/acme/nowhere"},
		{"GET", "/secret-path"},
		{"BREW", "/acme/update"},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for _, c := range []struct {
		route, method, code string
		want                float64
	}{
		{"/acme/update", "POST", "200", 2},
		{"/acme/health", "GET", "503", 1},
		{"/acme/thing/{id}", "GET", "204", 1},
		{"unmatched", "GET", "405", 1},
		{"unmatched", "GET", "404", 2},
		{"unmatched", "other", "405", 1},
	} {
		if got := testutil.ToFloat64(m.api.requests.WithLabelValues(c.route, c.method, c.code)); got != c.want {
			t.Errorf("requests{route=%s,method=%s,code=%s} = %v, want %v", c.route, c.method, c.code, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.api.requests); n != 6 {
		t.Errorf("%d request series, want 6", n)
	}
	out, err := testutil.CollectAndFormat(m.api.latency, expfmt.TypeTextPlain, "acmebroker_api_request_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); strings.Contains(s, "d2121c1a") || strings.Contains(s, "secret-path") || !strings.Contains(s, `route="/acme/update"`) {
		t.Errorf("latency series carry a path or miss a route:\n%s", s)
	}
}

func TestStorageErrors(t *testing.T) {
	m := newMetrics(t)
	raw, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := m.Store(raw)
	ctx := context.Background()
	// Expected outcomes are not errors.
	if _, err := st.Account(ctx, "nobody"); err == nil {
		t.Fatal("unknown account found")
	}
	a := storage.Account{Username: "u1", KeyHash: "h", Subdomain: "s1", CreatedAt: time.Now()}
	if _, err := st.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateAccount(ctx, a); err == nil {
		t.Fatal("duplicate account stored")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, _ = st.SetTXT(cancelled, "s1", "v", time.Now(), storage.DefaultTXTPolicy)
	if n := testutil.CollectAndCount(m.storage); n != 0 {
		t.Fatalf("%d error series after expected outcomes only", n)
	}
	// A callback's own error is not the database's.
	if _, err := st.Snapshot(ctx, func(storage.Subdomain) error { return context.DeadlineExceeded }); err == nil {
		t.Fatal("callback error lost")
	}
	if n := testutil.CollectAndCount(m.storage); n != 0 {
		t.Fatalf("a callback's error was counted as the store's")
	}
	// A closed database fails every call.
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.SetTXT(ctx, "s1", "v", time.Now(), storage.DefaultTXTPolicy); err == nil {
		t.Fatal("SetTXT on a closed store succeeded")
	}
	if err := st.Ping(ctx); err == nil {
		t.Fatal("Ping on a closed store succeeded")
	}
	for _, op := range []string{"set_txt", "ping"} {
		v := testutil.ToFloat64(m.storage.WithLabelValues(op, "unavailable")) + testutil.ToFloat64(m.storage.WithLabelValues(op, "failed"))
		if v != 1 {
			t.Errorf("%s errors = %v, want 1", op, v)
		}
	}
	if n := testutil.CollectAndCount(m.storage); n < 2 {
		t.Errorf("%d error series, want one per failed op", n)
	}
}

func TestTransferObserverBoundsLabels(t *testing.T) {
	var off *Metrics
	off.TransferServed("AXFR", "ok") // metrics off: no panic, nothing counted
	off.NotifySent("acked")
	m := newMetrics(t)
	m.TransferServed("AXFR", "ok")
	m.TransferServed("IXFR", "refused")
	m.TransferServed("AXFR", "ok")
	m.TransferServed("TXT", "a subdomain")
	m.NotifySent("acked")
	m.NotifySent("192.0.2.1 timed out")
	tr, nt := m.transfers.transfers, m.transfers.notifies
	for _, c := range []struct {
		got, want float64
		what      string
	}{
		{testutil.ToFloat64(tr.WithLabelValues("AXFR", "ok")), 2, "AXFR ok"},
		{testutil.ToFloat64(tr.WithLabelValues("IXFR", "refused")), 1, "IXFR refused"},
		{testutil.ToFloat64(tr.WithLabelValues("other", "other")), 1, "unknown values"},
		{testutil.ToFloat64(nt.WithLabelValues("acked")), 1, "notify acked"},
		{testutil.ToFloat64(nt.WithLabelValues("failed")), 0, "notify failed"},
		{testutil.ToFloat64(nt.WithLabelValues("other")), 1, "notify unknown"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}
