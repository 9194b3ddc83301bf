package dnsserver_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/dnsserver/cookie"
	"github.com/acmebroker/acmebroker/internal/dnssec"
	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/storage"
)

const (
	hzone  = "hostile.example.test"
	hsub   = "abc"
	hval   = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"
	hostID = 0xBEEF // the id of every hostile packet
	drop   = -1     // expected: no answer at all
)

// startHostileDNS serves the real handler, fed by the real record index,
// on 127.0.0.1:0 (UDP and TCP) until the test ends; with DNSSEC on when
// signer is not nil; with fast, through the fast path (fastpath.go).
func startHostileDNS(t *testing.T, signer dnsserver.Signer, fast bool) (string, *records.Index) {
	t.Helper()
	idx := records.New(storage.DefaultTXTPolicy, time.Now)
	idx.Add(hsub, 1)
	idx.Set(hsub, []storage.TXTRecord{{Value: hval, UpdatedAt: time.Now()}}, 2)
	static, err := dnsserver.ParseRecords(hzone, []string{hzone + ". NS ns1." + hzone + ".", "ns1 A 192.0.2.53"})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := cookie.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	h, err := dnsserver.NewHandler(dnsserver.Config{
		Zone: hzone, NSName: "ns1." + hzone, NSAdmin: "hostmaster.example.test",
		Records: static, TXTTTL: 1, NegativeTTL: 5, MaxUDPSize: 1232,
		Cookies: cookie.NewJar(secret, nil, time.Now), Signer: signer,
	}, idx, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := dnsserver.Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if fast {
		fp, err := h.NewFastPath(dnsserver.FastConfig{CacheBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		srv.EnableFastPath(fp)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10 s")
		}
	})
	return srv.Addrs()[0], idx
}

// hdr is a DNS header: id, flags, then the four counts.
func hdr(flags uint16, qd, an, ns, ar uint16) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint16(b[0:], hostID)
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint16(b[4:], qd)
	binary.BigEndian.PutUint16(b[6:], an)
	binary.BigEndian.PutUint16(b[8:], ns)
	binary.BigEndian.PutUint16(b[10:], ar)
	return b
}

