package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const persistURI = "https://acme-v02.api.letsencrypt.org/acme/acct/123456"

func persistBody(issuer string, extra string) string {
	return `{"issuer":"` + issuer + `","accounturi":"` + persistURI + `"` + extra + `}`
}

func decodeList(t *testing.T, r result) PersistList {
	t.Helper()
	var l PersistList
	if err := json.Unmarshal([]byte(r.body), &l); err != nil || l.Records == nil {
		t.Fatalf("not a persist list: %q (%v)", r.body, err)
	}
	return l
}

// TestPersistEndpoint walks the endpoint's contract: set, list, replace,
// the limit, remove, and what is served at the fulldomain meanwhile.
func TestPersistEndpoint(t *testing.T) {
	e := newEnv(t, nil)
	a := e.register(t, "")
	h := hdrs(a)
	until := time.Now().Add(90 * 24 * time.Hour).Unix()

	r := e.do("GET", "/persist", "", h, "")
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET with none: %d %s", r.status, r.body)
	}
	if l := decodeList(t, r); len(l.Records) != 0 || l.Fulldomain != a.Fulldomain || l.Max != 8 {
		t.Fatalf("GET with none: %+v", l)
	}
	if !strings.Contains(r.body, `"records":[]`) {
		t.Fatalf("an empty list is not []: %s", r.body)
	}

	r = e.do("POST", "/persist", persistBody("LetsEncrypt.org.", `,"policy":"Wildcard","persist_until":`+strconv.FormatInt(until, 10)), h, "")
	if r.status != 200 {
		t.Fatalf("POST: %d %s", r.status, r.body)
	}
	l := decodeList(t, r)
	wantValue := fmt.Sprintf("letsencrypt.org; accounturi=%s; policy=wildcard; persistUntil=%d", persistURI, until)
	if len(l.Records) != 1 || l.Records[0].Issuer != "letsencrypt.org" || l.Records[0].Policy != "wildcard" ||
		l.Records[0].PersistUntil != until || l.Records[0].Value != wantValue || l.Records[0].SetAt == "" {
		t.Fatalf("POST answered %+v", l)
	}
	if _, err := time.Parse(time.RFC3339Nano, l.Records[0].SetAt); err != nil {
		t.Fatalf("set_at %q: %v", l.Records[0].SetAt, err)
	}
	if got, _ := e.idx.TXT(nil, a.Subdomain); !slices.Equal(got, []string{wantValue}) {
		t.Fatalf("served %v", got)
	}

	// The acme-dns flow is unaffected: values come and the record stays.
	for _, v := range []string{val1, val2} {
		if r := e.do("POST", "/update", `{"subdomain":"`+a.Subdomain+`","txt":"`+v+`"}`, h, ""); r.status != 200 || r.body != `{"txt":"`+v+`"}`+"\n" {
			t.Fatalf("update: %d %s", r.status, r.body)
		}
	}
	if got, _ := e.idx.TXT(nil, a.Subdomain); !slices.Equal(got, []string{val2, val1, wantValue}) {
		t.Fatalf("served after updates %v", got)
	}

	// Replace: same issuer, no policy, no end (0 and null both mean none).
	for _, extra := range []string{`,"persist_until":0`, `,"persist_until":null,"policy":""`} {
		r = e.do("POST", "/persist", persistBody("letsencrypt.org", extra), h, "")
		if l := decodeList(t, r); r.status != 200 || len(l.Records) != 1 || l.Records[0].Value != "letsencrypt.org; accounturi="+persistURI ||
			strings.Contains(r.body, "persist_until") || strings.Contains(r.body, "policy") {
			t.Fatalf("replace with %s: %d %s", extra, r.status, r.body)
		}
	}

	// Up to 8 issuers; the ninth is 409, replacing one still works.
	for i := 1; i < 8; i++ {
		if r := e.do("POST", "/persist", persistBody(fmt.Sprintf("ca%d.example", i), ""), h, ""); r.status != 200 {
			t.Fatalf("record %d: %d %s", i+1, r.status, r.body)
		}
	}
	r = e.do("POST", "/persist", persistBody("ninth.example", ""), h, "")
	if r.status != http.StatusConflict || r.errCode(t) != "too_many_persist" {
		t.Fatalf("ninth: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/persist", persistBody("ca3.example", `,"policy":"wildcard"`), h, ""); r.status != 200 {
		t.Fatalf("replace at the limit: %d %s", r.status, r.body)
	}
	if got, _ := e.idx.TXT(nil, a.Subdomain); len(got) != 2+8 {
		t.Fatalf("served %d values, want 2 + 8: %v", len(got), got)
	}

	// Remove: unknown issuer 404 naming what is there, known 200, bad 400.
	r = e.do("DELETE", "/persist/nobody.example", "", h, "")
	if r.status != 404 || r.errCode(t) != "no_such_persist" || !strings.Contains(r.body, "ca3.example") {
		t.Fatalf("DELETE unknown: %d %s", r.status, r.body)
	}
	r = e.do("DELETE", "/persist/LetsEncrypt.ORG", "", h, "")
	if l := decodeList(t, r); r.status != 200 || len(l.Records) != 7 || slices.ContainsFunc(l.Records, func(p PersistRecord) bool { return p.Issuer == "letsencrypt.org" }) {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	if got, _ := e.idx.TXT(nil, a.Subdomain); slices.ContainsFunc(got, func(v string) bool { return strings.HasPrefix(v, "letsencrypt.org;") }) {
		t.Fatalf("removed record still served: %v", got)
	}
	if r := e.do("DELETE", "/persist/not_a_host", "", h, ""); r.status != 400 || r.errCode(t) != "bad_persist" {
		t.Fatalf("DELETE bad issuer: %d %s", r.status, r.body)
	}

	// The account's delete takes its records.
	if r := e.do("DELETE", "/account", "", h, ""); r.status != 200 {
		t.Fatalf("delete account: %d %s", r.status, r.body)
	}
	if _, ok := e.idx.TXT(nil, a.Subdomain); ok {
		t.Fatal("deleted account still served")
	}
	if r := e.do("GET", "/persist", "", h, ""); r.status != 401 {
		t.Fatalf("GET after the delete: %d %s", r.status, r.body)
	}
}

// TestPersistBadInput: every bad field is a 400 bad_persist naming it,
// broken JSON is malformed_json_payload, and nothing is stored.
func TestPersistBadInput(t *testing.T) {
	e := newEnv(t, nil)
	a := e.register(t, "")
	h := hdrs(a)
	past := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	tests := []struct {
		name, body, code, field string
	}{
		{"empty body", "", "malformed_json_payload", ""},
		{"not JSON", "issuer=letsencrypt.org", "malformed_json_payload", ""},
		{"array", "[]", "malformed_json_payload", ""},
		{"trailing data", persistBody("letsencrypt.org", "") + "{}", "malformed_json_payload", ""},
		{"null body", "null", "bad_persist", "issuer"},
		{"no issuer", `{"accounturi":"` + persistURI + `"}`, "bad_persist", "issuer"},
		{"issuer not a host", persistBody("lets encrypt", ""), "bad_persist", "issuer"},
		{"issuer one label", persistBody("pebble", ""), "bad_persist", "issuer"},
		{"issuer with semicolon", persistBody("a.org; accounturi=https://evil.example/1", ""), "bad_persist", "issuer"},
		{"issuer a number", `{"issuer":7,"accounturi":"` + persistURI + `"}`, "bad_persist", "issuer"},
		{"no accounturi", `{"issuer":"letsencrypt.org"}`, "bad_persist", "accounturi"},
		{"http accounturi", `{"issuer":"letsencrypt.org","accounturi":"http://acme.example/acct/1"}`, "bad_persist", "accounturi"},
		{"accounturi injects a policy", `{"issuer":"letsencrypt.org","accounturi":"https://acme.example/1; policy=wildcard"}`, "bad_persist", "accounturi"},
		{"accounturi a list", `{"issuer":"letsencrypt.org","accounturi":["https://a.example/1"]}`, "bad_persist", "accounturi"},
		{"other policy", persistBody("letsencrypt.org", `,"policy":"any"`), "bad_persist", "policy"},
		{"policy a bool", persistBody("letsencrypt.org", `,"policy":true`), "bad_persist", "policy"},
		{"past end", persistBody("letsencrypt.org", `,"persist_until":`+past), "bad_persist", "persist_until"},
		{"negative end", persistBody("letsencrypt.org", `,"persist_until":-5`), "bad_persist", "persist_until"},
		{"fractional end", persistBody("letsencrypt.org", `,"persist_until":1893456000.5`), "bad_persist", "persist_until"},
		{"exponent end", persistBody("letsencrypt.org", `,"persist_until":1e10`), "bad_persist", "persist_until"},
		{"string end", persistBody("letsencrypt.org", `,"persist_until":"1893456000"`), "bad_persist", "persist_until"},
		{"end past 2262", persistBody("letsencrypt.org", `,"persist_until":99999999999`), "bad_persist", "persist_until"},
		{"huge end", persistBody("letsencrypt.org", `,"persist_until":1e999999`), "bad_persist", "persist_until"},
		{"unknown key", persistBody("letsencrypt.org", `,"value":"x"`), "bad_persist", "value"},
		{"camel-case end", persistBody("letsencrypt.org", `,"persistUntil":1893456000`), "bad_persist", "persistUntil"},
		{"too long", `{"issuer":"letsencrypt.org","accounturi":"https://acme.example/` + strings.Repeat("a", 250) + `"}`, "bad_persist", "value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/persist", tc.body, h, "")
			var b persistErrorBody
			if r.status != 400 || json.Unmarshal([]byte(r.body), &b) != nil || b.Error != tc.code || b.Field != tc.field || b.Detail == "" {
				t.Fatalf("%d %s; want 400 %s on %q", r.status, r.body, tc.code, tc.field)
			}
		})
	}
	if l := decodeList(t, e.do("GET", "/persist", "", h, "")); len(l.Records) != 0 {
		t.Fatalf("bad input stored %+v", l.Records)
	}
}

