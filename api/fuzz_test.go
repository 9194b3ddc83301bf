package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func checkJSONAnswer(t *testing.T, r result) {
	t.Helper()
	if r.status >= 500 {
		t.Fatalf("server error %d for fuzzed input: %s", r.status, r.body)
	}
	if r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("answer is not JSON: %d %q", r.status, r.body)
	}
}

func FuzzRegister(f *testing.F) {
	for _, s := range []string{"", "{}", `{"allowfrom":["192.0.2.0/24"]}`, `{"AllowFrom":["[::1]/128"]}`, `{"allowfrom":[1]}`, "\x00", `{"allowfrom":["1.2.3.4"]}`} {
		f.Add(s)
	}
	e := newEnv(f, nil)
	f.Fuzz(func(t *testing.T, body string) {
		r := e.do("POST", "/register", body, nil, "")
		checkJSONAnswer(t, r)
		if r.status != http.StatusCreated && r.status != http.StatusBadRequest && r.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("unexpected status %d: %s", r.status, r.body)
		}
	})
}

func FuzzUpdate(f *testing.F) {
	e := newEnv(f, nil)
	r := e.do("POST", "/register", "", nil, "")
	var a acct
	if err := jsonUnmarshal(r.body, &a); err != nil {
		f.Fatal(err)
	}
	f.Add(a.Username, a.Password, `{"subdomain":"`+a.Subdomain+`","txt":"`+val1+`"}`)
	f.Add(a.Username, a.Password, `{"subdomain":"x","txt":""}`)
	f.Add("", "", "")
	f.Add(a.Username, strings.Repeat("a", 40), "{")
	f.Fuzz(func(t *testing.T, user, key, body string) {
		r := e.do("POST", "/update", body, map[string]string{"X-Api-User": user, "X-Api-Key": key}, "")
		checkJSONAnswer(t, r)
		u, err := uuid.Parse(strings.TrimSpace(user))
		if r.status == http.StatusOK && (err != nil || u.String() != a.Username || key != a.Password) {
			t.Fatalf("update accepted with wrong credentials %q %q", user, key)
		}
	})
}

// FuzzAllowFrom drives the two hostile-input paths issue 6 added: the
// Authorization header of a token-mode /register and the body of
// /account/allowfrom. Only the real token registers; a 200 on allowfrom
// means the stored list is exactly what was answered.
func FuzzAllowFrom(f *testing.F) {
	e := newEnv(f, func(c *Config) { c.Registration = RegistrationToken })
	tok, _ := e.makeToken(f, nil)
	r := e.do("POST", "/register", "", bearer(tok), "")
	var a acct
	if err := jsonUnmarshal(r.body, &a); err != nil {
		f.Fatal(err)
	}
	f.Add("Bearer "+tok, `{"allowfrom":["192.0.2.0/24"]}`)
	f.Add("Bearer x.y", `{"allowfrom":[]}`)
	f.Add("bearer  "+tok+" ", `{"allowfrom":["[2001:db8::]/32","10.0.0.0/8"]}`)
	f.Add("", `{"allowfrom":null}`)
	f.Add("Basic Zm9vOmJhcg==", `{"allowfrom":["1.2.3.4/33"]}`)
	f.Fuzz(func(t *testing.T, authz, body string) {
		r := e.do("POST", "/register", "", map[string]string{"Authorization": authz}, "")
		checkJSONAnswer(t, r)
		if r.status == http.StatusCreated && !strings.Contains(authz, tok) {
			t.Fatalf("registered with Authorization %q", authz)
		}
		r = e.do("POST", "/account/allowfrom", body, hdrs(a), "")
		checkJSONAnswer(t, r)
		switch r.status {
		case http.StatusOK:
			var got struct {
				AllowFrom []string `json:"allowfrom"`
			}
			if err := jsonUnmarshal(r.body, &got); err != nil {
				t.Fatal(err)
			}
			stored, err := e.store.Account(t.Context(), a.Username)
			if err != nil || len(stored.AllowFrom) != len(got.AllowFrom) {
				t.Fatalf("answered %v, stored %v (%v)", got.AllowFrom, stored.AllowFrom, err)
			}
			// Put it back so the next input can change it again.
			if err := e.store.UpdateAllowFrom(t.Context(), a.Username, nil); err != nil {
				t.Fatal(err)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("allowfrom: %d %s", r.status, r.body)
		}
	})
}
