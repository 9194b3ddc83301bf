package broker_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/config"
)

// faultBroker is a real broker on loopback with a real SQLite file and one
// registered account.
type faultBroker struct {
	t      *testing.T
	rd     broker.Ready
	dbPath string
	client *http.Client
	acct   struct{ Username, Password, Subdomain, Fulldomain string }
}

func startFaultBroker(t *testing.T, busy time.Duration) *faultBroker {
	t.Helper()
	cfg := brokertest.Config(t, "", func(c *config.Config) { c.Storage.BusyTimeout = config.Duration{Duration: busy} })
	b := &faultBroker{t: t, rd: brokertest.Start(t, cfg), dbPath: cfg.Storage.DSN, client: &http.Client{Timeout: 30 * time.Second}}
	resp, err := b.client.Post(b.rd.API+"/register", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&b.acct); err != nil || resp.StatusCode != 201 {
		t.Fatalf("register: %d %v", resp.StatusCode, err)
	}
	return b
}

type answer struct {
	status     int
	code       string
	detail     string
	retryAfter string
	body       string
}

func (b *faultBroker) update(v string) answer {
	b.t.Helper()
	body := fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, b.acct.Subdomain, v)
	req, _ := http.NewRequest("POST", b.rd.API+"/update", strings.NewReader(body))
	req.Header.Set("X-Api-User", b.acct.Username)
	req.Header.Set("X-Api-Key", b.acct.Password)
	return b.do(req)
}

func (b *faultBroker) health() answer {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.rd.API+"/health", nil)
	return b.do(req)
}

func (b *faultBroker) do(req *http.Request) answer {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	var e struct{ Error, Detail string }
	json.Unmarshal(buf.Bytes(), &e)
	return answer{resp.StatusCode, e.Error, e.Detail, resp.Header.Get("Retry-After"), buf.String()}
}

// served returns the TXT values DNS answers for the account.
func (b *faultBroker) served() []string {
	b.t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(b.acct.Fulldomain+".", dns.TypeTXT)
	in, _, err := (&dns.Client{Net: "tcp", Timeout: 5 * time.Second}).Exchange(q, b.rd.DNS[0])
	if err != nil || in.Rcode != dns.RcodeSuccess {
		b.t.Fatalf("DNS: %v %v", in, err)
	}
	var out []string
	for _, rr := range in.Answer {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	slices.Sort(out)
	return out
}

// stored returns the values in the database file (committed ones only)
// and checks its integrity.
func (b *faultBroker) stored() []string {
	b.t.Helper()
	db, err := sql.Open("sqlite3", "file:"+b.dbPath+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		b.t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		b.t.Fatalf("integrity_check: %q %v", res, err)
	}
	rows, err := db.Query("SELECT value FROM txt_records WHERE subdomain = ? ORDER BY value", b.acct.Subdomain)
	if err != nil {
		b.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		rows.Scan(&v)
		out = append(out, v)
	}
	return out
}

// lockDB takes the database's write lock from another connection (as a
// backup or the sqlite3 shell would), with a change pending in it, and
// returns the function that rolls it back and releases the lock.
func lockDB(t *testing.T, path string) func() {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("taking the write lock: %v", err)
	}
	if _, err := c.ExecContext(ctx, "UPDATE zone_meta SET serial = serial + 1000"); err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if released {
			return
		}
		released = true
		if _, err := c.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Errorf("releasing the lock: %v", err)
		}
		c.Close()
		db.Close()
	}
	t.Cleanup(release)
	return release
}

func val(i int) string { return fmt.Sprintf("%043d", i) }

// TestDatabaseLocked: another process holds the write lock longer than the
// busy timeout. Updates answer 503 db_error with Retry-After and a detail
// that says what happened, DNS and /health keep answering (reads are not
// blocked in WAL mode), nothing of the refused update is stored, and once
// the lock is released updates work again without a restart.
func TestDatabaseLocked(t *testing.T) {
	b := startFaultBroker(t, 200*time.Millisecond)
	if a := b.update(val(1)); a.status != 200 {
		t.Fatalf("update before the lock: %+v", a)
	}
	release := lockDB(t, b.dbPath)
	for i := 2; i <= 4; i++ {
		a := b.update(val(i))
		if a.status != 503 || a.code != "db_error" || a.retryAfter == "" || !strings.Contains(a.detail, "locked") {
			t.Fatalf("update %d with the database locked: %+v, want 503 db_error with Retry-After and a detail", i, a)
		}
		if got := b.served(); !slices.Equal(got, []string{val(1)}) {
			t.Fatalf("DNS with the database locked: %v", got)
		}
	}
	// Storage answers (reads are not blocked), but writes fail: degraded
	// (issue 12: /health said ok while every write failed).
	if a := b.health(); a.status != 503 || !strings.Contains(a.body, `"storage":"ok"`) || !strings.Contains(a.body, `"writes":"failing (unavailable)`) {
		t.Fatalf("health with the write lock held by another process: %+v", a)
	}
	release()
	if a := b.update(val(5)); a.status != 200 {
		t.Fatalf("update after the lock was released: %+v", a)
	}
	if a := b.health(); a.status != 200 {
		t.Fatalf("health after a write succeeded again: %+v", a)
	}
	want := []string{val(1), val(5)}
	if got := b.served(); !slices.Equal(got, want) {
		t.Fatalf("DNS after the lock: %v, want %v", got, want)
	}
	if got := b.stored(); !slices.Equal(got, want) {
		t.Fatalf("stored after the lock: %v, want %v (refused updates must leave nothing)", got, want)
	}
}

