package e2e_test

// End-to-end tests of the defects of issue 13 ("the client, trustworthy as
// certbot"), each against the real broker, Pebble and unbound: concurrent
// runs, more names than the broker serves at once, the path check, CA rate
// limits, ARI, hooks, accounts and the command line for cron.

import (
	"bufio"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/config"
)

// TestConcurrentRuns: runs sharing a state directory wait for each other.
// 8 registers at once keep 8 accounts; 4 first-time obtains at once (4
// certificates) end with one ACME account; 2 `renew --all --force` at once
// renew each certificate once and run its deploy hook once.
func TestConcurrentRuns(t *testing.T) {
	names := []string{customerZone, "www." + customerZone, "a." + customerZone, "b." + customerZone}
	e := newClientEnv(t, envOptions{names: names[1:]})
	st := &client.State{Dir: e.state}

	res := e.parallel(8, "register", func(i int) []string {
		return []string{"--api", e.b.API, "--domain", fmt.Sprintf("d%d.%s", i, customerZone)}
	})
	for i, r := range res {
		if r.code != 0 || !strings.Contains(r.out, "credentials saved") {
			t.Fatalf("register #%d: exit %d\n%s%s", i, r.code, r.out, r.errs)
		}
	}
	accts, err := st.Accounts()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		d := fmt.Sprintf("d%d.%s", i, customerZone)
		a, ok := accts[d]
		if !ok {
			t.Fatalf("accounts.json lost the account of %s (has %d accounts)", d, len(accts))
		}
		if _, err := (&client.BrokerClient{}).Limits(t.Context(), a); err != nil {
			t.Fatalf("the saved account of %s is not usable: %v", d, err)
		}
	}

	res = e.parallel(len(names), "obtain", func(i int) []string { return e.obtainArgs(names[i]) })
	for i, r := range res {
		if r.code != 0 {
			t.Fatalf("obtain %s: exit %d\n%s%s", names[i], r.code, r.out, r.errs)
		}
	}
	keys, _ := filepath.Glob(filepath.Join(e.state, "acme", "*", "account.key"))
	recs, _ := filepath.Glob(filepath.Join(e.state, "acme", "*", "account.json"))
	if len(keys) != 1 || len(recs) != 1 {
		t.Fatalf("want one ACME account, have keys %v and records %v", keys, recs)
	}
	var rec client.ACMEAccount
	if b, err := os.ReadFile(recs[0]); err != nil || json.Unmarshal(b, &rec) != nil || rec.URL == "" {
		t.Fatalf("account.json: %s %v", b, err)
	}
	for _, n := range names {
		if got := e.renewal(n).AccountURL; got != rec.URL {
			t.Fatalf("certificate %s was ordered by account %s, the state has %s", n, got, rec.URL)
		}
	}

	hookLog := filepath.Join(t.TempDir(), "hook.log")
	res = e.parallel(2, "renew", func(int) []string {
		return []string{"--all", "--force", "--deploy-hook", `echo "$RENEWED_DOMAINS" >> ` + hookLog}
	})
	meanwhile := 0
	for i, r := range res {
		if r.code != 0 {
			t.Fatalf("renew --all #%d: exit %d\n%s%s", i, r.code, r.out, r.errs)
		}
		meanwhile += strings.Count(r.out, "renewed by another run")
	}
	got := lines(t, hookLog)
	if len(got) != len(names) || !sameSet(got, names) {
		t.Fatalf("deploy hook ran for %v, want once for each of %v", got, names)
	}
	for _, n := range names {
		if v := e.versions(n); v != 2 {
			t.Fatalf("%s has %d versions after two parallel renew --all, want 2 (issued, renewed once)", n, v)
		}
	}
	if meanwhile != len(names) {
		t.Fatalf("%d certificates were found renewed by the other run, want %d", meanwhile, len(names))
	}
}

