package client

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"
	"testing"
	"time"
)

// TestChallengeNames: where the CA looks and where the CNAME stands, for
// each type; dns-account-01's label is the draft's (base32 of the first 10
// bytes of SHA-256 of the account URL, lower case), computed here the way
// Pebble's VA does it.
func TestChallengeNames(t *testing.T) {
	const acct = "https://acme.example/acct/1234"
	sum := sha256.Sum256([]byte(acct))
	label := "_" + strings.ToLower(base32.StdEncoding.EncodeToString(sum[:10]))
	for _, tc := range []struct {
		typ, domain, account string
		record, cname        string
	}{
		{TypeDNS01, "example.org", acct, "_acme-challenge.example.org.", "_acme-challenge.example.org."},
		{TypeDNS01, "*.example.org", acct, "_acme-challenge.example.org.", "_acme-challenge.example.org."},
		{TypeDNSAccount01, "example.org", acct, label + "._acme-challenge.example.org.", "*._acme-challenge.example.org."},
		{TypeDNSAccount01, "*.Example.org.", acct, label + "._acme-challenge.example.org.", "*._acme-challenge.example.org."},
		{TypeDNSAccount01, "www.example.org", "", "*._acme-challenge.www.example.org.", "*._acme-challenge.www.example.org."},
		{TypeDNSPersist01, "*.example.org", acct, "_validation-persist.example.org.", "_validation-persist.example.org."},
	} {
		ch, err := ChallengeByType(tc.typ)
		if err != nil {
			t.Fatal(err)
		}
		if got := ch.RecordName(tc.domain, tc.account); got != tc.record {
			t.Errorf("%s RecordName(%q, %q) = %q, want %q", tc.typ, tc.domain, tc.account, got, tc.record)
		}
		if got := ch.CNAMEName(tc.domain); got != tc.cname {
			t.Errorf("%s CNAMEName(%q) = %q, want %q", tc.typ, tc.domain, got, tc.cname)
		}
	}
	if len(label) != 17 {
		t.Fatalf("label %q: want _ and 16 base32 characters", label)
	}
	if ch, err := ChallengeByType(""); err != nil || ch.Type() != TypeDNS01 {
		t.Fatalf(`ChallengeByType(""): %v %v, want dns-01`, ch, err)
	}
	if _, err := ChallengeByType("http-01"); err == nil || !strings.Contains(err.Error(), "dns-01, dns-account-01, dns-persist-01") {
		t.Fatalf("ChallengeByType(http-01): %v", err)
	}
}

// TestPlanPersist: obtain writes a record only when none the CA will
// accept for this account stands, and never narrows one of this account.
func TestPlanPersist(t *testing.T) {
	now := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	const me, other = "https://ca.example/acct/1", "https://ca.example/acct/2"
	later, farther := now.Add(30*24*time.Hour), now.Add(90*24*time.Hour)
	rec := func(issuer, acct string, wildcard bool, until time.Time) PersistRecord {
		r := PersistRecord{Issuer: issuer, AccountURI: acct, Wildcard: wildcard, Until: until}
		r.Value = r.issueValue()
		return r
	}
	list := func(rs ...PersistRecord) PersistList { return PersistList{Records: rs} }
	offered := []string{"ca.example", "ca-alias.example"}
	for _, tc := range []struct {
		name     string
		have     PersistList
		wildcard bool
		until    time.Time
		write    bool
		want     PersistRecord
		why      string
	}{
		{"none", list(), true, time.Time{}, true, rec("ca.example", me, true, time.Time{}), "has no record for ca.example"},
		{"none, bounded", list(), false, later, true, rec("ca.example", me, false, later), "has no record"},
		{"ours stands", list(rec("ca.example", me, true, later)), true, time.Time{}, false, rec("ca.example", me, true, later), ""},
		{"ours under the second issuer name", list(rec("ca-alias.example", me, false, time.Time{})), false, time.Time{}, false, rec("ca-alias.example", me, false, time.Time{}), ""},
		{"ours without wildcard, none needed", list(rec("ca.example", me, false, time.Time{})), false, time.Time{}, false, rec("ca.example", me, false, time.Time{}), ""},
		{"ours without wildcard, one needed", list(rec("ca.example", me, false, later)), true, time.Time{}, true, rec("ca.example", me, true, later), "no policy=wildcard"},
		{"ours with wildcard kept", list(rec("ca.example", me, true, time.Time{})), false, later, true, rec("ca.example", me, true, later), "asks for a new end"},
		{"ours with the end asked", list(rec("ca.example", me, false, later)), false, later, false, rec("ca.example", me, false, later), ""},
		{"ours run out", list(rec("ca.example", me, false, now.Add(time.Minute))), false, time.Time{}, true, rec("ca.example", me, false, time.Time{}), "ran out"},
		{"ours run out, new end", list(rec("ca.example", me, false, now.Add(-time.Hour))), false, farther, true, rec("ca.example", me, false, farther), "ran out"},
		{"another account's", list(rec("ca.example", other, true, time.Time{})), false, time.Time{}, true, rec("ca.example", me, false, time.Time{}), "authorizes another ACME account, " + other},
		{"another CA's only", list(rec("other-ca.example", me, true, time.Time{})), false, time.Time{}, true, rec("ca.example", me, false, time.Time{}), "has no record for ca.example"},
		{"another account's under the second name", list(rec("ca-alias.example", other, false, time.Time{})), false, time.Time{}, true, rec("ca-alias.example", me, false, time.Time{}), "another ACME account"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, write, why := planPersist(tc.have, offered, me, tc.wildcard, tc.until, now)
			if write != tc.write || got.Issuer != tc.want.Issuer || got.AccountURI != tc.want.AccountURI ||
				got.Wildcard != tc.want.Wildcard || !got.Until.Equal(tc.want.Until) || got.Value != tc.want.Value || !strings.Contains(why, tc.why) {
				t.Fatalf("planPersist = %+v, write %v, %q\nwant %+v, write %v, %q", got, write, why, tc.want, tc.write, tc.why)
			}
		})
	}
}