// wireName encodes dotted labels without checks (so it can make what
// miekg/dns would refuse to pack).
func wireName(labels ...string) []byte {
	var b []byte
	for _, l := range labels {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

func zoneLabels(first ...string) []string {
	return append(first, strings.Split(hzone, ".")...)
}

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// opcodeFlags puts an opcode in the flags (RD set, as resolvers send).
func opcodeFlags(op int) uint16 { return uint16(op)<<11 | 1<<8 }

// packed returns m packed with the hostile id.
func packed(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	m.Id = hostID
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func frame(b []byte) []byte { return append(u16(uint16(len(b))), b...) }

type dnsCase struct {
	name      string
	net       string // "udp" or "tcp"
	payload   []byte // for tcp: the exact stream bytes (with length prefixes)
	halfClose bool   // tcp: close our side after the payload
	rcode     int    // expected rcode (extended included), or drop
	check     func(*dns.Msg) error
}

func normalQuery(id uint16) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(hsub+"."+hzone+".", dns.TypeTXT)
	q.Id = id
	return q
}

func isNormalAnswer(m *dns.Msg, id uint16) bool {
	return m.Id == id && m.Rcode == dns.RcodeSuccess && len(m.Answer) == 1 && m.Answer[0].(*dns.TXT).Txt[0] == hval
}

// TestHostileDNSInputs sends hand-written hostile packets through real UDP
// and TCP sockets, to a server with DNSSEC off and one with it on, each
// with and without the fast path. Each gets its expected rcode, or no
// answer at all; after each, the server still answers a normal query on
// both transports, and nothing a packet tried to change is served.
func TestHostileDNSInputs(t *testing.T) {
	for _, signed := range []bool{false, true} {
		for _, fast := range []bool{false, true} {
			name := map[bool]string{false: "unsigned", true: "signed"}[signed] + map[bool]string{false: "", true: "/fast path"}[fast]
			t.Run(name, func(t *testing.T) { testHostileDNSInputs(t, signed, fast) })
		}
	}
}

// newHostileSigner is a real signer with fresh keys for hzone.
func newHostileSigner(t *testing.T, alg uint8) (*dnssec.Signer, *dnssec.Keyset) {
	t.Helper()
	ks, err := dnssec.NewKeyset(hzone, alg, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := dnssec.NewSigner(dnssec.SignerConfig{Zone: hzone}, ks)
	if err != nil {
		t.Fatal(err)
	}
	return s, ks
}

func testHostileDNSInputs(t *testing.T, signed, fast bool) {
	var signer dnsserver.Signer
	if signed {
		signer, _ = newHostileSigner(t, dnssec.ECDSAP256SHA256)
	}
	addr, idx := startHostileDNS(t, signer, fast)
	q := func(name string, qtype, qclass uint16) []byte {
		return cat(hdr(opcodeFlags(dns.OpcodeQuery), 1, 0, 0, 0), []byte(name), u16(qtype), u16(qclass))
	}
	subName := string(wireName(zoneLabels(hsub)...))
	normal := q(subName, dns.TypeTXT, dns.ClassINET)
	tenK := make([]string, 10_000)
	for i := range tenK {
		tenK[i] = "a"
	}
	twoHundred := make([]string, 200)
	for i := range twoHundred {
		twoHundred[i] = "abc"
	}

	update := new(dns.Msg)
	update.SetUpdate(hzone + ".")
	rr, _ := dns.NewRR(hsub + "." + hzone + ". 60 IN TXT \"injected-by-update\"")
	update.Insert([]dns.RR{rr})
	notify := new(dns.Msg)
	notify.SetNotify(hzone + ".")
	edns1 := normalQuery(hostID)
	edns1.SetEdns0(1232, false)
	edns1.IsEdns0().SetVersion(1)
	twoOPT := normalQuery(hostID)
	twoOPT.SetEdns0(1232, false)
	twoOPT.Extra = append(twoOPT.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 4096}})
	ednsZero := normalQuery(hostID)
	ednsZero.SetEdns0(0, true)
	ednsOdd := normalQuery(hostID)
	ednsOdd.SetEdns0(1232, true)
	ednsOdd.IsEdns0().Option = append(ednsOdd.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: 65001, Data: bytes.Repeat([]byte{0xff}, 64)})
	withCookie := func(hexCookie string) *dns.Msg {
		m := normalQuery(hostID)
		m.SetEdns0(1232, false)
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: hexCookie})
		return m
	}
	withTSIG := normalQuery(hostID)
	withTSIG.Extra = append(withTSIG.Extra, &dns.TSIG{Hdr: dns.RR_Header{Name: "key.", Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: dns.HmacSHA256, TimeSigned: uint64(time.Now().Unix()), Fudge: 300, MACSize: 32, MAC: strings.Repeat("ab", 32), OrigId: hostID})
	// An OPT whose option claims more bytes than the record has.
	badOpt := cat(hdr(opcodeFlags(dns.OpcodeQuery), 1, 0, 0, 1), []byte(subName), u16(dns.TypeTXT), u16(dns.ClassINET),
		[]byte{0}, u16(dns.TypeOPT), u16(1232), []byte{0, 0, 0, 0}, u16(4), u16(10), u16(200))

	hostileLen := func(m *dns.Msg) error {
		if m.Id != hostID {
			return fmt.Errorf("id %d", m.Id)
		}
		return nil
	}
	noQuestion := func(m *dns.Msg) error {
		if len(m.Answer)+len(m.Ns) > 0 {
			return fmt.Errorf("%d answers, %d authority records to a malformed query", len(m.Answer), len(m.Ns))
		}
		return nil
	}
	answers := func(n int) func(*dns.Msg) error {
		return func(m *dns.Msg) error {
			got, sigs := 0, 0
			for _, rr := range m.Answer {
				if rr.Header().Rrtype == dns.TypeRRSIG {
					sigs++
				} else {
					got++
				}
			}
			if got != n {
				return fmt.Errorf("%d answers, want %d", got, n)
			}
			// Signed, to a query with DO: an RRSIG per RRset; never one
			// to a query without.
			if do := m.IsEdns0() != nil && m.IsEdns0().Do(); (signed && do && n > 0) != (sigs > 0) {
				return fmt.Errorf("%d RRSIGs in the answer (signing %v, DO %v)", sigs, signed, do)
			}
			return nil
		}
	}
	badKey := func(m *dns.Msg) error {
		if len(m.Extra) == 0 {
			return errors.New("no TSIG in the answer")
		}
		ts, ok := m.Extra[len(m.Extra)-1].(*dns.TSIG)
		if len(m.Answer) != 0 || !ok || ts.Error != dns.RcodeBadKey || ts.MACSize != 0 {
			return fmt.Errorf("want no answer and an unsigned TSIG with BADKEY last: %v", m)
		}
		return nil
	}
	// A server cookie (24 bytes with the client's 8) comes back.
	cookieBack := func(m *dns.Msg) error {
		if len(m.Answer) != 1 {
			return fmt.Errorf("%d answers", len(m.Answer))
		}
		for _, o := range m.IsEdns0().Option {
			if c, ok := o.(*dns.EDNS0_COOKIE); ok && len(c.Cookie) == 48 && c.Cookie[:16] == "0102030405060708" {
				return nil
			}
		}
		return fmt.Errorf("no server cookie in %v", m.IsEdns0())
	}
	hasOPT := func(m *dns.Msg) error {
		if m.IsEdns0() == nil {
			return errors.New("no OPT in the answer to an EDNS query")
		}
		return nil
	}

	cases := []dnsCase{
		// Short and truncated packets.
		{name: "empty datagram", net: "udp", payload: []byte{}, rcode: drop},
		{name: "3 bytes", net: "udp", payload: []byte{0xbe, 0xef, 0x01}, rcode: drop},
		{name: "11 bytes (short header)", net: "udp", payload: hdr(0, 1, 0, 0, 0)[:11], rcode: drop},
		{name: "QDCOUNT 1, no question", net: "udp", payload: hdr(opcodeFlags(0), 1, 0, 0, 0), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "name cut mid-label", net: "udp", payload: normal[:12+5], rcode: dns.RcodeFormatError, check: noQuestion},
		// miekg/dns reads a question that ends after its name as type 0,
		// class 0, and class 0 is refused: a short answer either way.
		{name: "no qtype/qclass", net: "udp", payload: normal[:12+len(subName)], rcode: dns.RcodeRefused, check: noQuestion},
		{name: "qclass cut in half", net: "udp", payload: normal[:len(normal)-1], rcode: dns.RcodeFormatError, check: noQuestion},
		// Counts.
		{name: "QDCOUNT 0", net: "udp", payload: hdr(opcodeFlags(0), 0, 0, 0, 0), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "QDCOUNT 2", net: "udp", payload: cat(hdr(opcodeFlags(0), 2, 0, 0, 0), normal[12:], normal[12:]), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "QDCOUNT 2 over TCP", net: "tcp", payload: frame(cat(hdr(opcodeFlags(0), 2, 0, 0, 0), normal[12:], normal[12:])), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "QDCOUNT 65535", net: "udp", payload: cat(hdr(opcodeFlags(0), 65535, 0, 0, 0), normal[12:]), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "ANCOUNT 65535 with no records", net: "udp", payload: cat(hdr(opcodeFlags(0), 1, 65535, 0, 0), normal[12:]), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "ARCOUNT 3", net: "udp", payload: cat(hdr(opcodeFlags(0), 1, 0, 0, 3), normal[12:]), rcode: dns.RcodeFormatError, check: noQuestion},
		// Names.
		{name: "compression pointer to itself", net: "udp", payload: cat(hdr(opcodeFlags(0), 1, 0, 0, 0), []byte{0xc0, 12}, u16(dns.TypeTXT), u16(1)), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "two pointers in a loop", net: "udp", payload: cat(hdr(opcodeFlags(0), 1, 0, 0, 0), []byte{0xc0, 14, 0xc0, 12}, u16(dns.TypeTXT), u16(1)), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "label then pointer back to it (loop)", net: "udp", payload: cat(hdr(opcodeFlags(0), 1, 0, 0, 0), []byte{1, 'a', 0xc0, 12}, u16(dns.TypeTXT), u16(1)), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "pointer past the end", net: "udp", payload: cat(hdr(opcodeFlags(0), 1, 0, 0, 0), []byte{0xcf, 0xff}, u16(dns.TypeTXT), u16(1)), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "pointer loop over TCP", net: "tcp", payload: frame(cat(hdr(opcodeFlags(0), 1, 0, 0, 0), []byte{0xc0, 12}, u16(dns.TypeTXT), u16(1))), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "200 labels (name over 255 octets)", net: "udp", payload: q(string(wireName(twoHundred...)), dns.TypeTXT, 1), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "10,000 labels over TCP", net: "tcp", payload: frame(q(string(wireName(tenK...)), dns.TypeTXT, 1)), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "10,000 labels over UDP (cut at 4096)", net: "udp", payload: q(string(wireName(tenK...)), dns.TypeTXT, 1), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "label type 01 (0x40)", net: "udp", payload: q(string([]byte{0x41, 'a', 0}), dns.TypeTXT, 1), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "label type 10 (0x80)", net: "udp", payload: q(string([]byte{0x81, 'a', 0}), dns.TypeTXT, 1), rcode: dns.RcodeFormatError, check: noQuestion},
		{name: "NUL byte in a label", net: "udp", payload: q(string(wireName(zoneLabels("a\x00b")...)), dns.TypeTXT, 1), rcode: dns.RcodeNameError, check: hostileLen},
		{name: "dot inside a label", net: "udp", payload: q(string(wireName(zoneLabels(hsub+".x")...)), dns.TypeTXT, 1), rcode: dns.RcodeNameError},
		{name: "63 bytes of binary in a label", net: "udp", payload: q(string(wireName(zoneLabels(string(bytes.Repeat([]byte{0xff, 0x00, 0x2e}, 21)))...)), dns.TypeTXT, 1), rcode: dns.RcodeNameError},
		{name: "sub in mixed case (0x20)", net: "udp", payload: q(string(wireName(zoneLabels("AbC")...)), dns.TypeTXT, 1), rcode: dns.RcodeSuccess, check: answers(1)},
		{name: "root name", net: "udp", payload: q(string([]byte{0}), dns.TypeNS, 1), rcode: dns.RcodeRefused},
		{name: "name outside the zone", net: "udp", payload: q(string(wireName("example", "com")), dns.TypeTXT, 1), rcode: dns.RcodeRefused},
		{name: "zone name as a suffix of a label", net: "udp", payload: q(string(wireName("evil"+strings.ReplaceAll(hzone, ".", ""), "test")), dns.TypeTXT, 1), rcode: dns.RcodeRefused},
		// Classes and types.
		{name: "CHAOS version.bind", net: "udp", payload: q(string(wireName("version", "bind")), dns.TypeTXT, dns.ClassCHAOS), rcode: dns.RcodeRefused},
		{name: "class NONE", net: "udp", payload: q(subName, dns.TypeTXT, dns.ClassNONE), rcode: dns.RcodeRefused},
		{name: "unknown class 0xFFEE", net: "udp", payload: q(subName, dns.TypeTXT, 0xFFEE), rcode: dns.RcodeRefused},
		{name: "class 0", net: "udp", payload: q(subName, dns.TypeTXT, 0), rcode: dns.RcodeRefused},
		{name: "ANY gets one record", net: "udp", payload: q(subName, dns.TypeANY, 1), rcode: dns.RcodeSuccess, check: answers(1)},
		{name: "AXFR over UDP", net: "udp", payload: q(string(wireName(zoneLabels()...)), dns.TypeAXFR, 1), rcode: dns.RcodeRefused},
		{name: "AXFR over TCP", net: "tcp", payload: frame(q(string(wireName(zoneLabels()...)), dns.TypeAXFR, 1)), rcode: dns.RcodeRefused},
		{name: "IXFR", net: "tcp", payload: frame(q(string(wireName(zoneLabels()...)), dns.TypeIXFR, 1)), rcode: dns.RcodeRefused},
		{name: "qtype OPT", net: "udp", payload: q(subName, dns.TypeOPT, 1), rcode: dns.RcodeFormatError},
		{name: "qtype TKEY", net: "udp", payload: q(subName, dns.TypeTKEY, 1), rcode: dns.RcodeNotImplemented},
		{name: "qtype MAILB", net: "udp", payload: q(subName, dns.TypeMAILB, 1), rcode: dns.RcodeNotImplemented},
		{name: "qtype 0", net: "udp", payload: q(subName, 0, 1), rcode: dns.RcodeSuccess, check: answers(0)},
		{name: "unassigned qtype 65280", net: "udp", payload: q(subName, 65280, 1), rcode: dns.RcodeSuccess, check: answers(0)},
		// Opcodes, UPDATE and NOTIFY.
		{name: "opcode IQUERY", net: "udp", payload: cat(hdr(opcodeFlags(dns.OpcodeIQuery), 1, 0, 0, 0), normal[12:]), rcode: dns.RcodeNotImplemented},
		{name: "opcode STATUS", net: "udp", payload: cat(hdr(opcodeFlags(dns.OpcodeStatus), 1, 0, 0, 0), normal[12:]), rcode: dns.RcodeNotImplemented},
		{name: "opcode 3 (unassigned)", net: "udp", payload: cat(hdr(opcodeFlags(3), 1, 0, 0, 0), normal[12:]), rcode: dns.RcodeNotImplemented},
		{name: "opcode 15", net: "tcp", payload: frame(cat(hdr(opcodeFlags(15), 1, 0, 0, 0), normal[12:])), rcode: dns.RcodeNotImplemented},
		{name: "UPDATE adding a TXT", net: "udp", payload: packed(t, update), rcode: dns.RcodeRefused},
		{name: "UPDATE over TCP", net: "tcp", payload: frame(packed(t, update)), rcode: dns.RcodeRefused},
		{name: "NOTIFY for the zone", net: "udp", payload: packed(t, notify), rcode: dns.RcodeRefused},
		{name: "DSO opcode 6", net: "tcp", payload: frame(hdr(opcodeFlags(6), 0, 0, 0, 0)), rcode: dns.RcodeNotImplemented},
		// Header bits.
		{name: "QR set (a response)", net: "udp", payload: cat(hdr(1<<15|1<<8, 1, 0, 0, 0), normal[12:]), rcode: drop},
		{name: "QR set over TCP", net: "tcp", payload: frame(cat(hdr(1<<15|1<<8, 1, 0, 0, 0), normal[12:])), rcode: drop},
		{name: "TC, Z and an rcode set in the query", net: "udp", payload: cat(hdr(1<<9|1<<8|1<<6|5, 1, 0, 0, 0), normal[12:]), rcode: dns.RcodeSuccess, check: answers(1)},
		// EDNS.
		{name: "EDNS version 1", net: "udp", payload: packed(t, edns1), rcode: dns.RcodeBadVers, check: hasOPT},
		{name: "two OPT records", net: "udp", payload: packed(t, twoOPT), rcode: dns.RcodeFormatError},
		{name: "OPT option longer than its record", net: "udp", payload: badOpt, rcode: dns.RcodeFormatError},
		{name: "EDNS UDP size 0", net: "udp", payload: packed(t, ednsZero), rcode: dns.RcodeSuccess, check: answers(1)},
		{name: "unknown EDNS option", net: "udp", payload: packed(t, ednsOdd), rcode: dns.RcodeSuccess, check: hasOPT},
		{name: "TSIG from a stranger", net: "udp", payload: packed(t, withTSIG), rcode: dns.RcodeNotAuth, check: badKey},
		// DNS Cookies (RFC 7873 5.2.2: a malformed option is FORMERR).
		{name: "COOKIE of 7 bytes", net: "udp", payload: packed(t, withCookie("01020304050607")), rcode: dns.RcodeFormatError, check: hasOPT},
		{name: "COOKIE of 12 bytes", net: "udp", payload: packed(t, withCookie("010203040506070809101112")), rcode: dns.RcodeFormatError, check: hasOPT},
		{name: "COOKIE of 41 bytes", net: "tcp", payload: frame(packed(t, withCookie(strings.Repeat("ab", 41)))), rcode: dns.RcodeFormatError, check: hasOPT},
		{name: "client cookie only", net: "udp", payload: packed(t, withCookie("0102030405060708")), rcode: dns.RcodeSuccess, check: cookieBack},
		{name: "forged server cookie", net: "udp", payload: packed(t, withCookie("0102030405060708"+"01000000"+"5cf79f11"+"1f8130c3eee29480")), rcode: dns.RcodeSuccess, check: cookieBack},
		// Trailing data and framing.
		{name: "garbage after the message", net: "udp", payload: cat(normal, bytes.Repeat([]byte{0xde, 0xad}, 50)), rcode: dns.RcodeSuccess, check: answers(1)},
		{name: "8 KiB datagram (read cut at 4096)", net: "udp", payload: cat(normal, make([]byte, 8192)), rcode: dns.RcodeSuccess, check: answers(1)},
		{name: "garbage after the message in a TCP frame", net: "tcp", payload: frame(cat(normal, []byte("trailing junk"))), rcode: dns.RcodeSuccess, check: answers(1)},
		{name: "TCP length prefix larger than the data", net: "tcp", payload: cat(u16(500), normal), halfClose: true, rcode: drop},
		{name: "TCP length prefix 0", net: "tcp", payload: u16(0), rcode: drop},
		{name: "TCP length prefix 2", net: "tcp", payload: cat(u16(2), []byte{0xbe, 0xef}), halfClose: true, rcode: drop},
		{name: "TCP one byte of prefix then close", net: "tcp", payload: []byte{0x00}, halfClose: true, rcode: drop},
	}

	for i, c := range cases {
		got, err := sendHostile(addr, c)
		switch {
		case err != nil:
			t.Errorf("%d %s: %v", i, c.name, err)
		case c.rcode == drop && got != nil:
			t.Errorf("%d %s: answered (%s), want no answer", i, c.name, dns.RcodeToString[got.Rcode])
		case c.rcode != drop && got == nil:
			t.Errorf("%d %s: no answer, want %s", i, c.name, dns.RcodeToString[c.rcode])
		case c.rcode != drop && got.Rcode != c.rcode:
			t.Errorf("%d %s: %s, want %s", i, c.name, dns.RcodeToString[got.Rcode], dns.RcodeToString[c.rcode])
		case got != nil && (got.Id != hostID || !got.Response):
			t.Errorf("%d %s: answer id %d QR %v", i, c.name, got.Id, got.Response)
		case got != nil && c.check != nil:
			if err := c.check(got); err != nil {
				t.Errorf("%d %s: %v", i, c.name, err)
			}
		}
		// The server still answers a normal query on both transports.
		for _, network := range []string{"udp", "tcp"} {
			cl := &dns.Client{Net: network, Timeout: 5 * time.Second}
			m, _, err := cl.Exchange(normalQuery(uint16(i+1)), addr)
			if err != nil || !isNormalAnswer(m, uint16(i+1)) {
				t.Fatalf("%d %s: a normal %s query after it: %v %v", i, c.name, network, m, err)
			}
		}
	}
	t.Logf("%d hostile DNS inputs", len(cases))
	if vals, _ := idx.TXT(nil, hsub); len(vals) != 1 || vals[0] != hval {
		t.Fatalf("served values changed: %v", vals)
	}
}

