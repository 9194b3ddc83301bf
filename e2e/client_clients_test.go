package e2e_test

// End-to-end tests of the ACME clients people already run (certbot,
// dehydrated, lego) getting certificates through the broker, on the same
// loopback set-up as TestWildcardIssuanceEndToEnd: a real broker, Pebble,
// and unbound resolving example.test, whose _acme-challenge CNAMEs point at
// the broker zone. certbot and dehydrated use `acmebroker client hook`; lego
// uses its own acme-dns provider with the accounts.json that `acmebroker
// client register` wrote.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/cli"
	"github.com/acmebroker/acmebroker/internal/testenv"
)

// The test binary doubles as the acmebroker binary: with this variable set,
// TestMain runs the command line instead of the tests, so certbot and
// dehydrated can run `acmebroker client hook ...` without a separate build.
const asCLIEnv = "ACMEBROKER_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asCLIEnv) == "1" {
		os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// clientBinary finds an external ACME client: the first of paths that is an
// executable file, else name in PATH. When none is found it skips the test,
// or fails it under CI (where .ci/run installs them).
func clientBinary(t *testing.T, name, install string, paths ...string) string {
	t.Helper()
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s is not installed; install it with: %s", name, install)
	testenv.Skip(t, msg)
	return ""
}

// existingClientEnv is a broker with one account for example.test, whose
// CNAME (and www's) is in place, and the Pebble + unbound set-up.
type existingClientEnv struct {
	env      *acmetest.Env
	brokerAP string // broker API URL
	brokerNS string // broker DNS host:port
	state    string // client state directory with accounts.json
	self     string // this test binary, which runs as acmebroker with asCLIEnv=1
}

func startExistingClientEnv(t *testing.T, opts acmetest.Options) *existingClientEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b := startBroker(t)
	opts.BrokerDNS, opts.BrokerZone, opts.CustomerZone = b.DNS[0], brokerZone, customerZone
	env := acmetest.Start(t, opts)
	state := filepath.Join(t.TempDir(), "state")
	r := runner{t: t, common: []string{"--state-dir", state}}
	m := cnameLine.FindStringSubmatch(r.must("register", "--api", b.API, "--domain", customerZone))
	if m == nil {
		t.Fatal("register did not print the CNAME to add")
	}
	env.Customer.SetCNAME("_acme-challenge."+customerZone, m[2])
	env.Customer.SetCNAME("_acme-challenge.www."+customerZone, m[2])
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &existingClientEnv{env: env, brokerAP: b.API, brokerNS: b.DNS[0], state: state, self: self}
}

// hookCommand is the shell command line of `acmebroker client hook HEAD...`
// with this set-up's flags (state directory, resolver, name server) last.
func (e *existingClientEnv) hookCommand(head ...string) string {
	parts := append([]string{e.self, "client", "hook"}, head...)
	parts = append(parts, "--state-dir", e.state, "--resolver", e.env.ResolverAddr, "--nameserver", e.brokerNS)
	q := make([]string, len(parts))
	for i, p := range parts {
		q[i] = shellQuote(p)
	}
	return strings.Join(q, " ")
}

func shellQuote(s string) string {
	if regexp.MustCompile(`^[A-Za-z0-9_./:@=-]+$`).MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// runClient runs an external client (in its own process group, killed
// with its hooks on timeout) and returns how long it took. Its output goes
// to a file whose tail is shown if it fails.
func runClient(t *testing.T, timeout time.Duration, env []string, dir, name string, args ...string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Dir = dir
	outPath := filepath.Join(dir, filepath.Base(name)+".out")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	if err != nil {
		b, _ := os.ReadFile(outPath)
		if len(b) > 12000 {
			b = b[len(b)-12000:]
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w (killed after %s)", err, timeout)
		}
		t.Fatalf("%s %s: %v\noutput (tail):\n%s", name, strings.Join(args, " "), err, b)
	}
	return took
}

// cleanEnv is the test's environment without proxy settings (everything
// here is on loopback) and without the variables the clients read.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasSuffix(strings.ToLower(k), "_proxy"),
			strings.HasPrefix(k, "LEGO_"), strings.HasPrefix(k, "ACME_DNS_"), strings.HasPrefix(k, "CERTBOT_"),
			k == "REQUESTS_CA_BUNDLE", k == "CURL_CA_BUNDLE", k == asCLIEnv:
			continue
		}
		env = append(env, kv)
	}
	return env
}

