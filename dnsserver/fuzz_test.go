package dnsserver

import (
	"testing"

	"github.com/miekg/dns"
)

// FuzzServeDNS feeds raw packets through what the server does with one:
// header check (acceptMsg), unpack, then ServeDNS over UDP and TCP. Every
// accepted packet gets exactly one well-formed answer with its ID, within
// the UDP size limit; nothing panics.
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
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01})
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 16, 0, 1}) // compression loop

	h := newTestHandler(f, testSource())
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var dh dns.Header
		if len(pkt) < 12 {
			return // the server drops runts
		}
		dh.Id = uint16(pkt[0])<<8 | uint16(pkt[1])
		dh.Bits = uint16(pkt[2])<<8 | uint16(pkt[3])
		dh.Qdcount = uint16(pkt[4])<<8 | uint16(pkt[5])
		dh.Ancount = uint16(pkt[6])<<8 | uint16(pkt[7])
		dh.Nscount = uint16(pkt[8])<<8 | uint16(pkt[9])
		dh.Arcount = uint16(pkt[10])<<8 | uint16(pkt[11])
		if acceptMsg(dh) != dns.MsgAccept {
			return // dropped or answered by the library's reject path
		}
		req := new(dns.Msg)
		if err := req.Unpack(pkt); err != nil {
			return // the server answers FORMERR itself
		}
		for _, w := range []*recorder{udpRecorder(), tcpRecorder()} {
			h.ServeDNS(w, req)
			if len(w.msgs) != 1 {
				t.Fatalf("%d answers", len(w.msgs))
			}
			m := new(dns.Msg)
			if err := m.Unpack(w.msgs[0]); err != nil {
				t.Fatalf("answer does not unpack: %v", err)
			}
			if m.Id != req.Id || !m.Response {
				t.Fatalf("answer id %d QR %v for query %d", m.Id, m.Response, req.Id)
			}
			if w.remote.Network() == "udp" {
				limit := 512
				if opt := req.IsEdns0(); opt != nil {
					limit = max(512, int(min(opt.UDPSize(), 1232)))
				}
				if len(w.msgs[0]) > limit {
					t.Fatalf("UDP answer of %d bytes, limit %d", len(w.msgs[0]), limit)
				}
			}
		}
	})
}
