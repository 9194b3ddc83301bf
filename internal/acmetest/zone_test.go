package acmetest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestZoneAnswer(t *testing.T) {
	z := newZone(t, "Example.TEST")
	z.SetCNAME("_acme-challenge.example.test", "abc.auth.example.test")
	z.SetCNAME("_acme-challenge.www.example.test.", "Def.Auth.Example.Test.")
	z.SetTXT("txt.example.test", "v=1", strings.Repeat("x", 300))
	z.SetTXT("gone.example.test", "x")
	z.Remove("gone.example.test")
	z.SetTXT("replaced.example.test", "x")
	z.SetCNAME("replaced.example.test", "t.example.net")

	tests := []struct {
		qname  string
		qtype  uint16
		rcode  int
		answer []string // rr.String() with tabs replaced by spaces
		ns     []uint16
	}{
		{"example.test.", dns.TypeSOA, dns.RcodeSuccess, []string{"example.test. 0 IN SOA ns.example.test. hostmaster.example.test. 8 3600 600 86400 0"}, nil},
		{"EXAMPLE.test.", dns.TypeNS, dns.RcodeSuccess, []string{"example.test. 0 IN NS ns.example.test."}, nil},
		{"example.test.", dns.TypeA, dns.RcodeSuccess, nil, []uint16{dns.TypeSOA}},
		{"ns.example.test.", dns.TypeA, dns.RcodeSuccess, []string{"ns.example.test. 0 IN A 127.0.0.1"}, nil},
		{"_acme-challenge.example.test.", dns.TypeTXT, dns.RcodeSuccess, []string{"_acme-challenge.example.test. 0 IN CNAME abc.auth.example.test."}, nil},
		{"_ACME-challenge.example.test.", dns.TypeA, dns.RcodeSuccess, []string{"_acme-challenge.example.test. 0 IN CNAME abc.auth.example.test."}, nil},
		{"_acme-challenge.www.example.test.", dns.TypeCNAME, dns.RcodeSuccess, []string{"_acme-challenge.www.example.test. 0 IN CNAME def.auth.example.test."}, nil},
		// An empty non-terminal exists: NODATA, not NXDOMAIN.
		{"www.example.test.", dns.TypeA, dns.RcodeSuccess, nil, []uint16{dns.TypeSOA}},
		{"txt.example.test.", dns.TypeTXT, dns.RcodeSuccess, []string{
			`txt.example.test. 0 IN TXT "v=1"`,
			`txt.example.test. 0 IN TXT "` + strings.Repeat("x", 255) + `" "` + strings.Repeat("x", 45) + `"`,
		}, nil},
		{"txt.example.test.", dns.TypeA, dns.RcodeSuccess, nil, []uint16{dns.TypeSOA}},
		{"gone.example.test.", dns.TypeTXT, dns.RcodeNameError, nil, []uint16{dns.TypeSOA}},
		{"replaced.example.test.", dns.TypeTXT, dns.RcodeSuccess, []string{"replaced.example.test. 0 IN CNAME t.example.net."}, nil},
		{"nothing.example.test.", dns.TypeTXT, dns.RcodeNameError, nil, []uint16{dns.TypeSOA}},
		{"example.net.", dns.TypeSOA, dns.RcodeRefused, nil, nil},
		{"test.", dns.TypeSOA, dns.RcodeRefused, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.qname+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			req := new(dns.Msg)
			req.SetQuestion(tc.qname, tc.qtype)
			resp := z.answer(req)
			if resp.Rcode != tc.rcode {
				t.Errorf("rcode = %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
			}
			if want := tc.rcode != dns.RcodeRefused; resp.Authoritative != want {
				t.Errorf("AA = %v, want %v", resp.Authoritative, want)
			}
			var got []string
			for _, rr := range resp.Answer {
				got = append(got, strings.ReplaceAll(rr.String(), "\t", " "))
			}
			if !slices.Equal(got, tc.answer) {
				t.Errorf("answer =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.answer, "\n"))
			}
			var ns []uint16
			for _, rr := range resp.Ns {
				ns = append(ns, rr.Header().Rrtype)
			}
			if !slices.Equal(ns, tc.ns) {
				t.Errorf("authority types = %v, want %v", ns, tc.ns)
			}
		})
	}
}

func TestZoneAnswerMalformed(t *testing.T) {
	z := newZone(t, "example.test")
	tests := []struct {
		name  string
		req   *dns.Msg
		rcode int
	}{
		{"no question", &dns.Msg{}, dns.RcodeFormatError},
		{"notify", func() *dns.Msg {
			m := new(dns.Msg)
			m.SetNotify("example.test.")
			return m
		}(), dns.RcodeNotImplemented},
		{"chaos class", func() *dns.Msg {
			m := new(dns.Msg)
			m.SetQuestion("example.test.", dns.TypeSOA)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}(), dns.RcodeRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := z.safeAnswer(tc.req).Rcode; got != tc.rcode {
				t.Errorf("rcode = %s, want %s", dns.RcodeToString[got], dns.RcodeToString[tc.rcode])
			}
		})
	}
}