// checkIssued checks that dir/fullchain.pem holds a certificate for exactly
// names that chains to Pebble's root.
func checkIssued(t *testing.T, e *existingClientEnv, fullchainDir string, names ...string) {
	t.Helper()
	leaf, inter := loadChain(t, fullchainDir)
	if !sameSet(leaf.DNSNames, names) {
		t.Fatalf("certificate names %v, want %v", leaf.DNSNames, names)
	}
	pool := x509.NewCertPool()
	for _, c := range inter {
		pool.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: e.env.IssuerRoot(t), Intermediates: pool, DNSName: "www." + customerZone}); err != nil {
		t.Fatalf("chain does not verify against Pebble's root: %v", err)
	}
}

// TestCertbotThroughBroker: Debian's certbot, --manual with the certbot
// hooks, issues example.test + *.example.test, and renews it.
func TestCertbotThroughBroker(t *testing.T) {
	t.Parallel() // the clients mostly sleep between polls; run side by side
	certbot := clientBinary(t, "certbot", "apt-get install -y certbot")
	// certbot retries a badNonce error once only: with Pebble rejecting 5%
	// of nonces at random, about one run in thirty would fail on two in a
	// row. (Real CAs reject nonces far more rarely.)
	e := startExistingClientEnv(t, acmetest.Options{NoBadNonce: true})
	dir := t.TempDir()
	common := []string{"--non-interactive", "--agree-tos", "--register-unsafely-without-email",
		"--config-dir", filepath.Join(dir, "config"), "--work-dir", filepath.Join(dir, "work"), "--logs-dir", filepath.Join(dir, "logs"),
		"--server", e.env.CAURL}
	env := []string{asCLIEnv + "=1", "REQUESTS_CA_BUNDLE=" + e.env.CARootPEM, "HOME=" + dir}
	runClient(t, time.Minute, env, dir, certbot, append([]string{"register"}, common...)...)
	args := append(append([]string{"certonly"}, common...),
		"--manual", "--preferred-challenges", "dns",
		"--manual-auth-hook", e.hookCommand("certbot", "auth"),
		"--manual-cleanup-hook", e.hookCommand("certbot", "cleanup"),
		"--cert-name", customerZone, "-d", customerZone, "-d", "*."+customerZone,
	)
	took := runClient(t, 3*time.Minute, env, dir, certbot, args...)
	t.Logf("certbot: apex + wildcard issued in %s (certbot's own start-up included; ACME account registered before)", took.Round(time.Millisecond))
	live := filepath.Join(dir, "config", "live", customerZone)
	checkIssued(t, e, live, customerZone, "*."+customerZone)

	// Renewal, as certbot's timer runs it: the hooks stored in the renewal
	// configuration answer fresh challenges.
	first, _ := loadChain(t, live)
	runClient(t, 3*time.Minute, env, dir, certbot, "renew", "--force-renewal", "--non-interactive", "--no-random-sleep-on-renew",
		"--config-dir", filepath.Join(dir, "config"), "--work-dir", filepath.Join(dir, "work"), "--logs-dir", filepath.Join(dir, "logs"))
	checkIssued(t, e, live, customerZone, "*."+customerZone)
	if renewed, _ := loadChain(t, live); renewed.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("certbot renew --force-renewal kept the old certificate")
	}
}

