package api

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newLimitedEnv(t *testing.T, l Limits) (*env, *fakeClock) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "api.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	idx := records.New(storage.DefaultTXTPolicy, clk.now)
	cfg := Config{Zone: testZone, TXTPolicy: storage.DefaultTXTPolicy, Limits: l}
	d := testDeps(cfg, st, idx)
	d.Now = clk.now
	h := New(cfg, d)
	return &env{h: h, store: st, idx: idx}, clk
}

func retryAfter(t *testing.T, r result) int {
	t.Helper()
	if r.status != http.StatusTooManyRequests || r.errCode(t) != "too_many_requests" {
		t.Fatalf("want 429 too_many_requests, got %d %s", r.status, r.body)
	}
	n, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || n < 1 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	return n
}

func TestRegisterRateLimitPerSource(t *testing.T) {
	e, clk := newLimitedEnv(t, Limits{RegisterPerSource: 4}) // burst 2, one every 15 s
	reg := func(remote string) result { return e.do("POST", "/register", "", nil, remote) }
	for i := range 2 {
		if r := reg("192.0.2.1:1"); r.status != 201 {
			t.Fatalf("registration %d: %d", i+1, r.status)
		}
	}
	wait := retryAfter(t, reg("192.0.2.1:2"))
	if wait > 15 {
		t.Fatalf("Retry-After %d s, want at most 15", wait)
	}
	if r := reg("192.0.2.2:1"); r.status != 201 {
		t.Fatalf("another source is limited too: %d", r.status)
	}
	// IPv6 sources count per /64.
	reg("[2001:db8::1]:1")
	reg("[2001:db8::2]:1")
	retryAfter(t, reg("[2001:db8::3]:1"))
	if r := reg("[2001:db8:0:1::1]:1"); r.status != 201 {
		t.Fatalf("another /64 is limited: %d", r.status)
	}
	clk.add(time.Duration(wait) * time.Second)
	if r := reg("192.0.2.1:3"); r.status != 201 {
		t.Fatalf("after Retry-After: %d %s", r.status, r.body)
	}
}

func TestUpdateRateLimitPerAccount(t *testing.T) {
	e, clk := newLimitedEnv(t, Limits{UpdatePerAccount: 4})
	a, b := e.register(t, ""), e.register(t, "")
	upd := func(x acct) result {
		return e.do("POST", "/update", `{"subdomain":"`+x.Subdomain+`","txt":"`+val1+`"}`, hdrs(x), "")
	}
	upd(a)
	upd(a)
	retryAfter(t, upd(a))
	if r := upd(b); r.status != 200 {
		t.Fatalf("another account limited: %d", r.status)
	}
	clk.add(15 * time.Second)
	if r := upd(a); r.status != 200 {
		t.Fatalf("after the wait: %d", r.status)
	}
}

func TestUpdateRateLimitPerSource(t *testing.T) {
	e, _ := newLimitedEnv(t, Limits{UpdatePerSource: 4})
	a, b := e.register(t, ""), e.register(t, "")
	upd := func(x acct, remote string) result {
		return e.do("POST", "/update", `{"subdomain":"`+x.Subdomain+`","txt":"`+val1+`"}`, hdrs(x), remote)
	}
	upd(a, "198.51.100.1:1")
	upd(b, "198.51.100.1:1")
	retryAfter(t, upd(a, "198.51.100.1:1")) // two accounts, one source
	if r := upd(a, "198.51.100.2:1"); r.status != 200 {
		t.Fatalf("another source limited: %d", r.status)
	}
}

// TestFailedLoginFlood: wrong keys from one address slow that address down
// (429 before any hashing), while the owner elsewhere keeps updating.
func TestFailedLoginFlood(t *testing.T) {
	e, clk := newLimitedEnv(t, Limits{AuthFailPerSource: 4})
	a := e.register(t, "")
	bad := hdrs(a)
	bad["X-Api-Key"] = strings.Repeat("x", 40)
	body := `{"subdomain":"` + a.Subdomain + `","txt":"` + val1 + `"}`
	const attacker, owner = "203.0.113.66:1", "192.0.2.10:1"
	for i := range 2 {
		if r := e.do("POST", "/update", body, bad, attacker); r.status != 401 {
			t.Fatalf("wrong key %d: %d", i+1, r.status)
		}
	}
	retryAfter(t, e.do("POST", "/update", body, bad, attacker))
	// Even the right key from the flooding address waits: it is the address
	// that is slowed down, and checking a key is the work being saved.
	retryAfter(t, e.do("POST", "/update", body, hdrs(a), attacker))
	for range 10 {
		if r := e.do("POST", "/update", body, hdrs(a), owner); r.status != 200 {
			t.Fatalf("the owner is locked out: %d %s", r.status, r.body)
		}
	}
	clk.add(time.Minute)
	if r := e.do("POST", "/update", body, hdrs(a), attacker); r.status != 200 {
		t.Fatalf("the address stays blocked after the wait: %d", r.status)
	}
}

