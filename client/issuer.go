package client

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

// KeyTypes are the certificate key types --key-type accepts.
var KeyTypes = []string{"ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"}

// NewCertKey makes a private key of the given type.
func NewCertKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "", "ec256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ec384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "rsa3072":
		return rsa.GenerateKey(rand.Reader, 3072)
	case "rsa4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("--key-type %q is not one of %s", keyType, strings.Join(KeyTypes, ", "))
}

// ObtainRequest says what certificate to get and from where.
type ObtainRequest struct {
	Domains        []string
	CertName       string // default CertName(Domains)
	CAURL          string // ACME directory
	Email          string
	KeyType        string // see KeyTypes
	EABKeyID       string
	EABHMAC        string // base64url, as CAs hand it out
	Profile        string
	PreferredChain string // issuer CN of the chain's top certificate
	CARoot         string // PEM file to trust for the CA's TLS (recorded for renewals)
	DeployHook     string // recorded for renewals
	// SkipCNAMECheck skips the check, through recursive DNS, that every
	// name's CNAME points at its broker account.
	SkipCNAMECheck bool
	// PropagationTimeout bounds the wait for the broker's name servers.
	PropagationTimeout time.Duration
}

// Issuer obtains certificates.
type Issuer struct {
	State   *State
	Broker  *BrokerClient
	Checker *Checker
	HTTP    *http.Client // talks to the CA (carries --ca-root trust); nil: default
	Logger  *slog.Logger
	Out     io.Writer // progress for people; nil: none
	Now     func() time.Time
}

func (is *Issuer) say(format string, args ...any) {
	if is.Out != nil {
		fmt.Fprintf(is.Out, format+"\n", args...)
	}
}

func (is *Issuer) now() time.Time {
	if is.Now != nil {
		return is.Now()
	}
	return time.Now()
}

// acmeClient returns a client for the CA with the account key from the state
// dir, registering the account (agreeing to the terms) if needed.
func (is *Issuer) acmeClient(ctx context.Context, req ObtainRequest) (*acme.Client, *retryAfterRecorder, error) {
	key, _, err := is.State.ACMEAccountKey(req.CAURL)
	if err != nil {
		return nil, nil, err
	}
	base := is.HTTP
	if base == nil {
		base = &http.Client{Timeout: 60 * time.Second}
	}
	rec := &retryAfterRecorder{next: base.Transport, seen: map[string]time.Duration{}}
	hc := *base
	hc.Transport = rec
	c := &acme.Client{Key: key, DirectoryURL: req.CAURL, HTTPClient: &hc, UserAgent: "acmebroker", RetryBackoff: retryBackoff}
	dir, err := c.Discover(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("ACME directory %s: %w (is --ca right, and does --ca-root trust its TLS certificate?)", req.CAURL, err)
	}
	if u := is.State.ACMEAccountURL(req.CAURL); u != "" {
		c.KID = acme.KeyID(u)
		return c, rec, nil
	}
	acct := &acme.Account{}
	if req.Email != "" {
		acct.Contact = []string{"mailto:" + req.Email}
	}
	if req.EABKeyID != "" {
		hmacKey, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(req.EABHMAC, "="))
		if err != nil {
			return nil, nil, fmt.Errorf("--eab-hmac is not base64url: %w", err)
		}
		acct.ExternalAccountBinding = &acme.ExternalAccountBinding{KID: req.EABKeyID, Key: hmacKey}
	} else if dir.ExternalAccountRequired {
		return nil, nil, errors.New("this CA requires external account binding: pass --eab-kid and --eab-hmac from your CA account")
	}
	got, err := c.Register(ctx, acct, func(tos string) bool {
		is.say("Agreeing to the CA's terms of service: %s", tos)
		return true
	})
	if errors.Is(err, acme.ErrAccountAlreadyExists) {
		got, err = c.GetReg(ctx, "")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ACME account: %s", describeACME(err))
	}
	if err := is.State.SaveACMEAccount(req.CAURL, got.URI, got.Contact); err != nil {
		return nil, nil, err
	}
	c.KID = acme.KeyID(got.URI)
	return c, rec, nil
}

// pending is one dns-01 challenge to answer.
type pending struct {
	authzURL string
	domain   string
	chal     *acme.Challenge
	value    string
	acct     BrokerAccount
}

