package dnsserver

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/acmebroker/acmebroker/internal/dnstest"
	"github.com/miekg/dns"
)

// fakeSource is a RecordSource over a map; "boom" panics.
type fakeSource struct {
	mu     sync.Mutex
	subs   map[string][]string
	serial uint32
}

func (f *fakeSource) TXT(dst []string, sub string) ([]string, bool) {
	if sub == "boom" {
		panic("source failure")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.subs[sub]
	return append(dst, v...), ok
}

func (f *fakeSource) Serial() uint32 { return f.serial }

// recorder keeps what the handler writes (shared with dnsserver/rrl's tests).
type recorder = dnstest.Recorder

var udpRecorder, tcpRecorder = dnstest.UDPRecorder, dnstest.TCPRecorder

const (
	zone = "auth.example.test"
	sub1 = "d2121c1a-55ec-49c1-832c-695d6a198111"
	val1 = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"
	val2 = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZ2"
)

var staticLines = []string{
	"auth.example.test. NS ns1.auth.example.test.",
	"auth.example.test. NS ns2",
	"ns1 A 192.0.2.53",
	"ns1 AAAA 2001:db8::53",
	"auth.example.test. CAA 0 issue \"letsencrypt.org\"",
	"auth.example.test. MX 10 mail.example.test.",
	"dkim._domainkey 300 TXT \"v=DKIM1; k=rsa; p=MixedCASE\"",
	"www CNAME web",
	"web A 192.0.2.80",
	"loop1 CNAME loop2",
	"loop2 CNAME loop1",
	"away CNAME target.example.net.",
	"deep.a.b A 192.0.2.9",
	"child NS ns.child",
	"ns.child A 192.0.2.99",
	"many TXT \"a\"",
	"tochild CNAME host.child",
	"dangle CNAME nothere",
	"acme CNAME single",
}

func newTestHandler(t testing.TB, src RecordSource) *Handler {
	t.Helper()
	rrs, err := ParseRecords(zone, staticLines)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(Config{
		Zone: zone, NSName: "ns1." + zone, NSAdmin: "hostmaster.example.test",
		Records: rrs, TXTTTL: 1, NegativeTTL: 5, MaxUDPSize: 1232,
		OwnNames: []string{"_acme-challenge." + zone, "_acme-challenge.api." + zone, "_acme-challenge.x.y." + zone + "."},
	}, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func testSource() *fakeSource {
	many := make([]string, 40)
	for i := range many {
		many[i] = strings.Repeat(string(rune('a'+i%26)), 43)
	}
	return &fakeSource{serial: 2024010101, subs: map[string][]string{
		sub1:     {val1, val2},
		"empty":  nil,
		"crowd":  many,
		"web":    {val1}, // registered and static: TXT from the source, A from static
		"single": {val1},
		"long":   {strings.Repeat("x", 255) + strings.Repeat("y", 45)},
		"slash":  {`a\\b`, val1}, // miekg/dns reads escapes in TXT strings
		"blank":  {""},
		// The broker's own challenges (own names): at the apex and below.
		"_acme-challenge":     {val1, val2},
		"_acme-challenge.api": {val2},
	}}
}

// serve runs one query through ServeDNS and returns the unpacked answer.
func serve(t *testing.T, h *Handler, q *dns.Msg, w *recorder) *dns.Msg {
	t.Helper()
	h.ServeDNS(w, q)
	if len(w.Msgs) != 1 {
		t.Fatalf("%d responses written, want 1", len(w.Msgs))
	}
	m := new(dns.Msg)
	if err := m.Unpack(w.Msgs[0]); err != nil {
		t.Fatalf("response does not unpack: %v", err)
	}
	if m.Id != q.Id || !m.Response {
		t.Fatalf("response id %d (query %d), QR %v", m.Id, q.Id, m.Response)
	}
	return m
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	return m
}

// answerTest is a query and the answer the handler gives it.
type answerTest struct {
	name  string
	qname string
	qtype uint16
	want  want
}

type want struct {
	rcode  int
	aa     bool
	answer []string // RR strings, in order
	ns     []string // types in the authority section
	extra  []string // types in the additional section (besides OPT)
	soaTTL uint32   // checked when an SOA is in authority
}

// answerTests is the handler's table (TestAnswers); the fast path's
// byte-identity test goes over it too.
func answerTests() []answerTest {
	soaNeg := []string{"SOA"}
	return []answerTest{
		{"TXT two values", sub1 + ".auth.example.test.", dns.TypeTXT, want{rcode: 0, aa: true,
			answer: []string{sub1 + ".auth.example.test.\t1\tIN\tTXT\t\"" + val1 + "\"", sub1 + ".auth.example.test.\t1\tIN\tTXT\t\"" + val2 + "\""}}},
		{"TXT echoes 0x20 case", strings.ToUpper(sub1) + ".aUtH.eXaMpLe.TeSt.", dns.TypeTXT, want{rcode: 0, aa: true,
			answer: []string{strings.ToUpper(sub1) + ".aUtH.eXaMpLe.TeSt.\t1\tIN\tTXT\t\"" + val1 + "\"", strings.ToUpper(sub1) + ".aUtH.eXaMpLe.TeSt.\t1\tIN\tTXT\t\"" + val2 + "\""}}},
		{"registered, no value yet: NODATA", "empty.auth.example.test.", dns.TypeTXT, want{rcode: 0, aa: true, ns: soaNeg, soaTTL: 5}},
		{"registered, other type: NODATA", sub1 + ".auth.example.test.", dns.TypeA, want{rcode: 0, aa: true, ns: soaNeg, soaTTL: 5}},
		{"registered, AAAA: NODATA", sub1 + ".auth.example.test.", dns.TypeAAAA, want{rcode: 0, aa: true, ns: soaNeg, soaTTL: 5}},
		{"unknown name: NXDOMAIN", "nope.auth.example.test.", dns.TypeTXT, want{rcode: dns.RcodeNameError, aa: true, ns: soaNeg, soaTTL: 5}},
		{"below a registered name: NXDOMAIN", "x." + sub1 + ".auth.example.test.", dns.TypeTXT, want{rcode: dns.RcodeNameError, aa: true, ns: soaNeg}},
		{"out of zone: REFUSED", "example.com.", dns.TypeTXT, want{rcode: dns.RcodeRefused}},
		{"parent of zone: REFUSED", "example.test.", dns.TypeSOA, want{rcode: dns.RcodeRefused}},
		{"suffix lookalike: REFUSED", "xauth.example.test.", dns.TypeTXT, want{rcode: dns.RcodeRefused}},
		{"apex SOA", "auth.example.test.", dns.TypeSOA, want{rcode: 0, aa: true,
			answer: []string{"auth.example.test.\t3600\tIN\tSOA\tns1.auth.example.test. hostmaster.example.test. 2024010101 300 60 1209600 5"}}},
		{"apex NS with glue", "auth.example.test.", dns.TypeNS, want{rcode: 0, aa: true,
			answer: []string{"auth.example.test.\t3600\tIN\tNS\tns1.auth.example.test.", "auth.example.test.\t3600\tIN\tNS\tns2.auth.example.test."},
			extra:  []string{"A", "AAAA"}}},
		{"apex CAA", "auth.example.test.", dns.TypeCAA, want{rcode: 0, aa: true, answer: []string{"auth.example.test.\t3600\tIN\tCAA\t0 issue \"letsencrypt.org\""}}},
		{"apex MX", "auth.example.test.", dns.TypeMX, want{rcode: 0, aa: true, answer: []string{"auth.example.test.\t3600\tIN\tMX\t10 mail.example.test."}}},
		{"apex A: NODATA", "auth.example.test.", dns.TypeA, want{rcode: 0, aa: true, ns: soaNeg}},
		{"apex ANY: RFC 8482", "auth.example.test.", dns.TypeANY, want{rcode: 0, aa: true, answer: []string{"auth.example.test.\t1\tIN\tHINFO\t\"RFC8482\" \"\""}}},
		{"registered ANY: RFC 8482", sub1 + ".auth.example.test.", dns.TypeANY, want{rcode: 0, aa: true, answer: []string{sub1 + ".auth.example.test.\t1\tIN\tHINFO\t\"RFC8482\" \"\""}}},
		{"static A", "ns1.auth.example.test.", dns.TypeA, want{rcode: 0, aa: true, answer: []string{"ns1.auth.example.test.\t3600\tIN\tA\t192.0.2.53"}}},
		{"static A in query case", "NS1.Auth.Example.Test.", dns.TypeA, want{rcode: 0, aa: true, answer: []string{"NS1.Auth.Example.Test.\t3600\tIN\tA\t192.0.2.53"}}},
		{"static TXT keeps its case", "dkim._domainkey.auth.example.test.", dns.TypeTXT, want{rcode: 0, aa: true,
			answer: []string{"dkim._domainkey.auth.example.test.\t300\tIN\tTXT\t\"v=DKIM1; k=rsa; p=MixedCASE\""}}},
		{"static name, other type: NODATA", "ns1.auth.example.test.", dns.TypeTXT, want{rcode: 0, aa: true, ns: soaNeg}},
		{"CNAME followed in zone", "www.auth.example.test.", dns.TypeA, want{rcode: 0, aa: true,
			answer: []string{"www.auth.example.test.\t3600\tIN\tCNAME\tweb.auth.example.test.", "web.auth.example.test.\t3600\tIN\tA\t192.0.2.80"}}},
		{"CNAME itself", "www.auth.example.test.", dns.TypeCNAME, want{rcode: 0, aa: true,
			answer: []string{"www.auth.example.test.\t3600\tIN\tCNAME\tweb.auth.example.test."}}},
		{"CNAME to a registered name's TXT", "www.auth.example.test.", dns.TypeTXT, want{rcode: 0, aa: true,
			answer: []string{"www.auth.example.test.\t3600\tIN\tCNAME\tweb.auth.example.test.", "web.auth.example.test.\t1\tIN\tTXT\t\"" + val1 + "\""}}},
		{"CNAME out of zone: stop there", "away.auth.example.test.", dns.TypeA, want{rcode: 0, aa: true,
			answer: []string{"away.auth.example.test.\t3600\tIN\tCNAME\ttarget.example.net."}}},
		{"CNAME loop: each link once", "loop1.auth.example.test.", dns.TypeA, want{rcode: 0, aa: true,
			answer: []string{"loop1.auth.example.test.\t3600\tIN\tCNAME\tloop2.auth.example.test.", "loop2.auth.example.test.\t3600\tIN\tCNAME\tloop1.auth.example.test."}}},
		{"CNAME into a delegation: the CNAME only", "tochild.auth.example.test.", dns.TypeA, want{rcode: 0, aa: true,
			answer: []string{"tochild.auth.example.test.\t3600\tIN\tCNAME\thost.child.auth.example.test."}}},
		{"CNAME to a missing name: NXDOMAIN with the CNAME (RFC 6604)", "dangle.auth.example.test.", dns.TypeA, want{rcode: dns.RcodeNameError, aa: true,
			answer: []string{"dangle.auth.example.test.\t3600\tIN\tCNAME\tnothere.auth.example.test."}, ns: soaNeg, soaTTL: 5}},
		{"CNAME to a challenge name: TXT from the source", "ACME.auth.example.test.", dns.TypeTXT, want{rcode: 0, aa: true,
			answer: []string{"ACME.auth.example.test.\t3600\tIN\tCNAME\tsingle.auth.example.test.", "single.auth.example.test.\t1\tIN\tTXT\t\"" + val1 + "\""}}},
		{"CNAME to a challenge name, A: NODATA after the CNAME", "acme.auth.example.test.", dns.TypeA, want{rcode: 0, aa: true,
			answer: []string{"acme.auth.example.test.\t3600\tIN\tCNAME\tsingle.auth.example.test."}, ns: soaNeg, soaTTL: 5}},
		{"registered, no value, ANY: RFC 8482", "empty.auth.example.test.", dns.TypeANY, want{rcode: 0, aa: true, answer: []string{"empty.auth.example.test.\t1\tIN\tHINFO\t\"RFC8482\" \"\""}}},
		{"unknown name, ANY: NXDOMAIN", "nope.auth.example.test.", dns.TypeANY, want{rcode: dns.RcodeNameError, aa: true, ns: soaNeg}},
		{"apex TXT: NODATA", "auth.example.test.", dns.TypeTXT, want{rcode: 0, aa: true, ns: soaNeg, soaTTL: 5}},
		{"empty non-terminal, TXT: NODATA", "b.auth.example.test.", dns.TypeTXT, want{rcode: 0, aa: true, ns: soaNeg, soaTTL: 5}},
		{"empty non-terminal: NODATA", "a.b.auth.example.test.", dns.TypeA, want{rcode: 0, aa: true, ns: soaNeg}},
		{"empty non-terminal b: NODATA", "b.auth.example.test.", dns.TypeA, want{rcode: 0, aa: true, ns: soaNeg}},
		{"deep name", "deep.a.b.auth.example.test.", dns.TypeA, want{rcode: 0, aa: true, answer: []string{"deep.a.b.auth.example.test.\t3600\tIN\tA\t192.0.2.9"}}},
		{"delegation: referral with glue", "host.child.auth.example.test.", dns.TypeA, want{rcode: 0, aa: false, ns: []string{"NS"}, extra: []string{"A"}}},
		{"delegation point itself", "child.auth.example.test.", dns.TypeNS, want{rcode: 0, aa: false, ns: []string{"NS"}, extra: []string{"A"}}},
		{"DS at the cut: ours, NODATA", "child.auth.example.test.", dns.TypeDS, want{rcode: 0, aa: true, ns: soaNeg}},
		{"DS below the cut: referral", "host.child.auth.example.test.", dns.TypeDS, want{rcode: 0, aa: false, ns: []string{"NS"}, extra: []string{"A"}}},
		// "y\.child" is one label "y.child" directly below the apex, not a
		// name below the cut at child.
		{"escaped dot is inside a label", `y\.child.auth.example.test.`, dns.TypeA, want{rcode: dns.RcodeNameError, aa: true, ns: soaNeg}},
		{"source panics: SERVFAIL", "boom.auth.example.test.", dns.TypeTXT, want{rcode: dns.RcodeServerFailure}},
		{"own challenge at the apex", "_ACME-challenge.auth.example.test.", dns.TypeTXT, want{rcode: 0, aa: true,
			answer: []string{"_ACME-challenge.auth.example.test.\t1\tIN\tTXT\t\"" + val1 + "\"", "_ACME-challenge.auth.example.test.\t1\tIN\tTXT\t\"" + val2 + "\""}}},
		{"own challenge below the apex", "_acme-challenge.api.auth.example.test.", dns.TypeTXT, want{rcode: 0, aa: true,
			answer: []string{"_acme-challenge.api.auth.example.test.\t1\tIN\tTXT\t\"" + val2 + "\""}}},
		{"own challenge, other type: NODATA", "_acme-challenge.api.auth.example.test.", dns.TypeA, want{rcode: 0, aa: true, ns: soaNeg, soaTTL: 5}},
		{"own name with no value: NXDOMAIN", "_acme-challenge.x.y.auth.example.test.", dns.TypeTXT, want{rcode: dns.RcodeNameError, aa: true, ns: soaNeg, soaTTL: 5}},
		{"above an own name: NODATA (empty non-terminal)", "api.auth.example.test.", dns.TypeA, want{rcode: 0, aa: true, ns: soaNeg, soaTTL: 5}},
		{"above an own name with no value: NODATA", "y.auth.example.test.", dns.TypeTXT, want{rcode: 0, aa: true, ns: soaNeg, soaTTL: 5}},
		{"an own name's label below a subdomain is not the source's", "_acme-challenge." + sub1 + ".auth.example.test.", dns.TypeTXT, want{rcode: dns.RcodeNameError, aa: true, ns: soaNeg, soaTTL: 5}},
		{"a subdomain-like name two labels deep is not the source's", "x.web.auth.example.test.", dns.TypeTXT, want{rcode: dns.RcodeNameError, aa: true, ns: soaNeg, soaTTL: 5}},
		{"AXFR: REFUSED", "auth.example.test.", dns.TypeAXFR, want{rcode: dns.RcodeRefused}},
		{"IXFR: REFUSED", "auth.example.test.", dns.TypeIXFR, want{rcode: dns.RcodeRefused}},
	}
}

func TestAnswers(t *testing.T) {
	h := newTestHandler(t, testSource())
	for _, tc := range answerTests() {
		t.Run(tc.name, func(t *testing.T) {
			q := query(tc.qname, tc.qtype)
			m := serve(t, h, q, udpRecorder())
			if m.Rcode != tc.want.rcode {
				t.Fatalf("rcode %s, want %s\n%s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.want.rcode], m)
			}
			if m.Authoritative != tc.want.aa || m.RecursionAvailable {
				t.Fatalf("AA %v RA %v, want AA %v and no RA", m.Authoritative, m.RecursionAvailable, tc.want.aa)
			}
			if len(m.Question) != 1 || m.Question[0].Name != tc.qname {
				t.Fatalf("question %v, want %s echoed as asked", m.Question, tc.qname)
			}
			var got []string
			for _, rr := range m.Answer {
				got = append(got, rr.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want.answer, "\n") {
				t.Fatalf("answer:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want.answer, "\n"))
			}
			if types(m.Ns) != strings.Join(tc.want.ns, ",") {
				t.Fatalf("authority %s, want %v\n%s", types(m.Ns), tc.want.ns, m)
			}
			if tc.want.soaTTL != 0 {
				soa := m.Ns[0].(*dns.SOA)
				if soa.Hdr.Ttl != tc.want.soaTTL || soa.Minttl != tc.want.soaTTL || soa.Serial != 2024010101 {
					t.Fatalf("negative SOA %s: want TTL and minimum %d", soa, tc.want.soaTTL)
				}
			}
			if types(m.Extra) != strings.Join(tc.want.extra, ",") {
				t.Fatalf("additional %s, want %v", types(m.Extra), tc.want.extra)
			}
		})
	}
}

func types(rrs []dns.RR) string {
	var s []string
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			s = append(s, dns.TypeToString[rr.Header().Rrtype])
		}
	}
	return strings.Join(s, ",")
}

func TestSerialFollowsSource(t *testing.T) {
	src := testSource()
	h := newTestHandler(t, src)
	soa := func() uint32 {
		return serve(t, h, query(zone+".", dns.TypeSOA), udpRecorder()).Answer[0].(*dns.SOA).Serial
	}
	before := soa()
	src.serial++
	if after := soa(); after != before+1 {
		t.Fatalf("serial %d after a change, was %d", after, before)
	}
}

func TestValueServedAtOnce(t *testing.T) {
	src := testSource()
	h := newTestHandler(t, src)
	q := query("new.auth.example.test.", dns.TypeTXT)
	if m := serve(t, h, q, udpRecorder()); m.Rcode != dns.RcodeNameError {
		t.Fatalf("before registration: %s", dns.RcodeToString[m.Rcode])
	}
	src.mu.Lock()
	src.subs["new"] = []string{val1}
	src.mu.Unlock()
	if m := serve(t, h, q, udpRecorder()); len(m.Answer) != 1 {
		t.Fatalf("after the update: %s", m)
	}
}

func TestEDNS(t *testing.T) {
	h := newTestHandler(t, testSource())
	t.Run("echoed with our size and the DO bit", func(t *testing.T) {
		q := query(sub1+"."+zone+".", dns.TypeTXT)
		q.SetEdns0(4096, true)
		m := serve(t, h, q, udpRecorder())
		opt := m.IsEdns0()
		if opt == nil || opt.UDPSize() != 1232 || !opt.Do() || opt.Version() != 0 || len(m.Answer) != 2 {
			t.Fatalf("OPT %v, answer %d", opt, len(m.Answer))
		}
	})
	t.Run("no OPT without EDNS in the query", func(t *testing.T) {
		m := serve(t, h, query(sub1+"."+zone+".", dns.TypeTXT), udpRecorder())
		if m.IsEdns0() != nil {
			t.Fatal("OPT in the answer to a query without EDNS")
		}
	})
	t.Run("DO clear stays clear", func(t *testing.T) {
		q := query(sub1+"."+zone+".", dns.TypeTXT)
		q.SetEdns0(512, false)
		m := serve(t, h, q, udpRecorder())
		if opt := m.IsEdns0(); opt == nil || opt.Do() || opt.UDPSize() != 1232 {
			t.Fatalf("OPT %v, want DO clear and our size 1232", opt)
		}
	})
	// RFC 6891 6.1.1: every response to a query with EDNS carries an OPT,
	// error answers included.
	t.Run("SERVFAIL keeps the OPT", func(t *testing.T) {
		q := query("boom."+zone+".", dns.TypeTXT)
		q.SetEdns0(1232, true)
		m := serve(t, h, q, udpRecorder())
		if m.Rcode != dns.RcodeServerFailure || m.IsEdns0() == nil || !m.IsEdns0().Do() {
			t.Fatalf("rcode %s, OPT %v", dns.RcodeToString[m.Rcode], m.IsEdns0())
		}
	})
	t.Run("FORMERR keeps the OPT", func(t *testing.T) {
		q := query(sub1+"."+zone+".", dns.TypeTXT)
		q.SetEdns0(1232, false)
		q.Question = nil
		m := serve(t, h, q, udpRecorder())
		if m.Rcode != dns.RcodeFormatError || m.IsEdns0() == nil {
			t.Fatalf("rcode %s, OPT %v", dns.RcodeToString[m.Rcode], m.IsEdns0())
		}
	})
	t.Run("version 1: BADVERS", func(t *testing.T) {
		q := query(sub1+"."+zone+".", dns.TypeTXT)
		q.SetEdns0(1232, false)
		q.IsEdns0().SetVersion(1)
		m := serve(t, h, q, udpRecorder())
		if m.Rcode != dns.RcodeBadVers || len(m.Answer) != 0 || m.IsEdns0() == nil || m.IsEdns0().Version() != 0 {
			t.Fatalf("rcode %s, answer %d, OPT %v", dns.RcodeToString[m.Rcode], len(m.Answer), m.IsEdns0())
		}
	})
}

func TestTruncation(t *testing.T) {
	h := newTestHandler(t, testSource())
	name := "crowd." + zone + "." // 40 values of 43 bytes: about 2.4 KB
	t.Run("UDP without EDNS: TC within 512", func(t *testing.T) {
		w := udpRecorder()
		m := serve(t, h, query(name, dns.TypeTXT), w)
		if !m.Truncated || len(w.Msgs[0]) > 512 {
			t.Fatalf("TC %v, %d bytes", m.Truncated, len(w.Msgs[0]))
		}
	})
	t.Run("UDP with EDNS 1232: TC within 1232", func(t *testing.T) {
		q := query(name, dns.TypeTXT)
		q.SetEdns0(4096, false)
		w := udpRecorder()
		m := serve(t, h, q, w)
		if !m.Truncated || len(w.Msgs[0]) > 1232 || m.IsEdns0() == nil {
			t.Fatalf("TC %v, %d bytes, OPT %v", m.Truncated, len(w.Msgs[0]), m.IsEdns0())
		}
	})
	// The client's size counts when smaller than ours; below 512 it is 512.
	for _, tc := range []struct{ client, limit int }{{800, 800}, {512, 512}, {100, 512}, {0, 512}, {65535, 1232}} {
		t.Run(fmt.Sprintf("UDP with EDNS %d: TC within %d", tc.client, tc.limit), func(t *testing.T) {
			q := query(name, dns.TypeTXT)
			q.SetEdns0(uint16(tc.client), true)
			w := udpRecorder()
			m := serve(t, h, q, w)
			if !m.Truncated || len(w.Msgs[0]) > tc.limit || len(w.Msgs[0]) < tc.limit-100 || len(m.Answer) == 0 {
				t.Fatalf("TC %v, %d bytes, %d answers: want TC and as many as fit in %d", m.Truncated, len(w.Msgs[0]), len(m.Answer), tc.limit)
			}
			if opt := m.IsEdns0(); opt == nil || !opt.Do() {
				t.Fatalf("truncated answer lost its OPT: %v", opt)
			}
		})
	}
	t.Run("TCP with EDNS 512: everything", func(t *testing.T) {
		q := query(name, dns.TypeTXT)
		q.SetEdns0(512, false)
		m := serve(t, h, q, tcpRecorder())
		if m.Truncated || len(m.Answer) != 40 || m.IsEdns0() == nil {
			t.Fatalf("TC %v, %d answers", m.Truncated, len(m.Answer))
		}
	})
	t.Run("TCP: everything", func(t *testing.T) {
		m := serve(t, h, query(name, dns.TypeTXT), tcpRecorder())
		if m.Truncated || len(m.Answer) != 40 {
			t.Fatalf("TC %v, %d answers", m.Truncated, len(m.Answer))
		}
	})
	t.Run("small answer over UDP: no TC", func(t *testing.T) {
		if m := serve(t, h, query(sub1+"."+zone+".", dns.TypeTXT), udpRecorder()); m.Truncated {
			t.Fatal("TC on a small answer")
		}
	})
}

func TestOpcodesAndClasses(t *testing.T) {
	h := newTestHandler(t, testSource())
	tests := []struct {
		name  string
		mod   func(*dns.Msg)
		rcode int
	}{
		{"NOTIFY from a stranger", func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }, dns.RcodeRefused},
		{"UPDATE", func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate }, dns.RcodeRefused},
		{"STATUS", func(m *dns.Msg) { m.Opcode = dns.OpcodeStatus }, dns.RcodeNotImplemented},
		{"IQUERY", func(m *dns.Msg) { m.Opcode = dns.OpcodeIQuery }, dns.RcodeNotImplemented},
		{"class CH", func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }, dns.RcodeRefused},
		{"class ANY answers as IN", func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassANY }, dns.RcodeSuccess},
		{"qtype OPT", func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeOPT }, dns.RcodeFormatError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := query(sub1+"."+zone+".", dns.TypeTXT)
			tc.mod(q)
			if m := serve(t, h, q, udpRecorder()); m.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
			}
		})
	}
	t.Run("no question: FORMERR", func(t *testing.T) {
		q := query(sub1+"."+zone+".", dns.TypeTXT)
		q.Question = nil
		if m := serve(t, h, q, udpRecorder()); m.Rcode != dns.RcodeFormatError {
			t.Fatalf("rcode %s", dns.RcodeToString[m.Rcode])
		}
	})
}

