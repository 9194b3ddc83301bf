package e2e_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/cli"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/dnssec"
)

const secZone = "auth.example.test"

// dnssecConfig writes the config file of a signing broker (its database
// and key file in dir, more TOML in extra, [dns.dnssec] keys among them)
// and returns it loaded, with its path for the CLI.
func dnssecConfig(t *testing.T, dir, storage, dnssecExtra string) (config.Config, string) {
	t.Helper()
	keyFile := filepath.Join(dir, "dnssec.key")
	if err := os.WriteFile(keyFile, []byte("8f0e2b1c5d4a39281706f5e4d3c2b1a0ffeeddccbbaa99887766554433221100\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if storage == "" {
		storage = fmt.Sprintf("dsn = %q", filepath.Join(dir, "broker.db"))
	}
	text := fmt.Sprintf(`[dns]
listen = ["127.0.0.1:0"]
zone = %q
nsname = "ns1.%[1]s"
nsadmin = "hostmaster.example.test"
records = ["%[1]s. 2 NS ns1.%[1]s.", "ns1.%[1]s. 2 A 127.0.0.1"]
txt_ttl = 1
negative_ttl = 1
soa_ttl = 2
[dns.rrl]
enabled = false
[dns.dnssec]
enabled = true
key_file = %q
dnskey_ttl = 2
%s
[api]
listen = "127.0.0.1:0"
[storage]
%s
`, secZone, keyFile, dnssecExtra, storage)
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, path
}

// acmebroker runs the CLI and returns its output; it fails the test on a
// non-zero exit.
func acmebroker(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := cli.Run(t.Context(), args, &out, &errb); code != 0 {
		t.Fatalf("acmebroker %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return out.String()
}

// dsRecords are the DS records `acmebroker dnssec ds` prints (its
// comments left out): what the parent, or a trust anchor, takes.
func dsRecords(t *testing.T, configPath string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(acmebroker(t, "dnssec", "ds", "-config", configPath), "\n") {
		if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, ";") {
			continue
		}
		rr, err := dns.NewRR(l)
		if err != nil || rr.Header().Rrtype != dns.TypeDS {
			t.Fatalf("dnssec ds printed %q: %v", l, err)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		t.Fatal("dnssec ds printed no DS")
	}
	return out
}

// askDO asks server (a resolver) for name with the DO bit, recursion
// desired, over TCP (no truncation to retry).
func askDO(t *testing.T, server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.SetEdns0(1232, true)
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	r, _, err := c.Exchange(q, server)
	if err != nil {
		t.Fatalf("%s %s from %s: %v", name, dns.TypeToString[qtype], server, err)
	}
	return r
}

// TestDNSSECValidatingResolver: a real broker signing its zone, unbound
// validating with the DS that `acmebroker dnssec ds` prints as its only
// trust anchor: a challenge TXT, a name that does not exist and a
// registered name without the type asked for all come back validated (AD)
// and delv, validating on its own, agrees. A resolver trusting another key
// finds the same answers bogus (SERVFAIL): the AD is earned.
func TestDNSSECValidatingResolver(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	cfg, path := dnssecConfig(t, dir, "", "")
	rd, _ := runBroker(t, cfg)
	anchors := dsRecords(t, path)

	api := &client.BrokerClient{}
	acct, err := api.Register(t.Context(), rd.API, nil)
	if err != nil {
		t.Fatal(err)
	}
	const value = "dnssec-validated-00000000000000000000000000"
	if err := api.Update(t.Context(), acct, value); err != nil {
		t.Fatal(err)
	}
	res := acmetest.StartResolver(t, acmetest.ResolverOptions{Stubs: map[string][]string{secZone: {rd.DNS[0]}}, TrustAnchors: anchors})

	nope := "no-such-name." + secZone
	tests := []struct {
		name, qname string
		qtype       uint16
		answer      bool   // a record of qtype in the answer
		delv        string // what delv prints when it validated
	}{
		{"challenge TXT", acct.FullDomain, dns.TypeTXT, true, "; fully validated"},
		{"no such name (compact NXDOMAIN)", nope, dns.TypeTXT, false, "; negative response, fully validated"},
		{"registered name, no A (NODATA)", acct.FullDomain, dns.TypeA, false, "; negative response, fully validated"},
		{"DNSKEY", secZone, dns.TypeDNSKEY, true, "; fully validated"},
		{"SOA", secZone, dns.TypeSOA, true, "; fully validated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := askDO(t, res.Addr, tc.qname, tc.qtype)
			if r.Rcode != dns.RcodeSuccess || !r.AuthenticatedData {
				t.Fatalf("unbound: rcode %s, AD %v; want NOERROR, validated\n%s\n%s", dns.RcodeToString[r.Rcode], r.AuthenticatedData, r, res.Log())
			}
			got := slices.ContainsFunc(r.Answer, func(rr dns.RR) bool { return rr.Header().Rrtype == tc.qtype })
			if got != tc.answer {
				t.Fatalf("answer %v, want a %s: %v", r.Answer, dns.TypeToString[tc.qtype], tc.answer)
			}
			if tc.qtype == dns.TypeTXT && tc.answer && !strings.Contains(r.String(), value) {
				t.Fatalf("the value is not in the answer:\n%s", r)
			}
			out, err := acmetest.Delv(t, res.Addr, secZone, anchors, tc.qname, tc.qtype)
			if err != nil || !strings.Contains(out, tc.delv) {
				t.Fatalf("delv: %v, want %q:\n%s", err, tc.delv, out)
			}
		})
	}
	// Without DO, the broker still says NXDOMAIN, as an unsigned zone.
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(nope), dns.TypeTXT)
	if r, err := dns.Exchange(q, rd.DNS[0]); err != nil || r.Rcode != dns.RcodeNameError {
		t.Fatalf("without DO: %v %v", r, err)
	}

	// A resolver that trusts another key: the very same answers are bogus.
	other, err := dnssec.NewKeyset(secZone, dnssec.ECDSAP256SHA256, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wrong := acmetest.StartResolver(t, acmetest.ResolverOptions{Stubs: map[string][]string{secZone: {rd.DNS[0]}},
		TrustAnchors: []string{other.ParentKeys()[0].DSRecord(3600).String()}})
	if r := askDO(t, wrong.Addr, acct.FullDomain, dns.TypeTXT); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("a resolver trusting another key: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if out, err := acmetest.Delv(t, res.Addr, secZone, []string{other.ParentKeys()[0].DSRecord(3600).String()}, acct.FullDomain, dns.TypeTXT); err == nil && strings.Contains(out, "fully validated") {
		t.Fatalf("delv trusting another key validated:\n%s", out)
	}

	// The private keys in the database are sealed with the key file.
	st := acmebroker(t, "dnssec", "status", "-config", path)
	if !strings.Contains(st, "csk") || !strings.Contains(st, "published, signing, DS at parent") {
		t.Fatalf("dnssec status:\n%s", st)
	}
}