// Obtain gets a certificate for req.Domains and stores it. The previous
// certificate of the same name, if any, stays in place until the new one is
// fully written.
func (is *Issuer) Obtain(ctx context.Context, req ObtainRequest) (string, error) {
	if len(req.Domains) == 0 {
		return "", errors.New("no domain: pass -d example.org (repeat -d for more names)")
	}
	for i, d := range req.Domains {
		req.Domains[i] = normDomain(d)
	}
	if req.CertName == "" {
		req.CertName = CertName(req.Domains)
	}
	if req.PropagationTimeout == 0 {
		req.PropagationTimeout = 2 * time.Minute
	}
	certKey, err := NewCertKey(req.KeyType)
	if err != nil {
		return "", err
	}

	// Every name needs a broker account and a CNAME pointing at it.
	accts := map[string]BrokerAccount{}
	for _, d := range req.Domains {
		_, a, err := is.State.AccountFor(d)
		if err != nil {
			return "", err
		}
		accts[d] = a
		if !req.SkipCNAMECheck {
			if err := is.Checker.CheckCNAME(ctx, d, a.FullDomain); err != nil {
				return "", err
			}
		}
	}

	c, rec, err := is.acmeClient(ctx, req)
	if err != nil {
		return "", err
	}
	ids := make([]acme.AuthzID, len(req.Domains))
	for i, d := range req.Domains {
		ids[i] = acme.AuthzID{Type: "dns", Value: d}
	}
	var opts []acme.OrderOption
	if req.Profile != "" {
		opts = append(opts, acme.WithOrderIssuanceProfile(acme.ProfileName(req.Profile)))
	}
	order, err := c.AuthorizeOrder(ctx, ids, opts...)
	if err != nil {
		return "", fmt.Errorf("new order: %s", describeACME(err))
	}
	is.say("Order %s: %d authorization(s)", order.URI, len(order.AuthzURLs))

	// Set every value first, then wait once for all of them, then ask the CA.
	var todo []pending
	for _, u := range order.AuthzURLs {
		z, err := c.GetAuthorization(ctx, u)
		if err != nil {
			return "", fmt.Errorf("authorization: %s", describeACME(err))
		}
		if z.Status == acme.StatusValid {
			continue
		}
		var chal *acme.Challenge
		for _, ch := range z.Challenges {
			if ch.Type == "dns-01" {
				chal = ch
			}
		}
		name := z.Identifier.Value
		if z.Wildcard {
			name = "*." + name
		}
		if chal == nil {
			return "", fmt.Errorf("the CA offers no dns-01 challenge for %s", name)
		}
		v, err := c.DNS01ChallengeRecord(chal.Token)
		if err != nil {
			return "", err
		}
		a, ok := accts[name]
		if !ok {
			_, a, err = is.State.AccountFor(name)
			if err != nil {
				return "", err
			}
		}
		if err := is.Broker.Update(ctx, a, v); err != nil {
			return "", err
		}
		todo = append(todo, pending{authzURL: u, domain: name, chal: chal, value: v, acct: a})
	}
	if err := is.waitServed(ctx, todo, req.PropagationTimeout); err != nil {
		return "", err
	}
	if err := is.validate(ctx, c, rec, todo); err != nil {
		return "", err
	}

	csr, err := makeCSR(certKey, req.Domains)
	if err != nil {
		return "", err
	}
	der, certURL, err := is.finalize(ctx, c, rec, order, csr)
	if err != nil {
		return "", err
	}
	if req.PreferredChain != "" {
		der = is.preferredChain(ctx, c, certURL, der, req.PreferredChain)
	}
	files, leaf, err := encodeChain(der, certKey)
	if err != nil {
		return "", err
	}
	if err := checkLeaf(leaf, certKey, req.Domains); err != nil {
		return "", err
	}
	r := Renewal{
		Domains: req.Domains, CAURL: req.CAURL, Email: req.Email, KeyType: req.KeyType,
		Profile: req.Profile, PreferredChain: req.PreferredChain, CARoot: req.CARoot,
		Nameservers: is.Checker.Nameservers, Resolvers: is.Checker.Resolvers,
		DeployHook: req.DeployHook, CertURL: certURL, IssuedAt: is.now(),
	}
	if r.KeyType == "" {
		r.KeyType = "ec256"
	}
	dir, err := is.State.SaveCertificate(req.CertName, files, r, is.now())
	if err != nil {
		return "", err
	}
	is.say("Certificate for %s saved in %s (valid until %s)", strings.Join(req.Domains, ", "), dir, leaf.NotAfter.UTC().Format(time.RFC3339))
	return dir, nil
}

// waitServed waits until the broker's name servers serve every value.
func (is *Issuer) waitServed(ctx context.Context, todo []pending, timeout time.Duration) error {
	byName := map[string][]string{}
	for _, p := range todo {
		byName[p.acct.FullDomain] = append(byName[p.acct.FullDomain], p.value)
	}
	return waitServedAll(ctx, is.Checker, byName, timeout)
}