// TestDehydratedThroughBroker: Debian's dehydrated with the dehydrated hook
// and HOOK_CHAIN=yes issues one certificate for three names under one
// broker account (example.test, *.example.test, www.example.test): the hook
// gets all three values in one call and the broker must serve all three at
// once, which acme-dns (two values per account) cannot.
func TestDehydratedThroughBroker(t *testing.T) {
	t.Parallel() // the clients mostly sleep between polls; run side by side
	dehydrated := clientBinary(t, "dehydrated", "apt-get install -y dehydrated")
	// dehydrated 0.7.0 does not retry a badNonce error, which Pebble
	// provokes on 5% of requests by default. (lego retries it, so its test
	// keeps Pebble's default.)
	e := startExistingClientEnv(t, acmetest.Options{NoBadNonce: true})
	dir := t.TempDir()
	// dehydrated runs HOOK as one program with no arguments of ours: a
	// two-line wrapper adds them (the README shows the same).
	hook := filepath.Join(dir, "acmebroker-hook")
	script := "#!/bin/sh\nexec " + e.hookCommand("dehydrated") + ` "$@"` + "\n"
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// KEYSIZE is that of dehydrated's account key (RSA only in 0.7.0):
	// 2048 bits makes the registration quick.
	conf := filepath.Join(dir, "config")
	cfg := fmt.Sprintf(`BASEDIR=%s
CA=%s
CHALLENGETYPE="dns-01"
HOOK=%s
HOOK_CHAIN="yes"
KEY_ALGO="prime256v1"
KEYSIZE="2048"
CURL_OPTS="--cacert %s --noproxy *"
`, shellQuote(dir), shellQuote(e.env.CAURL), shellQuote(hook), e.env.CARootPEM)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{asCLIEnv + "=1", "HOME=" + dir}
	runClient(t, time.Minute, env, dir, dehydrated, "--config", conf, "--register", "--accept-terms")
	names := []string{customerZone, "*." + customerZone, "www." + customerZone}
	took := runClient(t, 3*time.Minute, env, dir, dehydrated, "--config", conf, "--cron", "--alias", customerZone,
		"-d", names[0], "-d", names[1], "-d", names[2])
	t.Logf("dehydrated: apex + wildcard + www issued in %s (ACME account registered before)", took.Round(time.Millisecond))
	checkIssued(t, e, filepath.Join(dir, "certs", customerZone), names...)
}

// TestLegoThroughBroker: lego v5 with its acme-dns provider, reading the
// accounts.json that `acmebroker client register` wrote (the same format),
// so it registers nothing and asks for no CNAME.
func TestLegoThroughBroker(t *testing.T) {
	t.Parallel() // the clients mostly sleep between polls; run side by side
	gopath := os.Getenv("GOPATH")
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		gopath = strings.TrimSpace(string(out))
	}
	// Debian's lego (4.9.1) is built without the acme-dns provider: prefer
	// the one .ci/install-lego builds.
	lego := clientBinary(t, "lego", "bash .ci/install-lego", filepath.Join(gopath, "bin", "lego"))
	if out, err := exec.Command(lego, "--version").CombinedOutput(); err != nil || !regexp.MustCompile(`version v?5\.`).Match(out) {
		msg := fmt.Sprintf("%s is not lego v5 (%q, %v): install it with bash .ci/install-lego", lego, out, err)
		testenv.Skip(t, msg)
	}
	e := startExistingClientEnv(t, acmetest.Options{})
	dir := t.TempDir()
	args := []string{"run", "--accept-tos", "--email", "admin@example.test",
		"--server", e.env.CAURL, "--path", filepath.Join(dir, "lego"),
		"--dns", "acme-dns", "--dns.resolvers", e.env.ResolverAddr,
		// The broker zone's NS record says port 53, where nothing of this
		// test listens; lego still waits until the recursive resolver
		// (unbound, no cache) sees every value.
		"--dns.propagation.disable-ans",
		"-d", customerZone, "-d", "*." + customerZone,
	}
	env := []string{
		"LEGO_CA_CERTIFICATES=" + e.env.CARootPEM,
		"ACME_DNS_API_BASE=" + e.brokerAP,
		"ACME_DNS_STORAGE_PATH=" + filepath.Join(e.state, "accounts.json"),
		"HOME=" + dir,
	}
	runClient(t, time.Minute, env, dir, lego, "accounts", "register", "--accept-tos", "--email", "admin@example.test",
		"--server", e.env.CAURL, "--path", filepath.Join(dir, "lego"))
	took := runClient(t, 3*time.Minute, env, dir, lego, args...)
	t.Logf("lego: apex + wildcard issued in %s (ACME account registered before)", took.Round(time.Millisecond))
	crt := filepath.Join(dir, "lego", "certificates", customerZone+".crt")
	if _, err := os.Stat(crt); err != nil {
		found, _ := filepath.Glob(filepath.Join(dir, "lego", "certificates", "*"))
		t.Fatalf("lego's certificate: %v (found %v)", err, found)
	}
	full := filepath.Join(t.TempDir(), "fullchain.pem")
	b, _ := os.ReadFile(crt)
	if err := os.WriteFile(full, b, 0o600); err != nil {
		t.Fatal(err)
	}
	checkIssued(t, e, filepath.Dir(full), customerZone, "*."+customerZone)
}