// TestParsePersistUntil: durations, days, dates and times; in the future.
func TestParsePersistUntil(t *testing.T) {
	now := time.Date(2027, 1, 2, 3, 4, 5, 600, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  string
	}{
		{"90d", time.Date(2027, 4, 2, 3, 4, 5, 0, time.UTC), ""},
		{"2160h", time.Date(2027, 4, 2, 3, 4, 5, 0, time.UTC), ""},
		{" 1h30m ", time.Date(2027, 1, 2, 4, 34, 5, 0, time.UTC), ""},
		{"2027-06-30", time.Date(2027, 6, 30, 23, 59, 59, 0, time.UTC), ""},
		{"2027-06-30T12:00:00+02:00", time.Date(2027, 6, 30, 10, 0, 0, 0, time.UTC), ""},
		{"", time.Time{}, "it is empty"},
		{"0d", time.Time{}, "not in the future"},
		{"-1h", time.Time{}, "not in the future"},
		{"2027-01-01", time.Time{}, "not in the future"},
		{"99999999d", time.Time{}, "too many days"},
		{"2300-01-01", time.Time{}, "too far"},
		{"d", time.Time{}, "not a duration"},
		{"next week", time.Time{}, "not a duration"},
		{"1893456000", time.Time{}, "not a duration"},
	} {
		got, err := ParsePersistUntil(tc.in, now)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "--persist-until") {
				t.Errorf("ParsePersistUntil(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("ParsePersistUntil(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParsePersistUntil(f *testing.F) {
	for _, s := range []string{"90d", "2160h", "2027-06-30", "2027-06-30T12:00:00Z", "", "d", "-5d", "1e9h", "9999999999d"} {
		f.Add(s)
	}
	now := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParsePersistUntil(s, now)
		if err != nil {
			return
		}
		if !got.After(now) || got.Year() >= 2262 || got.Nanosecond() != 0 || got.Location() != time.UTC {
			t.Fatalf("ParsePersistUntil(%q) = %v: not whole seconds in UTC, after now, before 2262", s, got)
		}
	})
}

// TestParsePersistList: the broker's answer, and answers no broker gives.
func TestParsePersistList(t *testing.T) {
	good := `{"fulldomain":"x.auth.example.org","records":[{"issuer":"letsencrypt.org","accounturi":"https://ca.example/acct/1","policy":"wildcard","persist_until":1893456000,"value":"letsencrypt.org; accounturi=https://ca.example/acct/1; policy=wildcard; persistUntil=1893456000","set_at":"2026-12-07T10:11:12.345678Z"},{"issuer":"other.example","accounturi":"https://other.example/a"}],"max":8}`
	l, err := ParsePersistList([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := l.Of("LetsEncrypt.org")
	if !ok || l.Max != 8 || l.Fulldomain != "x.auth.example.org" || len(l.Records) != 2 || !r.Wildcard ||
		r.Until.Unix() != 1893456000 || r.SetAt.IsZero() || r.Value != r.issueValue() {
		t.Fatalf("parsed %+v", l)
	}
	if o, _ := l.Of("other.example"); o.Value != "other.example; accounturi=https://other.example/a" || !o.Until.IsZero() {
		t.Fatalf("a record without value or end: %+v", o)
	}
	for _, bad := range []string{
		`[]`,
		`{"records":[{"issuer":"","accounturi":"https://a.example/1"}]}`,
		`{"records":[{"issuer":"a.example; policy=wildcard","accounturi":"https://a.example/1"}]}`,
		`{"records":[{"issuer":"a.example","accounturi":""}]}`,
		`{"records":[{"issuer":"a.example","accounturi":"https://a.example/1","policy":"all"}]}`,
		`{"records":[{"issuer":"a.example","accounturi":"https://a.example/1","persist_until":-1}]}`,
		`{"records":[{"issuer":"a.example","accounturi":"https://a.example/1","value":"` + strings.Repeat("v", 256) + `"}]}`,
	} {
		if l, err := ParsePersistList([]byte(bad)); err == nil {
			t.Errorf("ParsePersistList(%s) = %+v, want an error", bad, l)
		}
	}
}

func FuzzParsePersistList(f *testing.F) {
	f.Add([]byte(`{"fulldomain":"x.auth.example.org","records":[{"issuer":"letsencrypt.org","accounturi":"https://ca.example/acct/1","policy":"wildcard","persist_until":1893456000}],"max":8}`))
	f.Add([]byte(`{"records":[]}`))
	f.Add([]byte(`{"records":[{"issuer":"a","accounturi":"b","policy":"WILDCARD","persist_until":9223372036854775807}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParsePersistList(b)
		if err != nil {
			return
		}
		for _, r := range l.Records {
			if r.Issuer == "" || r.AccountURI == "" || len(r.Value) > 255 || strings.ContainsAny(r.Issuer+r.AccountURI, "; \t\r\n") {
				t.Fatalf("accepted a record no broker serves: %+v", r)
			}
		}
	})
}
