package e2e_test

// End-to-end tests of the three DNS challenge types of the bundled client
// (issue 15): each issues apex + wildcard from Pebble through unbound and
// the broker, is stored with the certificate and used again by renew; the
// CNAMEs `check` prints and checks; dns-persist-01's standing record, set
// once by obtain and used by renewals without the broker's API, refused by
// the CA for another account, listed and removed.

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"
	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/client"
)

// validatedTypes reads back from the CA, for the order that issued the
// certificate name, the type of the challenge that validated each of its
// authorizations.
func (e *clientEnv) validatedTypes(t *testing.T, name string) []string {
	t.Helper()
	r := e.renewal(name)
	key, acct := stateAccount(t, e.state)
	o := caOrder(t, e.env.CAURL, e.env, key, acct.URL, r.OrderURL)
	c, a := acmeClient(t, e.env.CAURL, e.env, key)
	a.Location = acct.URL
	var types []string
	for _, u := range o.Authorizations {
		z, err := c.GetAuthorization(t.Context(), a, u)
		if err != nil {
			t.Fatalf("authorization %s: %v", u, err)
		}
		for _, ch := range z.Challenges {
			if ch.Status == acme.StatusValid {
				types = append(types, ch.Type)
			}
		}
	}
	return types
}

// TestChallengeTypes: with every type's CNAME in place, each type issues
// apex + wildcard (the CA's authorizations say which type validated
// them), is stored in renewal.json, shown by list, and used by a forced
// renewal; `check --cert-name` prints and checks that type's CNAME. Then,
// without its CNAME, check names the record to add, and obtain stops
// before the CA with the same record.
func TestChallengeTypes(t *testing.T) {
	top := newClientEnv(t, envOptions{})
	cnames := map[string]string{
		client.TypeDNS01:        "_acme-challenge.example.test.",
		client.TypeDNSAccount01: "*._acme-challenge.example.test.",
		client.TypeDNSPersist01: "_validation-persist.example.test.",
	}
	for _, typ := range client.ChallengeTypes {
		t.Run(typ, func(t *testing.T) {
			e := top.fork(t)
			want := []string{typ, typ}
			e.r.must("obtain", append(e.obtainArgs(customerZone, "*."+customerZone), "--challenge", typ, "--cert-name", typ)...)
			leaf, _ := loadChain(t, e.certDir(typ))
			if !sameSet(leaf.DNSNames, []string{customerZone, "*." + customerZone}) {
				t.Fatalf("SANs %v", leaf.DNSNames)
			}
			if got := e.renewal(typ).Challenge; got != typ {
				t.Fatalf("renewal.json has challenge %q, want %q", got, typ)
			}
			if got := e.validatedTypes(t, typ); !slices.Equal(got, want) {
				t.Fatalf("the CA validated the authorizations with %v, want %v", got, want)
			}

			first := e.renewal(typ).OrderURL
			e.r.must("renew", "-d", typ, "--force")
			if r := e.renewal(typ); r.Challenge != typ || r.OrderURL == first {
				t.Fatalf("after renew: challenge %q, order %s (first %s)", r.Challenge, r.OrderURL, first)
			}
			if got := e.validatedTypes(t, typ); !slices.Equal(got, want) {
				t.Fatalf("the renewal's authorizations were validated with %v, want %v", got, want)
			}

			out := e.r.must("list")
			if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(typ) + ` +valid +\S+ +\S+ +` + regexp.QuoteMeta(typ) + ` +example\.test,\*\.example\.test$`).MatchString(out) {
				t.Fatalf("list does not show %s with its challenge type:\n%s", typ, out)
			}
			out = e.r.must("check", "--cert-name", typ)
			line := cnames[typ] + " CNAME " + e.target + "."
			if !strings.Contains(out, typ+" needs these CNAMEs") || !strings.Contains(out, "\n  "+line+"\n") ||
				!regexp.MustCompile(`OK +CNAME `+regexp.QuoteMeta(cnames[typ])).MatchString(out) || !strings.Contains(out, "Every link holds") {
				t.Fatalf("check --cert-name %s, want %q listed and OK:\n%s", typ, line, out)
			}
		})
	}
	// Without the type's CNAME: check shows it broken with the record to
	// add; obtain says the same before any order. For dns-account-01 it
	// looks where the CA will, at the ACME account's label, once the state
	// has an account (before, at the wildcard).
	e := top.fork(t)
	e.env.Customer.SetCNAME("_acme-challenge.www."+customerZone, e.target)
	e.r.must("obtain", e.obtainArgs("www."+customerZone)...) // an ACME account, with no CNAME of those removed below
	for _, typ := range client.ChallengeTypes[1:] {
		e.env.Customer.Remove(cnames[typ])
		line := cnames[typ] + " CNAME " + e.target
		out, _, code := e.r.run("check", "--domain", customerZone, "--challenge", typ)
		if code != 1 || !regexp.MustCompile(`BROKEN +CNAME `+regexp.QuoteMeta(cnames[typ])).MatchString(out) || !strings.Contains(out, line) {
			t.Fatalf("check --challenge %s without its CNAME: exit %d, want it broken and %q\n%s", typ, code, line, out)
		}
		for _, r := range []*clientEnv{top, e} {
			_, errs, code := r.r.run("obtain", append(r.obtainArgs(customerZone), "--challenge", typ, "--cert-name", "broken")...)
			if code != 1 || !strings.Contains(errs, "no CNAME at ") || !strings.Contains(errs, line) || !strings.Contains(errs, "acmebroker client check --challenge "+typ) {
				t.Fatalf("obtain --challenge %s without its CNAME: exit %d, want %q\n%s", typ, code, line, errs)
			}
			if typ != client.TypeDNSAccount01 {
				continue
			}
			at := `_[a-z2-7]{16}\._acme-challenge`
			if r == top {
				at = `\*\._acme-challenge`
			}
			if !regexp.MustCompile(`no CNAME at ` + at + `\.example\.test\.`).MatchString(errs) {
				t.Fatalf("obtain --challenge dns-account-01 did not look at %s:\n%s", at, errs)
			}
		}
	}
}

