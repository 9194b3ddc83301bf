package api

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// TestAccountLimits: GET /account tells the account its own names and the
// limits the broker applies (what a client needs to plan its batches), with
// the same authentication and allowfrom check as /update, and without
// spending an update token.
func TestAccountLimits(t *testing.T) {
	policy := storage.TXTPolicy{Always: 2, Window: 7 * time.Minute, Max: 9}
	e := newEnv(t, func(c *Config) {
		c.TXTPolicy = policy
		c.Limits.UpdatePerAccount = 2 // a burst of 1
	})
	a := e.register(t, `{"allowfrom":["192.0.2.0/24"]}`)
	inside, outside := "192.0.2.7:4000", "198.51.100.1:4000"

	var got accountResponse
	for range 3 { // more than the update burst: GET /account is not an update
		r := e.do("GET", "/account", "", hdrs(a), inside)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET /account: %d %s", r.status, r.body)
		}
		if err := jsonUnmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
	}
	want := accountResponse{Username: a.Username, Subdomain: a.Subdomain, Fulldomain: a.Subdomain + "." + testZone,
		AllowFrom: []string{"192.0.2.0/24"}, TXTMax: 9, TXTAlways: 2, TXTWindowSeconds: 420, UpdateLimitPerMinute: 2}
	if got.Username != want.Username || got.Subdomain != want.Subdomain || got.Fulldomain != want.Fulldomain ||
		!slices.Equal(got.AllowFrom, want.AllowFrom) || got.TXTMax != want.TXTMax || got.TXTAlways != want.TXTAlways ||
		got.TXTWindowSeconds != want.TXTWindowSeconds || got.UpdateLimitPerMinute != want.UpdateLimitPerMinute {
		t.Fatalf("GET /account = %+v, want %+v", got, want)
	}
	body := `{"subdomain":"` + a.Subdomain + `","txt":"` + val1 + `"}`
	if r := e.do("POST", "/update", body, hdrs(a), inside); r.status != http.StatusOK {
		t.Fatalf("update after GET /account: %d %s (GET /account spent the update token?)", r.status, r.body)
	}

	wrongKey := hdrs(a)
	first := "x" // another first character than the key's (1 in 64 keys starts with x)
	if a.Password[0] == 'x' {
		first = "y"
	}
	wrongKey["X-Api-Key"] = first + a.Password[1:]
	for _, tc := range []struct {
		name   string
		method string
		hdr    map[string]string
		remote string
		status int
		code   string
	}{
		{"no credentials", "GET", nil, inside, 401, "forbidden"},
		{"wrong key", "GET", wrongKey, inside, 401, "forbidden"},
		{"outside allowfrom", "GET", hdrs(a), outside, 401, "forbidden"},
		{"POST is not a query", "POST", hdrs(a), inside, 405, "method_not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, "/account", "", tc.hdr, tc.remote)
			if r.status != tc.status || r.errCode(t) != tc.code {
				t.Fatalf("%s /account: %d %s, want %d %s", tc.method, r.status, r.body, tc.status, tc.code)
			}
		})
	}
}

// TestAccountNoUpdateLimit: with no per-account limit the field is 0, and
// the base path applies as for every route.
func TestAccountNoUpdateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BasePath = "/acme-dns" })
	r := e.do("POST", "/acme-dns/register", "", nil, "")
	var a acct
	if err := jsonUnmarshal(r.body, &a); err != nil {
		t.Fatal(err)
	}
	r = e.do("GET", "/acme-dns/account", "", hdrs(a), "")
	var got accountResponse
	if r.status != 200 || jsonUnmarshal(r.body, &got) != nil || got.UpdateLimitPerMinute != 0 || got.TXTMax != storage.DefaultTXTPolicy.Max {
		t.Fatalf("GET /acme-dns/account: %d %s", r.status, r.body)
	}
}
