package e2e_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/cli"
	"github.com/acmebroker/acmebroker/internal/config"
)

const (
	brokerZone   = "auth.example.test"
	customerZone = "example.test"
)

// startBroker runs a real broker (SQLite, DNS, API) in-process on loopback.
func startBroker(t testing.TB) broker.Ready {
	t.Helper()
	return startBrokerWith(t, nil)
}

// startBrokerWith is startBroker with a change to its configuration.
func startBrokerWith(t testing.TB, mod func(*config.Config)) broker.Ready {
	t.Helper()
	b, _ := runBrokerWith(t, mod)
	return b
}

// runBrokerWith is startBrokerWith, and also returns the function that
// stops the broker (API and DNS) before the test ends.
func runBrokerWith(t testing.TB, mod func(*config.Config)) (broker.Ready, func()) {
	t.Helper()
	return brokertest.Run(t, brokertest.Config(t, brokerZone, mod))
}

type runner struct {
	t      testing.TB
	common []string
}

func (r runner) run(cmd string, args ...string) (string, string, int) {
	// cmd may be two words ("persist list"): the flags go after both.
	full := append(append([]string{"client"}, strings.Fields(cmd)...), append(append([]string{}, r.common...), args...)...)
	return runCLI(r.t, full...)
}

// runCLI runs the acmebroker command line in process: its output and exit
// code.
func runCLI(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func (r runner) must(cmd string, args ...string) string {
	r.t.Helper()
	out, errs, code := r.run(cmd, args...)
	if code != 0 {
		r.t.Fatalf("acmebroker client %s %s: exit %d\nstdout: %s\nstderr: %s", cmd, strings.Join(args, " "), code, out, errs)
	}
	return out
}

var cnameLine = regexp.MustCompile(`(_acme-challenge\.example\.test)\. CNAME (\S+)\.`)

func loadChain(t *testing.T, dir string) (*x509.Certificate, []*x509.Certificate) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "fullchain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(certs) < 2 {
		t.Fatalf("fullchain.pem has %d certificates, want leaf + intermediate", len(certs))
	}
	return certs[0], certs[1:]
}

