package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestDisabledAccount: once an admin disables an account its right
// credentials get 401 "forbidden" (acme-dns's code) with a detail naming
// the cause on every authenticated endpoint, nothing changes, and the
// refusals are not counted as failed logins; enabling it restores service.
func TestDisabledAccount(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Limits.AuthFailPerSource = 8 }) // burst 4
	a := e.register(t, "")
	other := e.register(t, "")
	upd := `{"subdomain":"` + a.Subdomain + `","txt":"` + val1 + `"}`
	if r := e.do("POST", "/update", upd, hdrs(a), ""); r.status != http.StatusOK {
		t.Fatalf("update before disabling: %d %s", r.status, r.body)
	}
	if err := e.store.SetDisabled(context.Background(), a.Username, true); err != nil {
		t.Fatal(err)
	}
	upd2 := `{"subdomain":"` + a.Subdomain + `","txt":"` + val2 + `"}`
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/update", upd2},
		{"POST", "/account/allowfrom", `{"allowfrom":["192.0.2.0/24"]}`},
		{"POST", "/account/rotate", ""},
		{"DELETE", "/account", ""},
		{"POST", "/update", upd2}, // 5 refusals: more than the burst of 4
	} {
		r := e.do(c.method, c.path, c.body, hdrs(a), "")
		if r.status != http.StatusUnauthorized || r.errCode(t) != "forbidden" || !strings.Contains(r.body, "disabled by the broker's admin") {
			t.Errorf("%s %s on a disabled account: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	acc, err := e.store.Account(context.Background(), a.Username)
	if err != nil || len(acc.AllowFrom) != 0 {
		t.Fatalf("disabled account changed: %+v %v", acc, err)
	}
	if got, _ := e.idx.TXT(nil, a.Subdomain); len(got) != 1 || got[0] != val1 {
		t.Fatalf("served values of the disabled account: %v, want [%s]", got, val1)
	}
	// Another account from the same source is not locked out by the refusals.
	if r := e.do("POST", "/update", `{"subdomain":"`+other.Subdomain+`","txt":"`+val1+`"}`, hdrs(other), ""); r.status != http.StatusOK {
		t.Fatalf("another account after the refusals: %d %s", r.status, r.body)
	}
	// A wrong key for a disabled account says nothing about it being disabled.
	bad := hdrs(a)
	bad["X-Api-Key"] = strings.Repeat("x", len(a.Password))
	if r := e.do("POST", "/update", upd2, bad, ""); r.status != http.StatusUnauthorized || strings.Contains(r.body, "disabled") {
		t.Fatalf("wrong key on a disabled account: %d %s", r.status, r.body)
	}
	if err := e.store.SetDisabled(context.Background(), a.Username, false); err != nil {
		t.Fatal(err)
	}
	if r := e.do("POST", "/update", upd2, hdrs(a), ""); r.status != http.StatusOK {
		t.Fatalf("update after enabling: %d %s", r.status, r.body)
	}
}
