package dnsserver_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/dnssec"
)

// breakable is the test hook for broken signatures: a signer that signs
// as the real one and, while broken is set, flips a bit of every
// signature but those over the DNSKEY set (so that the keys still
// validate and it is the data's signature that fails).
type breakable struct {
	*dnssec.Signer
	broken atomic.Bool
}

// Generation moves when broken is flipped, as it would when the keys
// change: answers signed before are no longer served from the fast path's
// cache.
func (b *breakable) Generation() uint64 {
	g := b.Signer.Generation() << 1
	if b.broken.Load() {
		g |= 1
	}
	return g
}

func (b *breakable) Sign(dst, rrset []dns.RR) ([]dns.RR, error) {
	n := len(dst)
	out, err := b.Signer.Sign(dst, rrset)
	if err != nil || !b.broken.Load() || rrset[0].Header().Rrtype == dns.TypeDNSKEY {
		return out, err
	}
	dnsserver.BreakRRSIGs(out[n:])
	return out, err
}

// TestBrokenSignatureServfail: unbound validating with the zone's key as
// trust anchor answers a challenge TXT with AD; once the signatures over
// the data are broken (the test hook), it answers SERVFAIL, for the TXT
// and for a name that does not exist alike, and delv refuses them too;
// mended, they validate again. A test that passes on AD cannot pass on
// unsigned or badly signed answers.
func TestBrokenSignatureServfail(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	signer, ks := newHostileSigner(t, dnssec.ED25519)
	hook := &breakable{Signer: signer}
	addr, _ := startHostileDNS(t, hook, true) // through the fast path, as served by default

	anchor := []string{ks.ParentKeys()[0].DSRecord(3600).String()}
	res := acmetest.StartResolver(t, acmetest.ResolverOptions{Stubs: map[string][]string{hzone: {addr}}, TrustAnchors: anchor})
	ask := func(name string) *dns.Msg {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeTXT)
		q.SetEdns0(1232, true)
		r, _, err := (&dns.Client{Net: "tcp", Timeout: 5 * time.Second}).Exchange(q, res.Addr)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	txt, nx := hsub+"."+hzone+".", "nope."+hzone+"."
	for _, name := range []string{txt, nx} {
		if r := ask(name); r.Rcode != dns.RcodeSuccess || !r.AuthenticatedData {
			t.Fatalf("%s, signatures whole: %s AD %v\n%s", name, dns.RcodeToString[r.Rcode], r.AuthenticatedData, res.Log())
		}
	}
	hook.broken.Store(true)
	for _, name := range []string{txt, nx} {
		if r := ask(name); r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("%s, signatures broken: %s, want SERVFAIL\n%s", name, dns.RcodeToString[r.Rcode], r)
		}
	}
	if !strings.Contains(res.Log(), "validation failure") {
		t.Fatalf("unbound did not log a validation failure:\n%s", res.Log())
	}
	if out, err := acmetest.Delv(t, res.Addr, hzone, anchor, txt, dns.TypeTXT); err == nil && strings.Contains(out, "fully validated") {
		t.Fatalf("delv validated a broken signature:\n%s", out)
	}
	hook.broken.Store(false)
	if r := ask(txt); r.Rcode != dns.RcodeSuccess || !r.AuthenticatedData {
		t.Fatalf("mended: %s AD %v", dns.RcodeToString[r.Rcode], r.AuthenticatedData)
	}
}
