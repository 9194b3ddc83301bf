package dnsserver

import (
	"testing"

	"github.com/miekg/dns"
)

// FuzzServeDNS feeds raw packets through what the server does with one:
// header check (acceptMsg), unpack, then ServeDNS over UDP and TCP, to a
// plain handler, one with DNS Cookies and one signing (DNSSEC). Every
// accepted packet gets exactly one well-formed answer with its ID, within
// the UDP size limit; nothing panics; a signed answer to DO never says
// NXDOMAIN unless the query set CO (RFC 9824).
func FuzzServeDNS(f *testing.F) {
	seed := func(m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(query(sub1+"."+zone+".", dns.TypeTXT))
	seed(query("CROWD.auth.example.test.", dns.TypeTXT))
	seed(query(zone+".", dns.TypeANY))
	seed(query("www."+zone+".", dns.TypeA))
	seed(query("host.child."+zone+".", dns.TypeA))
	e := query(sub1+"."+zone+".", dns.TypeTXT)
	e.SetEdns0(65535, true)
	seed(e)
	v := query(zone+".", dns.TypeSOA)
	v.SetEdns0(512, false)
	v.IsEdns0().SetVersion(3)
	seed(v)
	n := query(zone+".", dns.TypeSOA)
	n.Opcode = dns.OpcodeNotify
	seed(n)
	c := query("CrOwD.AuTh.ExAmPlE.TeSt.", dns.TypeTXT)
	c.SetEdns0(512, true)
	seed(c)
	ch := query("version.bind.", dns.TypeTXT)
	ch.Question[0].Qclass = dns.ClassCHAOS
	seed(ch)
	seed(query(`y\.child.`+zone+".", dns.TypeA))
	seed(query(zone+".", dns.TypeAXFR))
	u := query(zone+".", dns.TypeSOA)
	u.Opcode = dns.OpcodeUpdate
	seed(u)
	two := query(sub1+"."+zone+".", dns.TypeTXT)
	two.SetEdns0(1232, false)
	two.Extra = append(two.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 4096}})
	seed(two)
	half, _ := query(sub1+"."+zone+".", dns.TypeTXT).Pack()
	f.Add(half[:len(half)/2]) // cut inside the question
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01})
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 16, 0, 1}) // compression loop
	seed(withCookie(query("crowd."+zone+".", dns.TypeTXT), 4096, "2464c4abcf10c957"))
	seed(withCookie(query(zone+".", dns.TypeSOA), 1232, "2464c4abcf10c957010000005cf79f111f8130c3eee29480"))
	seed(withCookie(query(zone+".", dns.TypeSOA), 1232, "2464c4abcf"))

	d := query("nope."+zone+".", dns.TypeA)
	d.SetEdns0(1232, true)
	seed(d)
	co := query("nope."+zone+".", dns.TypeA)
	co.SetEdns0(1232, true)
	co.IsEdns0().SetCo(true)
	seed(co)
	seed(query(zone+".", dns.TypeDNSKEY))
	seed(query("child."+zone+".", dns.TypeDS))

	plain, cookies := newTestHandler(f, testSource()), cookieHandler(f, newFakeClock().Now, testSource())
	signed, _, _ := newSignedHandler(f, testSource(), false)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) < 12 {
			return // the server drops runts
		}
		if acceptMsg(wireHeader(pkt)) != dns.MsgAccept {
			return // dropped or answered by the library's reject path
		}
		req := new(dns.Msg)
		if err := req.Unpack(pkt); err != nil {
			return // the server answers FORMERR itself
		}
		for _, h := range []*Handler{plain, cookies, signed} {
			serveFuzzed(t, h, req)
		}
	})
}

// serveFuzzed checks what h answers to req over UDP and over TCP.
func serveFuzzed(t *testing.T, h *Handler, req *dns.Msg) {
	var answers [][]byte
	for _, w := range []*recorder{udpRecorder(), tcpRecorder()} {
		h.ServeDNS(w, req)
		if len(w.Msgs) != 1 {
			t.Fatalf("%d answers", len(w.Msgs))
		}
		m := new(dns.Msg)
		if err := m.Unpack(w.Msgs[0]); err != nil {
			t.Fatalf("answer does not unpack: %v", err)
		}
		if m.Id != req.Id || !m.Response || m.Opcode != req.Opcode || m.RecursionAvailable {
			t.Fatalf("answer id %d QR %v opcode %d RA %v for query %d opcode %d", m.Id, m.Response, m.Opcode, m.RecursionAvailable, req.Id, req.Opcode)
		}
		// acceptMsg let through a header counting one question, but
		// the library unpacks a packet that ends early without error
		// (testdata/fuzz has one): no question, FORMERR. Otherwise the
		// question is echoed as asked, case included (0x20).
		switch {
		case len(req.Question) == 0:
			if m.Rcode != dns.RcodeFormatError || len(m.Question) != 0 {
				t.Fatalf("no question: %s with question %v, want FORMERR", dns.RcodeToString[m.Rcode], m.Question)
			}
		case len(m.Question) != 1 || m.Question[0] != req.Question[0]:
			t.Fatalf("question %v, asked %v", m.Question, req.Question)
		}
		if m.Authoritative && m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
			t.Fatalf("AA on %s", dns.RcodeToString[m.Rcode])
		}
		if o := req.IsEdns0(); h.cfg.Signer != nil && o != nil && o.Do() && !o.Co() && m.Rcode == dns.RcodeNameError {
			t.Fatal("signed NXDOMAIN to a query without CO: want a compact NOERROR")
		}
		if req.IsEdns0() != nil && m.IsEdns0() == nil {
			t.Fatalf("query with EDNS, %s answer without OPT", dns.RcodeToString[m.Rcode])
		}
		if w.Remote.Network() == "tcp" && m.Truncated {
			t.Fatal("TC over TCP")
		}
		if w.Remote.Network() == "udp" {
			limit := 512
			if opt := req.IsEdns0(); opt != nil && (h.cfg.Cookies == nil || h.cfg.Cookies.Verified(req, addrOf(w.Remote))) {
				limit = max(512, int(min(opt.UDPSize(), 1232)))
			}
			if len(w.Msgs[0]) > limit {
				t.Fatalf("UDP answer of %d bytes, limit %d", len(w.Msgs[0]), limit)
			}
		}
		answers = append(answers, w.Msgs[0])
	}
	// Apart from truncation, UDP and TCP answers are the same bytes
	// (both compressed).
	if answers[0][2]&0x02 == 0 && string(answers[0]) != string(answers[1]) {
		t.Fatalf("UDP answer of %d bytes, TCP answer of %d", len(answers[0]), len(answers[1]))
	}
}