// TestPersistRenewalBrokerDown: obtain sets the dns-persist-01 record once
// (issuer from the CA's challenge, this ACME account, policy=wildcard for
// the wildcard, the end --persist-until asks) and waits until the NSD
// secondary serves it; the CA resolves the broker zone through NSD only.
// Then the broker stops altogether, API and its own DNS: NSD still
// answers, and a renewal succeeds.
func TestPersistRenewalBrokerDown(t *testing.T) {
	e := newClientEnv(t, envOptions{nsd: true})
	start := time.Now()
	out := e.r.must("obtain", append(e.obtainArgs(customerZone, "*."+customerZone),
		"--challenge", client.TypeDNSPersist01, "--persist-until", "30d")...)
	if !strings.Contains(out, "the broker account has no record for "+pebbleIssuer) {
		t.Fatalf("obtain did not say it set the record:\n%s", out)
	}
	_, acct := stateAccount(t, e.state)
	l := e.persisted(t)
	if len(l.Records) != 1 {
		t.Fatalf("the broker holds %d records, want 1: %+v", len(l.Records), l.Records)
	}
	r := l.Records[0]
	until := start.Add(30 * 24 * time.Hour)
	if r.Issuer != pebbleIssuer || r.AccountURI != acct.URL || !r.Wildcard || r.Until.Before(until.Add(-time.Minute)) || r.Until.After(until.Add(time.Minute)) {
		t.Fatalf("record %s, want %s for %s, policy=wildcard, until about %s", r.Describe(), pebbleIssuer, acct.URL, until.UTC().Format(time.RFC3339))
	}
	if got, err := e.nsd.TXT(t.Context(), e.target); err != nil || !slices.Contains(got, r.Value) {
		t.Fatalf("NSD serves %v at %s (%v), want %q", got, e.target, err, r.Value)
	}
	leaf, _ := loadChain(t, e.certDir(customerZone))

	e.stop()
	if _, err := (&client.BrokerClient{}).Persist(t.Context(), e.account(t)); err == nil {
		t.Fatal("the broker's API still answers after it stopped")
	}
	out = e.r.must("renew", "-d", customerZone, "--force")
	if !strings.Contains(out, "nothing is written to the broker") {
		t.Fatalf("renew:\n%s", out)
	}
	renewed, _ := loadChain(t, e.certDir(customerZone))
	if renewed.SerialNumber.Cmp(leaf.SerialNumber) == 0 || e.versions(customerZone) != 2 {
		t.Fatal("the renewal with the broker down kept the old certificate")
	}
	if got := e.validatedTypes(t, customerZone); !slices.Equal(got, []string{client.TypeDNSPersist01, client.TypeDNSPersist01}) {
		t.Fatalf("the renewal's authorizations were validated with %v", got)
	}
}