// TestDatabaseSlow: a lock held for less than the busy timeout delays an
// update, which then succeeds.
func TestDatabaseSlow(t *testing.T) {
	b := startFaultBroker(t, 20*time.Second)
	release := lockDB(t, b.dbPath)
	done := make(chan answer, 1)
	go func() { done <- b.update(val(1)) }()
	// Hold the lock a while so the update reaches it; it must not finish
	// while the lock is held, whatever the machine's speed.
	select {
	case a := <-done:
		t.Fatalf("update finished while another process held the write lock: %+v", a)
	case <-time.After(500 * time.Millisecond):
	}
	released := time.Now()
	release()
	select {
	case a := <-done:
		if a.status != 200 {
			t.Fatalf("update delayed by a short lock: %+v, want 200", a)
		}
		t.Logf("the update finished %v after the lock was released", time.Since(released).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("update did not finish within 30 s of the lock's release")
	}
	if got := b.served(); !slices.Equal(got, []string{val(1)}) {
		t.Fatalf("DNS after the slow update: %v", got)
	}
	if got := b.stored(); !slices.Equal(got, []string{val(1)}) {
		t.Fatalf("stored after the slow update: %v", got)
	}
}

// TestDatabaseGone: the database file is moved away under the running
// broker. Updates answer 503 (SQLite alone would acknowledge them into the
// unlinked file and lose them at the next start), /health answers 503,
// DNS keeps serving; moved back, everything works again without a restart,
// and the refused value is nowhere. A different file put in its place is
// refused with a message asking for a restart.
func TestDatabaseGone(t *testing.T) {
	b := startFaultBroker(t, time.Second)
	if a := b.update(val(1)); a.status != 200 {
		t.Fatalf("first update: %+v", a)
	}
	aside := b.dbPath + ".aside"
	if err := os.Rename(b.dbPath, aside); err != nil {
		t.Fatal(err)
	}
	if a := b.update(val(2)); a.status != 503 || a.code != "db_error" || a.retryAfter == "" {
		t.Fatalf("update with the database file gone: %+v, want 503 db_error", a)
	}
	if a := b.health(); a.status != 503 {
		t.Fatalf("health with the database file gone: %+v, want 503", a)
	}
	if got := b.served(); !slices.Equal(got, []string{val(1)}) {
		t.Fatalf("DNS with the database file gone: %v", got)
	}
	if _, err := os.Stat(b.dbPath); !os.IsNotExist(err) {
		t.Fatalf("an empty database appeared in place of the moved one: %v", err)
	}
	if err := os.Rename(aside, b.dbPath); err != nil {
		t.Fatal(err)
	}
	// Storage answers again; the writes that failed keep /health degraded
	// until one succeeds.
	if a := b.health(); a.status != 503 || !strings.Contains(a.body, `"storage":"ok"`) || !strings.Contains(a.body, `"writes":"failing`) {
		t.Fatalf("health with the file back, before a write: %+v", a)
	}
	if a := b.update(val(3)); a.status != 200 {
		t.Fatalf("update with the file back: %+v", a)
	}
	if a := b.health(); a.status != 200 {
		t.Fatalf("health with the file back after a write: %+v", a)
	}
	want := []string{val(1), val(3)}
	if got := b.served(); !slices.Equal(got, want) {
		t.Fatalf("DNS with the file back: %v, want %v", got, want)
	}
	if got := b.stored(); !slices.Equal(got, want) {
		t.Fatalf("stored: %v, want %v", got, want)
	}

	// A restored copy in its place: refused until a restart.
	data, err := os.ReadFile(b.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(aside, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(aside, b.dbPath); err != nil {
		t.Fatal(err)
	}
	if a := b.update(val(4)); a.status != 503 {
		t.Fatalf("update with the file replaced: %+v, want 503", a)
	}
	if a := b.health(); a.status != 503 {
		t.Fatalf("health with the file replaced: %+v, want 503", a)
	}
	if got := b.served(); !slices.Equal(got, want) {
		t.Fatalf("DNS with the file replaced: %v, want %v", got, want)
	}
}
