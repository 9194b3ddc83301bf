package e2e_test

// The set-up shared by the end-to-end tests of the bundled client: a real
// broker, Pebble and unbound (internal/acmetest), a state directory with a
// registered broker account for example.test whose CNAMEs are in place,
// the client run in-process or as child processes (this test binary, see
// TestMain), and a proxy in front of Pebble that counts requests and can
// answer some of them itself, as a CA's rate limiter would.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/config"
)

type envOptions struct {
	broker func(*config.Config) // changes to the broker's config
	acme   acmetest.Options     // BrokerDNS and the zones are filled in
	// names under example.test that get their own _acme-challenge CNAME
	// to the account of example.test.
	names []string
	// brokerDNSForCA, when set, is what unbound (and so the CA) reaches
	// for the broker zone instead of the broker.
	brokerDNSForCA string
	// nsd: the broker is the hidden primary of an NSD secondary, which
	// is what unbound (and so the CA) reaches for the broker zone; the
	// client waits for both.
	nsd bool
}

type clientEnv struct {
	t      testing.TB
	b      broker.Ready
	stop   func()        // stops the broker, API and DNS
	nsd    *acmetest.NSD // with envOptions.nsd
	env    *acmetest.Env
	state  string
	r      runner   // in-process, with --state-dir, --resolver and --nameserver
	target string   // the CNAME target of example.test's challenges
	ca     []string // --ca, --ca-root, --email
	self   string   // this test binary, which runs as acmebroker with asCLIEnv=1
}

func newClientEnv(t testing.TB, o envOptions) *clientEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end")
	}
	var nsd *acmetest.NSD
	mod, nsdPort := o.broker, 0
	if o.nsd {
		nsdPort = acmetest.FreePort(t)
		mod = func(c *config.Config) {
			c.DNS.Transfer = config.Transfer{
				AllowFrom: []string{"127.0.0.1/32"},
				Keys:      []config.TSIGKey{{Name: xfrKeyName, Algorithm: "hmac-sha256", Secret: xfrKeySecret}},
				Notify:    []string{fmt.Sprintf("127.0.0.1:%d", nsdPort)},
				NotifyKey: xfrKeyName,
			}
			if o.broker != nil {
				o.broker(c)
			}
		}
	}
	b, stop := runBrokerWith(t, mod)
	nameservers := []string{"--nameserver", b.DNS[0]}
	o.acme.BrokerDNS, o.acme.BrokerZone, o.acme.CustomerZone = b.DNS[0], brokerZone, customerZone
	if o.brokerDNSForCA != "" {
		o.acme.BrokerDNS = o.brokerDNSForCA
	}
	if o.nsd {
		nsd = acmetest.StartNSD(t, acmetest.NSDOptions{Zone: brokerZone, Primary: b.DNS[0], Port: nsdPort,
			KeyName: xfrKeyName, KeyAlgorithm: "hmac-sha256", KeySecret: xfrKeySecret,
			ServerExtra: []string{"xfrd-reload-timeout: 0", "rrl-ratelimit: 0"}})
		// A new broker zone has serial 0: wait for NSD's SOA itself.
		soa := new(dns.Msg)
		soa.SetQuestion(dns.Fqdn(brokerZone), dns.TypeSOA)
		waitFor(t, 20*time.Second, "NSD to transfer the broker zone", func() bool {
			r, err := dns.ExchangeContext(t.Context(), soa, nsd.Addr)
			return err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0
		})
		o.acme.BrokerDNS = nsd.Addr
		nameservers = append(nameservers, "--nameserver", nsd.Addr)
	}
	env := acmetest.Start(t, o.acme)
	state := filepath.Join(t.TempDir(), "state")
	r := runner{t: t, common: append([]string{"--state-dir", state, "--resolver", env.ResolverAddr}, nameservers...)}
	m := cnameLine.FindStringSubmatch(r.must("register", "--api", b.API, "--domain", customerZone))
	if m == nil {
		t.Fatal("register did not print the CNAME to add")
	}
	// The CNAMEs of every challenge type, so that a test picks any.
	for _, n := range append([]string{customerZone}, o.names...) {
		env.Customer.SetCNAME("_acme-challenge."+n, m[2])
		env.Customer.SetCNAME("*._acme-challenge."+n, m[2])
		env.Customer.SetCNAME("_validation-persist."+n, m[2])
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &clientEnv{t: t, b: b, stop: stop, nsd: nsd, env: env, state: state, r: r, target: m[2], self: self,
		ca: []string{"--ca", env.CAURL, "--ca-root", env.CARootPEM, "--email", "admin@example.test"}}
}

// fork is e with a state directory of its own holding the same broker
// account, so it makes its own ACME account: the CA then never reuses an
// authorization another fork validated (Pebble does, now and then, even
// with PEBBLE_AUTHZREUSE=0).
func (e *clientEnv) fork(t testing.TB) *clientEnv {
	t.Helper()
	f := *e
	f.t = t
	f.state = filepath.Join(t.TempDir(), "state")
	accts, err := (&client.State{Dir: e.state}).Accounts()
	if err != nil {
		t.Fatal(err)
	}
	for d, a := range accts {
		if err := (&client.State{Dir: f.state}).SaveAccount(d, a); err != nil {
			t.Fatal(err)
		}
	}
	f.r = runner{t: t, common: slices.Clone(e.r.common)}
	f.r.common[slices.Index(f.r.common, "--state-dir")+1] = f.state
	return &f
}

