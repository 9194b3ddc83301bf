package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/cli"
	"github.com/acmebroker/acmebroker/internal/config"
)

// TestWildcardIssuanceDNSSEC: the wildcard end-to-end test with the
// broker signing its zone and Pebble's resolver, unbound, validating
// (module-config "validator iterator") with the DS that `acmebroker
// dnssec ds` prints as trust anchor. The challenge answers must
// validate, or unbound answers SERVFAIL and Pebble refuses the order.
func TestWildcardIssuanceDNSSEC(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	text := fmt.Sprintf(`[dns]
listen = ["127.0.0.1:0"]
zone = %q
nsname = "ns1.%[1]s"
nsadmin = "hostmaster.%[2]s"
records = ["%[1]s. NS ns1.%[1]s.", "ns1.%[1]s. A 127.0.0.1"]
[dns.dnssec]
enabled = true
[api]
listen = "127.0.0.1:0"
[storage]
dsn = %q
`, brokerZone, customerZone, filepath.Join(dir, "broker.db"))
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	b := brokertest.Start(t, cfg)
	var out, errb bytes.Buffer
	if code := cli.Run(context.Background(), []string{"dnssec", "ds", "-config", path}, &out, &errb); code != 0 {
		t.Fatalf("dnssec ds: %d %s", code, errb.String())
	}
	var anchors []string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "\tDS\t") && !strings.HasPrefix(l, ";") {
			anchors = append(anchors, l)
		}
	}
	if len(anchors) == 0 {
		t.Fatalf("no DS printed:\n%s", out.String())
	}
	env := acmetest.Start(t, acmetest.Options{BrokerDNS: b.DNS[0], BrokerZone: brokerZone, CustomerZone: customerZone, BrokerTrustAnchors: anchors})
	state := filepath.Join(t.TempDir(), "state")
	r := runner{t: t, common: []string{"--state-dir", state, "--resolver", env.ResolverAddr, "--nameserver", b.DNS[0]}}
	m := cnameLine.FindStringSubmatch(r.must("register", "--api", b.API, "--domain", customerZone))
	if m == nil {
		t.Fatal("register did not print the CNAME")
	}
	env.Customer.SetCNAME("_acme-challenge."+customerZone, m[2])
	r.must("obtain", "-d", customerZone, "-d", "*."+customerZone, "--ca", env.CAURL, "--ca-root", env.CARootPEM, "--email", "admin@example.test")
	leaf, _ := loadChain(t, filepath.Join(state, "certificates", customerZone))
	if !sameSet(leaf.DNSNames, []string{customerZone, "*." + customerZone}) {
		t.Fatalf("SANs %v", leaf.DNSNames)
	}
	// The resolver Pebble asked validated the broker's answers: the
	// account's name (its challenge values left in place) comes back with
	// AD, and the resolver checks signatures at all (a corrupted trust
	// anchor is what TestDNSSECValidatingResolver and
	// TestBrokenSignatureServfail test).
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(m[2]), dns.TypeTXT)
	q.SetEdns0(1232, true)
	resp, _, err := (&dns.Client{Net: "tcp"}).Exchange(q, env.ResolverAddr)
	if err != nil || resp.Rcode != dns.RcodeSuccess || !resp.AuthenticatedData || len(resp.Answer) < 2 {
		t.Fatalf("the challenge TXT through Pebble's resolver: %v %v", resp, err)
	}
}
