package dnsserver

import (
	"bytes"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// FuzzParseRecords feeds static record lines (config input) to
// ParseRecords. Whatever it accepts is one record of class IN inside the
// zone, not an SOA, with a lower-case owner; it reads back the same from
// its own text form; and a handler built on it answers a query for it with
// a packable message.
func FuzzParseRecords(f *testing.F) {
	for _, s := range []string{
		"ns1 A 192.0.2.53",
		"auth.example.test. NS ns1.auth.example.test.",
		"ns1 AAAA 2001:db8::53",
		"auth.example.test. CAA 0 issue \"letsencrypt.org\"",
		"dkim._domainkey 300 TXT \"v=DKIM1; k=rsa; p=MixedCASE\"",
		"www CNAME web",
		"sub NS ns.elsewhere.example.",
		"auth.example.test. MX 10 mail.example.test.",
		"_sip._tcp SRV 0 5 5060 sip",
		"x TXT \"a\\\"b\" \"\\000\\255\"",
		"$INCLUDE /etc/passwd",
		"$ORIGIN evil.example.",
		"$TTL 1\nx A 192.0.2.1",
		"auth.example.test. SOA ns1 host 1 2 3 4 5",
		"* A 192.0.2.1",
		"x CH TXT \"chaos\"",
		"outside.example. A 192.0.2.1",
		"x TYPE65280 \\# 2 abcd",
		"x A 192.0.2.1 ; comment",
		"( x A 192.0.2.1 )",
		"a\\.b A 192.0.2.1",
		"",
	} {
		f.Add(s)
	}
	const zone = "auth.example.test"
	f.Fuzz(func(t *testing.T, line string) {
		rrs, err := ParseRecords(zone, []string{line})
		if err != nil {
			if rrs != nil {
				t.Fatalf("records and an error: %v", err)
			}
			return
		}
		if len(rrs) != 1 {
			t.Fatalf("%d records from one line", len(rrs))
		}
		rr := rrs[0]
		h := rr.Header()
		switch {
		case h.Class != dns.ClassINET:
			t.Fatalf("class %d accepted", h.Class)
		case !dns.IsSubDomain(zone+".", h.Name):
			t.Fatalf("owner %s outside the zone accepted", h.Name)
		case h.Name != lowerASCII(h.Name):
			t.Fatalf("owner %s not lower-cased", h.Name)
		case h.Rrtype == dns.TypeSOA:
			t.Fatal("SOA accepted")
		}
		again, err := ParseRecords(zone, []string{rr.String()})
		if err != nil {
			t.Fatalf("its own text %q does not parse: %v", rr.String(), err)
		}
		// Compare wire forms: the text may differ in spacing (miekg/dns
		// prints an empty CAA tag as two spaces).
		if a, b := wire(t, rr), wire(t, again[0]); !bytes.Equal(a, b) {
			t.Fatalf("round trip: %q became %q (wire %x, %x)", rr.String(), again[0].String(), a, b)
		}
		hd, err := NewHandler(Config{Zone: zone, NSName: "ns1." + zone, NSAdmin: "hostmaster." + zone,
			Records: rrs, TXTTTL: 1, NegativeTTL: 5, MaxUDPSize: 1232}, testSource(), nil)
		if err != nil {
			return // e.g. a CNAME at a name the source also serves
		}
		q := new(dns.Msg)
		q.SetQuestion(h.Name, h.Rrtype)
		for _, tcp := range []bool{false, true} {
			m := hd.Answer(q, tcp)
			if _, err := m.Pack(); err != nil {
				t.Fatalf("answer for %s does not pack: %v", rr, err)
			}
		}
	})
}

func wire(t *testing.T, rr dns.RR) []byte {
	t.Helper()
	b := make([]byte, dns.MaxMsgSize)
	n, err := dns.PackRR(rr, b, 0, nil, false)
	if err != nil {
		t.Fatalf("%s does not pack: %v", rr, err)
	}
	return b[:n]
}

// TestParseRecordsFuzzFindings: what FuzzParseRecords found, by name.
func TestParseRecordsFuzzFindings(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"x MX ", "incomplete record data"},
		{"x 60 IN NS ", "incomplete record data"},
		{"x TYPE0 \\# 2 000X", "cannot be encoded"},
		{`x CAA 0"0 "0`, "ambiguous record data"},
		{" TYPE10 ", "incomplete record data"}, // crashed the round-trip check
	} {
		if _, err := ParseRecords("auth.example.test", []string{c.line}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error saying %q", c.line, err, c.want)
		}
	}
	// A label of the two bytes ".*" is not a wildcard; "*" in any spelling is.
	if _, err := ParseRecords("auth.example.test", []string{`\.\* A 192.0.2.1`}); err != nil {
		t.Errorf("escaped dot and star: %v", err)
	}
	for _, w := range []string{`* A 192.0.2.1`, `\* A 192.0.2.1`, `\042.x A 192.0.2.1`, `a.*.b A 192.0.2.1`} {
		if _, err := ParseRecords("auth.example.test", []string{w}); err == nil || !strings.Contains(err.Error(), "wildcard") {
			t.Errorf("%s: %v, want the wildcard error", w, err)
		}
	}
	// Invalid UTF-8 in a name stays as it is (no U+FFFD growth).
	rrs, err := ParseRecords("auth.example.test", []string{"X NS Ns1\xbe"})
	if err != nil || rrs[0].Header().Name != "x.auth.example.test." || rrs[0].(*dns.NS).Ns != "ns1\xbe.auth.example.test." {
		t.Fatalf("%v %v", rrs, err)
	}
}

func TestReserved(t *testing.T) {
	static, err := ParseRecords("auth.example.org", []string{
		"www CNAME web.example.net.",
		"sub NS ns.other.example.",
		"ns1 A 192.0.2.1",
		"x.deep TXT \"v\"",
		"auth.example.org. NS ns1.auth.example.org.",
	})
	if err != nil {
		t.Fatal(err)
	}
	why := Reserved("auth.example.org.", "ns1.auth.example.org.", static)
	for label, want := range map[string]string{
		"www":  "static CNAME",
		"WWW":  "static CNAME",
		"sub":  "delegated",
		"ns1":  "static A",
		"deep": "below it",
		"web1": "",
		"auth": "",
	} {
		if got := why(label); (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("Reserved(%q) = %q, want %q", label, got, want)
		}
	}
	if got := Reserved("auth.example.org", "ns.auth.example.org", nil)("ns"); !strings.Contains(got, "name server") {
		t.Errorf("the name server's own label: %q", got)
	}
}