// waitFor polls cond every 20 ms until it holds, failing the test after
// timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// obtainArgs are obtain's flags for names with the env's CA.
func (e *clientEnv) obtainArgs(names ...string) []string {
	var args []string
	for _, n := range names {
		args = append(args, "-d", n)
	}
	return append(args, e.ca...)
}

type childResult struct {
	out, errs string
	code      int
}

// command is `acmebroker client cmd <common flags> args...` as a child
// process (this test binary).
func (e *clientEnv) command(ctx context.Context, cmd string, args ...string) *exec.Cmd {
	full := append(append([]string{"client", cmd}, e.r.common...), args...)
	c := exec.CommandContext(ctx, e.self, full...)
	c.Env = append(cleanEnv(), asCLIEnv+"=1")
	c.WaitDelay = 5 * time.Second
	return c
}

// parallel runs n child processes at once, child i with args(i), and
// returns their results.
func (e *clientEnv) parallel(n int, cmd string, args func(i int) []string) []childResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 3*time.Minute)
	defer cancel()
	res := make([]childResult, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.command(ctx, cmd, args(i)...)
			var out, errs bytes.Buffer
			c.Stdout, c.Stderr = &out, &errs
			err := c.Run()
			var ee *exec.ExitError
			switch {
			case err == nil:
			case errors.As(err, &ee):
				res[i].code = ee.ExitCode()
			default:
				res[i].code = -1
				errs.WriteString(err.Error())
			}
			res[i].out, res[i].errs = out.String(), errs.String()
		}()
	}
	wg.Wait()
	return res
}

// certDir is the directory of a stored certificate.
func (e *clientEnv) certDir(name string) string { return filepath.Join(e.state, "certificates", name) }

// versions counts the stored versions of a certificate.
func (e *clientEnv) versions(name string) int {
	e.t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.state, "certificates", ".versions", name))
	if err != nil {
		e.t.Fatal(err)
	}
	return len(ents)
}

func (e *clientEnv) renewal(name string) client.Renewal {
	e.t.Helper()
	c, err := (&client.State{Dir: e.state}).LoadCertificate(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.Renewal
}

// caProxy sits between the client and Pebble: it counts the requests and
// can answer some itself. Pebble builds its URLs from the Host header,
// which the proxy keeps, so the client sees only the proxy.
type caProxy struct {
	URL string // the ACME directory through the proxy

	mu     sync.Mutex
	counts map[string]int // "POST /order-plz" -> requests
	answer func(r *http.Request, n int) *cannedAnswer
}

// cannedAnswer is what the proxy answers instead of Pebble.
type cannedAnswer struct {
	status     int
	retryAfter string
	problem    string // the ACME problem type, without the namespace
	detail     string
}

func startCAProxy(t *testing.T, env *acmetest.Env) *caProxy {
	t.Helper()
	target, err := url.Parse(env.CAURL)
	if err != nil {
		t.Fatal(err)
	}
	certs := filepath.Join(filepath.Dir(env.CARootPEM), "localhost")
	kp, err := tls.LoadX509KeyPair(filepath.Join(certs, "cert.pem"), filepath.Join(certs, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	p := &caProxy{counts: map[string]int{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "https", Host: target.Host})
			pr.Out.Host = pr.In.Host
		},
		Transport: env.HTTPClient().Transport,
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + r.URL.Path
		p.mu.Lock()
		p.counts[key]++
		n, answer := p.counts[key], p.answer
		p.mu.Unlock()
		if answer != nil {
			if a := answer(r, n); a != nil {
				if a.retryAfter != "" {
					w.Header().Set("Retry-After", a.retryAfter)
				}
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(a.status)
				_ = json.NewEncoder(w).Encode(map[string]any{"type": "urn:ietf:params:acme:error:" + a.problem, "detail": a.detail, "status": a.status})
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.URL = "https://" + srv.Listener.Addr().String() + target.Path
	return p
}

func (p *caProxy) count(method, path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[method+" "+path]
}

func (p *caProxy) setAnswer(f func(r *http.Request, n int) *cannedAnswer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answer = f
}

// pebbleNewOrder is Pebble's newOrder path.
const pebbleNewOrder = "/order-plz"

// setRenewalWindow makes Pebble's ARI answer for the certificate in dir a
// window that started an hour ago (through its management interface), so
// the certificate is due at once.
func setRenewalWindow(t *testing.T, env *acmetest.Env, dir string) {
	t.Helper()
	certPEM, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	ari := fmt.Sprintf(`{"suggestedWindow":{"start":%q,"end":%q}}`, now.Add(-time.Hour).Format(time.RFC3339), now.Add(-time.Minute).Format(time.RFC3339))
	body, _ := json.Marshal(map[string]string{"Certificate": string(certPEM), "ARIResponse": ari})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, env.ManagementURL+"/set-renewal-info/", bytes.NewReader(body))
	resp, err := env.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("set-renewal-info: %s", resp.Status)
	}
}

// lines splits a file into its non-empty lines.
func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return slices.DeleteFunc(strings.Split(string(b), "\n"), func(s string) bool { return strings.TrimSpace(s) == "" })
}

// manyNames is n names under example.test: n01.example.test and on.
func manyNames(n int) []string {
	var names []string
	for i := 1; i <= n; i++ {
		names = append(names, fmt.Sprintf("n%02d.%s", i, customerZone))
	}
	return names
}
