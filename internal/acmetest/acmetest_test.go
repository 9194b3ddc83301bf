package acmetest_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/acme"

	"github.com/acmebroker/acmebroker/internal/acmetest"
)

const (
	brokerZone   = "auth.example.test"
	customerZone = "example.test"
)

// startEnv stands in for the broker with a Zone serving brokerZone: the
// environment only needs something authoritative there.
func startEnv(t *testing.T) (env *acmetest.Env, broker *acmetest.Zone) {
	t.Helper()
	broker = acmetest.StartZone(t, brokerZone)
	env = acmetest.Start(t, acmetest.Options{
		BrokerDNS:    broker.Addr(),
		BrokerZone:   brokerZone,
		CustomerZone: customerZone,
	})
	return env, broker
}

// TestResolverChasesCNAMEToBroker: unbound follows the customer's CNAME to
// the broker, over both transports, and caches neither answers nor their
// absence.
func TestResolverChasesCNAMEToBroker(t *testing.T) {
	env, broker := startEnv(t)
	const (
		name   = "_acme-challenge.example.test"
		target = "abc.auth.example.test"
	)
	steps := []struct {
		name   string
		change func()
		rcode  int
		txt    []string
	}{
		{"cname to broker", func() {
			broker.SetTXT(target, "first")
			env.Customer.SetCNAME(name, target)
		}, dns.RcodeSuccess, []string{"first"}},
		{"broker value changed", func() { broker.SetTXT(target, "second", "third") }, dns.RcodeSuccess, []string{"second", "third"}},
		{"cname removed", func() { env.Customer.Remove(name) }, dns.RcodeNameError, nil},
		{"cname back", func() { env.Customer.SetCNAME(name, target) }, dns.RcodeSuccess, []string{"second", "third"}},
		{"broker value removed", func() { broker.Remove(target) }, dns.RcodeNameError, nil},
	}
	for _, st := range steps {
		st.change()
		for _, network := range []string{"udp", "tcp"} {
			c := &dns.Client{Net: network, Timeout: 3 * time.Second}
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
			m.SetEdns0(1232, false)
			r, _, err := c.ExchangeContext(t.Context(), m, env.ResolverAddr)
			if err != nil {
				t.Fatalf("%s: %s query: %v", st.name, network, err)
			}
			if r.Rcode != st.rcode {
				t.Errorf("%s: %s: rcode %s, want %s\n%v", st.name, network, dns.RcodeToString[r.Rcode], dns.RcodeToString[st.rcode], r)
				continue
			}
			var txt []string
			sawCNAME := false
			for _, rr := range r.Answer {
				switch rr := rr.(type) {
				case *dns.TXT:
					txt = append(txt, rr.Txt...)
				case *dns.CNAME:
					sawCNAME = rr.Target == dns.Fqdn(target)
				}
			}
			slices.Sort(txt)
			if !slices.Equal(txt, st.txt) {
				t.Errorf("%s: %s: TXT %q, want %q", st.name, network, txt, st.txt)
			}
			if st.rcode == dns.RcodeSuccess && !sawCNAME {
				t.Errorf("%s: %s: answer lacks the CNAME to %s:\n%v", st.name, network, target, r)
			}
		}
	}

	// Names outside the two zones are refused by unbound itself: it must
	// never try the real root servers from a test.
	for _, name := range []string{"example.com.", "other.test.", "."} {
		c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeNS)
		r, _, err := c.ExchangeContext(t.Context(), m, env.ResolverAddr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Rcode != dns.RcodeRefused {
			t.Errorf("%s NS: rcode %s, want REFUSED", name, dns.RcodeToString[r.Rcode])
		}
	}
}

