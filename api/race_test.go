package api

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
)

// Requests racing their account's deletion get 401 "forbidden" (the
// credentials are gone), never a 500 db_error (attack review, defect 6),
// and the deleted account is not served afterwards (defect 1).
func TestRequestsRacingDeleteAre401(t *testing.T) {
	e := newEnv(t, nil)
	for range 20 {
		a := e.register(t, "")
		var wg sync.WaitGroup
		statuses := make(chan result, 16)
		for range 4 {
			wg.Go(func() {
				for range 3 {
					statuses <- e.do("POST", "/update", `{"subdomain":"`+a.Subdomain+`","txt":"`+val1+`"}`, hdrs(a), "")
				}
			})
		}
		wg.Go(func() { statuses <- e.do("POST", "/account/allowfrom", `{"allowfrom":[]}`, hdrs(a), "") })
		wg.Go(func() { statuses <- e.do("DELETE", "/account", "", hdrs(a), "") })
		wg.Wait()
		close(statuses)
		for r := range statuses {
			if r.status != http.StatusOK && (r.status != http.StatusUnauthorized || r.errCode(t) != "forbidden") {
				t.Fatalf("a request racing the delete got %d %s", r.status, r.body)
			}
		}
		if _, ok := e.idx.TXT(nil, a.Subdomain); ok {
			t.Fatalf("deleted account %s still served", a.Subdomain)
		}
	}
}

// Of five concurrent rotations with one key exactly one answers 200 (and
// its key works); the others get 401 (attack review, defect 7).
func TestConcurrentRotationsOneWins(t *testing.T) {
	e := newEnv(t, nil)
	a := e.register(t, "")
	var wg sync.WaitGroup
	results := make(chan result, 5)
	for range 5 {
		wg.Go(func() { results <- e.do("POST", "/account/rotate", "", hdrs(a), "") })
	}
	wg.Wait()
	close(results)
	var won []string
	for r := range results {
		switch r.status {
		case http.StatusOK:
			var b struct{ Password string }
			if err := json.Unmarshal([]byte(r.body), &b); err != nil {
				t.Fatal(err)
			}
			won = append(won, b.Password)
		case http.StatusUnauthorized:
		default:
			t.Fatalf("rotation answered %d %s", r.status, r.body)
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d rotations answered 200, want exactly 1", len(won))
	}
	a.Password = won[0]
	if r := e.do("POST", "/update", `{"subdomain":"`+a.Subdomain+`","txt":"`+val1+`"}`, hdrs(a), ""); r.status != http.StatusOK {
		t.Fatalf("the winning key does not work: %d %s", r.status, r.body)
	}
}
