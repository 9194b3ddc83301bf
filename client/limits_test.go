package client

import (
	"crypto"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestParseAccountLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  string
		want  BrokerLimits
		batch int
	}{
		{"acmebroker defaults", `{"username":"u","txt_max":16,"txt_always":2,"txt_window_seconds":600,"update_limit_per_minute":120}`,
			BrokerLimits{TXTMax: 16, TXTAlways: 2, TXTWindow: 10 * time.Minute, UpdatesPerMinute: 120}, 16},
		{"no window: only the newest are served", `{"txt_max":16,"txt_always":2,"txt_window_seconds":0}`,
			BrokerLimits{TXTMax: 16, TXTAlways: 2}, 2},
		{"fields missing: acme-dns's 2", `{"username":"u"}`, BrokerLimits{TXTMax: 2, TXTAlways: 2}, 2},
		{"absurd values", `{"txt_max":-5,"txt_always":900,"txt_window_seconds":-1,"update_limit_per_minute":-3}`,
			BrokerLimits{TXTMax: 2, TXTAlways: 2}, 2},
		{"always above max", `{"txt_max":3,"txt_always":9,"txt_window_seconds":5}`, BrokerLimits{TXTMax: 3, TXTAlways: 3, TXTWindow: 5 * time.Second}, 3},
		{"huge", `{"txt_max":1000000,"txt_window_seconds":99999999999}`, BrokerLimits{TXTMax: 1000, TXTAlways: 2, TXTWindow: 7 * 24 * time.Hour}, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAccountLimits([]byte(tc.body))
			if err != nil || got != tc.want || got.Batch() != tc.batch {
				t.Fatalf("ParseAccountLimits(%s) = %+v (batch %d), %v; want %+v (batch %d)", tc.body, got, got.Batch(), err, tc.want, tc.batch)
			}
		})
	}
	if _, err := ParseAccountLimits([]byte(`[1,2]`)); err == nil {
		t.Fatal("a JSON array was taken for limits")
	}
	if plainLimits.Batch() != 2 {
		t.Fatalf("plain acme-dns batch %d", plainLimits.Batch())
	}
}