// TestDNS01Issuance obtains a certificate for example.test and
// *.example.test from Pebble, which validates dns-01 through unbound,
// following the customer's CNAME to the (stand-in) broker.
func TestDNS01Issuance(t *testing.T) {
	env, broker := startEnv(t)
	const target = "abc.auth.example.test"
	env.Customer.SetCNAME("_acme-challenge.example.test", target)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	accountKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var retries, badNonces atomic.Int32
	client := &acme.Client{
		Key:          accountKey,
		DirectoryURL: env.CAURL,
		HTTPClient:   env.HTTPClient(),
		// Pebble rejects 5% of nonces; x/crypto/acme retries a badNonce
		// for every signed request, by default after 1 s. Retry sooner,
		// a bounded number of times.
		RetryBackoff: func(n int, _ *http.Request, res *http.Response) time.Duration {
			retries.Add(1)
			if res.StatusCode == http.StatusBadRequest { // only a badNonce 400 is retried
				badNonces.Add(1)
			}
			if n > 5 {
				return -1
			}
			return time.Duration(n) * 50 * time.Millisecond
		},
	}

	start := time.Now()
	if _, err := client.Register(ctx, &acme.Account{}, acme.AcceptTOS); err != nil {
		t.Fatalf("register: %v", err)
	}
	registered := time.Now()

	domains := []string{"example.test", "*.example.test"}
	order, err := client.AuthorizeOrder(ctx, acme.DomainIDs(domains...))
	if err != nil {
		t.Fatalf("new order: %v", err)
	}
	var challenges []*acme.Challenge
	var values []string
	for _, u := range order.AuthzURLs {
		authz, err := client.GetAuthorization(ctx, u)
		if err != nil {
			t.Fatalf("get authorization: %v", err)
		}
		if authz.Status == acme.StatusValid {
			t.Fatalf("authorization for %s already valid: PEBBLE_AUTHZREUSE=0 should prevent that", authz.Identifier.Value)
		}
		i := slices.IndexFunc(authz.Challenges, func(c *acme.Challenge) bool { return c.Type == "dns-01" })
		if i < 0 {
			t.Fatalf("no dns-01 challenge for %s", authz.Identifier.Value)
		}
		v, err := client.DNS01ChallengeRecord(authz.Challenges[i].Token)
		if err != nil {
			t.Fatal(err)
		}
		challenges = append(challenges, authz.Challenges[i])
		values = append(values, v)
	}
	// The apex and the wildcard share _acme-challenge.example.test, hence
	// one broker name with both values.
	broker.SetTXT(target, values...)

	for _, c := range challenges {
		if _, err := client.Accept(ctx, c); err != nil {
			t.Fatalf("accept %s: %v", c.URI, err)
		}
	}
	for _, u := range order.AuthzURLs {
		if _, err := client.WaitAuthorization(ctx, u); err != nil {
			t.Fatalf("authorization %s: %v", u, describe(err))
		}
	}
	order, err = client.WaitOrder(ctx, order.URI)
	if err != nil {
		t.Fatalf("wait order: %v", describe(err))
	}

	certKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: domains}, crypto.Signer(certKey))
	if err != nil {
		t.Fatal(err)
	}
	chain, _, err := client.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		t.Fatalf("finalize: %v", describe(err))
	}
	issued := time.Now()
	t.Logf("dns-01 issuance for %v: %s from new order to certificate (%s with account registration), %d request retries (%d for badNonce)",
		domains, issued.Sub(registered).Round(time.Millisecond), issued.Sub(start).Round(time.Millisecond), retries.Load(), badNonces.Load())

	if len(chain) < 2 {
		t.Fatalf("chain has %d certificates, want leaf and intermediate", len(chain))
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	intermediates := x509.NewCertPool()
	for _, der := range chain[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		intermediates.AddCert(c)
	}
	for _, name := range []string{"example.test", "www.example.test"} {
		if _, err := leaf.Verify(x509.VerifyOptions{
			DNSName:       name,
			Roots:         env.IssuerRoot(t),
			Intermediates: intermediates,
		}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if !slices.Equal(sorted(leaf.DNSNames), sorted(domains)) {
		t.Errorf("certificate names %v, want %v", leaf.DNSNames, domains)
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(certKey.Public()) {
		t.Error("certificate is not for the CSR's key")
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// describe adds the problem details of a failed order, which say what
// Pebble saw in DNS (an AuthorizationError already includes them).
func describe(err error) error {
	var oe *acme.OrderError
	if errors.As(err, &oe) && oe.Problem != nil {
		return errors.Join(err, oe.Problem)
	}
	return err
}