// TestLockWaitAndInterrupt: a run that finds a lock held says what it
// waits for and who holds it, gives up after --lock-timeout with a clear
// message, and exits 130 on Ctrl-C (SIGINT) while it waits.
func TestLockWaitAndInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	state := filepath.Join(t.TempDir(), "state")
	st := &client.State{Dir: state}
	lk, err := st.LockCertificate(t.Context(), customerZone, client.LockOptions{Command: "test holder"})
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Unlock()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Nothing answers on these: the run must not get that far.
	args := []string{"client", "obtain", "-d", customerZone, "--state-dir", state, "--resolver", "127.0.0.1:9", "--ca", "https://127.0.0.1:9/dir"}
	holder := fmt.Sprintf("locked by pid %d (test holder)", os.Getpid())

	c := exec.CommandContext(t.Context(), self, append(args, "--lock-timeout", "300ms")...)
	c.Env = append(cleanEnv(), asCLIEnv+"=1")
	out, err := c.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "gave up after") ||
		!strings.Contains(string(out), fmt.Sprintf("held by pid %d (test holder)", os.Getpid())) {
		t.Fatalf("lock timeout: %v\n%s", err, out)
	}

	c = exec.CommandContext(t.Context(), self, args...)
	c.Env = append(cleanEnv(), asCLIEnv+"=1")
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &strings.Builder{}
	c.Stderr = stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "waiting for certificate "+customerZone) {
				waiting <- sc.Text()
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-waiting:
		if !strings.Contains(line, holder) {
			t.Errorf("the wait message does not say who holds the lock: %q", line)
		}
	case <-time.After(30 * time.Second):
		_ = c.Process.Kill()
		t.Fatal("no 'waiting for certificate' message within 30 s")
	}
	if err := c.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = c.Wait()
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(stderr.String(), "interrupted") {
		t.Fatalf("after SIGINT: %v (want exit 130)\nstderr: %s", err, stderr)
	}
}

// TestManyNamesOneAccount: 40 names under one broker account in one order.
// The broker serves 16 values of an account at once (txt_max): the client
// learns it from GET /account and validates in rounds of at most 16.
func TestManyNamesOneAccount(t *testing.T) {
	names := manyNames(40)
	e := newClientEnv(t, envOptions{names: names})
	start := time.Now()
	out := e.r.must("obtain", append(e.obtainArgs(names...), "--cert-name", "many")...)
	t.Logf("40 names issued in %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(out, "in 3 rounds") {
		t.Errorf("the output does not tell of 3 rounds of 16:\n%s", out)
	}
	leaf, _ := loadChain(t, e.certDir("many"))
	if !sameSet(leaf.DNSNames, names) {
		t.Fatalf("certificate names %v, want the 40", leaf.DNSNames)
	}
}

// TestPlainAcmeDNSLimits: a broker without GET /account (acme-dns answers
// 404) that serves 2 values at once, like acme-dns: the client assumes 2
// and validates 5 names in 3 rounds.
func TestPlainAcmeDNSLimits(t *testing.T) {
	names := []string{customerZone, "*." + customerZone, "a." + customerZone, "b." + customerZone, "c." + customerZone}
	e := newClientEnv(t, envOptions{names: names[2:], broker: func(c *config.Config) { c.DNS.TXTMax = 2 }})
	// The broker's API without GET /account, as acme-dns is.
	api := e.b.API
	plain := newPlainAPI(t, api)
	st := &client.State{Dir: e.state}
	accts, _ := st.Accounts()
	a := accts[customerZone]
	a.ServerURL = plain
	if err := st.SaveAccount(customerZone, a); err != nil {
		t.Fatal(err)
	}
	out := e.r.must("obtain", e.obtainArgs(names...)...)
	if !strings.Contains(out, "no GET /account") || !strings.Contains(out, "in 3 rounds") {
		t.Fatalf("the client did not fall back to 2 values at once:\n%s", out)
	}
	leaf, _ := loadChain(t, e.certDir(customerZone))
	if !sameSet(leaf.DNSNames, names) {
		t.Fatalf("certificate names %v", leaf.DNSNames)
	}
}

