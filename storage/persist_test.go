package storage

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var persistNow = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func TestPersistCheck(t *testing.T) {
	good := PersistRecord{Issuer: "letsencrypt.org", AccountURI: "https://acme-v02.api.letsencrypt.org/acme/acct/1234", SetAt: persistNow}
	with := func(f func(*PersistRecord)) PersistRecord { r := good; f(&r); return r }
	tests := []struct {
		name  string
		rec   PersistRecord
		field string // "" for valid
	}{
		{"minimal", good, ""},
		{"wildcard and end", with(func(r *PersistRecord) { r.Policy = PolicyWildcard; r.PersistUntil = persistNow.Add(time.Hour) }), ""},
		{"A-label issuer", with(func(r *PersistRecord) { r.Issuer = "xn--ca-xla.example" }), ""},
		{"URI with port and query", with(func(r *PersistRecord) { r.AccountURI = "https://127.0.0.1:14000/my-account/1?x=y" }), ""},
		{"empty issuer", with(func(r *PersistRecord) { r.Issuer = "" }), "issuer"},
		{"upper-case issuer", with(func(r *PersistRecord) { r.Issuer = "LetsEncrypt.org" }), "issuer"},
		{"single-label issuer", with(func(r *PersistRecord) { r.Issuer = "pebble" }), "issuer"},
		{"issuer with trailing dot", with(func(r *PersistRecord) { r.Issuer = "letsencrypt.org." }), "issuer"},
		{"issuer with a space", with(func(r *PersistRecord) { r.Issuer = "lets encrypt.org" }), "issuer"},
		{"issuer with semicolon", with(func(r *PersistRecord) { r.Issuer = "a.org;accounturi=x" }), "issuer"},
		{"issuer label starting with hyphen", with(func(r *PersistRecord) { r.Issuer = "-a.org" }), "issuer"},
		{"issuer with empty label", with(func(r *PersistRecord) { r.Issuer = "a..org" }), "issuer"},
		{"issuer label of 64", with(func(r *PersistRecord) { r.Issuer = strings.Repeat("a", 64) + ".org" }), "issuer"},
		{"issuer with underscore", with(func(r *PersistRecord) { r.Issuer = "a_b.org" }), "issuer"},
		{"empty URI", with(func(r *PersistRecord) { r.AccountURI = "" }), "accounturi"},
		{"http URI", with(func(r *PersistRecord) { r.AccountURI = "http://acme.example/acct/1" }), "accounturi"},
		{"upper-case scheme", with(func(r *PersistRecord) { r.AccountURI = "HTTPS://acme.example/acct/1" }), "accounturi"},
		{"URI without host", with(func(r *PersistRecord) { r.AccountURI = "https:///acct/1" }), "accounturi"},
		{"opaque URI", with(func(r *PersistRecord) { r.AccountURI = "https:acct" }), "accounturi"},
		{"URI with user", with(func(r *PersistRecord) { r.AccountURI = "https://me@acme.example/acct/1" }), "accounturi"},
		{"URI with fragment", with(func(r *PersistRecord) { r.AccountURI = "https://acme.example/acct/1#x" }), "accounturi"},
		{"URI with semicolon", with(func(r *PersistRecord) { r.AccountURI = "https://acme.example/acct/1;policy=wildcard" }), "accounturi"},
		{"URI with space", with(func(r *PersistRecord) { r.AccountURI = "https://acme.example/acct 1" }), "accounturi"},
		{"URI with NUL", with(func(r *PersistRecord) { r.AccountURI = "https://acme.example/\x00" }), "accounturi"},
		{"URI with non-ASCII", with(func(r *PersistRecord) { r.AccountURI = "https://acmé.example/acct/1" }), "accounturi"},
		{"URI with bad escape", with(func(r *PersistRecord) { r.AccountURI = "https://acme.example/%zz" }), "accounturi"},
		{"other policy", with(func(r *PersistRecord) { r.Policy = "all" }), "policy"},
		{"upper-case policy", with(func(r *PersistRecord) { r.Policy = "Wildcard" }), "policy"},
		{"past end", with(func(r *PersistRecord) { r.PersistUntil = persistNow.Add(-time.Second) }), "persist_until"},
		{"end now", with(func(r *PersistRecord) { r.PersistUntil = persistNow }), "persist_until"},
		{"end with nanoseconds", with(func(r *PersistRecord) { r.PersistUntil = persistNow.Add(time.Hour + 5) }), "persist_until"},
		{"end past 2262", with(func(r *PersistRecord) { r.PersistUntil = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) }), "persist_until"},
		{"value over 255 bytes", with(func(r *PersistRecord) { r.AccountURI = "https://acme.example/" + strings.Repeat("a", 220) }), "value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rec.Check(persistNow)
			var pe *PersistError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.field == "":
				if len(tc.rec.Value()) > 255 {
					t.Fatalf("valid record with a %d-byte value", len(tc.rec.Value()))
				}
			case !errors.As(err, &pe) || pe.Field != tc.field || pe.Reason == "":
				t.Fatalf("Check: %v, want a PersistError on %q", err, tc.field)
			}
		})
	}
}

