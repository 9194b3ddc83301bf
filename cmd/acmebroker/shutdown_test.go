package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

// updateBody is update that also reads the answer: a 200 must carry the
// whole JSON body with the value set.
func updateBody(client *http.Client, base string, a account, txt string) (int, string, error) {
	body := fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, a.Subdomain, txt)
	req, _ := http.NewRequest(http.MethodPost, base+"/update", strings.NewReader(body))
	req.Header.Set("X-Api-User", a.Username)
	req.Header.Set("X-Api-Key", a.Password)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestSIGTERMDrainsAndKeepsEveryUpdate runs the real binary with metrics
// on, streams concurrent updates, and sends SIGTERM in the middle. One
// update is deliberately in flight (its body half sent) when the signal
// arrives. The process must finish it, exit 0 within the shutdown bound and
// log its stages; every update answered 200 (with its whole body) must be in
// the database, which must pass its integrity check; nothing but a 200 or a
// connection error may be seen.
func TestSIGTERMDrainsAndKeepsEveryUpdate(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "broker.db")
	cfgPath := filepath.Join(dir, "config.toml")
	cfg := fmt.Sprintf(`[dns]
listen = ["127.0.0.1:0"]
zone = "auth.example.test"
nsname = "ns1.auth.example.test"
nsadmin = "hostmaster.example.test"
records = ["auth.example.test. NS ns1.auth.example.test.", "ns1.auth.example.test. A 127.0.0.1"]
[api]
listen = "127.0.0.1:0"
register_limit = 0
update_limit = 0
update_source_limit = 0
[storage]
dsn = %q
[metrics]
listen = "127.0.0.1:0"
[log]
level = "info"
`, db)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, cfgPath)
	if b.scrape == "" {
		t.Fatal("the banner shows no metrics URL")
	}

	const nAccounts = 40
	accounts := make([]account, nAccounts)
	for i := range accounts {
		accounts[i] = register(t, b.api)
	}
	slowAcct := register(t, b.api)

	// The update in flight: headers and half the body sent before SIGTERM.
	u, _ := url.Parse(b.api)
	slow, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slowVal := value(999999)
	slowBody := fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, slowAcct.Subdomain, slowVal)
	half := len(slowBody) / 2
	fmt.Fprintf(slow, "POST %s/update HTTP/1.1\r\nHost: %s\r\nX-Api-User: %s\r\nX-Api-Key: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		u.Path, u.Host, slowAcct.Username, slowAcct.Password, len(slowBody), slowBody[:half])

	// The stream: each account gets at most 15 values, all kept by the
	// default policy (the 16 newest within 10 minutes), so every value
	// answered 200 must be stored.
	var (
		mu        sync.Mutex
		acked     = map[string][]string{}
		nAcked    int
		next      int
		connErrs  atomic.Int64
		inFlight  atomic.Int64
		atSignal  int64
		signalled = make(chan struct{})
		sigOnce   sync.Once
		sigAt     time.Time
	)
	sigterm := func() {
		sigOnce.Do(func() {
			atSignal = inFlight.Load()
			sigAt = time.Now()
			// Closed first: an error the signal causes is seen after it.
			close(signalled)
			if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Errorf("SIGTERM: %v", err)
			}
		})
	}
	client := &http.Client{Timeout: 20 * time.Second}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				mu.Lock()
				if next >= nAccounts*15 {
					mu.Unlock()
					return
				}
				n := next
				next++
				mu.Unlock()
				a, v := accounts[n%nAccounts], value(n)
				inFlight.Add(1)
				status, body, err := updateBody(client, b.api, a, v)
				inFlight.Add(-1)
				if err != nil {
					select {
					case <-signalled:
						connErrs.Add(1)
						return // the broker is going away: expected
					default:
						t.Errorf("update before SIGTERM: %v", err)
						return
					}
				}
				var got struct{ TXT string }
				if status != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil || got.TXT != v {
					t.Errorf("update answered %d %q: only 200 with the value, or no answer, is acceptable", status, body)
					return
				}
				mu.Lock()
				acked[a.Subdomain] = append(acked[a.Subdomain], v)
				nAcked++
				c := nAcked
				mu.Unlock()
				if c == 150 {
					sigterm()
				}
			}
		}()
	}

	// Once the broker says it is shutting down, finish the slow request:
	// it must be answered in full.
	select {
	case <-signalled:
	case <-time.After(60 * time.Second):
		sigterm() // the stream ended early; signal anyway
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.stderr.String(), "shutting down") {
		if time.Now().After(deadline) {
			t.Fatalf("no shutdown log line 10 s after SIGTERM: %s", b.stderr.String())
		}
		time.Sleep(5 * time.Millisecond) // polling a log, with a deadline
	}
	if _, err := io.WriteString(slow, slowBody[half:]); err != nil {
		t.Fatalf("finishing the in-flight request: %v", err)
	}
	_ = slow.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatalf("the update in flight at SIGTERM got no answer: %v", err)
	}
	slowResp, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(slowResp), slowVal) {
		t.Fatalf("the update in flight at SIGTERM: %d %s", resp.StatusCode, slowResp)
	}
	mu.Lock()
	acked[slowAcct.Subdomain] = []string{slowVal}
	mu.Unlock()

	// The process exits 0 within the shutdown bound (10 s) plus margin.
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30 s after SIGTERM: %s", b.stderr.String())
	}
	took := time.Since(sigAt)
	wg.Wait()
	if code := b.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0: %s", code, b.stderr.String())
	}
	logs := b.stderr.String()
	for _, want := range []string{"shutting down", "servers stopped", "storage closed"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "still running at the deadline") {
		t.Errorf("the shutdown hit its deadline:\n%s", logs)
	}
	// Nothing listens any more.
	if _, _, err := updateBody(client, b.api, accounts[0], value(0)); err == nil {
		t.Error("the API still answers after exit")
	}
	if resp, err := http.Get(b.scrape); err == nil {
		resp.Body.Close()
		t.Error("the metrics listener still answers after exit")
	}

	// Every acknowledged value is in the database.
	st, err := sqlite.Open(context.Background(), db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string][]string{}
	if _, err := st.Snapshot(context.Background(), func(s storage.Subdomain) error {
		for _, r := range s.Records {
			stored[s.Name] = append(stored[s.Name], r.Value)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for sub, vals := range acked {
		for _, v := range vals {
			total++
			if !slices.Contains(stored[sub], v) {
				t.Errorf("value %s of %s answered 200 but not in the database", v, sub)
			}
		}
	}
	sqldb, err := sql.Open("sqlite3", db)
	if err != nil {
		t.Fatal(err)
	}
	defer sqldb.Close()
	var res string
	if err := sqldb.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check: %q %v", res, err)
	}
	t.Logf("SIGTERM with %d stream updates in flight (+1 half-sent): exit 0 after %v; %d updates answered 200, all stored; %d connection errors after the signal",
		atSignal, took.Round(time.Millisecond), total, connErrs.Load())
}

// TestSecondSIGTERMStopsAtOnce: while a graceful shutdown waits for a
// stalled request, a second SIGTERM ends the process by the signal (the
// default action) instead of waiting for the shutdown deadline.
func TestSecondSIGTERMStopsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	b := startBroker(t, writeConfig(t, dir, filepath.Join(dir, "broker.db")))
	a := register(t, b.api)
	u, _ := url.Parse(b.api)
	stalled, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	fmt.Fprintf(stalled, "POST %s/update HTTP/1.1\r\nHost: %s\r\nX-Api-User: %s\r\nX-Api-Key: %s\r\nContent-Length: 100\r\n\r\n{",
		u.Path, u.Host, a.Username, a.Password)
	// Make sure the request has reached the server: a second request on
	// another connection is answered only after the server accepted ours.
	if _, err := http.Get(b.api + "/health"); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The API listener closes at the start of the graceful shutdown.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", u.Host, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the API still accepts connections 10 s after SIGTERM")
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		t.Fatal("still running 30 s after the second SIGTERM")
	}
	ws, ok := b.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Fatalf("want death by the second SIGTERM, got %v (the first shutdown waited out its deadline instead)", b.cmd.ProcessState)
	}
}

