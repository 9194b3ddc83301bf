package api

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// FuzzUpdateHeaders fuzzes every header /update reads: X-Api-User,
// X-Api-Key, Authorization and X-Forwarded-For, from an untrusted peer and
// from a trusted proxy. The account may update only from 198.51.100.0/24.
// A 200 needs the right user and key, never comes to the untrusted peer
// (X-Forwarded-For must not help it), and through the proxy only when the
// forwarded chain names an allowed source.
func FuzzUpdateHeaders(f *testing.F) {
	e := newEnv(f, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	r := e.do("POST", "/register", `{"allowfrom":["198.51.100.0/24"]}`, nil, "")
	var a acct
	if err := jsonUnmarshal(r.body, &a); err != nil {
		f.Fatal(err)
	}
	body := `{"subdomain":"` + a.Subdomain + `","txt":"` + val1 + `"}`
	f.Add(a.Username, a.Password, "", "198.51.100.7", true)
	f.Add(a.Username, a.Password, "", "198.51.100.7", false)
	f.Add(a.Username, a.Password, "Bearer x.y", "198.51.100.7, 10.0.0.1", true)
	f.Add(strings.ToUpper(a.Username), a.Password, "", "203.0.113.1, 198.51.100.9", true)
	f.Add("{"+a.Username+"}", a.Password+" ", "Basic Zm9vOmJhcg==", "garbage, 198.51.100.1", true)
	f.Add(a.Username, a.Password, "", "::ffff:198.51.100.7", true)
	f.Add(a.Username, a.Password, "", "198.51.100.7\r\nX-Api-Key: x", false)
	f.Add("' OR 1=1 --", "", "", "", false)
	f.Fuzz(func(t *testing.T, user, key, authz, xff string, viaProxy bool) {
		remote := "192.0.2.1:4444" // not in allowfrom, not a proxy
		if viaProxy {
			remote = "10.1.2.3:4444"
		}
		h := map[string]string{"X-Api-User": user, "X-Api-Key": key, "Authorization": authz, "X-Forwarded-For": xff}
		r := e.do("POST", "/update", body, h, remote)
		checkJSONAnswer(t, r)
		switch r.status {
		case http.StatusOK:
			u, err := uuid.Parse(strings.TrimSpace(user))
			if err != nil || u.String() != a.Username || key != a.Password {
				t.Fatalf("update accepted with user %q key %q", user, key)
			}
			if !viaProxy {
				t.Fatalf("update accepted from an untrusted peer outside allowfrom (X-Forwarded-For %q)", xff)
			}
			if !strings.Contains(xff, "198.51.100.") {
				t.Fatalf("update accepted through the proxy with X-Forwarded-For %q", xff)
			}
		case http.StatusUnauthorized, http.StatusBadRequest:
		default:
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
}

// FuzzRegisterHeaders fuzzes the headers /register reads (Authorization,
// X-Forwarded-For for the per-source limit) and the Content-Type, with
// the register limit on and a trusted proxy: the answer is always JSON,
// and a 201 or a 429 in open mode whatever the headers say.
func FuzzRegisterHeaders(f *testing.F) {
	e := newEnv(f, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		c.Limits.RegisterPerSource = 1_000_000
	})
	f.Add("", "", "application/json", false)
	f.Add("Bearer abc.def", "198.51.100.7", "text/plain", true)
	f.Add("Bearer", "198.51.100.7, 10.0.0.1, garbage", "", true)
	f.Add("\x00", "::1", "multipart/form-data; boundary=\x00", false)
	f.Add("", strings.Repeat("1.2.3.4,", 500), "application/json; charset=utf-16", true)
	f.Fuzz(func(t *testing.T, authz, xff, ctype string, viaProxy bool) {
		remote := "192.0.2.1:4444"
		if viaProxy {
			remote = "10.1.2.3:4444"
		}
		r := e.do("POST", "/register", "", map[string]string{"Authorization": authz, "X-Forwarded-For": xff, "Content-Type": ctype}, remote)
		checkJSONAnswer(t, r)
		if r.status != http.StatusCreated && r.status != http.StatusTooManyRequests {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
}
