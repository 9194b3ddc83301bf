package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/pgtest"
)

// writePGConfig writes the config of one node on the PostgreSQL database
// dsn. The periodic resync is an hour away, so what the tests see within
// seconds came by notification (or by the resync after reconnecting).
func writePGConfig(t *testing.T, name, dsn string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".toml")
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
engine = "postgres"
dsn = %q
resync_interval = "1h"
[log]
level = "warn"
`, dsn)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// lookupTXT asks server for name's TXT values; unlike queryTXT it reports
// failures instead of failing the test, for polling.
func lookupTXT(server, name string) ([]string, int, error) {
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return nil, 0, err
	}
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	return out, r.Rcode, nil
}

func soaSerial(server string) (uint32, error) {
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion("auth.example.test.", dns.TypeSOA)
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return 0, err
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial, nil
		}
	}
	return 0, fmt.Errorf("no SOA in the answer (rcode %d)", r.Rcode)
}

// eventually polls cond every few milliseconds until it holds or 30s pass.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last seen: %s", what, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func serves(b *broker, a account, value string) func() (bool, string) {
	return func() (bool, string) {
		v, rcode, err := lookupTXT(b.dns, a.Fulldomain)
		return err == nil && slices.Contains(v, value), fmt.Sprintf("%v rcode %d err %v", v, rcode, err)
	}
}

func call(method, url string, a *account, body string) (int, string, error) {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if a != nil {
		req.Header.Set("X-Api-User", a.Username)
		req.Header.Set("X-Api-Key", a.Password)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func updateOn(b *broker, a account, txt string) (int, string, error) {
	return call(http.MethodPost, b.api+"/update", &a, fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, a.Subdomain, txt))
}

// TestTwoNodesOneDatabase runs two broker processes on one PostgreSQL
// database: what is registered and updated through A's API is served by
// B's DNS, and an account deleted through B is NXDOMAIN on A.
func TestTwoNodesOneDatabase(t *testing.T) {
	dsn := pgtest.Schema(t)
	a := startBroker(t, writePGConfig(t, "a", dsn))
	b := startBroker(t, writePGConfig(t, "b", dsn))

	acct := register(t, a.api)
	eventually(t, "B to know the account registered on A", func() (bool, string) {
		v, rcode, err := lookupTXT(b.dns, acct.Fulldomain)
		return err == nil && rcode == dns.RcodeSuccess, fmt.Sprintf("%v rcode %d err %v", v, rcode, err)
	})
	for i := range 5 {
		v := value(i)
		if status, body, err := updateOn(a, acct, v); err != nil || status != http.StatusOK {
			t.Fatalf("update on A: %d %s %v", status, body, err)
		}
		eventually(t, "B to serve "+v, serves(b, acct, v))
	}

	// Both nodes give the same, database-wide SOA serial.
	eventually(t, "A and B to give the same SOA serial", func() (bool, string) {
		sa, errA := soaSerial(a.dns)
		sb, errB := soaSerial(b.dns)
		return errA == nil && errB == nil && sa == sb && sa != 0, fmt.Sprintf("A %d (%v), B %d (%v)", sa, errA, sb, errB)
	})

	if status, body, err := call(http.MethodDelete, b.api+"/account", &acct, ""); err != nil || status != http.StatusOK {
		t.Fatalf("delete on B: %d %s %v", status, body, err)
	}
	eventually(t, "A to answer NXDOMAIN for the deleted account", func() (bool, string) {
		v, rcode, err := lookupTXT(a.dns, acct.Fulldomain)
		return err == nil && rcode == dns.RcodeNameError, fmt.Sprintf("%v rcode %d err %v", v, rcode, err)
	})
	// A's API no longer knows the account either.
	if status, _, _ := updateOn(a, acct, value(99)); status != http.StatusUnauthorized && status != http.StatusForbidden {
		t.Fatalf("update of a deleted account on A: %d", status)
	}
}

// TestDatabaseRestartUnderTwoNodes kills the PostgreSQL server under two
// running brokers and starts it again: meanwhile DNS answers from memory,
// the API says 503 with a clear error and /health says what is down; after
// it both recover without being restarted, and updates flow between the
// nodes again.
func TestDatabaseRestartUnderTwoNodes(t *testing.T) {
	srv := pgtest.StartServer(t)
	a := startBroker(t, writePGConfig(t, "a", srv.DSN()))
	b := startBroker(t, writePGConfig(t, "b", srv.DSN()))

	acct := register(t, a.api)
	if status, body, err := updateOn(a, acct, value(1)); err != nil || status != http.StatusOK {
		t.Fatalf("update on A: %d %s %v", status, body, err)
	}
	eventually(t, "B to serve the value set on A", serves(b, acct, value(1)))

	srv.Stop()

	// DNS: both nodes still answer what they knew.
	for name, n := range map[string]*broker{"A": a, "B": b} {
		if v, rcode, err := lookupTXT(n.dns, acct.Fulldomain); err != nil || rcode != dns.RcodeSuccess || !slices.Contains(v, value(1)) {
			t.Errorf("%s's DNS with the database down: %v rcode %d err %v", name, v, rcode, err)
		}
	}
	// API: 503, retry later, with a JSON error that says why.
	status, body, err := updateOn(a, acct, value(2))
	if err != nil || status != http.StatusServiceUnavailable || !strings.Contains(body, `"error":"db_error"`) ||
		!strings.Contains(body, "database is unavailable") {
		t.Errorf("update with the database down: %d %s %v", status, body, err)
	}
	// Health: which part is down.
	status, body, err = call(http.MethodGet, b.api+"/health", nil, "")
	if err != nil || status != http.StatusServiceUnavailable ||
		strings.TrimSpace(body) != `{"dns":"serving from memory","status":"degraded","storage":"unreachable"}` {
		t.Errorf("health with the database down: %d %s %v", status, body, err)
	}

	srv.Start()

	// An update made on B while the nodes recover: retried until B takes
	// it, then A must serve it.
	eventually(t, "B to accept updates again", func() (bool, string) {
		status, body, err := updateOn(b, acct, value(3))
		return err == nil && status == http.StatusOK, fmt.Sprintf("%d %s %v", status, body, err)
	})
	eventually(t, "A to serve the value set on B after recovery", serves(a, acct, value(3)))
	// A refused a write during the outage; its /health recovers without a
	// write of its own (a load balancer may send it none while it says
	// 503): /health probes storage with a small write.
	eventually(t, "A's health to be ok again before a write of its own", func() (bool, string) {
		status, body, err := call(http.MethodGet, a.api+"/health", nil, "")
		return err == nil && status == http.StatusOK, fmt.Sprintf("%d %s %v", status, body, err)
	})
	if status, body, err := updateOn(a, acct, value(4)); err != nil || status != http.StatusOK {
		t.Fatalf("update on A after recovery: %d %s %v", status, body, err)
	}
	// Health: back to ok once storage answers, writes work and the watcher
	// listens again (it retries with backoff, up to 5s apart).
	for name, n := range map[string]*broker{"A": a, "B": b} {
		eventually(t, name+"'s health to be ok again", func() (bool, string) {
			status, body, err := call(http.MethodGet, n.api+"/health", nil, "")
			return err == nil && status == http.StatusOK && strings.TrimSpace(body) == `{"status":"ok","storage":"ok"}`,
				fmt.Sprintf("%d %s %v", status, body, err)
		})
	}
	// And notifications flow both ways again.
	eventually(t, "B to serve a value set on A after recovery", serves(b, acct, value(4)))
}
