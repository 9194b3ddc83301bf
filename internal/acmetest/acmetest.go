// Package acmetest runs a complete ACME DNS-01 set-up on loopback for
// end-to-end tests: a real ACME CA (Pebble), a real recursive resolver
// (unbound) and an authoritative server for the customer's zone. A test runs
// the broker's DNS server itself, passes its address in Options.BrokerDNS,
// adds
//
//	_acme-challenge.example.test. CNAME <uuid>.auth.example.test.
//
// with env.Customer.SetCNAME, and Pebble's dns-01 validation then follows the
// CNAME through unbound to the broker, as a public CA would.
//
// Pebble and unbound are external programs; Start skips the test when they
// are missing (and fails it when the CI environment variable is set). See
// InstallHint.
package acmetest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/testenv"
)

// The Pebble release the environment is written against: its configuration
// format and test certificates (found in the module cache) are those of this
// version.
const (
	pebbleModule  = "github.com/letsencrypt/pebble/v2"
	pebbleVersion = "v2.10.3"
)

// InstallHint says how to install what Start needs.
const InstallHint = "apt-get install -y unbound && go install " + pebbleModule + "/cmd/pebble@" + pebbleVersion

// Options says what the environment resolves through.
type Options struct {
	// BrokerDNS is host:port of the broker's authoritative DNS server for
	// BrokerZone (UDP and TCP), started by the caller. The host must be a
	// loopback IP address (127.0.0.1 or ::1).
	BrokerDNS string
	// BrokerZone is the zone the broker serves, e.g. "auth.example.test".
	BrokerZone string
	// CustomerZone is the customer's zone, e.g. "example.test", served by
	// Env.Customer.
	CustomerZone string
	// NoBadNonce turns off Pebble's random rejection of 5% of nonces, for
	// clients that do not retry a badNonce error (dehydrated 0.7.0) or retry
	// it only once (certbot).
	NoBadNonce bool
	// EAB makes Pebble require external account binding, with these
	// key IDs and their base64url HMAC keys.
	EAB map[string]string
	// VASleep, when positive, lets Pebble's VA sleep a random 0 to VASleep
	// seconds before each validation, as a CA that takes its time does
	// (by default it validates at once).
	VASleep int
	// BrokerTrustAnchors, DS or DNSKEY records of BrokerZone in zone-file
	// syntax (what `acmebroker dnssec ds` prints), make unbound a
	// validating resolver (module-config "validator iterator") that
	// trusts them: answers from the broker must validate, or Pebble gets
	// SERVFAIL. The customer zone stays unsigned (insecure).
	BrokerTrustAnchors []string
}

// Env is a running environment. Everything in it is stopped by the cleanups
// that Start registers.
type Env struct {
	// CAURL is Pebble's ACME directory URL, https://127.0.0.1:PORT/dir.
	CAURL string
	// ManagementURL is the base URL of Pebble's management interface,
	// https://127.0.0.1:PORT (roots at /roots/0, intermediates at
	// /intermediates/0).
	ManagementURL string
	// CARoots trusts the TLS certificates of Pebble's ACME and management
	// servers (Pebble's test/certs/pebble.minica.pem). It does not verify
	// issued certificates: see IssuerRoot.
	CARoots *x509.CertPool
	// CARootPEM is the path of that PEM file, what a client takes as its
	// --ca-root.
	CARootPEM string
	// ResolverAddr is unbound's host:port (UDP and TCP). It resolves
	// CustomerZone and BrokerZone only, caches nothing, and refuses
	// everything else.
	ResolverAddr string
	// Customer is the customer's authoritative zone server.
	Customer *Zone
}