// TestWildcardIssuanceEndToEnd: a real broker, a real CA (Pebble) validating
// through a real recursive resolver (unbound) that follows the customer
// zone's CNAME to the broker.
func TestWildcardIssuanceEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b := startBroker(t)
	env := acmetest.Start(t, acmetest.Options{BrokerDNS: b.DNS[0], BrokerZone: brokerZone, CustomerZone: customerZone})
	state := filepath.Join(t.TempDir(), "state")
	r := runner{t: t, common: []string{"--state-dir", state, "--resolver", env.ResolverAddr, "--nameserver", b.DNS[0]}}
	caFlags := []string{"--ca", env.CAURL, "--ca-root", env.CARootPEM, "--email", "admin@example.test"}

	// 1. Register: credentials saved 0600, the exact CNAME printed.
	out := r.must("register", "--api", b.API, "--domain", customerZone)
	m := cnameLine.FindStringSubmatch(out)
	if m == nil || !strings.HasSuffix(m[2], "."+brokerZone) {
		t.Fatalf("register did not print the CNAME to add:\n%s", out)
	}
	target := m[2]
	if fi, err := os.Stat(filepath.Join(state, "accounts.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("accounts.json: %v %v", fi, err)
	}

	// 2. Without the CNAME: check and obtain say what to add, no stack trace.
	out, _, code := r.run("check", "--domain", customerZone)
	if code == 0 || !strings.Contains(out, "_acme-challenge.example.test. CNAME "+target) {
		t.Fatalf("check without the CNAME: exit %d, %s", code, out)
	}
	_, errs, code := r.run("obtain", append([]string{"-d", customerZone, "-d", "*." + customerZone}, caFlags...)...)
	if code == 0 || !strings.Contains(errs, "no CNAME at _acme-challenge.example.test.") || !strings.Contains(errs, "CNAME "+target) || strings.Contains(errs, "goroutine") {
		t.Fatalf("obtain without the CNAME: exit %d, stderr: %s", code, errs)
	}

	// 3. With the CNAME.
	env.Customer.SetCNAME("_acme-challenge."+customerZone, target)
	if out := r.must("check", "--domain", customerZone); !strings.Contains(out, "OK") {
		t.Fatal(out)
	}
	start := time.Now()
	r.must("obtain", append([]string{"-d", customerZone, "-d", "*." + customerZone}, caFlags...)...)
	t.Logf("apex + wildcard issued in %s", time.Since(start).Round(time.Millisecond))
	dir := filepath.Join(state, "certificates", customerZone)
	leaf, inter := loadChain(t, dir)
	if !sameSet(leaf.DNSNames, []string{customerZone, "*." + customerZone}) {
		t.Fatalf("SANs %v", leaf.DNSNames)
	}
	pool := x509.NewCertPool()
	for _, c := range inter {
		pool.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: env.IssuerRoot(t), Intermediates: pool, DNSName: "www." + customerZone}); err != nil {
		t.Fatalf("chain does not verify against Pebble's root: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "privkey.pem")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("privkey.pem mode %v", fi.Mode())
	}

	// 4. Renew: not due for a fresh certificate; forced renewal replaces it
	// and runs the deploy hook.
	if out := r.must("renew", "--all"); !strings.Contains(out, "not due") {
		t.Fatalf("renew of a fresh certificate: %s", out)
	}
	marker := filepath.Join(t.TempDir(), "deployed")
	r.must("renew", "-d", customerZone, "--force", "--deploy-hook", "echo \"$RENEWED_DOMAINS\" > "+marker)
	leaf2, _ := loadChain(t, dir)
	if leaf2.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatal("forced renewal kept the old certificate")
	}
	if b, err := os.ReadFile(marker); err != nil || strings.TrimSpace(string(b)) != customerZone+" *."+customerZone {
		t.Fatalf("deploy hook did not run: %q %v", b, err)
	}
	if out := r.must("list"); !strings.Contains(out, customerZone) {
		t.Fatal(out)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

// BenchmarkWildcardIssuance times one apex + wildcard issuance (two fresh
// authorizations, validation, finalize, download) on the same loopback
// set-up as the end-to-end test, for each challenge type: dns-01 and
// dns-account-01 set two values through the broker's /update and wait
// until its name servers serve them; dns-persist-01 finds its record
// standing (GET /persist) and writes nothing.
//
//	go test -run '^$' -bench WildcardIssuance -benchtime 10x ./client/
func BenchmarkWildcardIssuance(b *testing.B) {
	top := newClientEnv(b, envOptions{})
	for _, typ := range client.ChallengeTypes {
		b.Run(typ, func(b *testing.B) {
			e := top.fork(b)
			args := append(e.obtainArgs(customerZone, "*."+customerZone), "--challenge", typ)
			e.r.must("obtain", args...) // the ACME account (and the persist record) made here, not in the loop
			timeIssuances(b, func() { e.r.must("obtain", args...) })
		})
	}
}

// BenchmarkFortyNames times one issuance of 40 names under one broker
// account (3 rounds of 16 values, what the broker serves at once).
// TestManyNamesOneAccount logs the time of one such issuance with the
// broker's default limits.
//
//	go test -run '^$' -bench FortyNames -benchtime 3x ./client/
func BenchmarkFortyNames(b *testing.B) {
	// No per-account update limit: the loop repeats the 40 updates faster
	// than the default (120 a minute, bursts of 60) allows, which would
	// time the broker's limiter, not the client.
	names := manyNames(40)
	e := newClientEnv(b, envOptions{names: names, broker: func(c *config.Config) { c.API.UpdateLimit = 0 }})
	e.r.must("obtain", e.obtainArgs(customerZone)...) // the ACME account
	args := append(e.obtainArgs(names...), "--cert-name", "forty")
	timeIssuances(b, func() { e.r.must("obtain", args...) })
}

// timeIssuances runs issue b.N times and reports the mean and the median.
func timeIssuances(b *testing.B, issue func()) {
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		issue()
		took = append(took, time.Since(start))
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/issuance")
	b.ReportMetric(float64(median(took).Milliseconds()), "ms-median")
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
