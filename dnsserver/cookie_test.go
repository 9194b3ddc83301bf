package dnsserver

import (
	"encoding/hex"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/dnsserver/cookie"
)

// TestUDPAndTCPAnswersIdentical: an answer that fits is the same bytes
// over UDP and TCP, compressed both ways (issue 12: UDP answers went out
// uncompressed, the SOA was 128 bytes over UDP and 85 over TCP).
func TestUDPAndTCPAnswersIdentical(t *testing.T) {
	h := newTestHandler(t, testSource())
	for _, c := range []struct {
		name  string
		qtype uint16
	}{
		{zone + ".", dns.TypeSOA},
		{zone + ".", dns.TypeNS},
		{zone + ".", dns.TypeMX},
		{sub1 + "." + zone + ".", dns.TypeTXT},
		{"nope." + zone + ".", dns.TypeTXT},
		{"single." + zone + ".", dns.TypeA},
		{"www." + zone + ".", dns.TypeA},
	} {
		for _, edns := range []bool{false, true} {
			q := query(c.name, c.qtype)
			if edns {
				q.SetEdns0(1232, false)
			}
			u, tc := udpRecorder(), tcpRecorder()
			h.ServeDNS(u, q)
			h.ServeDNS(tc, q)
			if string(u.Msgs[0]) != string(tc.Msgs[0]) {
				t.Errorf("%s %s (EDNS %v): UDP %d bytes, TCP %d bytes", c.name, dns.TypeToString[c.qtype], edns, len(u.Msgs[0]), len(tc.Msgs[0]))
			}
			var m dns.Msg
			if err := m.Unpack(u.Msgs[0]); err != nil {
				t.Fatal(err)
			}
			m.Compress = false
			if len(m.Answer)+len(m.Ns) > 0 && m.Len() <= len(u.Msgs[0]) {
				t.Errorf("%s %s: %d bytes sent, %d uncompressed: not compressed", c.name, dns.TypeToString[c.qtype], len(u.Msgs[0]), m.Len())
			}
		}
	}
	// The SOA of the issue: compressed over UDP.
	u := udpRecorder()
	h.ServeDNS(u, query(zone+".", dns.TypeSOA))
	if len(u.Msgs[0]) >= 100 {
		t.Fatalf("SOA over UDP is %d bytes: not compressed", len(u.Msgs[0]))
	}
}

