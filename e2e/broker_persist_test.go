package e2e_test

// dns-persist-01 and dns-account-01 against real peers: Pebble (which
// implements both), unbound following the customer's CNAMEs, NSD as
// secondary. The ACME side is driven directly with acmez (the bundled
// client's own tests of both types are in client/challenges_e2e_test.go);
// what is proven here is the broker's: the records it serves, where, and
// that CAs accept them.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"
	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/api"
	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/testenv"
	"github.com/acmebroker/acmebroker/storage"
)

// pebbleIssuer is Pebble's issuer-domain-name (its default
// caaIdentities).
const pebbleIssuer = "pebble.letsencrypt.org"

// persistCall calls /persist as a (path "" or "/<issuer>") and returns the
// status and, for a 200, the list.
func persistCall(t *testing.T, a client.BrokerAccount, method, path, body string) (int, api.PersistList, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, a.ServerURL+"/persist"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Api-User", a.Username)
	req.Header.Set("X-Api-Key", a.Password)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var l api.PersistList
	if res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatalf("%s /persist%s: %v: %s", method, path, err, b)
		}
	}
	return res.StatusCode, l, string(b)
}

func mustPersist(t *testing.T, a client.BrokerAccount, body string) api.PersistList {
	t.Helper()
	status, l, b := persistCall(t, a, "POST", "", body)
	if status != http.StatusOK {
		t.Fatalf("POST /persist %s: %d %s", body, status, b)
	}
	return l
}

