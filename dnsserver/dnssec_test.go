package dnsserver

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/dnssec"
)

// newSignedHandler is newTestHandler with DNSSEC on: a fresh key set (a
// CSK, or a KSK and a ZSK when split) and a signer over it.
func newSignedHandler(t testing.TB, src RecordSource, split bool, extra ...string) (*Handler, *dnssec.Signer, *dnssec.Keyset) {
	t.Helper()
	ks, err := dnssec.NewKeyset(zone, dnssec.ECDSAP256SHA256, split, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := dnssec.NewSigner(dnssec.SignerConfig{Zone: zone, DNSKEYTTL: 300}, ks)
	if err != nil {
		t.Fatal(err)
	}
	rrs, err := ParseRecords(zone, append(slices.Clone(staticLines), extra...))
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(Config{
		Zone: zone, NSName: "ns1." + zone, NSAdmin: "hostmaster.example.test",
		Records: rrs, TXTTTL: 1, NegativeTTL: 5, MaxUDPSize: 1232, Signer: s,
	}, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h, s, ks
}

func doQuery(name string, qtype uint16) *dns.Msg {
	q := query(name, qtype)
	q.SetEdns0(1232, true)
	return q
}

// zoneKeys are the zone's DNSKEYs, as a validator would fetch them.
func zoneKeys(t testing.TB, h *Handler) []*dns.DNSKEY {
	t.Helper()
	var keys []*dns.DNSKEY
	m := h.Answer(doQuery(zone+".", dns.TypeDNSKEY), true)
	for _, rr := range m.Answer {
		if k, ok := rr.(*dns.DNSKEY); ok {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		t.Fatalf("no DNSKEY at the apex:\n%s", m)
	}
	return keys
}

type rrsetKey struct {
	name  string
	rtype uint16
}

// checkSigned does what a validator does with each section of m: every
// RRset (but a referral's NS and glue) has an RRSIG of the zone, valid
// now, that verifies with one of keys; every RRSIG covers an RRset there.
func checkSigned(t *testing.T, m *dns.Msg, keys []*dns.DNSKEY) {
	t.Helper()
	for si, section := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		sets := map[rrsetKey][]dns.RR{}
		sigs := map[rrsetKey][]*dns.RRSIG{}
		for _, rr := range section {
			h := rr.Header()
			switch r := rr.(type) {
			case *dns.OPT:
			case *dns.RRSIG:
				k := rrsetKey{strings.ToLower(h.Name), r.TypeCovered}
				sigs[k] = append(sigs[k], r)
			default:
				k := rrsetKey{strings.ToLower(h.Name), h.Rrtype}
				sets[k] = append(sets[k], rr)
			}
		}
		for k, set := range sets {
			if !m.Authoritative && (k.rtype == dns.TypeNS || si == 2) {
				if len(sigs[k]) > 0 {
					t.Errorf("referral: the child's %s %s is signed", k.name, dns.TypeToString[k.rtype])
				}
				continue
			}
			if len(sigs[k]) == 0 {
				t.Errorf("section %d: %s %s has no RRSIG\n%s", si, k.name, dns.TypeToString[k.rtype], m)
				continue
			}
			for _, sig := range sigs[k] {
				if err := verify(sig, set, keys); err != nil {
					t.Errorf("section %d: RRSIG over %s %s: %v", si, k.name, dns.TypeToString[k.rtype], err)
				}
			}
		}
		for k := range sigs {
			if sets[k] == nil {
				t.Errorf("section %d: an RRSIG over %s %s, which is not there", si, k.name, dns.TypeToString[k.rtype])
			}
		}
	}
}

func verify(sig *dns.RRSIG, set []dns.RR, keys []*dns.DNSKEY) error {
	if sig.SignerName != zone+"." {
		return fmt.Errorf("signer %s", sig.SignerName)
	}
	if !sig.ValidityPeriod(time.Now()) || !sig.ValidityPeriod(time.Now().Add(-30*time.Minute)) || !sig.ValidityPeriod(time.Now().Add(48*time.Hour)) {
		return fmt.Errorf("validity %d..%d does not span -30m..+48h", sig.Inception, sig.Expiration)
	}
	if sig.Hdr.Ttl != set[0].Header().Ttl || sig.OrigTtl != set[0].Header().Ttl {
		return fmt.Errorf("RRSIG TTL %d (original %d), RRset TTL %d", sig.Hdr.Ttl, sig.OrigTtl, set[0].Header().Ttl)
	}
	for _, k := range keys {
		if k.KeyTag() == sig.KeyTag && k.Algorithm == sig.Algorithm {
			return sig.Verify(k, set)
		}
	}
	return fmt.Errorf("no DNSKEY with tag %d", sig.KeyTag)
}

// nsecOf returns the NSEC in rrs, or nil.
func nsecOf(rrs []dns.RR) *dns.NSEC {
	for _, rr := range rrs {
		if n, ok := rr.(*dns.NSEC); ok {
			return n
		}
	}
	return nil
}

func bitmap(n *dns.NSEC) string {
	var s []string
	for _, t := range n.TypeBitMap {
		s = append(s, dns.TypeToString[t])
	}
	return strings.Join(s, " ")
}

// TestSignedAnswers: with the DO bit, every answer validates (checkSigned)
// and says what it should: data with its RRSIGs, NODATA and NXDOMAIN as
// compact answers (RFC 9824: one NSEC at the name asked for, covering
// only it, listing its types, NXNAME when it does not exist, NOERROR),
// referrals with the proof that the child is unsigned.
func TestSignedAnswers(t *testing.T) {
	for _, split := range []bool{false, true} {
		t.Run(fmt.Sprintf("split=%v", split), func(t *testing.T) {
			h, _, _ := newSignedHandler(t, testSource(), split)
			keys := zoneKeys(t, h)
			tests := []struct {
				name   string
				qname  string
				qtype  uint16
				rcode  int
				answer string // types in the answer section
				ns     string // types in the authority section
				nsec   string // owner, next and bitmap of the NSEC, if any
			}{
				{"TXT", sub1 + "." + zone + ".", dns.TypeTXT, 0, "TXT,TXT,RRSIG", "", ""},
				{"TXT in 0x20 case", strings.ToUpper(sub1) + ".AuTh.ExAmPlE.tEsT.", dns.TypeTXT, 0, "TXT,TXT,RRSIG", "", ""},
				{"registered, no value", "empty." + zone + ".", dns.TypeTXT, 0, "", "SOA,RRSIG,NSEC,RRSIG",
					`empty.auth.example.test. \000.empty.auth.example.test. RRSIG NSEC`},
				{"registered, A", sub1 + "." + zone + ".", dns.TypeA, 0, "", "SOA,RRSIG,NSEC,RRSIG",
					sub1 + `.auth.example.test. \000.` + sub1 + `.auth.example.test. TXT RRSIG NSEC`},
				{"no such name: NOERROR, NXNAME", "nope." + zone + ".", dns.TypeTXT, 0, "", "SOA,RRSIG,NSEC,RRSIG",
					`nope.auth.example.test. \000.nope.auth.example.test. RRSIG NSEC NXNAME`},
				{"no such name, case kept in the NSEC owner", "NoPe." + zone + ".", dns.TypeTXT, 0, "", "SOA,RRSIG,NSEC,RRSIG",
					`NoPe.auth.example.test. \000.nope.auth.example.test. RRSIG NSEC NXNAME`},
				{"apex SOA", zone + ".", dns.TypeSOA, 0, "SOA,RRSIG", "", ""},
				{"apex NS, glue signed", zone + ".", dns.TypeNS, 0, "NS,NS,RRSIG", "", ""},
				{"apex DNSKEY", zone + ".", dns.TypeDNSKEY, 0, map[bool]string{false: "DNSKEY,RRSIG", true: "DNSKEY,DNSKEY,RRSIG"}[split], "", ""},
				{"apex CDS", zone + ".", dns.TypeCDS, 0, "CDS,RRSIG", "", ""},
				{"apex CDNSKEY", zone + ".", dns.TypeCDNSKEY, 0, "CDNSKEY,RRSIG", "", ""},
				{"apex A: NODATA", zone + ".", dns.TypeA, 0, "", "SOA,RRSIG,NSEC,RRSIG",
					`auth.example.test. \000.auth.example.test. NS SOA MX RRSIG NSEC DNSKEY CDS CDNSKEY CAA`},
				{"apex DS: NODATA", zone + ".", dns.TypeDS, 0, "", "SOA,RRSIG,NSEC,RRSIG",
					`auth.example.test. \000.auth.example.test. NS SOA MX RRSIG NSEC DNSKEY CDS CDNSKEY CAA`},
				{"ANY: HINFO signed", zone + ".", dns.TypeANY, 0, "HINFO,RRSIG", "", ""},
				{"static A", "NS1." + zone + ".", dns.TypeA, 0, "A,RRSIG", "", ""},
				{"static TXT", "dkim._domainkey." + zone + ".", dns.TypeTXT, 0, "TXT,RRSIG", "", ""},
				{"CNAME chain", "www." + zone + ".", dns.TypeA, 0, "CNAME,RRSIG,A,RRSIG", "", ""},
				{"CNAME to a challenge TXT", "acme." + zone + ".", dns.TypeTXT, 0, "CNAME,RRSIG,TXT,RRSIG", "", ""},
				{"CNAME to nothing: the target's NXNAME", "dangle." + zone + ".", dns.TypeA, 0, "CNAME,RRSIG", "SOA,RRSIG,NSEC,RRSIG",
					`nothere.auth.example.test. \000.nothere.auth.example.test. RRSIG NSEC NXNAME`},
				{"CNAME to a challenge name, A: the target's types", "acme." + zone + ".", dns.TypeA, 0, "CNAME,RRSIG", "SOA,RRSIG,NSEC,RRSIG",
					`single.auth.example.test. \000.single.auth.example.test. TXT RRSIG NSEC`},
				{"empty non-terminal", "b." + zone + ".", dns.TypeA, 0, "", "SOA,RRSIG,NSEC,RRSIG",
					`b.auth.example.test. \000.b.auth.example.test. RRSIG NSEC`},
				{"referral: no DS, proven", "host.child." + zone + ".", dns.TypeA, 0, "", "NS,NSEC,RRSIG",
					`child.auth.example.test. \000.child.auth.example.test. NS RRSIG NSEC`},
				{"DS at the cut: NODATA", "child." + zone + ".", dns.TypeDS, 0, "", "SOA,RRSIG,NSEC,RRSIG",
					`child.auth.example.test. \000.child.auth.example.test. NS RRSIG NSEC`},
				{"NSEC asked for", "ns1." + zone + ".", dns.TypeNSEC, 0, "NSEC,RRSIG", "",
					`ns1.auth.example.test. \000.ns1.auth.example.test. A AAAA RRSIG NSEC`},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					m := serve(t, h, doQuery(tc.qname, tc.qtype), udpRecorder())
					if m.Rcode != tc.rcode {
						t.Fatalf("rcode %s, want %s\n%s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode], m)
					}
					if got := types(m.Answer); got != tc.answer {
						t.Fatalf("answer %s, want %s\n%s", got, tc.answer, m)
					}
					if got := types(m.Ns); got != tc.ns {
						t.Fatalf("authority %s, want %s\n%s", got, tc.ns, m)
					}
					if opt := m.IsEdns0(); opt == nil || !opt.Do() || opt.Co() {
						t.Fatalf("OPT %v: want DO echoed, CO clear", opt)
					}
					checkSigned(t, m, keys)
					n := nsecOf(append(m.Answer, m.Ns...))
					got := ""
					if n != nil {
						got = n.Hdr.Name + " " + n.NextDomain + " " + bitmap(n)
						if n.Hdr.Ttl != 5 {
							t.Errorf("NSEC TTL %d, want the negative TTL 5", n.Hdr.Ttl)
						}
					}
					if got != tc.nsec {
						t.Fatalf("NSEC %q, want %q", got, tc.nsec)
					}
					if tc.qtype == dns.TypeNS {
						if types(m.Extra) != "A,RRSIG,AAAA,RRSIG" {
							t.Fatalf("glue %s, want A and AAAA with their RRSIGs", types(m.Extra))
						}
					}
				})
			}
		})
	}
}

// TestCompactAnswersOK: a resolver that sets the CO flag (RFC 9824 4) gets
// NXDOMAIN back, CO echoed, with the same compact proof.
func TestCompactAnswersOK(t *testing.T) {
	h, _, _ := newSignedHandler(t, testSource(), false)
	q := doQuery("nope."+zone+".", dns.TypeTXT)
	q.IsEdns0().SetCo(true)
	m := serve(t, h, q, udpRecorder())
	if m.Rcode != dns.RcodeNameError || !m.IsEdns0().Co() {
		t.Fatalf("rcode %s, CO %v: want NXDOMAIN and CO echoed", dns.RcodeToString[m.Rcode], m.IsEdns0().Co())
	}
	if n := nsecOf(m.Ns); n == nil || !slices.Contains(n.TypeBitMap, dns.TypeNXNAME) {
		t.Fatalf("no NXNAME NSEC:\n%s", m)
	}
	checkSigned(t, m, zoneKeys(t, h))
	// CO on an existing name changes nothing but the echo.
	q = doQuery(sub1+"."+zone+".", dns.TypeA)
	q.IsEdns0().SetCo(true)
	if m := serve(t, h, q, udpRecorder()); m.Rcode != dns.RcodeSuccess {
		t.Fatalf("NODATA with CO: %s", dns.RcodeToString[m.Rcode])
	}
}

// TestSignedDelegationWithDS: a child with a DS in the static records is
// a secure delegation: the referral carries the DS and its RRSIG, and the
// DS is answered at the cut.
func TestSignedDelegationWithDS(t *testing.T) {
	child, err := dnssec.NewKeyset("sec."+zone, dnssec.ED25519, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ds := child.ParentKeys()[0].DSRecord(3600)
	h, _, _ := newSignedHandler(t, testSource(), false, "sec NS ns.sec", "ns.sec A 192.0.2.98", ds.String())
	keys := zoneKeys(t, h)
	m := serve(t, h, doQuery("www.sec."+zone+".", dns.TypeA), udpRecorder())
	if m.Authoritative || types(m.Ns) != "NS,DS,RRSIG" || types(m.Extra) != "A" {
		t.Fatalf("referral: AA %v, authority %s, additional %s", m.Authoritative, types(m.Ns), types(m.Extra))
	}
	checkSigned(t, m, keys)
	m = serve(t, h, doQuery("sec."+zone+".", dns.TypeDS), udpRecorder())
	if !m.Authoritative || types(m.Answer) != "DS,RRSIG" || m.Answer[0].String() != ds.String() {
		t.Fatalf("DS at the cut:\n%s", m)
	}
	checkSigned(t, m, keys)
	// Without DO, the DS is answered too (it is data of this zone).
	if m := serve(t, h, query("sec."+zone+".", dns.TypeDS), udpRecorder()); types(m.Answer) != "DS" {
		t.Fatalf("DS without DO:\n%s", m)
	}
}

// TestUnsignedAnswersUnchanged: to a query without the DO bit (with EDNS
// or without), a signing server sends the very bytes an unsigned one
// does, but for the DNSKEY, CDS and CDNSKEY RRsets it publishes.
func TestUnsignedAnswersUnchanged(t *testing.T) {
	plain := newTestHandler(t, testSource())
	signed, _, _ := newSignedHandler(t, testSource(), false)
	names := []string{sub1, strings.ToUpper(sub1), "empty", "nope", "NoPe", "www", "acme", "dangle", "b", "a.b", "deep.a.b", "host.child",
		"child", "ns1", "loop1", "away", "tochild", "crowd", "long", "dkim._domainkey", `y\.child`}
	qtypes := []uint16{dns.TypeTXT, dns.TypeA, dns.TypeAAAA, dns.TypeNS, dns.TypeSOA, dns.TypeANY, dns.TypeDS, dns.TypeNSEC, dns.TypeRRSIG, dns.TypeCNAME, dns.TypeNXNAME}
	n := 0
	for _, edns := range []bool{false, true} {
		for _, name := range append(names, "") {
			qname := zone + "."
			if name != "" {
				qname = name + "." + qname
			}
			for _, qt := range qtypes {
				for _, w := range []func() *recorder{udpRecorder, tcpRecorder} {
					q := query(qname, qt)
					if edns {
						q.SetEdns0(1232, false)
					}
					a, b := w(), w()
					plain.ServeDNS(a, q)
					signed.ServeDNS(b, q)
					if !bytes.Equal(a.Msgs[0], b.Msgs[0]) {
						t.Errorf("%s %s (EDNS %v, %s): the signing server's answer differs", qname, dns.TypeToString[qt], edns, a.Remote.Network())
					}
					n++
				}
			}
		}
	}
	// The key RRsets are the zone's: answered with or without DO.
	for _, qt := range []uint16{dns.TypeDNSKEY, dns.TypeCDS, dns.TypeCDNSKEY} {
		m := serve(t, signed, query(zone+".", qt), udpRecorder())
		if len(m.Answer) == 0 || m.Answer[0].Header().Rrtype != qt {
			t.Errorf("%s without DO: %s", dns.TypeToString[qt], m)
		}
		if m := serve(t, plain, query(zone+".", qt), udpRecorder()); len(m.Answer) != 0 {
			t.Errorf("%s from an unsigned server: %s", dns.TypeToString[qt], m)
		}
	}
	t.Logf("%d queries compared", n)
}

// TestNXNAMEQueryFormErr: RFC 9824 3.5.
func TestNXNAMEQueryFormErr(t *testing.T) {
	h, _, _ := newSignedHandler(t, testSource(), false)
	if m := serve(t, h, doQuery("nope."+zone+".", dns.TypeNXNAME), udpRecorder()); m.Rcode != dns.RcodeFormatError {
		t.Fatalf("NXNAME query: %s", dns.RcodeToString[m.Rcode])
	}
}

// TestSignaturesCachedPerRRset: the same RRset asked again costs no
// signature, in any case of the name; a changed RRset is signed anew
// (the old signature is never served over the new data); new keys sign
// everything anew.
func TestSignaturesCachedPerRRset(t *testing.T) {
	src := testSource()
	h, s, ks := newSignedHandler(t, src, false)
	keys := zoneKeys(t, h)
	ask := func(name string) *dns.Msg {
		t.Helper()
		m := serve(t, h, doQuery(name, dns.TypeTXT), udpRecorder())
		checkSigned(t, m, keys)
		return m
	}
	name := sub1 + "." + zone + "."
	ask(name)
	before := s.Stats().Signatures
	for range 50 {
		ask(name)
		ask(strings.ToUpper(name))
	}
	if got := s.Stats().Signatures; got != before {
		t.Fatalf("%d signatures for 100 answers of one unchanged RRset", got-before)
	}
	src.mu.Lock()
	src.subs[sub1] = []string{"new-value-0000000000000000000000000000000000"}
	src.mu.Unlock()
	m := ask(name)
	if got := s.Stats().Signatures; got != before+1 {
		t.Fatalf("%d signatures after a change, want 1", got-before)
	}
	if txt := m.Answer[0].(*dns.TXT); txt.Txt[0] != "new-value-0000000000000000000000000000000000" {
		t.Fatalf("answer %s", m.Answer[0])
	}
	// New keys: the old signatures are not served any more.
	ks2, err := dnssec.NewKeyset(zone, dnssec.ECDSAP256SHA256, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetKeys(ks2); err != nil {
		t.Fatal(err)
	}
	m = serve(t, h, doQuery(name, dns.TypeTXT), udpRecorder())
	checkSigned(t, m, zoneKeys(t, h))
	if sig := m.Answer[1].(*dns.RRSIG); sig.KeyTag == ks.Keys[0].Tag() {
		t.Fatal("a signature of the old key was served after the keys changed")
	}
}

// brokenSigner is a test hook: it signs as the real signer, then breaks
// every signature, so that a validator must reject the answers.
type brokenSigner struct{ Signer }

func (b brokenSigner) Sign(dst, rrset []dns.RR) ([]dns.RR, error) {
	n := len(dst)
	out, err := b.Signer.Sign(dst, rrset)
	breakRRSIGs(out[n:])
	return out, err
}

// breakRRSIGs replaces each RRSIG of sigs by a copy with one bit of its
// signature flipped (cached signatures are shared; they stay whole).
func breakRRSIGs(sigs []dns.RR) {
	for i, rr := range sigs {
		c := *rr.(*dns.RRSIG)
		raw, _ := base64.StdEncoding.DecodeString(c.Signature)
		raw[len(raw)/2] ^= 1
		c.Signature = base64.StdEncoding.EncodeToString(raw)
		sigs[i] = &c
	}
}

// BreakRRSIGs is breakRRSIGs for the external tests
// (dnssec_resolver_test.go).
var BreakRRSIGs = breakRRSIGs

// TestBrokenSignatureFailsCheck: the in-process check above rejects a
// broken signature (so it cannot pass on one).
func TestBrokenSignatureFailsCheck(t *testing.T) {
	h, s, _ := newSignedHandler(t, testSource(), false)
	keys := zoneKeys(t, h)
	h.cfg.Signer = brokenSigner{s}
	m := h.Answer(doQuery(sub1+"."+zone+".", dns.TypeTXT), true)
	sig := m.Answer[len(m.Answer)-1].(*dns.RRSIG)
	if err := verify(sig, m.Answer[:len(m.Answer)-1], keys); err == nil {
		t.Fatal("a broken signature verifies")
	}
}

// TestNoSignatureAtStart: however many accounts the zone has, a signer
// starts with none made; answers make them as they need them.
func TestNoSignatureAtStart(t *testing.T) {
	src := &fakeSource{serial: 1, subs: map[string][]string{}}
	for i := range 20000 {
		src.subs[fmt.Sprintf("acct%d", i)] = []string{val1}
	}
	h, s, _ := newSignedHandler(t, src, false)
	if got := s.Stats().Signatures; got != 0 {
		t.Fatalf("%d signatures before any query", got)
	}
	serve(t, h, doQuery("acct7."+zone+".", dns.TypeTXT), udpRecorder())
	if got := s.Stats().Signatures; got != 1 {
		t.Fatalf("%d signatures for one answer, want 1", got)
	}
}

// TestSignedTruncation: a signed answer too big for UDP is truncated (TC)
// within the limit and is whole over TCP.
func TestSignedTruncation(t *testing.T) {
	h, _, _ := newSignedHandler(t, testSource(), false)
	q := doQuery("crowd."+zone+".", dns.TypeTXT)
	w := udpRecorder()
	if m := serve(t, h, q, w); !m.Truncated || len(w.Msgs[0]) > 1232 {
		t.Fatalf("UDP: TC %v, %d bytes", m.Truncated, len(w.Msgs[0]))
	}
	m := serve(t, h, q, tcpRecorder())
	if m.Truncated || types(m.Answer) != strings.Repeat("TXT,", 40)+"RRSIG" {
		t.Fatalf("TCP: TC %v, answer %s", m.Truncated, types(m.Answer))
	}
	checkSigned(t, m, zoneKeys(t, h))
}

// TestSignedStaticRecordsRefused: records the signer makes cannot also be
// static records.
func TestSignedStaticRecordsRefused(t *testing.T) {
	ks, _ := dnssec.NewKeyset(zone, dnssec.ECDSAP256SHA256, false, time.Now())
	s, err := dnssec.NewSigner(dnssec.SignerConfig{Zone: zone}, ks)
	if err != nil {
		t.Fatal(err)
	}
	dk := ks.Keys[0].DNSKEY(300)
	rrs := mustParse(t, dk.String())
	_, err = NewHandler(Config{Zone: zone, NSName: "ns1." + zone, NSAdmin: "h.example.test", Records: rrs, Signer: s}, testSource(), nil)
	if err == nil || !strings.Contains(err.Error(), "makes the DNSKEY records itself") {
		t.Fatalf("static DNSKEY with a signer: %v", err)
	}
}

// TestNextName: the NSEC next name covers nothing but the name, also
// for names too long to take another label.
func TestNextName(t *testing.T) {
	if got := nextName("a.example."); got != `\000.a.example.` {
		t.Fatalf("nextName: %s", got)
	}
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61) + "."
	got := nextName(long)
	want := strings.Repeat("a", 62) + "b." + long[64:]
	if got != want {
		t.Fatalf("nextName(long) = %s, want %s", got, want)
	}
	ff := `\255\255.` + long[64:]
	if got := nextName(ff); !strings.HasPrefix(got, `\000.`) {
		t.Fatalf("nextName of 0xff label: %s", got)
	}
}