func cookieHandler(t testing.TB, now func() time.Time, src RecordSource) *Handler {
	t.Helper()
	rrs, err := ParseRecords(zone, staticLines)
	if err != nil {
		t.Fatal(err)
	}
	sec, _ := cookie.ParseSecret("e5e973e5a6b2a43f48e7dc849e37bfcf")
	h, err := NewHandler(Config{
		Zone: zone, NSName: "ns1." + zone, NSAdmin: "hostmaster.example.test",
		Records: rrs, TXTTTL: 1, NegativeTTL: 5, MaxUDPSize: 1232,
		Cookies: cookie.NewJar(sec, nil, now), CookielessUDPSize: 512,
	}, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func withCookie(q *dns.Msg, size uint16, c string) *dns.Msg {
	q.SetEdns0(size, false)
	o := q.IsEdns0()
	o.Option = append(o.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: c})
	return q
}

func answerCookie(m *dns.Msg) string {
	if o := m.IsEdns0(); o != nil {
		for _, e := range o.Option {
			if c, ok := e.(*dns.EDNS0_COOKIE); ok {
				return c.Cookie
			}
		}
	}
	return ""
}

func TestCookies(t *testing.T) {
	clk := newFakeClock()
	h := cookieHandler(t, clk.Now, testSource())
	const client = "2464c4abcf10c957"
	crowd := "crowd." + zone + "."

	// First contact: the client cookie is echoed with a server cookie.
	m := serve(t, h, withCookie(query(sub1+"."+zone+".", dns.TypeTXT), 1232, client), udpRecorder())
	got := answerCookie(m)
	if len(got) != 48 || got[:16] != client || got[16:18] != "01" || len(m.Answer) != 2 {
		t.Fatalf("cookie %q in the first answer, %d values", got, len(m.Answer))
	}

	// Cookieless, or client cookie only, over UDP: a large answer is held
	// to 512 bytes however large the client's buffer.
	for _, q := range []*dns.Msg{withCookie(query(crowd, dns.TypeTXT), 4096, client), func() *dns.Msg { q := query(crowd, dns.TypeTXT); q.SetEdns0(4096, false); return q }()} {
		w := udpRecorder()
		m := serve(t, h, q, w)
		if !m.Truncated || len(w.Msgs[0]) > 512 {
			t.Fatalf("without a server cookie: TC %v, %d bytes; want TC within 512", m.Truncated, len(w.Msgs[0]))
		}
	}
	// With the server cookie: the full 1232.
	w := udpRecorder()
	m = serve(t, h, withCookie(query(crowd, dns.TypeTXT), 4096, got), w)
	if !m.Truncated || len(w.Msgs[0]) <= 512 || len(w.Msgs[0]) > 1232 {
		t.Fatalf("with a valid server cookie: TC %v, %d bytes; want up to 1232", m.Truncated, len(w.Msgs[0]))
	}
	if answerCookie(m) != got {
		t.Fatalf("a fresh valid cookie was not echoed: %s", answerCookie(m))
	}
	// From another address the same cookie is worth nothing.
	other := &recorder{Remote: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 5353}}
	if m := serve(t, h, withCookie(query(crowd, dns.TypeTXT), 4096, got), other); len(other.Msgs[0]) > 512 || answerCookie(m) == got {
		t.Fatalf("another address with the cookie: %d bytes, cookie %s", len(other.Msgs[0]), answerCookie(m))
	}
	// Over TCP everything, cookie or not.
	if m := serve(t, h, withCookie(query(crowd, dns.TypeTXT), 512, client), tcpRecorder()); m.Truncated || len(m.Answer) != 40 || answerCookie(m) == "" {
		t.Fatalf("TCP: TC %v, %d answers, cookie %q", m.Truncated, len(m.Answer), answerCookie(m))
	}
	// An hour and more later the cookie has expired: cookieless again, and a new one is handed out.
	clk.Advance(time.Hour + 2*time.Second)
	w = udpRecorder()
	m = serve(t, h, withCookie(query(crowd, dns.TypeTXT), 4096, got), w)
	if len(w.Msgs[0]) > 512 || answerCookie(m) == got || len(answerCookie(m)) != 48 {
		t.Fatalf("expired cookie: %d bytes, cookie %s", len(w.Msgs[0]), answerCookie(m))
	}

	// Malformed options are FORMERR with an OPT (RFC 7873 5.2.2).
	for _, bad := range []string{"2464c4abcf10", "2464c4abcf10c95701", hex.EncodeToString(make([]byte, 41))} {
		m := serve(t, h, withCookie(query(sub1+"."+zone+".", dns.TypeTXT), 1232, bad), udpRecorder())
		if m.Rcode != dns.RcodeFormatError || m.IsEdns0() == nil || len(m.Answer) != 0 {
			t.Fatalf("cookie %s: rcode %s", bad, dns.RcodeToString[m.Rcode])
		}
	}
	// No EDNS, no cookie; and a handler without a jar answers as before.
	if m := serve(t, h, query(sub1+"."+zone+".", dns.TypeTXT), udpRecorder()); m.IsEdns0() != nil {
		t.Fatal("OPT without EDNS in the query")
	}
	plain := newTestHandler(t, testSource())
	if m := serve(t, plain, withCookie(query(sub1+"."+zone+".", dns.TypeTXT), 1232, client), udpRecorder()); answerCookie(m) != "" {
		t.Fatal("a handler without cookies sent one")
	}
	w = udpRecorder()
	q := query(crowd, dns.TypeTXT)
	q.SetEdns0(4096, false)
	if serve(t, plain, q, w); len(w.Msgs[0]) <= 512 {
		t.Fatal("a handler without cookies held a cookieless answer to 512 bytes")
	}
}

// BenchmarkCookieAnswer is a challenge TXT answer over UDP without DNS
// Cookies, and with them: a query carrying a valid server cookie (checked,
// echoed) and one carrying a client cookie only (a server cookie made).
//
//	go test -run '^$' -bench BenchmarkCookieAnswer -count 5 ./dnsserver/
func BenchmarkCookieAnswer(b *testing.B) {
	clk := newFakeClock()
	plain, jar := newTestHandler(b, testSource()), cookieHandler(b, clk.Now, testSource())
	first := udpRecorder()
	jar.ServeDNS(first, withCookie(query(sub1+"."+zone+".", dns.TypeTXT), 1232, "0102030405060708"))
	var m dns.Msg
	if err := m.Unpack(first.Msgs[0]); err != nil {
		b.Fatal(err)
	}
	valid := answerCookie(&m)
	noCookie := query(sub1+"."+zone+".", dns.TypeTXT)
	noCookie.SetEdns0(1232, false)
	for _, c := range []struct {
		name string
		h    *Handler
		q    *dns.Msg
	}{
		{"off", plain, noCookie},
		{"on-no-cookie", jar, noCookie},
		{"on-valid-cookie", jar, withCookie(query(sub1+"."+zone+".", dns.TypeTXT), 1232, valid)},
		{"on-client-cookie", jar, withCookie(query(sub1+"."+zone+".", dns.TypeTXT), 1232, "0102030405060708")},
	} {
		b.Run(c.name, func(b *testing.B) {
			w := udpRecorder()
			b.ReportAllocs()
			for b.Loop() {
				c.h.ServeDNS(w, c.q)
				w.Msgs = w.Msgs[:0]
			}
		})
	}
}
