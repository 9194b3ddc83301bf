package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/secret"
	"github.com/acmebroker/acmebroker/storage"
)

// makeToken stores a token as `acmebroker token create` does and returns
// what its holder sends.
func (e *env) makeToken(t testing.TB, mod func(*storage.Token)) (string, string) {
	t.Helper()
	tok, id, hash, err := secret.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tk := storage.Token{ID: id, Hash: hash, CreatedAt: time.Now()}
	if mod != nil {
		mod(&tk)
	}
	if err := e.store.CreateToken(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	return tok, id
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func TestRegistrationWithToken(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Registration = RegistrationToken })
	ctx := context.Background()
	good, goodID := e.makeToken(t, nil)
	limited, limitedID := e.makeToken(t, func(tk *storage.Token) { tk.MaxAccounts = 1 })
	expired, _ := e.makeToken(t, func(tk *storage.Token) { tk.ExpiresAt = time.Now().Add(-time.Minute) })
	revoked, revokedID := e.makeToken(t, nil)
	if err := e.store.RevokeToken(ctx, revokedID, time.Now()); err != nil {
		t.Fatal(err)
	}
	fenced, _ := e.makeToken(t, func(tk *storage.Token) { tk.AllowFrom = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })
	wrongSecret := goodID + "." + strings.Repeat("A", secret.KeyLen)

	tests := []struct {
		name   string
		hdr    map[string]string
		remote string
		status int
		detail string
	}{
		{"no header", nil, "", 401, "needs a token"},
		{"not bearer", map[string]string{"Authorization": "Basic " + good}, "", 401, "needs a token"},
		{"no dot", bearer(goodID), "", 401, "needs a token"},
		{"unknown token", bearer("000000000000." + strings.Repeat("A", secret.KeyLen)), "", 401, "not valid"},
		{"wrong secret", bearer(wrongSecret), "", 401, "not valid"},
		{"expired", bearer(expired), "", 401, "expired"},
		{"revoked", bearer(revoked), "", 401, "revoked"},
		{"outside the token's sources", bearer(fenced), "192.0.2.1:1234", 401, "may not be used from 192.0.2.1"},
		{"inside the token's sources", bearer(fenced), "10.1.2.3:1234", 201, ""},
		{"good", bearer(good), "", 201, ""},
		{"good, lower-case scheme", map[string]string{"Authorization": "bearer " + good}, "", 201, ""},
		{"limited, first", bearer(limited), "", 201, ""},
		{"limited, second", bearer(limited), "", 401, "used up"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/register", "", tc.hdr, tc.remote)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status == 401 {
				if r.errCode(t) != "forbidden" || !strings.Contains(r.body, tc.detail) || r.header.Get("WWW-Authenticate") == "" {
					t.Fatalf("401 body %s (want detail containing %q and a WWW-Authenticate header)", r.body, tc.detail)
				}
			}
		})
	}
	for id, want := range map[string]int{goodID: 2, limitedID: 1} {
		if tk, err := e.store.Token(ctx, id); err != nil || tk.Accounts != want {
			t.Errorf("token %s counts %d accounts (%v), want %d", id, tk.Accounts, err, want)
		}
	}
}

func TestRegistrationOpenIgnoresTokens(t *testing.T) {
	e := newEnv(t, nil)
	if r := e.do("POST", "/register", "", bearer("whatever"), ""); r.status != 201 {
		t.Fatalf("open registration with a stray Authorization header: %d %s", r.status, r.body)
	}
}