// Start starts the customer zone server, unbound and Pebble, and registers
// cleanups that stop them (and log the tail of their logs if the test
// failed). It skips the test if Pebble or unbound is not installed, or fails
// it when the environment variable CI is set.
func Start(tb testing.TB, o Options) *Env {
	tb.Helper()
	brokerZone, customerZone, brokerAddr := checkOptions(tb, o)

	tl, missing := findTools(tb.Context())
	if len(missing) > 0 {
		msg := fmt.Sprintf("acmetest: missing %v; install with: %s", missing, InstallHint)
		testenv.Skip(tb, msg)
	}
	roots, err := loadPool(filepath.Join(tl.pebbleCerts, "pebble.minica.pem"))
	if err != nil {
		tb.Fatalf("acmetest: %v", err)
	}

	dir := tb.TempDir() // registered first, so removed after every process has stopped
	customer := StartZone(tb, customerZone)

	stubs := []stub{
		{zone: customerZone, addr: netip.MustParseAddrPort(customer.Addr())},
		{zone: brokerZone, addr: brokerAddr},
	}
	ub, err := startUnbound(tb, tl, dir, stubs, validation{anchors: o.BrokerTrustAnchors})
	if err != nil {
		tb.Fatalf("acmetest: %v", err)
	}
	ub.stopOnCleanup(tb)

	pb, err := startPebble(tb, tl, dir, ub.addr, roots, o)
	if err != nil {
		tb.Fatalf("acmetest: %v", err)
	}
	tb.Cleanup(func() {
		if err := pb.proc.stop(5 * time.Second); err != nil {
			tb.Logf("acmetest: %v", err)
		}
		if tb.Failed() {
			tb.Logf("acmetest: pebble output (tail):\n%s", pb.proc.tail())
		}
	})

	return &Env{
		CAURL:         pb.dirURL,
		ManagementURL: pb.mgmtURL,
		CARoots:       roots,
		CARootPEM:     filepath.Join(tl.pebbleCerts, "pebble.minica.pem"),
		ResolverAddr:  ub.addr,
		Customer:      customer,
	}
}

// HTTPClient returns a client that trusts Pebble's TLS certificates (and
// nothing else) and ignores proxy settings, for an ACME client to use.
func (e *Env) HTTPClient() *http.Client {
	return newHTTPClient(e.CARoots, 30*time.Second)
}

// IssuerRoot fetches the root certificate that Pebble issues under from its
// management interface (/roots/0), for verifying issued chains. Pebble
// makes a new root every time it starts.
func (e *Env) IssuerRoot(tb testing.TB) *x509.CertPool {
	tb.Helper()
	client := newHTTPClient(e.CARoots, 10*time.Second)
	defer client.CloseIdleConnections()
	url := e.ManagementURL + "/roots/0"
	req, err := http.NewRequestWithContext(tb.Context(), http.MethodGet, url, nil)
	if err != nil {
		tb.Fatalf("acmetest: %v", err)
	}
	res, err := client.Do(req)
	if err != nil {
		tb.Fatalf("acmetest: get pebble root: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		tb.Fatalf("acmetest: get pebble root: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		tb.Fatalf("acmetest: GET %s: %s: %s", url, res.Status, body)
	}
	pool, err := parsePool(body)
	if err != nil {
		tb.Fatalf("acmetest: pebble root from %s: %v", url, err)
	}
	return pool
}

// checkOptions validates o and returns the zones in canonical form and the
// broker's address.
func checkOptions(tb testing.TB, o Options) (brokerZone, customerZone string, broker netip.AddrPort) {
	tb.Helper()
	for _, z := range []struct{ field, v string }{{"BrokerZone", o.BrokerZone}, {"CustomerZone", o.CustomerZone}} {
		if _, ok := dns.IsDomainName(z.v); !ok || z.v == "" || z.v == "." {
			tb.Fatalf("acmetest: Options.%s %q is not a domain name", z.field, z.v)
		}
	}
	broker, err := netip.ParseAddrPort(o.BrokerDNS)
	broker = netip.AddrPortFrom(broker.Addr().Unmap(), broker.Port())
	if err != nil || !broker.Addr().IsLoopback() || broker.Port() == 0 {
		tb.Fatalf("acmetest: Options.BrokerDNS %q must be a loopback ip:port such as 127.0.0.1:5353", o.BrokerDNS)
	}
	brokerZone, customerZone = dns.CanonicalName(o.BrokerZone), dns.CanonicalName(o.CustomerZone)
	if brokerZone == customerZone {
		tb.Fatalf("acmetest: BrokerZone and CustomerZone are both %s", brokerZone)
	}
	return brokerZone, customerZone, broker
}

type tools struct {
	pebble           string
	pebbleCerts      string // Pebble's test/certs directory
	unbound          string
	unboundCheckconf string
}

// findTools looks for the programs Start runs and Pebble's test
// certificates, and lists what is missing.
func findTools(ctx context.Context) (*tools, []string) {
	var tl tools
	var missing []string
	goEnv := readGoEnv(ctx)

	var pebbleDirs []string
	if goEnv.GOBIN != "" {
		pebbleDirs = append(pebbleDirs, goEnv.GOBIN)
	}
	if goEnv.GOPATH != "" {
		pebbleDirs = append(pebbleDirs, filepath.Join(filepath.SplitList(goEnv.GOPATH)[0], "bin"))
	}
	tl.pebble = findProgram("pebble", pebbleDirs...)
	if tl.pebble == "" {
		missing = append(missing, "pebble")
	}
	sbin := []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} // often not in a non-root PATH
	tl.unbound = findProgram("unbound", sbin...)
	tl.unboundCheckconf = findProgram("unbound-checkconf", sbin...)
	if tl.unbound == "" {
		missing = append(missing, "unbound")
	}
	if tl.unboundCheckconf == "" {
		missing = append(missing, "unbound-checkconf")
	}
	if tl.pebble != "" {
		tl.pebbleCerts = findPebbleCerts(ctx, goEnv.GOMODCACHE)
		if tl.pebbleCerts == "" {
			missing = append(missing, "Pebble's test certificates (module "+pebbleModule+"@"+pebbleVersion+" in the module cache)")
		}
	}
	return &tl, missing
}