func TestLimiterMemoryBounded(t *testing.T) {
	l := newLimiter(60)
	now := time.Unix(0, 0)
	for i := range maxBuckets + 10 {
		l.take(strconv.Itoa(i), now)
	}
	if n := len(l.buckets); n > maxBuckets {
		t.Fatalf("%d buckets, bound %d", n, maxBuckets)
	}
	if ok, _ := (*limiter)(nil).take("x", now); !ok {
		t.Fatal("a disabled limit refused")
	}
	if newLimiter(0) != nil {
		t.Fatal("0 per minute should mean no limit")
	}
}

// TestRefusedUpdatesSpareTheOwnersQuota: updates with the right key from
// outside the account's allowfrom are refused without spending the
// account's limit (issue 12: 70 of them locked the owner out with 429);
// they count against the source's failed-authentication limit instead.
func TestRefusedUpdatesSpareTheOwnersQuota(t *testing.T) {
	e, _ := newLimitedEnv(t, Limits{UpdatePerAccount: 4, AuthFailPerSource: 10}) // bursts of 2 and 5
	a := e.register(t, `{"allowfrom":["192.0.2.0/24"]}`)
	body := `{"subdomain":"` + a.Subdomain + `","txt":"` + val1 + `"}`
	const outside, owner = "203.0.113.66:1", "192.0.2.10:1"
	for i := range 5 {
		if r := e.do("POST", "/update", body, hdrs(a), outside); r.status != 401 || r.errCode(t) != "forbidden" {
			t.Fatalf("update %d from outside allowfrom: %d %s", i+1, r.status, r.body)
		}
	}
	// The outsider's source has used up its failures...
	retryAfter(t, e.do("POST", "/update", body, hdrs(a), outside))
	// ...while the owner's quota is whole: its burst of 2 goes through.
	for i := range 2 {
		if r := e.do("POST", "/update", body, hdrs(a), owner); r.status != 200 {
			t.Fatalf("owner update %d after the refused ones: %d %s", i+1, r.status, r.body)
		}
	}
}

// TestMappedAllowFromNormalised: an IPv4-mapped IPv6 prefix is stored as
// the IPv4 prefix it means, so the account is not locked out (issue 12:
// ::ffff:127.0.0.1/128 was accepted but never matched).
func TestMappedAllowFromNormalised(t *testing.T) {
	e := newEnv(t, nil)
	a := e.register(t, `{"allowfrom":["::ffff:127.0.0.1/128"]}`)
	if len(a.AllowFrom) != 1 || a.AllowFrom[0] != "127.0.0.1/32" {
		t.Fatalf("allowfrom shown as %v, want [127.0.0.1/32]", a.AllowFrom)
	}
	body := `{"subdomain":"` + a.Subdomain + `","txt":"` + val1 + `"}`
	for _, remote := range []string{"127.0.0.1:5000", "[::ffff:127.0.0.1]:5000"} {
		if r := e.do("POST", "/update", body, hdrs(a), remote); r.status != 200 {
			t.Fatalf("update from %s: %d %s", remote, r.status, r.body)
		}
	}
	r := e.do("POST", "/account/allowfrom", `{"allowfrom":["[::ffff:192.0.2.0]/120"]}`, hdrs(a), "127.0.0.1:5000")
	if r.status != 200 || !strings.Contains(r.body, `"192.0.2.0/24"`) {
		t.Fatalf("allowfrom change: %d %s", r.status, r.body)
	}
	stored, err := e.store.Account(t.Context(), a.Username)
	if err != nil || len(stored.AllowFrom) != 1 || stored.AllowFrom[0].String() != "192.0.2.0/24" {
		t.Fatalf("stored %v %v", stored.AllowFrom, err)
	}
	if r := e.do("POST", "/update", body, hdrs(a), "192.0.2.9:1"); r.status != 200 {
		t.Fatalf("update from the new network: %d", r.status)
	}
	// Wider than the mapped range: refused with a clear error.
	r = e.do("POST", "/account/allowfrom", `{"allowfrom":["::ffff:0:0/95"]}`, hdrs(a), "192.0.2.9:1")
	if r.status != 400 || r.errCode(t) != "invalid_allowfrom_cidr" {
		t.Fatalf("::ffff:0:0/95: %d %s", r.status, r.body)
	}
}