// newPlainAPI is a proxy to the broker's API that answers GET /account
// with 404, as acme-dns does.
func newPlainAPI(t *testing.T, api string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/account" && r.Method == http.MethodGet {
			http.NotFound(w, r)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, api+r.URL.Path, r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestValuesKeptFresh: a broker whose window is 1 s (values beyond the 2
// newest are served for 1 s only) and a CA that takes up to 3 s to look:
// the client sets its values again before they age out, until the CA has
// validated them.
func TestValuesKeptFresh(t *testing.T) {
	names := []string{customerZone, "*." + customerZone, "a." + customerZone, "b." + customerZone, "c." + customerZone, "d." + customerZone}
	e := newClientEnv(t, envOptions{
		names:  names[2:],
		broker: func(c *config.Config) { c.DNS.TXTWindow = config.Duration{Duration: time.Second} },
		acme:   acmetest.Options{VASleep: 3},
	})
	e.r.must("obtain", e.obtainArgs(names...)...)
	leaf, _ := loadChain(t, e.certDir(customerZone))
	if !sameSet(leaf.DNSNames, names) {
		t.Fatalf("certificate names %v", leaf.DNSNames)
	}
}

// TestCheckFindsBrokenDelegation: the broker answers (the client's
// --nameserver is right) but the resolvers, the CA's included, cannot reach
// the broker zone. `check` names the broken link; `obtain` fails at the CA
// and its hint is the exact check command.
func TestCheckFindsBrokenDelegation(t *testing.T) {
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close() // nothing answers there now
	e := newClientEnv(t, envOptions{brokerDNSForCA: deadAddr})

	out, _, code := e.r.run("check", "--domain", customerZone)
	if code != 1 || !regexp.MustCompile(`OK +CNAME _acme-challenge\.example\.test\.`).MatchString(out) ||
		!regexp.MustCompile(`BROKEN +delegation of the broker zone auth\.example\.test\.`).MatchString(out) {
		t.Fatalf("check with a broken delegation: exit %d\n%s", code, out)
	}
	_, errs, code := e.r.run("obtain", e.obtainArgs(customerZone)...)
	hint := "run: acmebroker client check --domain example.test --state-dir " + e.state + " --resolver " + e.env.ResolverAddr + " --nameserver " + e.b.DNS[0]
	if code != 1 || !strings.Contains(errs, "the CA could not validate example.test") || !strings.Contains(errs, hint) {
		t.Fatalf("obtain with a broken delegation: exit %d, want the hint %q\n%s", code, hint, errs)
	}
}

// TestCARateLimits: a 429 whose Retry-After is within --rate-limit-wait is
// waited out; one beyond it fails that certificate at once ("rate limited
// by the CA until <time>") while renew --all goes on with the others and
// exits non-zero.
func TestCARateLimits(t *testing.T) {
	// Pebble's random badNonce rejections would add retried requests to
	// the counts.
	e := newClientEnv(t, envOptions{names: []string{"www." + customerZone}, acme: acmetest.Options{NoBadNonce: true}})
	p := startCAProxy(t, e.env)
	ca := []string{"--ca", p.URL, "--ca-root", e.env.CARootPEM, "--email", "admin@example.test"}
	// limit refuses the newOrder request number at with a 429.
	limit := func(at int, retryAfter string) {
		p.setAnswer(func(r *http.Request, n int) *cannedAnswer {
			if r.Method == http.MethodPost && r.URL.Path == pebbleNewOrder && n == at {
				return &cannedAnswer{status: 429, retryAfter: retryAfter, problem: "rateLimited", detail: "too many new orders recently"}
			}
			return nil
		})
	}

	limit(1, "1")
	out := e.r.must("obtain", append([]string{"-d", customerZone, "-d", "*." + customerZone}, ca...)...)
	if !strings.Contains(out, "Rate limited by the CA") || p.count("POST", pebbleNewOrder) != 2 {
		t.Fatalf("a 1 s Retry-After was not waited out (%d new orders):\n%s", p.count("POST", pebbleNewOrder), out)
	}
	p.setAnswer(nil)
	e.r.must("obtain", append([]string{"-d", "www." + customerZone}, ca...)...)

	before := p.count("POST", pebbleNewOrder)
	limit(before+1, "3600") // renew --all goes in name order: example.test first
	start := time.Now()
	_, errs, code := e.r.run("renew", "--all", "--force")
	m := regexp.MustCompile(`rate limited by the CA until (\S+): too many new orders`).FindStringSubmatch(errs)
	if code != 1 || m == nil {
		t.Fatalf("renew --all with a 1 h rate limit on the first: exit %d\n%s", code, errs)
	}
	until, err := time.Parse(time.RFC3339, m[1])
	if err != nil || until.Before(start.Add(59*time.Minute)) || until.After(time.Now().Add(61*time.Minute)) {
		t.Fatalf("rate limited until %q, want about an hour from now", m[1])
	}
	if n := p.count("POST", pebbleNewOrder) - before; n != 2 {
		t.Fatalf("%d new orders during renew --all, want 2: the limited one not retried, the other renewed", n)
	}
	if e.versions(customerZone) != 1 || e.versions("www."+customerZone) != 2 {
		t.Fatalf("versions: %s %d, www %d; want the first untouched and the second renewed",
			customerZone, e.versions(customerZone), e.versions("www."+customerZone))
	}
}

// TestRenewalLifecycle: hooks as certbot users expect, `list` with state
// and next renewal, `check --cert-name`, a changed --email, an ARI window
// that makes a certificate due and a renewal that tells the CA what it
// replaces (read back from Pebble), -q for cron, an account the CA forgot,
// a broker outage that leaves no order at the CA, revoke and delete.
func TestRenewalLifecycle(t *testing.T) {
	e := newClientEnv(t, envOptions{names: []string{"www." + customerZone}})
	p := startCAProxy(t, e.env)
	ca := func(email string) []string {
		return []string{"--ca", p.URL, "--ca-root", e.env.CARootPEM, "--email", email}
	}
	hookLog := filepath.Join(t.TempDir(), "hooks.log")
	deploy := `echo "deploy $(basename "$RENEWED_LINEAGE") $RENEWED_DOMAINS" >> ` + hookLog + `; echo hello-from-hook`

	// The deploy hook runs on first issuance too; its output goes to the log.
	_, errs, code := e.r.run("obtain", append([]string{"-d", customerZone, "-d", "*." + customerZone, "--deploy-hook", deploy}, ca("first@example.test")...)...)
	if code != 0 || !strings.Contains(errs, `msg="hook output" hook=deploy line=hello-from-hook`) {
		t.Fatalf("obtain with a deploy hook: exit %d, want its output in the log\n%s", code, errs)
	}
	if got := lines(t, hookLog); len(got) != 1 || got[0] != "deploy example.test example.test *.example.test" {
		t.Fatalf("deploy hook after the first issuance: %q", got)
	}
	e.r.must("obtain", append([]string{"-d", "www." + customerZone, "--deploy-hook", deploy}, ca("first@example.test")...)...)

	out := e.r.must("list")
	if !regexp.MustCompile(`(?m)^  example\.test +valid +20\S+ +20\S+ +dns-01 +example\.test,\*\.example\.test$`).MatchString(out) {
		t.Fatalf("list does not show the state and next renewal:\n%s", out)
	}
	if out := e.r.must("check", "--cert-name", customerZone); strings.Count(out, "OK ") != 3 || !strings.Contains(out, "Every link holds") {
		t.Fatalf("check --cert-name:\n%s", out)
	}

	// A changed --email updates the account's contact, at the CA too.
	e.r.must("obtain", append([]string{"-d", "www." + customerZone}, ca("second@example.test")...)...)
	key, acct := stateAccount(t, e.state)
	if got := caAccount(t, p.URL, e.env, key); len(got.Contact) != 1 || got.Contact[0] != "mailto:second@example.test" || acct.Contact[0] != "mailto:second@example.test" {
		t.Fatalf("contact at the CA %v, in the state %v; want mailto:second@example.test", got.Contact, acct.Contact)
	}

	// Nothing due: -q prints nothing, no hook runs.
	before := len(lines(t, hookLog))
	if out, errs, code := e.r.run("renew", "--all", "-q", "--pre-hook", "echo pre >> "+hookLog); code != 0 || out != "" || errs != "" {
		t.Fatalf("renew --all -q with nothing due: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if len(lines(t, hookLog)) != before {
		t.Fatal("a hook ran although nothing was due")
	}

	// The CA's ARI window makes example.test due: renew --all renews it,
	// and only it, as a replacement; pre and post hooks run once.
	oldLeaf, _ := loadChain(t, e.certDir(customerZone))
	setRenewalWindow(t, e.env, e.certDir(customerZone))
	out = e.r.must("renew", "--all", "--pre-hook", "echo pre >> "+hookLog, "--post-hook", "echo post >> "+hookLog)
	if !strings.Contains(out, "www.example.test: not due") {
		t.Fatalf("renew --all:\n%s", out)
	}
	if got := lines(t, hookLog)[before:]; strings.Join(got, "|") != "pre|deploy example.test example.test *.example.test|post" {
		t.Fatalf("hooks of the renew run: %q, want pre, one deploy, post", got)
	}
	r := e.renewal(customerZone)
	wantID, err := acme.ARIUniqueIdentifier(oldLeaf)
	if err != nil {
		t.Fatal(err)
	}
	if o := caOrder(t, p.URL, e.env, key, acct.URL, r.OrderURL); o.Replaces != wantID {
		t.Fatalf("the renewal order at the CA has replaces %q, want %q (the renewed certificate)", o.Replaces, wantID)
	}

	// The CA forgot the account: the client registers again and goes on.
	rec := filepath.Join(filepath.Dir(stateKeyPath(t, e.state)), "account.json")
	bogus := acct.URL[:strings.LastIndex(acct.URL, "/")+1] + "999999"
	writeAccountURL(t, rec, bogus)
	out = e.r.must("renew", "-d", "www."+customerZone, "--force")
	if !strings.Contains(out, "no longer knows ACME account "+bogus) {
		t.Fatalf("renew with an account the CA does not know:\n%s", out)
	}
	if _, a := stateAccount(t, e.state); a.URL == bogus || a.URL == "" {
		t.Fatalf("account.json still has %q", a.URL)
	}
	// account.json naming another key's account (what two unlocked first
	// runs used to leave): the CA answers "JWS verification error"; the
	// client finds or registers its key's account and goes on.
	other, otherAcct := acmeClient(t, p.URL, e.env, generatedKeyPEM(t))
	otherAcct.TermsOfServiceAgreed = true
	otherAcct, err = other.NewAccount(t.Context(), otherAcct)
	if err != nil {
		t.Fatal(err)
	}
	writeAccountURL(t, rec, otherAcct.Location)
	out = e.r.must("renew", "-d", "www."+customerZone, "--force")
	if !strings.Contains(out, "ACME account "+otherAcct.Location+" does not belong to the key in") {
		t.Fatalf("renew with another key's account in account.json:\n%s", out)
	}
	if _, a := stateAccount(t, e.state); a.URL != acct.URL {
		t.Fatalf("account.json has %q, want the account of the state's key %q", a.URL, acct.URL)
	}

	// A broker outage: obtain fails before any order is placed.
	st := &client.State{Dir: e.state}
	accts, _ := st.Accounts()
	good := accts[customerZone]
	down := good
	down.ServerURL = "http://" + closedPort(t)
	if err := st.SaveAccount(customerZone, down); err != nil {
		t.Fatal(err)
	}
	orders := p.count("POST", pebbleNewOrder)
	_, errs, code = e.r.run("obtain", append([]string{"-d", customerZone}, ca("second@example.test")...)...)
	if code != 1 || !strings.Contains(errs, "is the broker running") || p.count("POST", pebbleNewOrder) != orders {
		t.Fatalf("obtain with the broker down: exit %d, %d new orders (want 0)\n%s", code, p.count("POST", pebbleNewOrder)-orders, errs)
	}
	if err := st.SaveAccount(customerZone, good); err != nil {
		t.Fatal(err)
	}

	// Revoke: list says revoked. Delete: gone from list and renew.
	e.r.must("revoke", "-d", "www."+customerZone)
	if out := e.r.must("list"); !regexp.MustCompile(`(?m)^  www\.example\.test +revoked `).MatchString(out) {
		t.Fatalf("list after revoke:\n%s", out)
	}
	e.r.must("delete", "--cert-name", "www."+customerZone)
	if out := e.r.must("list"); strings.Contains(out, "www.example.test ") {
		t.Fatalf("list after delete:\n%s", out)
	}
	if _, errs, code := e.r.run("renew", "-d", "www."+customerZone); code != 1 || !strings.Contains(errs, `no certificate named "www.example.test"`) {
		t.Fatalf("renew of a deleted certificate: exit %d %s", code, errs)
	}
}

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func stateKeyPath(t *testing.T, state string) string {
	t.Helper()
	keys, _ := filepath.Glob(filepath.Join(state, "acme", "*", "account.key"))
	if len(keys) != 1 {
		t.Fatalf("ACME account keys: %v, want one", keys)
	}
	return keys[0]
}

// stateAccount reads the ACME account key and record of the state.
func stateAccount(t *testing.T, state string) ([]byte, client.ACMEAccount) {
	t.Helper()
	p := stateKeyPath(t, state)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var a client.ACMEAccount
	rb, err := os.ReadFile(filepath.Join(filepath.Dir(p), "account.json"))
	if err != nil || json.Unmarshal(rb, &a) != nil {
		t.Fatalf("account.json: %v", err)
	}
	return b, a
}

func writeAccountURL(t *testing.T, path, url string) {
	t.Helper()
	var m map[string]any
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["url"] = url
	b, _ = json.Marshal(m)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// acmeClient talks to the CA as the state's account, to read back what
// the CA recorded.
func acmeClient(t *testing.T, dirURL string, env *acmetest.Env, keyPEM []byte) (*acme.Client, acme.Account) {
	t.Helper()
	blk, _ := pem.Decode(keyPEM)
	if blk == nil {
		t.Fatal("account.key holds no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return &acme.Client{Directory: dirURL, HTTPClient: env.HTTPClient()}, acme.Account{PrivateKey: key.(crypto.Signer)}
}

func caAccount(t *testing.T, dirURL string, env *acmetest.Env, keyPEM []byte) acme.Account {
	t.Helper()
	c, a := acmeClient(t, dirURL, env, keyPEM)
	got, err := c.GetAccount(t.Context(), a)
	if err != nil {
		t.Fatalf("reading the account back from the CA: %v", err)
	}
	return got
}

func caOrder(t *testing.T, dirURL string, env *acmetest.Env, keyPEM []byte, acctURL, orderURL string) acme.Order {
	t.Helper()
	if orderURL == "" {
		t.Fatal("renewal.json has no order_url")
	}
	c, a := acmeClient(t, dirURL, env, keyPEM)
	a.Location = acctURL
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	o, err := c.GetOrder(ctx, a, acme.Order{Location: orderURL})
	if err != nil {
		t.Fatalf("reading the order back from the CA: %v", err)
	}
	return o
}

// generatedKeyPEM is a new ECDSA key, as account.key holds one.
func generatedKeyPEM(t *testing.T) []byte {
	t.Helper()
	k, err := client.NewCertKey("ec256")
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