func TestAcceptMsg(t *testing.T) {
	hdr := func(qr bool, opcode int, qd, an, ns, ar uint16) dns.Header {
		bits := uint16(opcode&0xF) << 11
		if qr {
			bits |= 1 << 15
		}
		return dns.Header{Bits: bits, Qdcount: qd, Ancount: an, Nscount: ns, Arcount: ar}
	}
	tests := []struct {
		name string
		h    dns.Header
		want dns.MsgAcceptAction
	}{
		{"query", hdr(false, dns.OpcodeQuery, 1, 0, 0, 1), dns.MsgAccept},
		{"a response: never answered", hdr(true, dns.OpcodeQuery, 1, 1, 0, 0), dns.MsgIgnore},
		{"two questions", hdr(false, dns.OpcodeQuery, 2, 0, 0, 0), dns.MsgReject},
		{"no question", hdr(false, dns.OpcodeQuery, 0, 0, 0, 0), dns.MsgReject},
		{"answers in a query", hdr(false, dns.OpcodeQuery, 1, 5, 0, 0), dns.MsgReject},
		{"notify", hdr(false, dns.OpcodeNotify, 1, 1, 0, 0), dns.MsgAccept},
		{"update with records", hdr(false, dns.OpcodeUpdate, 1, 0, 3, 0), dns.MsgAccept},
		{"opcode 9", hdr(false, 9, 1, 0, 0, 0), dns.MsgRejectNotImplemented},
	}
	for _, tc := range tests {
		if got := acceptMsg(tc.h); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseRecords(t *testing.T) {
	good := []string{
		"auth.example.test. NS ns1.auth.example.test.",
		"ns1 A 192.0.2.1",
		"ns1.auth.example.test. 60 IN AAAA 2001:db8::1",
		"@ CAA 0 issue \"letsencrypt.org\"",
		"txt TXT \"Case Kept\"",
	}
	rrs, err := ParseRecords("Auth.Example.Test", good)
	if err != nil || len(rrs) != len(good) {
		t.Fatalf("%v %v", rrs, err)
	}
	if rrs[1].Header().Name != "ns1.auth.example.test." || rrs[1].Header().Ttl != 3600 || rrs[2].Header().Ttl != 60 {
		t.Fatalf("relative name or TTL: %v / %v", rrs[1], rrs[2])
	}
	if rrs[3].Header().Name != "auth.example.test." || rrs[4].(*dns.TXT).Txt[0] != "Case Kept" {
		t.Fatalf("@ or TXT case: %v / %v", rrs[3], rrs[4])
	}
	bad := []struct{ line, want string }{
		{"", "empty"},
		{"   ", "empty"},
		{"www.example.com. A 192.0.2.1", "outside the zone"},
		{"ns1 A 999.0.2.1", "not a valid record"},
		{"ns1 BOGUS x", "not a valid record"},
		{"auth.example.test. SOA a. b. 1 2 3 4 5", "SOA is generated"},
		{"* A 192.0.2.1", "wildcard"},
		{"auth.example.test. CNAME x.example.com.", "apex"},
		{"ns1 CH A 192.0.2.1", "class"},
		{"a A 192.0.2.1\nb A 192.0.2.2", "one record per line"},
		{"$INCLUDE /etc/passwd", "not a valid record"},
		{"; only a comment", "empty"},
		{"a.*.b A 192.0.2.1", "wildcard"},
		{"@ CNAME x.example.com.", "apex"},
		{"ns1 A 192.0.2.1 ns2 A 192.0.2.2", "not a valid record"},
		{"TXT \"no owner\"", "not a valid record"},
	}
	for _, tc := range bad {
		_, err := ParseRecords(zone, []string{"ns1 A 192.0.2.1", tc.line})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "record 2") {
			t.Errorf("%q: error %v, want one about %q naming record 2", tc.line, err, tc.want)
		}
	}
	// Owners and NS targets are matched in lower case; data keeps its case.
	rrs = mustParse(t, "NS1.AUTH.example.test. A 192.0.2.1", "Child NS NS.Child", "@ TXT \"MiXeD\"", "deep 60 IN TXT \"a\" \"B\"")
	if rrs[0].Header().Name != "ns1.auth.example.test." || rrs[1].Header().Name != "child.auth.example.test." ||
		rrs[1].(*dns.NS).Ns != "ns.child.auth.example.test." {
		t.Fatalf("names not lower-cased: %v / %v", rrs[0], rrs[1])
	}
	if rrs[2].(*dns.TXT).Txt[0] != "MiXeD" || strings.Join(rrs[3].(*dns.TXT).Txt, ",") != "a,B" {
		t.Fatalf("TXT data changed: %v / %v", rrs[2], rrs[3])
	}
	if rrs, err := ParseRecords(zone, nil); err != nil || len(rrs) != 0 {
		t.Fatalf("no lines: %v %v", rrs, err)
	}
}

func mustParse(t *testing.T, lines ...string) []dns.RR {
	t.Helper()
	rrs, err := ParseRecords(zone, lines)
	if err != nil {
		t.Fatal(err)
	}
	return rrs
}

func TestPanicIsLoggedAndSurvived(t *testing.T) {
	var logs bytes.Buffer
	rrs := mustParse(t, staticLines...)
	h, err := NewHandler(Config{Zone: zone, NSName: "ns1." + zone, NSAdmin: "hostmaster.example.test", Records: rrs},
		testSource(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if m := serve(t, h, query("boom."+zone+".", dns.TypeTXT), udpRecorder()); m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	if !strings.Contains(logs.String(), "dns handler panic") || !strings.Contains(logs.String(), "remote=192.0.2.1:5353") {
		t.Fatalf("panic not logged with the remote: %q", logs.String())
	}
	// The handler still answers afterwards.
	if m := serve(t, h, query(sub1+"."+zone+".", dns.TypeTXT), udpRecorder()); len(m.Answer) != 2 {
		t.Fatalf("after a panic: %s", m)
	}
}

func TestLongTXTSplit(t *testing.T) {
	h := newTestHandler(t, testSource())
	m := serve(t, h, query("long."+zone+".", dns.TypeTXT), tcpRecorder())
	if len(m.Answer) != 1 {
		t.Fatalf("answer %v", m.Answer)
	}
	txt := m.Answer[0].(*dns.TXT).Txt
	if len(txt) != 2 || txt[0] != strings.Repeat("x", 255) || txt[1] != strings.Repeat("y", 45) {
		t.Fatalf("character-strings %q: want the value split at 255 bytes", txt)
	}
}

func TestCNAMEChainBounded(t *testing.T) {
	var lines []string
	for i := range 20 {
		lines = append(lines, fmt.Sprintf("c%d CNAME c%d", i, i+1))
	}
	lines = append(lines, "c20 A 192.0.2.20")
	rrs := mustParse(t, lines...)
	h, err := NewHandler(Config{Zone: zone, NSName: "ns1." + zone, NSAdmin: "h." + zone, Records: rrs}, testSource(), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := serve(t, h, query("c0."+zone+".", dns.TypeA), udpRecorder())
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != maxChase+1 {
		t.Fatalf("rcode %s, %d records: want the first %d links", dns.RcodeToString[m.Rcode], len(m.Answer), maxChase+1)
	}
	for i, rr := range m.Answer {
		if _, ok := rr.(*dns.CNAME); !ok {
			t.Fatalf("record %d is %s, want only CNAMEs", i, rr)
		}
	}
	// A chain within the bound is followed to its end.
	m = serve(t, h, query("c15."+zone+".", dns.TypeA), udpRecorder())
	if len(m.Answer) != 6 || m.Answer[5].Header().Rrtype != dns.TypeA {
		t.Fatalf("short chain: %v", m.Answer)
	}
}

func TestApexNSFromNSName(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		extra string
	}{
		{"no static data", nil, ""},
		{"NSName has a static address: glue", []string{"ns1 A 192.0.2.53"}, "A"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := NewHandler(Config{Zone: zone, NSName: "NS1.Auth.Example.Test", NSAdmin: "hostmaster.example.test",
				Records: mustParse(t, tc.lines...), NegativeTTL: 5}, testSource(), nil)
			if err != nil {
				t.Fatal(err)
			}
			m := serve(t, h, query(zone+".", dns.TypeNS), udpRecorder())
			want := "auth.example.test.\t3600\tIN\tNS\tns1.auth.example.test."
			if !m.Authoritative || len(m.Answer) != 1 || m.Answer[0].String() != want {
				t.Fatalf("AA %v, answer %v: want %s", m.Authoritative, m.Answer, want)
			}
			if types(m.Extra) != tc.extra {
				t.Fatalf("additional %s, want %q", types(m.Extra), tc.extra)
			}
			soa := serve(t, h, query(zone+".", dns.TypeSOA), udpRecorder()).Answer[0].(*dns.SOA)
			if soa.Ns != "ns1.auth.example.test." || soa.Mbox != "hostmaster.example.test." {
				t.Fatalf("SOA %s", soa)
			}
		})
	}
}

func TestNewHandler(t *testing.T) {
	good := Config{Zone: zone, NSName: "ns1." + zone, NSAdmin: "h." + zone}
	outside := &dns.A{Hdr: dns.RR_Header{Name: "www.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET}}
	bad := []struct {
		name string
		mod  func(*Config)
		src  RecordSource
		want string
	}{
		{"no zone", func(c *Config) { c.Zone = "" }, testSource(), "zone is required"},
		{"no source", func(*Config) {}, nil, "record source"},
		{"no nsname", func(c *Config) { c.NSName = "" }, testSource(), "nsname"},
		{"no nsadmin", func(c *Config) { c.NSAdmin = "" }, testSource(), "nsadmin"},
		{"bad zone", func(c *Config) { c.Zone = "a..b" }, testSource(), "not a valid name"},
		{"static record outside", func(c *Config) { c.Records = []dns.RR{outside} }, testSource(), "outside the zone"},
		{"CNAME beside other data", func(c *Config) { c.Records = mustParse(t, "www CNAME a", "www A 192.0.2.1") }, testSource(), "CNAME"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			if _, err := NewHandler(cfg, tc.src, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}

	// Defaults: SOA TTL 3600, UDP size 1232; a UDP size below 512 is raised.
	for _, tc := range []struct{ set, want uint16 }{{0, 1232}, {100, 512}, {4096, 4096}} {
		cfg := good
		cfg.MaxUDPSize = tc.set
		h, err := NewHandler(cfg, testSource(), nil)
		if err != nil {
			t.Fatal(err)
		}
		q := query(zone+".", dns.TypeSOA)
		q.SetEdns0(4096, false)
		m := serve(t, h, q, udpRecorder())
		if got := m.IsEdns0().UDPSize(); got != tc.want {
			t.Errorf("MaxUDPSize %d: advertised %d, want %d", tc.set, got, tc.want)
		}
		if ttl := m.Answer[0].Header().Ttl; ttl != 3600 {
			t.Errorf("SOA TTL %d, want the default 3600", ttl)
		}
	}
}

// TestConcurrentServe runs queries from many goroutines while the source
// changes, for the race detector: the handler shares its static records
// and buffer pool between queries.
func TestConcurrentServe(t *testing.T) {
	src := testSource()
	h := newTestHandler(t, src)
	names := []struct {
		name  string
		qtype uint16
	}{
		{sub1 + "." + zone + ".", dns.TypeTXT},
		{"NS1." + zone + ".", dns.TypeA},
		{"www." + zone + ".", dns.TypeA},
		{zone + ".", dns.TypeNS},
		{"host.child." + zone + ".", dns.TypeA},
		{"crowd." + zone + ".", dns.TypeTXT},
		{"nope." + zone + ".", dns.TypeTXT},
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				n := names[(g+i)%len(names)]
				w := udpRecorder()
				if i%2 == 0 {
					w = tcpRecorder()
				}
				q := query(n.name, n.qtype)
				h.ServeDNS(w, q)
				m := new(dns.Msg)
				if len(w.Msgs) != 1 || m.Unpack(w.Msgs[0]) != nil || m.Id != q.Id || m.Question[0].Name != n.name {
					t.Errorf("%s: bad answer", n.name)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			src.mu.Lock()
			src.subs["new"] = []string{fmt.Sprint(i)}
			src.mu.Unlock()
		}
	})
	wg.Wait()
}

func TestOwnNameProblem(t *testing.T) {
	rrs := mustParse(t, "_acme-challenge.www TXT \"static\"", "child NS ns.child", "ns.child A 192.0.2.1", "auth.example.test. NS ns1")
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"_acme-challenge.auth.example.test.", true},
		{"_acme-challenge.api.auth.example.test", true},
		{"_ACME-challenge.WWW.auth.example.test.", false},
		{"_acme-challenge.child.auth.example.test.", false},
		{"_acme-challenge.x.child.auth.example.test.", false},
		{"_acme-challenge.example.test.", false},
	} {
		if why := OwnNameProblem(zone, rrs, tc.name); (why == "") != tc.ok {
			t.Errorf("OwnNameProblem(%s) = %q, want ok %v", tc.name, why, tc.ok)
		}
	}
}