// TestPersistRefusedAndRemoved: a renewal succeeds with the broker's API
// at a closed port; a record naming another ACME account is refused by the
// CA, and the client shows the CA's reason and the obtain that sets it
// again, which works; `persist list` shows the record as this state's,
// `persist remove` ends it, renewals then fail with the CA's reason and do
// not set it again.
func TestPersistRefusedAndRemoved(t *testing.T) {
	e := newClientEnv(t, envOptions{})
	args := append(e.obtainArgs(customerZone, "*."+customerZone), "--challenge", client.TypeDNSPersist01)
	e.r.must("obtain", args...)
	st := &client.State{Dir: e.state}
	good := e.account(t)

	// The API at a closed port: the renewal needs nothing from it.
	down := good
	down.ServerURL = "http://" + closedPort(t)
	if err := st.SaveAccount(customerZone, down); err != nil {
		t.Fatal(err)
	}
	e.r.must("renew", "-d", customerZone, "--force")
	if err := st.SaveAccount(customerZone, good); err != nil {
		t.Fatal(err)
	}
	if e.versions(customerZone) != 2 {
		t.Fatal("the renewal with the API down did not renew")
	}

	// A record of the same CA naming another account.
	c, other := acmeClient(t, e.env.CAURL, e.env, generatedKeyPEM(t))
	other.TermsOfServiceAgreed = true
	other, err := c.NewAccount(t.Context(), other)
	if err != nil {
		t.Fatal(err)
	}
	bc := &client.BrokerClient{}
	l, err := bc.SetPersist(t.Context(), good, client.PersistRecord{Issuer: pebbleIssuer, AccountURI: other.Location, Wildcard: true})
	if err != nil {
		t.Fatal(err)
	}
	e.waitServed(t, l.Records[0].Value)
	_, errs, code := e.r.run("renew", "-d", customerZone, "--force")
	fix := "to set it for this account: acmebroker client obtain --challenge dns-persist-01 --cert-name example.test -d example.test -d '*.example.test' --ca " + e.env.CAURL
	if code != 1 || !strings.Contains(errs, "accounturi mismatch") || !strings.Contains(errs, "names another ACME account than this one") ||
		!strings.Contains(errs, fix) || !strings.Contains(errs, "acmebroker client persist list --domain example.test") {
		t.Fatalf("renew with another account's record: exit %d, want the CA's reason and %q\n%s", code, fix, errs)
	}
	t.Logf("renew with another account's record:\n%s", errs)
	if e.versions(customerZone) != 2 {
		t.Fatal("a failed renewal changed the certificate")
	}
	// The fix it gives (with this run's flags): obtain replaces the record.
	out := e.r.must("obtain", append(args, "--ca-root", e.env.CARootPEM, "--cert-name", customerZone)...)
	if !strings.Contains(out, "authorizes another ACME account, "+other.Location+"; replacing it") {
		t.Fatalf("obtain over another account's record:\n%s", out)
	}

	_, acct := stateAccount(t, e.state)
	out = e.r.must("persist list")
	if !strings.Contains(out, pebbleIssuer) || !strings.Contains(out, acct.URL+" (this state directory's account at "+e.env.CAURL+")") ||
		!strings.Contains(out, "policy=wildcard") {
		t.Fatalf("persist list:\n%s", out)
	}
	out = e.r.must("persist remove", "--domain", customerZone, "--issuer", pebbleIssuer)
	if !strings.Contains(out, "Removed the dns-persist-01 record of "+pebbleIssuer) {
		t.Fatalf("persist remove:\n%s", out)
	}
	if l := e.persisted(t); len(l.Records) != 0 {
		t.Fatalf("the broker still holds %+v", l.Records)
	}
	if out := e.r.must("persist list", "--domain", customerZone); !strings.Contains(out, "no dns-persist-01 records") {
		t.Fatalf("persist list after remove:\n%s", out)
	}
	if _, errs, code := e.r.run("persist remove", "--domain", customerZone, "--issuer", pebbleIssuer); code != 1 || !strings.Contains(errs, "no_such_persist") {
		t.Fatalf("removing it again: exit %d\n%s", code, errs)
	}
	e.waitGone(t)
	_, errs, code = e.r.run("renew", "-d", customerZone, "--force")
	if code != 1 || !strings.Contains(errs, "DNS-PERSIST-01") || !strings.Contains(errs, fix) {
		t.Fatalf("renew after the record was removed: exit %d, want the CA's reason and %q\n%s", code, fix, errs)
	}
	t.Logf("renew after the record was removed:\n%s", errs)
	if l := e.persisted(t); len(l.Records) != 0 {
		t.Fatalf("a renewal set the removed record again: %+v", l.Records)
	}
}

// account is the broker account of example.test in the state.
func (e *clientEnv) account(t *testing.T) client.BrokerAccount {
	t.Helper()
	_, a, err := (&client.State{Dir: e.state}).AccountFor(customerZone)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// persisted is the broker's list of example.test's account.
func (e *clientEnv) persisted(t *testing.T) client.PersistList {
	t.Helper()
	l, err := (&client.BrokerClient{}).Persist(t.Context(), e.account(t))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitServed waits until the broker's name server serves value at the
// account's name.
func (e *clientEnv) waitServed(t *testing.T, value string) {
	t.Helper()
	ck := &client.Checker{Nameservers: []string{e.b.DNS[0]}, Interval: 20 * time.Millisecond}
	if err := ck.WaitServed(t.Context(), e.target, []string{value}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// waitGone waits until the broker's name server serves no TXT at the
// account's name.
func (e *clientEnv) waitGone(t *testing.T) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(e.target), dns.TypeTXT)
	waitFor(t, 10*time.Second, "the broker to stop serving the removed record", func() bool {
		r, err := dns.ExchangeContext(t.Context(), q, e.b.DNS[0])
		return err == nil && (r.Rcode == dns.RcodeSuccess || r.Rcode == dns.RcodeNameError) && len(r.Answer) == 0
	})
}
