package rrl

import (
	"fmt"
	"net"
	"strings"

	"github.com/acmebroker/acmebroker/internal/dnstest"
	"github.com/miekg/dns"
)

// recorder keeps what the limiter lets through (shared with dnsserver's tests).
type recorder = dnstest.Recorder

var udpRecorder = dnstest.UDPRecorder

const (
	zone = "auth.example.test"
	sub1 = "d2121c1a-55ec-49c1-832c-695d6a198111"
)

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 4242
	return m
}

// zoneHandler answers like the broker's handler in the shapes RRL tells
// apart, without its zone machinery: sub1 has 2 TXT values, "crowd" 40,
// any other name below the zone is NXDOMAIN, the apex has a SOA (NODATA
// for other types, HINFO for ANY), names outside the zone are REFUSED,
// and "boom" is a SERVFAIL written with WriteMsg (as the handler's panic
// path does). UDP answers are truncated to the client's size.
type zoneHandler struct{}

func (zoneHandler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Compress = true
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	origin := zone + "."
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 1},
		Ns: "ns1." + origin, Mbox: "hostmaster." + origin, Serial: 1, Refresh: 300, Retry: 60, Expire: 1209600, Minttl: 1}
	txt := func(n int) {
		for i := range n {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 1},
				Txt: []string{fmt.Sprintf("LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQ%02d", i)}})
		}
	}
	m.Authoritative = true
	switch {
	case name == "boom."+origin:
		_ = w.WriteMsg(new(dns.Msg).SetRcode(r, dns.RcodeServerFailure))
		return
	case !dns.IsSubDomain(origin, name):
		m.Authoritative = false
		m.Rcode = dns.RcodeRefused
	case name == origin && q.Qtype == dns.TypeSOA:
		m.Answer = append(m.Answer, soa)
	case q.Qtype == dns.TypeANY:
		m.Answer = append(m.Answer, &dns.HINFO{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: 1}, Cpu: "RFC8482"})
	case name == origin:
		m.Ns = append(m.Ns, soa)
	case name == sub1+"."+origin && q.Qtype == dns.TypeTXT:
		txt(2)
	case name == "crowd."+origin && q.Qtype == dns.TypeTXT:
		txt(40)
	default:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, soa)
	}
	size := dns.MinMsgSize
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
		size = int(opt.UDPSize())
	}
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		m.Truncate(size)
	}
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	_, _ = w.Write(b)
}