func FuzzParseAccountLimits(f *testing.F) {
	f.Add([]byte(`{"username":"u","txt_max":16,"txt_always":2,"txt_window_seconds":600,"update_limit_per_minute":120}`))
	f.Add([]byte(`{"txt_max":0}`))
	f.Add([]byte(`{"txt_window_seconds":9223372036854775807}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseAccountLimits(b)
		if err != nil {
			return
		}
		if l.TXTMax < 1 || l.TXTAlways < 1 || l.TXTAlways > l.TXTMax || l.TXTWindow < 0 || l.UpdatesPerMinute < 0 {
			t.Fatalf("limits out of range: %+v", l)
		}
		if b := l.Batch(); b < 1 || b > l.TXTMax {
			t.Fatalf("batch %d for %+v", b, l)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	f.Add("120")
	f.Add("Thu, 01 Jan 2026 00:00:10 GMT")
	f.Add("-1")
	f.Fuzz(func(t *testing.T, v string) {
		d := ParseRetryAfter(v, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		if d < 0 || d > 30*24*time.Hour {
			t.Fatalf("ParseRetryAfter(%q) = %v", v, d)
		}
	})
}

func TestCheckDomainName(t *testing.T) {
	for _, ok := range []string{"example.org", "*.example.org", "a-b.c.example.org", "xn--bcher-kva.example", "1.example.org"} {
		if err := CheckDomainName(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for bad, why := range map[string]string{
		"":                               "empty",
		"localhost":                      "two labels",
		"*.org":                          "registered domain below",
		"a.*.example.org":                "whole first label",
		"*foo.example.org":               "whole first label",
		"exa mple.org":                   "not allowed",
		"a..example.org":                 "empty label",
		"-a.example.org":                 "hyphen",
		"bücher.example":                 "xn--",
		"a_b.example.org":                "not allowed",
		strings.Repeat("a", 64) + ".org": "63",
	} {
		err := CheckDomainName(bad)
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("CheckDomainName(%q) = %v, want an error about %q", bad, err, why)
		}
	}
	req := ObtainRequest{Domains: []string{"Example.ORG.", "*.example.org", "example.org"}}
	if err := req.Check(); err != nil || len(req.Domains) != 2 || req.CertName != "example.org" || req.KeyType != "ec256" {
		t.Fatalf("Check: %v %+v", err, req)
	}
	req = ObtainRequest{Domains: []string{"example.org"}, CertName: "../etc"}
	if err := req.Check(); err == nil || !strings.Contains(err.Error(), "--cert-name") {
		t.Fatalf("a path as --cert-name: %v", err)
	}
}

// TestACMEAccountPerDirectory: two CAs on one host keep two accounts; an
// account kept per host by an older version moves to its directory URL's
// place, and only if it was made for that directory.
func TestACMEAccountPerDirectory(t *testing.T) {
	st := &State{Dir: t.TempDir()}
	prod, staging := "https://ca.test/directory", "https://ca.test/staging/directory"
	if st.acmeDir(prod) == st.acmeDir(staging) {
		t.Fatalf("both directories share %s", st.acmeDir(prod))
	}
	k1, _, _ := st.ACMEAccountKey(prod)
	k2, _, _ := st.ACMEAccountKey(staging)
	if k1.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k2.Public()) {
		t.Fatal("two directory URLs share an account key")
	}

	// An older state: acme/<host>/ with the account of prod.
	old := &State{Dir: t.TempDir()}
	legacy := old.legacyACMEDir(prod)
	key, _ := NewCertKey("ec256")
	pemKey, _ := encodePrivateKey(key)
	if err := writeFileAtomic(filepath.Join(legacy, "account.key"), pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(filepath.Join(legacy, "account.json"), []byte(`{"url":"https://ca.test/acct/1","directory":"`+prod+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, created, err := old.ACMEAccountKey(staging); err != nil || !created {
		t.Fatalf("staging took prod's account: created=%v %v", created, err)
	}
	got, created, err := old.ACMEAccountKey(prod)
	if err != nil || created || !got.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) || old.ACMEAccountURL(prod) != "https://ca.test/acct/1" {
		t.Fatalf("prod's account was not moved: created=%v %v url %q", created, err, old.ACMEAccountURL(prod))
	}
	if _, err := os.Stat(filepath.Join(legacy, "account.key")); !os.IsNotExist(err) {
		t.Fatalf("the old copy stayed: %v", err)
	}
}

// TestStateOf: what `list` shows, from the stored certificate alone.
func TestStateOf(t *testing.T) {
	now := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	der, _ := selfSigned(t, []string{"a.test"}, now.Add(40*24*time.Hour))
	c := &Certificate{Name: "a.test"}
	var err error
	if c.Leaf, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	c.Leaf.NotBefore = now.Add(-50 * 24 * time.Hour) // 90 days; due 30 days before the end
	if s := StateOf(c, now); s.State != "valid" || !s.RenewalAt.Equal(c.Leaf.NotAfter.Add(-30*24*time.Hour)) {
		t.Fatalf("%+v", s)
	}
	c.Renewal.RenewAt = now.Add(-time.Hour)
	if s := StateOf(c, now); s.State != "due" {
		t.Fatalf("%+v", s)
	}
	if s := StateOf(c, c.Leaf.NotAfter); s.State != "expired" {
		t.Fatalf("%+v", s)
	}
	c.Renewal.RevokedAt = now
	if s := StateOf(c, now); s.State != "revoked" {
		t.Fatalf("%+v", s)
	}
}

// TestJudgeTXT: which answers WaitServed keeps waiting on, and which it
// gives up on at once.
func TestJudgeTXT(t *testing.T) {
	msg := func(rcode int, aa bool, vals ...string) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion("x.auth.example.test.", dns.TypeTXT)
		m.Rcode, m.Authoritative = rcode, aa
		for _, v := range vals {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: "x.auth.example.test.", Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{v}})
		}
		return m
	}
	for _, tc := range []struct {
		name        string
		resp        *dns.Msg
		final, done bool
		says        string
	}{
		{"all served", msg(dns.RcodeSuccess, true, "v1", "v2"), false, true, "every value"},
		{"one of two", msg(dns.RcodeSuccess, true, "v1"), false, false, "1 of 2 values"},
		{"nxdomain", msg(dns.RcodeNameError, true), false, false, "NXDOMAIN"},
		{"refused", msg(dns.RcodeRefused, false), true, false, "REFUSED"},
		{"notauth", msg(dns.RcodeNotAuth, false), true, false, "NOTAUTH"},
		{"no AA: a resolver", msg(dns.RcodeSuccess, false, "v1", "v2"), true, false, "without authority"},
		{"servfail", msg(dns.RcodeServerFailure, false), false, false, "SERVFAIL"},
	} {
		st := judgeTXT(tc.resp, nil, []string{"v1", "v2"})
		if st.final != tc.final || st.done != tc.done || !strings.Contains(st.last, tc.says) {
			t.Errorf("%s: %+v", tc.name, st)
		}
	}
}