// TestSIGTERMStalledClientBounded: a client that never finishes its request
// cannot hold the shutdown beyond its deadline (10 s): the process closes
// that connection, logs it, closes the database and still exits 0; what
// was acknowledged before is stored. (It takes the 10 s, in parallel with
// the other tests.)
func TestSIGTERMStalledClientBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end, 10 s")
	}
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "broker.db")
	cfgPath := writeConfig(t, dir, db)
	// The shutdown's log lines are at info level.
	b0, _ := os.ReadFile(cfgPath)
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(b0), `level = "warn"`, `level = "info"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, cfgPath)
	a := register(t, b.api)
	if st, _, err := updateBody(http.DefaultClient, b.api, a, value(1)); err != nil || st != 200 {
		t.Fatalf("update: %d %v", st, err)
	}
	u, _ := url.Parse(b.api)
	stalled, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	fmt.Fprintf(stalled, "POST %s/update HTTP/1.1\r\nHost: %s\r\nX-Api-User: %s\r\nX-Api-Key: %s\r\nContent-Length: 100\r\n\r\n{",
		u.Path, u.Host, a.Username, a.Password)
	if _, err := http.Get(b.api + "/health"); err != nil { // the server has taken our connection
		t.Fatal(err)
	}
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30 s after SIGTERM with a stalled client: %s", b.stderr.String())
	}
	if code := b.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit status %d, want 0: %s", code, b.stderr.String())
	}
	logs := b.stderr.String()
	for _, want := range []string{"still running at the deadline", "storage closed"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	// The stalled connection was closed without an answer.
	_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := stalled.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("stalled connection: read %d, %v; want it closed", n, err)
	}
	st, err := sqlite.Open(context.Background(), db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var stored []string
	if _, err := st.Snapshot(context.Background(), func(s storage.Subdomain) error {
		if s.Name == a.Subdomain {
			for _, r := range s.Records {
				stored = append(stored, r.Value)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stored, []string{value(1)}) {
		t.Errorf("stored values %v, want the acknowledged %s", stored, value(1))
	}
}