// waitServedAll waits, for every name at once, until the broker's name
// servers serve all of its values.
func waitServedAll(ctx context.Context, ck *Checker, byName map[string][]string, timeout time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, 0, len(byName))
	var mu sync.Mutex
	for name, values := range byName {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ck.WaitServed(ctx, name, values, timeout); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// validate tells the CA to check every challenge and waits for the results,
// polling fast but honouring Retry-After.
func (is *Issuer) validate(ctx context.Context, c *acme.Client, rec *retryAfterRecorder, todo []pending) error {
	for _, p := range todo {
		if _, err := c.Accept(ctx, p.chal); err != nil {
			return fmt.Errorf("accepting the challenge for %s: %s", p.domain, describeACME(err))
		}
	}
	errc := make(chan error, len(todo))
	for _, p := range todo {
		go func() {
			errc <- poll(ctx, rec, p.authzURL, func() (bool, error) {
				z, err := c.GetAuthorization(ctx, p.authzURL)
				if err != nil {
					return false, err
				}
				switch z.Status {
				case acme.StatusValid:
					return true, nil
				case acme.StatusInvalid, acme.StatusDeactivated, acme.StatusExpired, acme.StatusRevoked:
					return false, authzFailure(p, z)
				}
				return false, nil
			})
		}()
	}
	var errs []error
	for range todo {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func authzFailure(p pending, z *acme.Authorization) error {
	detail := "no detail given"
	for _, ch := range z.Challenges {
		if ch.Type == "dns-01" && ch.Error != nil {
			detail = describeACME(ch.Error)
		}
	}
	return fmt.Errorf("the CA could not validate %s (status %s): %s\n  the CA looked up TXT %s, which should be a CNAME to %s",
		p.domain, z.Status, detail, ChallengeName(p.domain), p.acct.FullDomain)
}

// finalize sends the CSR and waits for the certificate. x/crypto's own wait
// sleeps a whole second when the CA gives no Retry-After; a parallel fast
// poll of the order (honouring Retry-After) fetches it as soon as it is out.
func (is *Issuer) finalize(ctx context.Context, c *acme.Client, rec *retryAfterRecorder, order *acme.Order, csr []byte) ([][]byte, string, error) {
	ready, err := waitOrderStatus(ctx, c, rec, order.URI, acme.StatusReady, acme.StatusValid)
	if err != nil {
		return nil, "", err
	}
	if ready.Status == acme.StatusValid {
		der, err := c.FetchCert(ctx, ready.CertURL, true)
		return der, ready.CertURL, err
	}
	type result struct {
		der [][]byte
		url string
		err error
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := make(chan result, 2)
	go func() {
		// CreateCertFromOrder, not CreateOrderCert: the latter finds the
		// order through a Location header that finalize responses need not carry.
		der, u, err := c.CreateCertFromOrder(fctx, order, csr, true)
		res <- result{der, u, err}
	}()
	var finalized sync.WaitGroup
	finalized.Add(1)
	go func() {
		defer finalized.Done()
		o, err := waitOrderStatus(fctx, c, rec, order.URI, acme.StatusValid)
		if err != nil {
			return // the other path reports
		}
		der, err := c.FetchCert(fctx, o.CertURL, true)
		if err == nil {
			res <- result{der, o.CertURL, nil}
		}
	}()
	r := <-res
	cancel()
	finalized.Wait()
	if r.err != nil {
		return nil, "", fmt.Errorf("finalizing the order: %s", describeACME(r.err))
	}
	return r.der, r.url, nil
}

func waitOrderStatus(ctx context.Context, c *acme.Client, rec *retryAfterRecorder, url string, want ...string) (*acme.Order, error) {
	var out *acme.Order
	err := poll(ctx, rec, url, func() (bool, error) {
		o, err := c.GetOrder(ctx, url)
		if err != nil {
			return false, err
		}
		if o.Status == acme.StatusInvalid {
			return false, fmt.Errorf("the order failed: %s", describeACME(o.Error))
		}
		if slices.Contains(want, o.Status) {
			out = o
			return true, nil
		}
		return false, nil
	})
	return out, err
}

// poll calls check until it reports done, waiting what the CA's last
// Retry-After for url asked, else 50 ms doubling to 2 s; for 5 minutes at most.
func poll(ctx context.Context, rec *retryAfterRecorder, url string, check func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	d := 50 * time.Millisecond
	for {
		done, err := check()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		wait := d
		if ra := rec.retryAfter(url); ra > 0 {
			wait = ra
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for the CA: %w", ctx.Err())
		case <-t.C:
		}
		if d < 2*time.Second {
			d *= 2
		}
	}
}

// retryAfterRecorder remembers the Retry-After each URL last answered with,
// because x/crypto/acme does not hand response headers back.
type retryAfterRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen map[string]time.Duration
}

func (r *retryAfterRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	next := r.next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(req)
	if err == nil {
		d := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		r.mu.Lock()
		r.seen[req.URL.String()] = d
		r.mu.Unlock()
	}
	return resp, err
}

func (r *retryAfterRecorder) retryAfter(url string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.seen[url]
	if d > time.Minute {
		d = time.Minute
	}
	return d
}

// retryBackoff decides when x/crypto/acme retries a failed request (badNonce,
// 429, 5xx): at once for a bad nonce (the error carried a fresh one), else
// what Retry-After asks, else exponentially from 250 ms; 8 retries at most.
func retryBackoff(n int, _ *http.Request, resp *http.Response) time.Duration {
	if n > 8 {
		return -1
	}
	if resp != nil {
		if ra := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ra > 0 {
			return min(ra, time.Minute)
		}
		if resp.StatusCode == http.StatusBadRequest { // only badNonce is retried among 400s
			return time.Duration(n) * 10 * time.Millisecond
		}
	}
	return min(time.Duration(1<<(n-1))*250*time.Millisecond, 10*time.Second)
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var secs int
	if _, err := fmt.Sscanf(v, "%d", &secs); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func (is *Issuer) preferredChain(ctx context.Context, c *acme.Client, certURL string, der [][]byte, issuerCN string) [][]byte {
	if topIssuer(der) == issuerCN {
		return der
	}
	alts, err := c.ListCertAlternates(ctx, certURL)
	if err != nil {
		is.say("Could not list alternate chains (%v); keeping the default chain", err)
		return der
	}
	for _, u := range alts {
		alt, err := c.FetchCert(ctx, u, true)
		if err == nil && topIssuer(alt) == issuerCN {
			return alt
		}
	}
	is.say("No chain whose top certificate is issued by %q; keeping the default chain", issuerCN)
	return der
}

func topIssuer(der [][]byte) string {
	if len(der) == 0 {
		return ""
	}
	c, err := x509.ParseCertificate(der[len(der)-1])
	if err != nil {
		return ""
	}
	return c.Issuer.CommonName
}

func makeCSR(key crypto.Signer, domains []string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: domains[0]},
		DNSNames: domains,
	}
	return x509.CreateCertificateRequest(rand.Reader, tmpl, key)
}

func encodeChain(der [][]byte, key crypto.Signer) (CertFiles, *x509.Certificate, error) {
	if len(der) == 0 {
		return CertFiles{}, nil, errors.New("the CA returned no certificate")
	}
	leaf, err := x509.ParseCertificate(der[0])
	if err != nil {
		return CertFiles{}, nil, fmt.Errorf("the CA returned an unreadable certificate: %w", err)
	}
	var f CertFiles
	f.Cert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der[0]})
	for _, d := range der[1:] {
		f.Chain = append(f.Chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	if f.KeyPEM, err = encodePrivateKey(key); err != nil {
		return CertFiles{}, nil, err
	}
	return f, leaf, nil
}

// checkLeaf refuses to store a certificate that does not match what was asked.
func checkLeaf(leaf *x509.Certificate, key crypto.Signer, domains []string) error {
	type pub interface{ Equal(crypto.PublicKey) bool }
	if p, ok := key.Public().(pub); !ok || !p.Equal(leaf.PublicKey) {
		return errors.New("the CA returned a certificate for another key; nothing was saved")
	}
	for _, d := range domains {
		if !slices.Contains(leaf.DNSNames, d) {
			return fmt.Errorf("the CA returned a certificate without %s; nothing was saved", d)
		}
	}
	return nil
}

// describeACME renders an ACME problem document: type, detail and the
// subproblems per identifier.
func describeACME(err error) string {
	var ae *acme.Error
	if errors.As(err, &ae) {
		var b strings.Builder
		fmt.Fprintf(&b, "%s: %s", strings.TrimPrefix(ae.ProblemType, "urn:ietf:params:acme:error:"), ae.Detail)
		for _, sp := range ae.Subproblems {
			id := ""
			if sp.Identifier != nil {
				id = sp.Identifier.Value + ": "
			}
			fmt.Fprintf(&b, "\n    %s%s: %s", id, strings.TrimPrefix(sp.Type, "urn:ietf:params:acme:error:"), sp.Detail)
		}
		return b.String()
	}
	var oe *acme.OrderError
	if errors.As(err, &oe) && oe.Problem != nil {
		return describeACME(oe.Problem)
	}
	var ze *acme.AuthorizationError
	if errors.As(err, &ze) {
		parts := make([]string, 0, len(ze.Errors))
		for _, e := range ze.Errors {
			parts = append(parts, describeACME(e))
		}
		return fmt.Sprintf("authorization for %s failed: %s", ze.Identifier, strings.Join(parts, "; "))
	}
	if err == nil {
		return "unknown problem"
	}
	return err.Error()
}
