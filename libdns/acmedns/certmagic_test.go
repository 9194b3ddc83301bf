package acmedns_test

import (
	"context"
	"crypto/x509"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/libdns/acmedns"
)

// TestCertMagicWildcard: CertMagic, the engine of Caddy, gets a wildcard
// certificate from Pebble with this provider, through a running broker:
// _acme-challenge.example.test is a CNAME to the account's fulldomain,
// and Pebble follows it through unbound to the broker, as a public CA
// would. CertMagic's own propagation check runs (through unbound).
func TestCertMagicWildcard(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	ctx := context.Background()
	b := startBroker(t, "127.0.0.1:0")
	env := acmetest.Start(t, acmetest.Options{BrokerDNS: b.DNS[0], BrokerZone: brokerZone, CustomerZone: customerZone})
	acct, err := (&client.BrokerClient{}).Register(ctx, b.API, nil)
	if err != nil {
		t.Fatal(err)
	}
	env.Customer.SetCNAME("_acme-challenge."+customerZone, acct.FullDomain)

	p := &acmedns.Provider{Accounts: map[string]acmedns.Account{
		customerZone: {Username: acct.Username, Password: acct.Password, Subdomain: acct.SubDomain, FullDomain: acct.FullDomain},
	}, ServerURL: b.API}

	var cfg *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		Logger:           zap.NewNop(),
	})
	t.Cleanup(cache.Stop)
	storageDir := t.TempDir()
	cfg = certmagic.New(cache, certmagic.Config{Storage: &certmagic.FileStorage{Path: storageDir}, Logger: zap.NewNop()})
	cfg.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
		CA: env.CAURL, TestCA: env.CAURL, Email: "ops@example.test", Agreed: true,
		DisableHTTPChallenge: true, DisableTLSALPNChallenge: true,
		TrustedRoots: env.CARoots,
		DNS01Solver: &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
			DNSProvider: p, Resolvers: []string{env.ResolverAddr}, PropagationTimeout: time.Minute,
		}},
		Logger: zap.NewNop(),
	})}

	octx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	start := time.Now()
	// CertMagic manages one certificate per name: the wildcard.
	if err := cfg.ManageSync(octx, []string{"*." + customerZone}); err != nil {
		t.Fatalf("CertMagic: %v", err)
	}
	t.Logf("CertMagic got the certificate in %s", time.Since(start).Round(time.Millisecond))

	crt, err := cfg.CacheManagedCertificate(ctx, "*."+customerZone)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(crt.Leaf.DNSNames, []string{"*." + customerZone}) {
		t.Fatalf("certificate for %v", crt.Leaf.DNSNames)
	}
	inter := x509.NewCertPool()
	for _, der := range crt.Certificate.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(c)
	}
	if _, err := crt.Leaf.Verify(x509.VerifyOptions{DNSName: "www." + customerZone, Roots: env.IssuerRoot(t), Intermediates: inter}); err != nil {
		t.Fatalf("the wildcard does not verify under Pebble's root: %v", err)
	}
	// The value went through the broker: it still serves it (acme-dns
	// has no delete; it ages out of the window).
	if v := served(t, b.DNS[0], acct.FullDomain); len(v) != 1 || !regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`).MatchString(v[0]) {
		t.Fatalf("the broker serves %v at %s, want the challenge value", v, acct.FullDomain)
	}
	if recs, _ := p.GetRecords(ctx, customerZone); len(recs) != 0 {
		t.Fatalf("after CertMagic cleaned up the provider still lists %v", recs)
	}
}