func TestPersistValueAndParse(t *testing.T) {
	until := time.Unix(1893456000, 0).UTC()
	tests := []struct {
		in    string
		want  PersistRecord // zero Issuer: a parse error
		field string
		canon string // Value() of the result, if not in
	}{
		{in: "letsencrypt.org; accounturi=https://acme.example/acct/1", want: PersistRecord{Issuer: "letsencrypt.org", AccountURI: "https://acme.example/acct/1"}},
		{in: "letsencrypt.org; accounturi=https://acme.example/acct/1; policy=wildcard; persistUntil=1893456000",
			want: PersistRecord{Issuer: "letsencrypt.org", AccountURI: "https://acme.example/acct/1", Policy: PolicyWildcard, PersistUntil: until}},
		{in: " LetsEncrypt.ORG\t;ACCOUNTURI = https://acme.example/acct/1 ;Policy=WildCard;PERSISTUNTIL=1893456000 ",
			want:  PersistRecord{Issuer: "letsencrypt.org", AccountURI: "https://acme.example/acct/1", Policy: PolicyWildcard, PersistUntil: until},
			canon: "letsencrypt.org; accounturi=https://acme.example/acct/1; policy=wildcard; persistUntil=1893456000"},
		{in: "letsencrypt.org; persistUntil=1893456000; accounturi=https://acme.example/acct/1",
			want:  PersistRecord{Issuer: "letsencrypt.org", AccountURI: "https://acme.example/acct/1", PersistUntil: until},
			canon: "letsencrypt.org; accounturi=https://acme.example/acct/1; persistUntil=1893456000"},
		{in: "", field: "issuer"},
		{in: "; accounturi=https://a.example/1", field: "issuer"},
		{in: "letsencrypt.org", field: "accounturi"},
		{in: "letsencrypt.org;", field: "value"},
		{in: "letsencrypt.org; accounturi=https://a.example/1;", field: "value"},
		{in: "letsencrypt.org; accounturi=https://a.example/1;; policy=wildcard", field: "value"},
		{in: "letsencrypt.org; accounturi", field: "value"},
		{in: "letsencrypt.org; =x", field: "value"},
		{in: "letsencrypt.org; accounturi=https://a.example/1; accounturi=https://a.example/2", field: "value"},
		{in: "letsencrypt.org; accounturi=https://a.example/1; AccountURI=https://a.example/2", field: "value"},
		{in: "letsencrypt.org; accounturi=https://a.example/1; validationmethods=dns-01", field: "value"},
		{in: "letsencrypt.org; accounturi=https://a.example/1; policy=all", field: "policy"},
		{in: "letsencrypt.org; accounturi=https://a.example/1; persistUntil=soon", field: "persist_until"},
		{in: "letsencrypt.org; accounturi=https://a.example/1; persistUntil=-5", field: "persist_until"},
		{in: "letsencrypt.org; accounturi=https://a.example/1; persistUntil=+5", field: "persist_until"},
		{in: "letsencrypt.org; accounturi=https://a.example/1; persistUntil=0", field: "persist_until"},
		{in: "letsencrypt.org; accounturi=https://a.example/1; persistUntil=99999999999999", field: "persist_until"},
		{in: "letsencrypt.org; accounturi=http://a.example/1", field: "accounturi"},
		{in: "letsencrypt.org; accounturi=https://a.example/\x7f", field: "value"},
		{in: "letsencrypt.org; accounturi=https://a.example/1 2", field: "value"},
		{in: "letsencrypt.org; accounturi=https://a.example/" + strings.Repeat("x", 240), field: "value"},
		{in: "pebble; accounturi=https://a.example/1", field: "issuer"},
		{in: "let's.org; accounturi=https://a.example/1", field: "issuer"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePersistValue(tc.in)
			if tc.field != "" {
				var pe *PersistError
				if !errors.As(err, &pe) || pe.Field != tc.field {
					t.Fatalf("ParsePersistValue = %+v, %v; want a PersistError on %q", got, err, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePersistValue: %v", err)
			}
			if got.Issuer != tc.want.Issuer || got.AccountURI != tc.want.AccountURI || got.Policy != tc.want.Policy || !got.PersistUntil.Equal(tc.want.PersistUntil) {
				t.Fatalf("ParsePersistValue = %+v, want %+v", got, tc.want)
			}
			canon := tc.canon
			if canon == "" {
				canon = tc.in
			}
			if v := got.Value(); v != canon {
				t.Fatalf("Value() = %q, want %q", v, canon)
			}
		})
	}
}

// FuzzParsePersistValue: what parses passes CheckShape, fits one
// character-string, and parses back from its canonical Value to the same
// record, whose Value is then the same string.
func FuzzParsePersistValue(f *testing.F) {
	for _, s := range []string{
		"letsencrypt.org; accounturi=https://acme.example/acct/1",
		"pebble.letsencrypt.org; accounturi=https://127.0.0.1:14000/my-account/1; policy=wildcard; persistUntil=1893456000",
		" A.B ;ACCOUNTURI=https://x.y/;POLICY=Wildcard",
		"a.b; accounturi=https://x.y/; persistUntil=1",
		"a.b;;", "a.b; x=y", ";", "", "\x00", "a.b; accounturi=https://[::1]:5/", "a.b; accounturi=https://x.y/%41",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePersistValue(s)
		if err != nil {
			var pe *PersistError
			if !errors.As(err, &pe) || pe.Field == "" || pe.Reason == "" {
				t.Fatalf("error %v is not a PersistError naming a field", err)
			}
			return
		}
		if err := p.CheckShape(); err != nil {
			t.Fatalf("parsed %q into a record that fails its checks: %v", s, err)
		}
		v := p.Value()
		if len(v) > 255 {
			t.Fatalf("canonical value of %d bytes", len(v))
		}
		q, err := ParsePersistValue(v)
		if err != nil {
			t.Fatalf("canonical value %q of %q does not parse: %v", v, s, err)
		}
		if q.Issuer != p.Issuer || q.AccountURI != p.AccountURI || q.Policy != p.Policy || !q.PersistUntil.Equal(p.PersistUntil) || q.Value() != v {
			t.Fatalf("round trip of %q: %+v then %+v", s, p, q)
		}
	})
}
