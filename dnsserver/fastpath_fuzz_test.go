package dnsserver

import (
	"bytes"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzFastPath feeds raw packets to the fast path and to the full server
// (header check, unpack, ServeDNS): whatever the fast path answers, filled
// or from its cache, over UDP or TCP, is byte for byte what the full
// handler writes; it takes nothing the full server would reject or drop.
// change makes the source change between the two answers (the second must
// then follow it).
func FuzzFastPath(f *testing.F) {
	seed := func(m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false, false)
		f.Add(b, true, true)
	}
	seed(query(sub1+"."+zone+".", dns.TypeTXT))
	seed(query("CrOwD."+zone+".", dns.TypeTXT))
	seed(query("new."+zone+".", dns.TypeTXT))
	seed(query(zone+".", dns.TypeSOA))
	seed(query("www."+zone+".", dns.TypeTXT))
	seed(query("host.child."+zone+".", dns.TypeA))
	seed(query(`y\.child.`+zone+".", dns.TypeA))
	seed(query("example.com.", dns.TypeA))
	e := query(sub1+"."+zone+".", dns.TypeTXT)
	e.SetEdns0(600, true)
	seed(e)
	v := query(zone+".", dns.TypeNS)
	v.SetEdns0(4096, false)
	v.IsEdns0().SetVersion(2)
	seed(v)
	c := query("crowd."+zone+".", dns.TypeTXT)
	c.SetEdns0(100, false)
	seed(c)
	ck := query(sub1+"."+zone+".", dns.TypeTXT)
	ck.SetEdns0(1232, false)
	ck.IsEdns0().Option = append(ck.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	seed(ck)
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 16, 0, 1}, false, false)

	// The same source behind an unsigned and a signing handler (signed
	// answers are never cached; the others are, as without DNSSEC).
	src := newVersionedSource()
	signed, _, _ := newSignedHandler(f, src, false)
	type path struct {
		h  *Handler
		fp *FastPath
		sc *fastScratch
	}
	var paths []path
	for _, h := range []*Handler{newTestHandler(f, src), signed} {
		fp, err := h.NewFastPath(FastConfig{CacheBytes: 1 << 20})
		if err != nil {
			f.Fatal(err)
		}
		paths = append(paths, path{h, fp, fp.newScratch()})
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, pkt []byte, tcp, change bool) {
		if change { // back as it was afterwards, for the next input
			defer src.set("new", nil)
		}
		for _, p := range paths {
			fastMatchesFull(t, p.h, p.fp, p.sc, src, pkt, tcp, change, now)
		}
	})
}

// fastMatchesFull: what the fast path answers to pkt, twice (change: with
// the source changed in between), is what the full server answers.
func fastMatchesFull(t *testing.T, h *Handler, fp *FastPath, sc *fastScratch, src *versionedSource, pkt []byte, tcp, change bool, now time.Time) {
	for round := range 2 {
		if round == 1 && change {
			src.set("new", []string{val1})
			src.mu.Lock()
			src.serial++
			src.mu.Unlock()
		}
		got, o := fastAnswer(fp, sc, pkt, tcp, now)
		if o == toFull {
			return
		}
		if acceptMsg(wireHeader(pkt)) != dns.MsgAccept {
			t.Fatalf("the fast path answered a packet the full server rejects or drops")
		}
		req := new(dns.Msg)
		if err := req.Unpack(pkt); err != nil {
			t.Fatalf("the fast path answered a packet that does not unpack: %v", err)
		}
		want := fullAnswer(t, h, pkt, tcp)
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d (outcome %d): fast path answer differs from the full handler's\nfast: %x\nfull: %x", round, o, got, want)
		}
	}
}

// wireHeader is the header of pkt (at least 12 bytes) as the server reads
// it before deciding what to do with the packet (acceptMsg).
func wireHeader(pkt []byte) dns.Header {
	u := func(i int) uint16 { return uint16(pkt[i])<<8 | uint16(pkt[i+1]) }
	return dns.Header{Id: u(0), Bits: u(2), Qdcount: u(4), Ancount: u(6), Nscount: u(8), Arcount: u(10)}
}
