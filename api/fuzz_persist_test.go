package api

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/acmebroker/acmebroker/storage"
)

// FuzzPersist drives POST /persist with fuzzed bodies and DELETE
// /persist/{issuer} with fuzzed issuers. Every answer is JSON and no
// server error; a record is stored only if it passes its checks and its
// TXT value parses back to it; at most 8 are stored; DNS serves exactly the
// stored values and records.
func FuzzPersist(f *testing.F) {
	e := newEnv(f, nil)
	r := e.do("POST", "/register", "", nil, "")
	var a acct
	if err := jsonUnmarshal(r.body, &a); err != nil {
		f.Fatal(err)
	}
	f.Add(`{"issuer":"letsencrypt.org","accounturi":"https://acme.example/acct/1"}`, "letsencrypt.org")
	f.Add(`{"issuer":"Pebble.LetsEncrypt.org.","accounturi":"https://127.0.0.1:14000/my-account/1","policy":"wildcard","persist_until":4102444800}`, "pebble.letsencrypt.org")
	f.Add(`{"issuer":"a.b","accounturi":"https://x.y/;","persist_until":-1}`, "a.b.")
	f.Add(`{"issuer":"a.b","accounturi":"https://x.y/","persist_until":null,"policy":""}`, "A.B")
	f.Add(`{"issuer":1}`, "")
	f.Add(`null`, "..")
	f.Add(`{"issuer":"a.b","accounturi":"https://x.y/","extra":1}`, "a/b")
	f.Fuzz(func(t *testing.T, body, issuer string) {
		r := e.do("POST", "/persist", body, hdrs(a), "")
		checkJSONAnswer(t, r)
		switch r.status {
		case http.StatusOK, http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("POST /persist: %d %s", r.status, r.body)
		}
		r = e.do("DELETE", "/persist/"+url.PathEscape(issuer), "", hdrs(a), "")
		checkJSONAnswer(t, r)
		switch r.status {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound:
		default:
			t.Fatalf("DELETE /persist/%q: %d %s", issuer, r.status, r.body)
		}

		sub, _, err := e.store.Subdomain(context.Background(), a.Subdomain)
		if err != nil {
			t.Fatal(err)
		}
		if len(sub.Persist) > storage.MaxPersistRecords {
			t.Fatalf("%d records stored", len(sub.Persist))
		}
		served, _ := e.idx.TXT(nil, a.Subdomain)
		if len(served) != len(sub.Records)+len(sub.Persist) {
			t.Fatalf("served %d values, stored %d values and %d records", len(served), len(sub.Records), len(sub.Persist))
		}
		for _, p := range sub.Persist {
			if err := p.CheckShape(); err != nil {
				t.Fatalf("stored a record failing its checks: %+v: %v", p, err)
			}
			q, err := storage.ParsePersistValue(p.Value())
			if err != nil || q.Value() != p.Value() {
				t.Fatalf("stored value %q does not parse back: %v", p.Value(), err)
			}
			if !slices.Contains(served, p.Value()) {
				t.Fatalf("stored %q, served %v", p.Value(), served)
			}
		}
		// Keep room for the next input.
		if len(sub.Persist) == storage.MaxPersistRecords {
			for _, p := range sub.Persist {
				if r := e.do("DELETE", "/persist/"+p.Issuer, "", hdrs(a), ""); r.status != http.StatusOK {
					t.Fatalf("DELETE /persist/%s: %d %s", p.Issuer, r.status, r.body)
				}
			}
		}
	})
}