// resolve asks unbound for name's TXT values (after CNAMEs), sorted.
func resolve(t *testing.T, resolver, name string) []string {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	q.SetEdns0(dns.DefaultMsgSize, false)
	c := &dns.Client{Timeout: 5 * time.Second}
	r, _, err := c.ExchangeContext(t.Context(), q, resolver)
	if err != nil {
		t.Fatalf("resolve %s: %v", name, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		t.Fatalf("resolve %s: %s", name, dns.RcodeToString[r.Rcode])
	}
	return txtValues(r)
}

// acmeAccount registers a new account at the environment's Pebble.
func acmeAccount(t *testing.T, env *acmetest.Env) (*acme.Client, acme.Account) {
	t.Helper()
	c := &acme.Client{Directory: env.CAURL, HTTPClient: env.HTTPClient(), PollTimeout: time.Minute,
		Logger: slog.New(slog.DiscardHandler)}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := c.NewAccount(t.Context(), acme.Account{TermsOfServiceAgreed: true, PrivateKey: key, Contact: []string{"mailto:admin@example.test"}})
	if err != nil {
		t.Fatalf("new ACME account: %v", err)
	}
	return c, acct
}

// solver is an acmez.Solver made of a function (nil: nothing to present).
type solver func(ctx context.Context, chal acme.Challenge) error

func (s solver) Present(ctx context.Context, chal acme.Challenge) error {
	if s == nil {
		return nil
	}
	return s(ctx, chal)
}
func (solver) CleanUp(context.Context, acme.Challenge) error { return nil }

// obtain orders a certificate for the apex and wildcard of customerZone
// with one challenge type.
func obtain(t *testing.T, c *acme.Client, acct acme.Account, chalType string, s solver) error {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	z := &acmez.Client{Client: c, ChallengeSolvers: map[string]acmez.Solver{chalType: s}}
	certs, err := z.ObtainCertificateForSANs(ctx, acct, crypto.Signer(key), []string{customerZone, "*." + customerZone})
	if err == nil && (len(certs) == 0 || len(certs[0].ChainPEM) == 0) {
		return fmt.Errorf("no certificate returned")
	}
	return err
}

// TestPersistEndToEnd: an account's dns-persist-01 records, beside its
// challenge values and other CAs' records, are served at its fulldomain,
// reached through _validation-persist.<name> by a resolver, accepted by
// Pebble for the account they name (apex and wildcard) and refused for
// another; they are in AXFR and in the IXFR difference NSD applies, survive
// a broker restart, and go with a delete or with the account.
func TestPersistEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	if acmetest.NSDPath() == "" {
		testenv.Skip(t, "nsd is not installed (apt-get install nsd; .ci/run does it)")
	}
	run, nsd := nsdPair(t, filepath.Join(t.TempDir(), "broker.db"))
	zone, primary := run.cfg.DNS.Zone, run.rd.DNS[0]
	env := acmetest.Start(t, acmetest.Options{BrokerDNS: primary, BrokerZone: zone, CustomerZone: customerZone, NoBadNonce: true})

	brokerAPI := &client.BrokerClient{}
	acct, err := brokerAPI.Register(t.Context(), run.rd.API, nil)
	if err != nil {
		t.Fatal(err)
	}
	challenge := "challenge" + strings.Repeat("0", 34) // 43 characters, as /update takes
	if err := brokerAPI.Update(t.Context(), acct, challenge); err != nil {
		t.Fatal(err)
	}
	waitServed(t, nsd, acct.FullDomain, challenge)
	before := soaSerial(t, primary, zone)

	c, pebbleAcct := acmeAccount(t, env)
	until := time.Now().Add(24 * time.Hour).Unix()
	mustPersist(t, acct, fmt.Sprintf(`{"issuer":%q,"accounturi":%q,"policy":"wildcard","persist_until":%d}`, pebbleIssuer, pebbleAcct.Location, until))
	l := mustPersist(t, acct, `{"issuer":"other-ca.example","accounturi":"https://acme.other-ca.example/acct/1"}`)
	// By issuer: "other-ca.example" sorts before "pebble.letsencrypt.org".
	if len(l.Records) != 2 || l.Records[0].Issuer != "other-ca.example" || l.Records[1].Issuer != pebbleIssuer || l.Fulldomain != acct.FullDomain {
		t.Fatalf("POST /persist answered %+v", l)
	}
	otherValue, pebbleValue := l.Records[0].Value, l.Records[1].Value
	for _, v := range []string{pebbleValue, otherValue} {
		if p, err := storage.ParsePersistValue(v); err != nil || p.Value() != v {
			t.Fatalf("served value %q is not a canonical issue-value: %v", v, err)
		}
	}
	if want := fmt.Sprintf("%s; accounturi=%s; policy=wildcard; persistUntil=%d", pebbleIssuer, pebbleAcct.Location, until); pebbleValue != want {
		t.Fatalf("Pebble's record %q, want %q", pebbleValue, want)
	}
	all := []string{challenge, pebbleValue, otherValue}
	slices.Sort(all)

	t.Run("served through the CNAME by a resolver", func(t *testing.T) {
		if got := brokerTXT(t, primary, acct.FullDomain); !slices.Equal(got, all) {
			t.Fatalf("broker serves %v, want %v", got, all)
		}
		env.Customer.SetCNAME("_validation-persist."+customerZone, acct.FullDomain)
		if got := resolve(t, env.ResolverAddr, "_validation-persist."+customerZone); !slices.Equal(got, all) {
			t.Fatalf("unbound resolves %v, want %v", got, all)
		}
	})

	t.Run("in the IXFR NSD applies and in AXFR", func(t *testing.T) {
		waitExactly(t, nsd, acct.FullDomain, all, "NSD must serve the persist records beside the challenge value")
		waitSerial(t, nsd, zone, soaSerial(t, primary, zone))
		if nsd.LogContains("Failed to apply IXFR") {
			t.Fatalf("an IXFR did not apply:\n%s", nsd.Log())
		}
		_, added := transfer(t, primary, zone, before)
		if !slices.Contains(added[acct.FullDomain], pebbleValue) || !slices.Contains(added[acct.FullDomain], otherValue) {
			t.Fatalf("IXFR from %d adds %v at %s", before, added[acct.FullDomain], acct.FullDomain)
		}
		axfr, _ := transfer(t, primary, zone, 0)
		got := axfr[acct.FullDomain]
		slices.Sort(got)
		if !slices.Equal(got, all) {
			t.Fatalf("AXFR has %v at %s, want %v", got, acct.FullDomain, all)
		}
	})

	t.Run("Pebble issues apex and wildcard with dns-persist-01", func(t *testing.T) {
		var offered []string
		err := obtain(t, c, pebbleAcct, acme.ChallengeTypeDNSPersist01, func(_ context.Context, chal acme.Challenge) error {
			offered = chal.IssuerDomainNames
			return nil // the standing record is all it takes: nothing to write
		})
		if err != nil {
			t.Fatalf("dns-persist-01 issuance: %v", err)
		}
		if !slices.Contains(offered, pebbleIssuer) {
			t.Fatalf("Pebble offers issuer-domain-names %v, not %s", offered, pebbleIssuer)
		}
	})

	t.Run("Pebble refuses another account", func(t *testing.T) {
		c2, other := acmeAccount(t, env)
		err := obtain(t, c2, other, acme.ChallengeTypeDNSPersist01, nil)
		if err == nil || !strings.Contains(err.Error(), "accounturi mismatch") {
			t.Fatalf("issuance for an account no record names: %v", err)
		}
	})

	// A restart on the same database and DNS port (NSD and unbound know
	// it); the broker stops when the whole test ends.
	run.stop()
	cfg := run.cfg
	cfg.DNS.Listen = run.rd.DNS
	rd2, _ := runBroker(t, cfg)
	acct.ServerURL = rd2.API
	t.Run("kept by a restart", func(t *testing.T) {
		if got := brokerTXT(t, rd2.DNS[0], acct.FullDomain); !slices.Equal(got, all) {
			t.Fatalf("after the restart the broker serves %v, want %v", got, all)
		}
		if got := resolve(t, env.ResolverAddr, "_validation-persist."+customerZone); !slices.Equal(got, all) {
			t.Fatalf("after the restart unbound resolves %v", got)
		}
		if status, l, b := persistCall(t, acct, "GET", "", ""); status != 200 || len(l.Records) != 2 {
			t.Fatalf("GET /persist after the restart: %d %s", status, b)
		}
	})

	t.Run("a removed record leaves the secondary", func(t *testing.T) {
		if status, _, b := persistCall(t, acct, "DELETE", "/other-ca.example", ""); status != 200 {
			t.Fatalf("DELETE: %d %s", status, b)
		}
		want := []string{challenge, pebbleValue}
		slices.Sort(want)
		waitExactly(t, nsd, acct.FullDomain, want, "NSD must drop the removed record")
		if err := brokerAPI.Update(t.Context(), acct, "after-delete"+strings.Repeat("0", 31)); err != nil {
			t.Fatal(err)
		}
		waitServed(t, nsd, acct.FullDomain, pebbleValue)
		if nsd.LogContains("Failed to apply IXFR") {
			t.Fatalf("an IXFR did not apply:\n%s", nsd.Log())
		}
	})

	t.Run("gone with the account", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), "DELETE", acct.ServerURL+"/account", nil)
		req.Header.Set("X-Api-User", acct.Username)
		req.Header.Set("X-Api-Key", acct.Password)
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("DELETE /account: %v %v", res, err)
		}
		res.Body.Close()
		waitExactly(t, nsd, acct.FullDomain, nil, "NSD must drop the deleted account's records")
		if got := brokerTXT(t, primary, acct.FullDomain); len(got) != 0 {
			t.Fatalf("the broker still serves %v", got)
		}
	})
}

