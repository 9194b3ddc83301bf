package apitls

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"
	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

const zone = "auth.example.test"

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// noChallenges fails the test if a challenge is published.
type noChallenges struct{ t *testing.T }

func (n noChallenges) SetOwnChallenge(context.Context, string, string) error {
	n.t.Error("a challenge was published")
	return nil
}
func (noChallenges) ClearOwnChallenge(context.Context, string, string) error { return nil }

// storedPair is a self-signed certificate for names in the stored form.
func storedPair(t *testing.T, serial int64, names []string, notBefore, notAfter time.Time) []byte {
	t.Helper()
	c, k := acmetest.SelfSigned(t, serial, names, notBefore, notAfter)
	b, err := json.Marshal(storedCert{Names: names, Node: "other-node", Chain: string(c), Key: string(k)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// downCA is a CA that answers every request with status, counting them.
func downCA(t *testing.T, status int) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	calls := new(atomic.Int32)
	ca := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "down for maintenance", status)
	}))
	t.Cleanup(ca.Close)
	return ca, calls
}

func newTestManager(t *testing.T, st Store, dir string) *Manager {
	t.Helper()
	m, err := NewManager(ACMEConfig{Zone: zone, Names: []string{zone}, Directory: dir, CheckInterval: 20 * time.Millisecond}, st, noChallenges{t})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func run(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func served(m *Manager) int64 {
	if l := m.Leaf(); l != nil {
		return l.SerialNumber.Int64()
	}
	return 0
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) { // polling with a deadline
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
	}
}

// TestManagerLoadsStoredCertificate: a node serves the certificate another
// node stored, without asking the CA (its renewal information says not
// yet), and follows when the other node stores a renewed one.
func TestManagerLoadsStoredCertificate(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	ca, calls := downCA(t, http.StatusInternalServerError)
	m := newTestManager(t, st, ca.URL+"/dir")
	m.hc = ca.Client()
	now := time.Now()
	put := func(serial int64, notBefore, notAfter time.Time) {
		t.Helper()
		if err := st.PutValue(ctx, m.certName, storedPair(t, serial, []string{zone}, notBefore, notAfter), time.Now()); err != nil {
			t.Fatal(err)
		}
		var info acme.RenewalInfo
		info.SuggestedWindow.Start, info.SuggestedWindow.End = notAfter.Add(-time.Hour), notAfter
		info.SelectedTime = notAfter.Add(-30 * time.Minute)
		retry := time.Now().Add(time.Hour)
		info.RetryAfter = &retry
		b, _ := json.Marshal(ariRecord{Serial: big.NewInt(serial).Text(16), Info: info, Checked: time.Now()})
		if err := st.PutValue(ctx, m.ariName, b, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	put(7, now.Add(-time.Hour), now.Add(48*time.Hour))
	if _, err := m.GetCertificate(nil); err == nil {
		t.Fatal("a certificate before the first check")
	}
	m.tick(ctx, false)
	select {
	case <-m.Ready():
	default:
		t.Fatal("the stored certificate was not loaded")
	}
	if served(m) != 7 || m.Status() != "" {
		t.Fatalf("serving %d, status %q", served(m), m.Status())
	}
	put(8, now.Add(-time.Minute), now.Add(72*time.Hour))
	m.tick(ctx, false)
	if served(m) != 8 {
		t.Fatalf("serving %d; want 8, the certificate another node renewed", served(m))
	}
	// A stored certificate for other names is not served; the one in
	// memory stays until its renewal.
	if err := st.PutValue(ctx, m.certName, storedPair(t, 9, []string{"other." + zone}, now, now.Add(time.Hour)), time.Now()); err != nil {
		t.Fatal(err)
	}
	m.tick(ctx, false)
	if served(m) != 8 {
		t.Fatalf("serving %d after a wrong certificate was stored; want 8 kept", served(m))
	}
	if n := calls.Load(); n != 0 || m.Obtained() != 0 {
		t.Fatalf("the CA was asked %d times, %d obtained; the stored certificates needed nothing", n, m.Obtained())
	}
}

// TestManagerSharesBackOff: after a failed attempt no node asks the CA
// again before the stored back-off ends, and each says why it waits.
func TestManagerSharesBackOff(t *testing.T) {
	st := openStore(t)
	ca, calls := downCA(t, http.StatusServiceUnavailable)
	a := newTestManager(t, st, ca.URL+"/dir")
	a.hc = ca.Client()
	run(t, a)
	waitFor(t, "node A's failure is stored", func() bool {
		v, err := st.GetValue(context.Background(), a.failName)
		return err == nil && strings.Contains(string(v.Data), `"attempts":1`)
	})
	if s := a.Status(); !strings.HasPrefix(s, "waiting for a certificate: ") || len(s) < 30 {
		t.Fatalf("status %q does not say why", s)
	}
	asked := calls.Load()
	b := newTestManager(t, st, ca.URL+"/dir")
	b.hc = ca.Client()
	run(t, b)
	waitFor(t, "node B reports A's failure", func() bool { return strings.Contains(b.Status(), "waiting for a certificate: ") })
	// Both keep checking the database every 20 ms; neither may ask the CA.
	before := time.Now()
	waitFor(t, "a few checks", func() bool { return time.Since(before) > 200*time.Millisecond })
	if n := calls.Load(); n != asked {
		t.Fatalf("the CA was asked %d more times during the back-off", n-asked)
	}
	// SIGHUP overrides the back-off.
	b.Recheck()
	waitFor(t, "a forced attempt", func() bool { return calls.Load() > asked })
}

func TestManagerDue(t *testing.T) {
	st := openStore(t)
	m := newTestManager(t, st, "https://ca.example.test/dir")
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	m.cfg.Now = func() time.Time { return now }
	if d := m.due(false); d.issue == "" {
		t.Fatal("no certificate: nothing due")
	}
	install := func(nb, na time.Time) {
		t.Helper()
		if err := m.install(storage.Value{Name: m.certName, Data: storedPair(t, 5, []string{zone}, nb, na), Modified: now}); err != nil {
			t.Fatal(err)
		}
	}
	// 90 days, issued 10 days ago, no ARI yet: fetch it; renewal at day 60.
	install(now.Add(-10*24*time.Hour), now.Add(80*24*time.Hour))
	if d := m.due(false); d.issue != "" || !d.ari || d.useARI {
		t.Fatalf("fresh certificate: %+v", d)
	}
	now = now.Add(51 * 24 * time.Hour)
	if d := m.due(false); d.issue == "" {
		t.Fatalf("two thirds of the lifetime passed, no ARI: %+v", d)
	}
	// With ARI for this serial: its selected time rules, and the next
	// fetch waits for Retry-After.
	retry := now.Add(time.Hour)
	rec := &ariRecord{Serial: "5", Checked: now}
	rec.Info.SuggestedWindow.Start, rec.Info.SuggestedWindow.End = now.Add(5*24*time.Hour), now.Add(6*24*time.Hour)
	rec.Info.SelectedTime, rec.Info.RetryAfter = now.Add(5*24*time.Hour+time.Hour), &retry
	m.ari = rec
	if d := m.due(false); d.issue != "" || d.ari || !d.useARI {
		t.Fatalf("ARI says later: %+v", d)
	}
	if d := m.due(true); !d.ari {
		t.Fatalf("forced: %+v, want an ARI fetch", d)
	}
	now = retry
	if d := m.due(false); !d.ari {
		t.Fatalf("after Retry-After: %+v, want an ARI fetch", d)
	}
	now = rec.Info.SelectedTime
	if d := m.due(false); d.issue == "" || !d.useARI {
		t.Fatalf("at the selected time: %+v", d)
	}
	// ARI of another certificate is not this one's.
	rec.Serial = "6"
	now = rec.Checked
	if d := m.due(false); !d.ari || d.useARI {
		t.Fatalf("ARI for another serial: %+v", d)
	}
	// Expired: due whatever ARI says.
	now = now.Add(365 * 24 * time.Hour)
	if d := m.due(false); !strings.Contains(d.issue, "expired") {
		t.Fatalf("expired: %+v", d)
	}
}

func TestStorageNames(t *testing.T) {
	m := newTestManager(t, openStore(t), "https://acme-v02.example.test/directory?x=1")
	for _, n := range []string{m.acctName, m.certName, m.ariName, m.failName} {
		if err := storage.CheckValueName(n); err != nil {
			t.Errorf("%s: %v", n, err)
		}
		if !strings.HasPrefix(n, "tls/acme/acme-v02.example.test_directory-") {
			t.Errorf("%s does not name the CA", n)
		}
	}
	if !strings.HasPrefix(m.ariName, m.certName+"/") || !strings.HasPrefix(m.failName, m.certName+"/") {
		t.Errorf("the certificate's records are not under its name (one listing reads them): %s %s", m.ariName, m.failName)
	}
	// Another name set, subject (the first name), key type or profile is
	// another certificate.
	other := certKey([]string{zone, "*." + zone}, "ec256", "")
	for _, k := range []string{certKey([]string{zone}, "ec256", ""), certKey([]string{"*." + zone, zone}, "ec256", ""),
		certKey([]string{zone, "*." + zone}, "rsa2048", ""), certKey([]string{zone, "*." + zone}, "ec256", "shortlived")} {
		if k == other {
			t.Errorf("certKey %s names two certificates", k)
		}
	}
	if other != certKey([]string{zone, "*." + zone}, "ec256", "") {
		t.Error("certKey is not stable")
	}
	if long := directoryKey("https://" + strings.Repeat("a", 300) + ".test/dir"); storage.CheckValueName("tls/acme/"+long+"/"+other+"/failure") != nil {
		t.Errorf("a long directory URL makes names too long: %d bytes", len(long))
	}
}

// TestSolverWaitsForNameservers: the CA is told to look only once every
// name server serves the value; one that never does fails the challenge
// with what to change.
func TestSolverWaitsForNameservers(t *testing.T) {
	chal := acme.Challenge{Identifier: acme.Identifier{Type: "dns", Value: zone}, KeyAuthorization: "token.thumbprint"}
	var serving atomic.Bool
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true // a name server of the zone, not a resolver
		if serving.Load() && strings.EqualFold(r.Question[0].Name, chal.DNS01TXTRecordName()+".") {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 1},
				Txt: []string{chal.DNS01KeyAuthorization()}})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	defer func() { _ = srv.Shutdown() }()
	s := &solver{log: slog.New(slog.DiscardHandler), nameservers: []string{pc.LocalAddr().String()}, timeout: 300 * time.Millisecond}
	if err := s.Wait(context.Background(), chal); err == nil || !strings.Contains(err.Error(), "propagation_timeout") {
		t.Fatalf("a name server that never serves it: %v; want an error saying what to set", err)
	}
	serving.Store(true)
	s.timeout = 5 * time.Second
	if err := s.Wait(context.Background(), chal); err != nil {
		t.Fatalf("once served: %v", err)
	}
	s.nameservers = nil
	serving.Store(false)
	if err := s.Wait(context.Background(), chal); err != nil {
		t.Fatalf("no name servers to wait on: %v", err)
	}
}