func TestSetAllowFrom(t *testing.T) {
	e := newEnv(t, nil)
	a := e.register(t, `{"allowfrom":["192.0.2.0/24"]}`)
	upd := func(remote string) int {
		return e.do("POST", "/update", `{"subdomain":"`+a.Subdomain+`","txt":"`+val1+`"}`, hdrs(a), remote).status
	}
	set := func(body, remote string, h map[string]string) result {
		return e.do("POST", "/account/allowfrom", body, h, remote)
	}
	wrongKey := hdrs(a)
	wrongKey["X-Api-Key"] = strings.Repeat("x", secret.KeyLen)

	// Refused: from a source the current list does not allow, with a wrong
	// key, with bad bodies. None changes anything.
	if r := set(`{"allowfrom":[]}`, "198.51.100.9:1", hdrs(a)); r.status != 401 {
		t.Fatalf("change from outside the current allowfrom: %d %s", r.status, r.body)
	}
	if r := set(`{"allowfrom":[]}`, "192.0.2.5:1", wrongKey); r.status != 401 {
		t.Fatalf("change with a wrong key: %d %s", r.status, r.body)
	}
	for _, body := range []string{``, `{}`, `{"allowfrom":`, `{"allowfrom":"10.0.0.0/8"}`} {
		if r := set(body, "192.0.2.5:1", hdrs(a)); r.status != 400 || r.errCode(t) != "malformed_json_payload" {
			t.Fatalf("body %q: %d %s", body, r.status, r.body)
		}
	}
	if r := set(`{"allowfrom":["10.0.0.1"]}`, "192.0.2.5:1", hdrs(a)); r.status != 400 || r.errCode(t) != "invalid_allowfrom_cidr" {
		t.Fatalf("bare address: %d %s", r.status, r.body)
	}
	if upd("198.51.100.9:1") != 401 || upd("192.0.2.5:1") != 200 {
		t.Fatal("a refused change altered the allowfrom list")
	}

	// Accepted: the new list applies at once.
	r := set(`{"allowfrom":["198.51.100.0/24","2001:db8::/32"]}`, "192.0.2.5:1", hdrs(a))
	var got struct {
		AllowFrom []string `json:"allowfrom"`
	}
	if r.status != 200 || json.Unmarshal([]byte(r.body), &got) != nil || strings.Join(got.AllowFrom, ",") != "198.51.100.0/24,2001:db8::/32" {
		t.Fatalf("change: %d %s", r.status, r.body)
	}
	if upd("198.51.100.9:1") != 200 || upd("192.0.2.5:1") != 401 {
		t.Fatal("the new allowfrom list is not what /update checks")
	}
	// An empty list allows any source.
	if r := set(`{"allowfrom":[]}`, "198.51.100.9:1", hdrs(a)); r.status != 200 {
		t.Fatalf("clearing: %d %s", r.status, r.body)
	}
	if upd("203.0.113.1:1") != 200 {
		t.Fatal("after clearing allowfrom an update from anywhere is refused")
	}
}

func TestRegistrationDisabledKeepsUpdate(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Registration = RegistrationDisabled })
	if r := e.do("POST", "/register", "", nil, ""); r.status != http.StatusNotFound {
		t.Fatalf("register: %d", r.status)
	}
	if r := e.do("POST", "/update", "{}", nil, ""); r.status != http.StatusUnauthorized {
		t.Fatalf("update still routed: %d", r.status)
	}
}

func TestRotateKey(t *testing.T) {
	e := newEnv(t, nil)
	a := e.register(t, `{"allowfrom":["192.0.2.0/24"]}`)
	if r := e.do("POST", "/account/rotate", "", hdrs(a), "198.51.100.1:1"); r.status != 401 {
		t.Fatalf("rotation from outside allowfrom: %d", r.status)
	}
	r := e.do("POST", "/account/rotate", "", hdrs(a), "")
	var got struct{ Username, Password string }
	if r.status != 200 || json.Unmarshal([]byte(r.body), &got) != nil || got.Username != a.Username || !secret.ValidKeyFormat(got.Password) || got.Password == a.Password {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	body := `{"subdomain":"` + a.Subdomain + `","txt":"` + val1 + `"}`
	if r := e.do("POST", "/update", body, hdrs(a), ""); r.status != 401 {
		t.Fatalf("the old key still works: %d", r.status)
	}
	a.Password = got.Password
	if r := e.do("POST", "/update", body, hdrs(a), ""); r.status != 200 {
		t.Fatalf("the new key does not work: %d %s", r.status, r.body)
	}
}

func TestDeleteAccount(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.register(t, ""), e.register(t, "")
	for _, x := range []acct{a, b} {
		if r := e.do("POST", "/update", `{"subdomain":"`+x.Subdomain+`","txt":"`+val1+`"}`, hdrs(x), ""); r.status != 200 {
			t.Fatal(r.body)
		}
	}
	wrong := hdrs(a)
	wrong["X-Api-Key"] = b.Password
	if r := e.do("DELETE", "/account", "", wrong, ""); r.status != 401 {
		t.Fatalf("delete with another account's key: %d", r.status)
	}
	r := e.do("DELETE", "/account", "", hdrs(a), "")
	if r.status != 200 || !strings.Contains(r.body, a.Subdomain) {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if _, ok := e.idx.TXT(nil, a.Subdomain); ok {
		t.Fatal("DNS still knows the deleted subdomain")
	}
	if v, ok := e.idx.TXT(nil, b.Subdomain); !ok || len(v) != 1 {
		t.Fatal("deleting one account touched another")
	}
	if r := e.do("POST", "/update", `{"subdomain":"`+a.Subdomain+`","txt":"`+val1+`"}`, hdrs(a), ""); r.status != 401 {
		t.Fatalf("update after delete: %d", r.status)
	}
	if r := e.do("DELETE", "/account", "", hdrs(a), ""); r.status != 401 {
		t.Fatalf("second delete: %d", r.status)
	}
}
