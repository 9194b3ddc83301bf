package e2e_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/acmetest"
)

// knotSigningPolicy and knotSigningZone are docs/dnssec.md's lines for a
// Knot secondary that signs the zone it receives (one ECDSA P-256 CSK,
// NSEC); the DNSKEY TTL is short for the test.
const (
	knotSigningPolicy = `policy:
  - id: acmebroker
    algorithm: ecdsap256sha256
    single-type-signing: on
    nsec3: off
    dnskey-ttl: 60
    zone-max-ttl: 3600
`
	knotSigningZone = `    dnssec-signing: on
    dnssec-policy: acmebroker
`
)

// TestKnotSignsSecondaryZone: the secondaries choice of docs/dnssec.md. A
// real Knot DNS, secondary of the broker (a hidden primary, signing off,
// transfers unsigned), signs the zone it receives with its own key; unbound
// trusting that key validates the challenge TXT and a name that does not
// exist as Knot serves them, and a changed value, arriving by IXFR, is
// signed and validates too.
func TestKnotSignsSecondaryZone(t *testing.T) {
	spec := knotSigningSpec(t, xfrKeySecret, knotSigningPolicy, knotSigningZone)
	db := filepath.Join(t.TempDir(), "broker.db")
	var knot *daemon
	run := startPair(t, db, nil, func(port int, primary, zone string) (secondary, error) {
		d, err := startDaemon(t, spec, port, primary, zone)
		knot = d
		return d, err
	})
	zone := run.cfg.DNS.Zone
	api := &client.BrokerClient{}
	acct, err := api.Register(t.Context(), run.rd.API, nil)
	if err != nil {
		t.Fatal(err)
	}
	const v1 = "knot-signed-1-00000000000000000000000000000"
	if err := api.Update(t.Context(), acct, v1); err != nil {
		t.Fatal(err)
	}
	waitServed(t, knot, acct.FullDomain, v1)

	// Knot's key, as the parent (here: the resolver's trust anchor) takes it.
	var anchor string
	for deadline := time.Now().Add(20 * time.Second); anchor == ""; time.Sleep(50 * time.Millisecond) { // polling with a deadline
		r, err := knot.query(t.Context(), zone, dns.TypeDNSKEY)
		if err == nil {
			for _, rr := range r.Answer {
				if k, ok := rr.(*dns.DNSKEY); ok && k.Flags&dns.SEP != 0 {
					anchor = k.ToDS(dns.SHA256).String()
				}
			}
		}
		if anchor == "" && time.Now().After(deadline) {
			t.Fatalf("Knot serves no DNSKEY after 20 s:\n%s", knot.Log())
		}
	}
	res := acmetest.StartResolver(t, acmetest.ResolverOptions{Stubs: map[string][]string{zone: {knot.addr}}, TrustAnchors: []string{anchor}})
	validated := func(name string, qtype uint16, rcode int, want string) {
		t.Helper()
		r := askDO(t, res.Addr, name, qtype)
		if r.Rcode != rcode || !r.AuthenticatedData || !strings.Contains(r.String(), want) {
			t.Fatalf("%s %s through unbound from Knot: %s AD %v, want %s with %q, validated\n%s\n%s", name, dns.TypeToString[qtype],
				dns.RcodeToString[r.Rcode], r.AuthenticatedData, dns.RcodeToString[rcode], want, r, res.Log())
		}
	}
	validated(acct.FullDomain, dns.TypeTXT, dns.RcodeSuccess, v1)
	validated("no-such-name."+zone, dns.TypeTXT, dns.RcodeNameError, "NSEC")

	const v2 = "knot-signed-2-00000000000000000000000000000"
	if err := api.Update(t.Context(), acct, v2); err != nil {
		t.Fatal(err)
	}
	waitServed(t, knot, acct.FullDomain, v2)
	validated(acct.FullDomain, dns.TypeTXT, dns.RcodeSuccess, v2)
	if !knot.LogContains("DNSSEC, successfully signed") {
		t.Fatalf("Knot did not say it signed:\n%s", knot.Log())
	}
}