// transfer runs a signed IXFR from serial (AXFR when 0) from primary and
// returns the TXT values of each owner: all of them for AXFR; the deleted
// and the added ones for IXFR.
func transfer(t *testing.T, primary, zone string, serial uint32) (deleted, added map[string][]string) {
	t.Helper()
	q := new(dns.Msg)
	if serial == 0 {
		q.SetAxfr(dns.Fqdn(zone))
	} else {
		q.SetIxfr(dns.Fqdn(zone), serial, "ns1.", "h.")
	}
	rrs := signedTransfer(t, primary, q)
	deleted, added = map[string][]string{}, map[string][]string{}
	// IXFR (RFC 1995): SOA(new), then per version SOA(old) deletions
	// SOA(new) additions, then SOA(new). AXFR: SOA, records, SOA.
	cur, soas := deleted, 0
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.SOA:
			soas++
			if serial != 0 && soas > 1 {
				if soas%2 == 0 {
					cur = deleted
				} else {
					cur = added
				}
			}
		case *dns.TXT:
			owner := strings.TrimSuffix(strings.ToLower(rr.Hdr.Name), ".")
			cur[owner] = append(cur[owner], strings.Join(rr.Txt, ""))
		}
	}
	return deleted, added
}

// TestDNSAccount01WildcardCNAME: with the one wildcard CNAME
// *._acme-challenge.<name> to the fulldomain (beside the dns-01 CNAME at
// _acme-challenge.<name>), a resolver reaches the broker's value at any
// account label, and Pebble issues apex and wildcard with dns-account-01
// through it. The broker needs nothing new for it: the
// value is the same 43-character digest /update takes.
func TestDNSAccount01WildcardCNAME(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	cfg := brokertest.Config(t, "", nil)
	rd, _ := runBroker(t, cfg)
	env := acmetest.Start(t, acmetest.Options{BrokerDNS: rd.DNS[0], BrokerZone: cfg.DNS.Zone, CustomerZone: customerZone, NoBadNonce: true})
	brokerAPI := &client.BrokerClient{}
	acct, err := brokerAPI.Register(t.Context(), rd.API, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Beside the dns-01 CNAME, which DNS allows (a node may have names
	// below it), so one account serves both types.
	env.Customer.SetCNAME("_acme-challenge."+customerZone, acct.FullDomain)
	env.Customer.SetCNAME("*._acme-challenge."+customerZone, acct.FullDomain)

	c, pebbleAcct := acmeAccount(t, env)
	probe := "wildcard-cname-probe" + strings.Repeat("0", 23)
	if err := brokerAPI.Update(t.Context(), acct, probe); err != nil {
		t.Fatal(err)
	}
	label := acme.Challenge{Identifier: acme.Identifier{Type: "dns", Value: customerZone}}.DNSAccount01TXTRecordName(pebbleAcct)
	for _, name := range []string{label, "_another-label._acme-challenge." + customerZone, "_acme-challenge." + customerZone} {
		if got := resolve(t, env.ResolverAddr, name); !slices.Contains(got, probe) {
			t.Fatalf("unbound resolves %v at %s, want the broker's %s", got, name, probe)
		}
	}

	err = obtain(t, c, pebbleAcct, acme.ChallengeTypeDNSAccount01, func(ctx context.Context, chal acme.Challenge) error {
		return brokerAPI.Update(ctx, acct, chal.DNS01KeyAuthorization())
	})
	if err != nil {
		t.Fatalf("dns-account-01 issuance through the wildcard CNAME: %v", err)
	}
}