// sendHostile sends c and returns the answer to it, nil if none came.
// "None" is judged by what came back before the answer to a normal query
// sent right after on the same socket (UDP), or by the server closing or
// answering that normal query first (TCP); a short wait afterwards catches
// a late answer (it can only make the test pass later, not fail early).
func sendHostile(addr string, c dnsCase) (*dns.Msg, error) {
	const follow = 0x1234
	conn, err := net.Dial(c.net, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(c.payload); err != nil {
		return nil, err
	}
	if c.net == "udp" {
		if c.rcode == drop {
			b, _ := normalQuery(follow).Pack()
			conn.Write(b)
		}
		buf := make([]byte, 65535)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if c.rcode == drop && errors.Is(err, os.ErrDeadlineExceeded) {
					return nil, nil // the follow answer came and nothing after it
				}
				return nil, err
			}
			m := new(dns.Msg)
			if err := m.Unpack(buf[:n]); err != nil {
				return nil, fmt.Errorf("answer does not unpack: %v", err)
			}
			if m.Id != follow {
				return m, nil
			}
			conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		}
	}
	tc := conn.(*net.TCPConn)
	if c.halfClose {
		tc.CloseWrite()
	} else if c.rcode == drop {
		b, _ := normalQuery(follow).Pack()
		tc.Write(frame(b))
	}
	var lenBuf [2]byte
	if _, err := io.ReadFull(tc, lenBuf[:]); err != nil {
		if c.rcode == drop && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isReset(err)) {
			return nil, nil // the server closed the connection without answering
		}
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	buf := make([]byte, binary.BigEndian.Uint16(lenBuf[:]))
	if _, err := io.ReadFull(tc, buf); err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf); err != nil {
		return nil, fmt.Errorf("answer does not unpack: %v", err)
	}
	if m.Id == follow && c.rcode == drop {
		return nil, nil
	}
	return m, nil
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && strings.Contains(oe.Err.Error(), "connection reset")
}