// TestZoneServes checks the sockets: UDP and TCP on one port, EDNS echoed,
// and a change visible on the next query.
func TestZoneServes(t *testing.T) {
	z := StartZone(t, "example.test")
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			z.SetCNAME("_acme-challenge.example.test", "a.auth.example.test")
			r, err := query(t.Context(), network, z.Addr(), "_acme-challenge.example.test", dns.TypeTXT, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.IsEdns0() == nil {
				t.Fatalf("got %v", r)
			}
			if c, ok := r.Answer[0].(*dns.CNAME); !ok || c.Target != "a.auth.example.test." {
				t.Fatalf("answer %v, want CNAME to a.auth.example.test.", r.Answer[0])
			}
			z.Remove("_acme-challenge.example.test")
			r, err = query(t.Context(), network, z.Addr(), "_acme-challenge.example.test", dns.TypeTXT, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != dns.RcodeNameError {
				t.Fatalf("after Remove: rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
			}
		})
	}
}

// TestZoneTruncatesUDP: a UDP answer larger than the client's buffer is
// truncated so the client retries over TCP.
func TestZoneTruncatesUDP(t *testing.T) {
	z := StartZone(t, "example.test")
	var values []string
	for range 20 {
		values = append(values, strings.Repeat("v", 100))
	}
	z.SetTXT("big.example.test", values...)
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion("big.example.test.", dns.TypeTXT) // no EDNS: 512 octets
	r, _, err := c.ExchangeContext(t.Context(), m, z.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated {
		t.Fatalf("UDP answer of %d records not truncated", len(r.Answer))
	}
	r, err = query(t.Context(), "tcp", z.Addr(), "big.example.test", dns.TypeTXT, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Answer) != len(values) {
		t.Fatalf("TCP answer has %d records, want %d", len(r.Answer), len(values))
	}
}

// TestZoneWildcardCNAME: a wildcard CNAME answers, under the name asked
// for, every name below its parent that does not exist, and nothing else.
func TestZoneWildcardCNAME(t *testing.T) {
	z := newZone(t, "example.test")
	z.SetCNAME("*._acme-challenge.example.test", "abc.auth.example.test")
	z.SetTXT("_exists._acme-challenge.example.test", "own")
	tests := []struct {
		qname string
		rcode int
		cname string // "" for none
	}{
		{"_ujmmovf2vn55tgye._acme-challenge.example.test.", dns.RcodeSuccess, "abc.auth.example.test."},
		{"_X._ACME-challenge.example.test.", dns.RcodeSuccess, "abc.auth.example.test."},
		{"a.b._acme-challenge.example.test.", dns.RcodeSuccess, "abc.auth.example.test."},
		{"*._acme-challenge.example.test.", dns.RcodeSuccess, "abc.auth.example.test."},
		{"_exists._acme-challenge.example.test.", dns.RcodeSuccess, ""},     // exists: its own TXT
		{"_acme-challenge.example.test.", dns.RcodeSuccess, ""},             // the parent: an empty non-terminal
		{"_x._acme-challenge.www.example.test.", dns.RcodeNameError, ""},    // another parent
		{"other.example.test.", dns.RcodeNameError, ""},                     // no wildcard at the apex
		{"x._exists._acme-challenge.example.test.", dns.RcodeNameError, ""}, // closest encloser is _exists: no wildcard there
		{"_x._validation-persist.example.test.", dns.RcodeNameError, ""},    // elsewhere
		{"_x._acme-challenge.example.test.", dns.RcodeSuccess, "abc.auth.example.test."},
	}
	for _, tc := range tests {
		req := new(dns.Msg)
		req.SetQuestion(tc.qname, dns.TypeTXT)
		resp := z.answer(req)
		var cname string
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok {
				cname = c.Target
				if c.Hdr.Name != dns.CanonicalName(tc.qname) {
					t.Errorf("%s: CNAME owned by %s", tc.qname, c.Hdr.Name)
				}
			}
		}
		if resp.Rcode != tc.rcode || cname != tc.cname {
			t.Errorf("%s: %s, CNAME %q; want %s, %q", tc.qname, dns.RcodeToString[resp.Rcode], cname, dns.RcodeToString[tc.rcode], tc.cname)
		}
	}
}