type goEnvVars struct{ GOBIN, GOPATH, GOMODCACHE string }

func readGoEnv(ctx context.Context) goEnvVars {
	var v goEnvVars
	if gobin, err := exec.LookPath("go"); err == nil {
		out, err := runCommand(ctx, 30*time.Second, os.Environ(), "", gobin, "env", "-json", "GOBIN", "GOPATH", "GOMODCACHE")
		if err == nil {
			_ = json.Unmarshal(out, &v)
		}
	}
	if v.GOPATH == "" {
		v.GOPATH = os.Getenv("GOPATH")
	}
	if v.GOPATH == "" {
		if home, err := os.UserHomeDir(); err == nil {
			v.GOPATH = filepath.Join(home, "go")
		}
	}
	if v.GOMODCACHE == "" && v.GOPATH != "" {
		v.GOMODCACHE = filepath.Join(filepath.SplitList(v.GOPATH)[0], "pkg", "mod")
	}
	return v
}

// findProgram looks for name in PATH, then in dirs.
func findProgram(name string, dirs ...string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// findPebbleCerts returns Pebble's test/certs directory in the module cache,
// which `go install` fills; failing that it asks `go mod download` for it
// (run outside any module so it cannot touch a go.mod).
func findPebbleCerts(ctx context.Context, modCache string) string {
	certs := func(moduleDir string) string {
		d := filepath.Join(moduleDir, "test", "certs")
		if _, err := os.Stat(filepath.Join(d, "pebble.minica.pem")); err == nil {
			return d
		}
		return ""
	}
	if modCache != "" {
		if d := certs(filepath.Join(modCache, "github.com", "letsencrypt", "pebble", "v2@"+pebbleVersion)); d != "" {
			return d
		}
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return ""
	}
	tmp, err := os.MkdirTemp("", "acmetest-gomod")
	if err != nil {
		return ""
	}
	defer os.RemoveAll(tmp)
	out, err := runCommand(ctx, 2*time.Minute, append(os.Environ(), "GOWORK=off", "GOFLAGS="), tmp,
		gobin, "mod", "download", "-json", pebbleModule+"@"+pebbleVersion)
	if err != nil {
		return ""
	}
	var info struct{ Dir string }
	if json.Unmarshal(out, &info) != nil || info.Dir == "" {
		return ""
	}
	return certs(info.Dir)
}

func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	pool, err := parsePool(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pool, nil
}

func parsePool(pemBytes []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, pemBytes = pem.Decode(pemBytes)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return pool, nil
}

// SetRenewalInfo makes Pebble answer renewal information (ARI) requests
// for the certificate in certPEM with the window start-end, as a CA does
// when it wants certificates renewed early (Pebble's /set-renewal-info).
func (e *Env) SetRenewalInfo(tb testing.TB, certPEM []byte, start, end time.Time) {
	tb.Helper()
	ari, err := json.Marshal(map[string]any{"suggestedWindow": map[string]time.Time{"start": start.UTC(), "end": end.UTC()}})
	if err != nil {
		tb.Fatal(err)
	}
	body, err := json.Marshal(map[string]string{"Certificate": string(certPEM), "ARIResponse": string(ari)})
	if err != nil {
		tb.Fatal(err)
	}
	client := newHTTPClient(e.CARoots, 10*time.Second)
	defer client.CloseIdleConnections()
	res, err := client.Post(e.ManagementURL+"/set-renewal-info/", "application/json", bytes.NewReader(body))
	if err != nil {
		tb.Fatalf("acmetest: set renewal info: %v", err)
	}
	defer res.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(res.Body, 1<<16))
	if res.StatusCode != http.StatusOK {
		tb.Fatalf("acmetest: set renewal info: %s: %s", res.Status, msg)
	}
}