// TestPersistAuth: the same 401 "forbidden" as /update for every failure,
// allowfrom included, on all three methods; one account cannot touch
// another's records.
func TestPersistAuth(t *testing.T) {
	e := newEnv(t, nil)
	a := e.register(t, "")
	b := e.register(t, "")
	locked := e.register(t, `{"allowfrom":["192.0.2.1/32"]}`)
	if r := e.do("POST", "/persist", persistBody("letsencrypt.org", ""), hdrs(b), ""); r.status != 200 {
		t.Fatal(r.body)
	}
	wrongKey := map[string]string{"X-Api-User": a.Username, "X-Api-Key": b.Password}
	for _, c := range []struct {
		name   string
		hdr    map[string]string
		remote string
	}{
		{"no headers", nil, ""},
		{"wrong key", wrongKey, ""},
		{"unknown user", map[string]string{"X-Api-User": "00000000-0000-4000-8000-000000000000", "X-Api-Key": a.Password}, ""},
		{"outside allowfrom", hdrs(locked), "198.51.100.9:1234"},
	} {
		for _, req := range [][2]string{{"GET", "/persist"}, {"POST", "/persist"}, {"DELETE", "/persist/letsencrypt.org"}} {
			r := e.do(req[0], req[1], persistBody("letsencrypt.org", ""), c.hdr, c.remote)
			if r.status != 401 || r.errCode(t) != "forbidden" {
				t.Errorf("%s: %s %s: %d %s", c.name, req[0], req[1], r.status, r.body)
			}
		}
	}
	if r := e.do("GET", "/persist", "", hdrs(locked), "192.0.2.1:1234"); r.status != 200 {
		t.Errorf("inside allowfrom: %d %s", r.status, r.body)
	}
	// a's calls see and change only a's records.
	if r := e.do("DELETE", "/persist/letsencrypt.org", "", hdrs(a), ""); r.status != 404 {
		t.Errorf("a deleting b's issuer: %d %s", r.status, r.body)
	}
	if l := decodeList(t, e.do("GET", "/persist", "", hdrs(b), "")); len(l.Records) != 1 {
		t.Errorf("b's records after a's calls: %+v", l)
	}
}
