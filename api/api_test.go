package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/internal/secret"
	"github.com/acmebroker/acmebroker/internal/zone"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

const testZone = "auth.example.test"

type env struct {
	h     http.Handler
	store *sqlite.Store
	idx   *records.Index
}

func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "api.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	idx := records.New(storage.DefaultTXTPolicy, time.Now)
	cfg := Config{Zone: testZone, TXTPolicy: storage.DefaultTXTPolicy}
	if mod != nil {
		mod(&cfg)
	}
	return &env{h: New(cfg, testDeps(cfg, st, idx)), store: st, idx: idx}
}

// testDeps makes the API's collaborators as the broker does: st read
// directly, written through a zone writer that keeps idx current.
func testDeps(cfg Config, st *sqlite.Store, idx *records.Index) Deps {
	w := zone.New(zone.Config{Zone: cfg.Zone, Policy: cfg.TXTPolicy}, st, idx)
	return Deps{Accounts: st, Zone: w}
}

type result struct {
	status int
	body   string
	header http.Header
}

func (e *env) do(method, path, body string, hdr map[string]string, remote string) result {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if remote != "" {
		req.RemoteAddr = remote
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return result{rec.Code, rec.Body.String(), rec.Header()}
}

func (r result) errCode(t *testing.T) string {
	t.Helper()
	var b struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &b); err != nil {
		t.Fatalf("error body is not JSON: %q", r.body)
	}
	return b.Error
}

type acct struct {
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	Fulldomain string   `json:"fulldomain"`
	Subdomain  string   `json:"subdomain"`
	AllowFrom  []string `json:"allowfrom"`
}

func (e *env) register(t *testing.T, body string) acct {
	t.Helper()
	r := e.do("POST", "/register", body, nil, "")
	if r.status != http.StatusCreated {
		t.Fatalf("register %q: %d %s", body, r.status, r.body)
	}
	var a acct
	if err := json.Unmarshal([]byte(r.body), &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func hdrs(a acct) map[string]string {
	return map[string]string{"X-Api-User": a.Username, "X-Api-Key": a.Password}
}

const val1 = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"
const val2 = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZ2"

func TestRegister(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name, body, ctype string
		status            int
		errCode           string
		allow             []string
	}{
		{name: "empty body", body: "", status: 201, allow: []string{}},
		{name: "empty object", body: "{}", ctype: "application/json", status: 201, allow: []string{}},
		{name: "null", body: "null", status: 201, allow: []string{}},
		{name: "allowfrom", body: `{"allowfrom":["192.0.2.0/24","2001:db8::/32"]}`, status: 201, allow: []string{"192.0.2.0/24", "2001:db8::/32"}},
		{name: "AllowFrom capitalised", body: `{"AllowFrom":["198.51.100.7/32"]}`, status: 201, allow: []string{"198.51.100.7/32"}},
		{name: "bracketed IPv6", body: `{"allowfrom":["[2001:db8::]/48"]}`, status: 201, allow: []string{"2001:db8::/48"}},
		{name: "bare IP refused", body: `{"allowfrom":["192.0.2.1"]}`, status: 400, errCode: "invalid_allowfrom_cidr"},
		{name: "garbage CIDR", body: `{"allowfrom":["nope/8"]}`, status: 400, errCode: "invalid_allowfrom_cidr"},
		{name: "malformed JSON", body: `{"allowfrom":`, status: 400, errCode: "malformed_json_payload"},
		{name: "array body", body: `[]`, status: 400, errCode: "malformed_json_payload"},
		{name: "trailing data", body: `{} {}`, status: 400, errCode: "malformed_json_payload"},
		{name: "allowfrom wrong type", body: `{"allowfrom":"192.0.2.0/24"}`, status: 400, errCode: "malformed_json_payload"},
		{name: "form content type", body: ``, ctype: "application/x-www-form-urlencoded", status: 201, allow: []string{}},
		{name: "allow_from spelling", body: `{"allow_from":["192.0.2.0/24"]}`, status: 201, allow: []string{"192.0.2.0/24"}},
		{name: "both spellings", body: `{"allowfrom":[],"allow_from":["192.0.2.0/24"]}`, status: 400, errCode: "malformed_json_payload"},
		{name: "unknown key refused", body: `{"allow-from":["192.0.2.0/24"]}`, status: 400, errCode: "malformed_json_payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{}
			if tt.ctype != "" {
				h["Content-Type"] = tt.ctype
			}
			r := e.do("POST", "/register", tt.body, h, "")
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if r.header.Get("Content-Type") != "application/json" {
				t.Errorf("content type %q", r.header.Get("Content-Type"))
			}
			if tt.errCode != "" {
				if c := r.errCode(t); c != tt.errCode {
					t.Fatalf("error %q, want %q", c, tt.errCode)
				}
				if strings.Contains(tt.name, "unknown key") && !strings.Contains(r.body, `allow-from`) {
					t.Fatalf("the refusal does not name the key: %s", r.body)
				}
				return
			}
			// acme.sh parses this with sed: one line, acme-dns's field order.
			if strings.Count(strings.TrimRight(r.body, "\n"), "\n") != 0 {
				t.Fatalf("register response is not one line: %q", r.body)
			}
			order := []string{`"username"`, `"password"`, `"fulldomain"`, `"subdomain"`, `"allowfrom"`}
			last := -1
			for _, k := range order {
				i := strings.Index(r.body, k)
				if i <= last {
					t.Fatalf("field %s out of order in %s", k, r.body)
				}
				last = i
			}
			var a acct
			json.Unmarshal([]byte(r.body), &a)
			if len(a.Password) != 40 || a.Fulldomain != a.Subdomain+"."+testZone || len(a.Username) != 36 || a.Username == a.Subdomain {
				t.Fatalf("bad account %+v", a)
			}
			if !slices.Equal(a.AllowFrom, tt.allow) {
				t.Fatalf("allowfrom %v, want %v", a.AllowFrom, tt.allow)
			}
			if _, ok := e.idx.TXT(nil, a.Subdomain); !ok {
				t.Fatal("registered subdomain not in the DNS index (would be NXDOMAIN)")
			}
			stored, err := e.store.Account(context.Background(), a.Username)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(stored.KeyHash, a.Password) || stored.KeyHash == "" {
				t.Fatal("the key is stored in usable form")
			}
		})
	}
}

func TestRegistrationDisabled(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Registration = RegistrationDisabled })
	r := e.do("POST", "/register", "", nil, "")
	if r.status != http.StatusNotFound || r.errCode(t) != "not_found" {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func TestUpdate(t *testing.T) {
	e := newEnv(t, nil)
	a := e.register(t, "")
	other := e.register(t, "")
	body := func(sub, txt string) string { return `{"subdomain":"` + sub + `","txt":"` + txt + `"}` }
	tests := []struct {
		name    string
		hdr     map[string]string
		body    string
		status  int
		errCode string
	}{
		{"ok", hdrs(a), body(a.Subdomain, val1), 200, ""},
		{"ok upper-case subdomain", hdrs(a), body(strings.ToUpper(a.Subdomain), val2), 200, ""},
		{"wrong key", map[string]string{"X-Api-User": a.Username, "X-Api-Key": other.Password}, body(a.Subdomain, val1), 401, "forbidden"},
		{"unknown user", map[string]string{"X-Api-User": "6e2f1a4c-0000-4000-8000-000000000000", "X-Api-Key": a.Password}, body(a.Subdomain, val1), 401, "forbidden"},
		{"user not a UUID", map[string]string{"X-Api-User": "root", "X-Api-Key": a.Password}, body(a.Subdomain, val1), 401, "forbidden"},
		{"key wrong length", map[string]string{"X-Api-User": a.Username, "X-Api-Key": "short"}, body(a.Subdomain, val1), 401, "forbidden"},
		{"no headers", nil, body(a.Subdomain, val1), 401, "forbidden"},
		{"other account's subdomain", hdrs(a), body(other.Subdomain, val1), 401, "forbidden"},
		{"bad subdomain", hdrs(a), body("../etc", val1), 400, "bad_subdomain"},
		{"empty subdomain", hdrs(a), body("", val1), 400, "bad_subdomain"},
		{"txt too short", hdrs(a), body(a.Subdomain, "abc"), 400, "bad_txt"},
		{"txt 44 chars", hdrs(a), body(a.Subdomain, val1+"A"), 400, "bad_txt"},
		{"txt with padding", hdrs(a), body(a.Subdomain, val1[:42]+"="), 400, "bad_txt"},
		{"txt with space", hdrs(a), body(a.Subdomain, val1[:42]+" "), 400, "bad_txt"},
		{"malformed JSON", hdrs(a), `{"subdomain":`, 400, "malformed_json_payload"},
		{"empty body", hdrs(a), ``, 400, "malformed_json_payload"},
		{"malformed JSON, bad key", map[string]string{"X-Api-User": a.Username, "X-Api-Key": other.Password}, `{`, 401, "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("POST", "/update", tt.body, tt.hdr, "")
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.errCode != "" {
				if c := r.errCode(t); c != tt.errCode {
					t.Fatalf("error %q, want %q", c, tt.errCode)
				}
				return
			}
			var b map[string]string
			if err := json.Unmarshal([]byte(r.body), &b); err != nil || !strings.Contains(tt.body, b["txt"]) || len(b) != 1 {
				t.Fatalf("body %q", r.body)
			}
		})
	}
	// Both values are served, newest first, and the other account got nothing.
	if got, _ := e.idx.TXT(nil, a.Subdomain); !slices.Equal(got, []string{val2, val1}) {
		t.Fatalf("served %v", got)
	}
	if got, ok := e.idx.TXT(nil, other.Subdomain); !ok || len(got) != 0 {
		t.Fatalf("other account: %v %v", got, ok)
	}
}

func TestUpdateManyValuesServed(t *testing.T) {
	// acme-dns keeps 2; a certificate with 5 names under one account needs 5.
	e := newEnv(t, nil)
	a := e.register(t, "")
	var want []string
	for i := 0; i < 5; i++ {
		v := strings.Repeat(string(rune('a'+i)), 43)
		r := e.do("POST", "/update", `{"subdomain":"`+a.Subdomain+`","txt":"`+v+`"}`, hdrs(a), "")
		if r.status != 200 {
			t.Fatal(r.body)
		}
		want = append([]string{v}, want...)
	}
	if got, _ := e.idx.TXT(nil, a.Subdomain); !slices.Equal(got, want) {
		t.Fatalf("served %v, want %v", got, want)
	}
}

func TestAllowFrom(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })
	a := e.register(t, `{"allowfrom":["192.0.2.0/24"]}`)
	body := `{"subdomain":"` + a.Subdomain + `","txt":"` + val1 + `"}`
	with := func(xff string) map[string]string {
		h := hdrs(a)
		if xff != "" {
			h["X-Forwarded-For"] = xff
		}
		return h
	}
	tests := []struct {
		name, remote, xff string
		status            int
	}{
		{"inside", "192.0.2.55:4000", "", 200},
		{"outside", "198.51.100.1:4000", "", 401},
		{"spoofed XFF from an untrusted peer", "198.51.100.1:4000", "192.0.2.55", 401},
		{"XFF through a trusted proxy", "10.1.2.3:4000", "192.0.2.55", 200},
		{"client-forged entry left of the real one", "10.1.2.3:4000", "192.0.2.55, 198.51.100.1", 401},
		{"chain of trusted proxies", "10.1.2.3:4000", "192.0.2.55, 10.9.9.9", 200},
		{"garbage XFF", "10.1.2.3:4000", "not-an-ip", 401},
		{"IPv4-mapped IPv6 peer", "[::ffff:192.0.2.9]:4000", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("POST", "/update", body, with(tt.xff), tt.remote)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
		})
	}
}

func TestLegacyBcryptAccount(t *testing.T) {
	e := newEnv(t, nil)
	key := strings.Repeat("k", 40)
	h, _ := bcrypt.GenerateFromPassword([]byte(key), bcrypt.MinCost)
	ctx := context.Background()
	user := "0b9e5a8a-1111-4222-8333-444455556666"
	if _, err := e.store.CreateAccount(ctx, storage.Account{Username: user, KeyHash: string(h), Subdomain: "legacy", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	hdr := map[string]string{"X-Api-User": user, "X-Api-Key": key}
	for i := 0; i < 2; i++ {
		r := e.do("POST", "/update", `{"subdomain":"legacy","txt":"`+val1+`"}`, hdr, "")
		if r.status != 200 {
			t.Fatalf("imported bcrypt account refused: %d %s", r.status, r.body)
		}
	}
	got, _ := e.store.Account(ctx, user)
	if !strings.HasPrefix(got.KeyHash, "$b2$") {
		t.Fatalf("bcrypt hash not upgraded: %q", got.KeyHash[:4])
	}
}

func TestMisc(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CORSOrigins = []string{"https://ui.example.test"}; c.MaxBodyBytes = 256 })
	if r := e.do("GET", "/health", "", nil, ""); r.status != 200 || !strings.Contains(r.body, `"storage":"ok"`) {
		t.Fatalf("health: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/nope", "", nil, ""); r.status != 404 || r.errCode(t) != "not_found" {
		t.Fatalf("404: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/update", "", nil, ""); r.status != 405 || r.errCode(t) != "method_not_allowed" {
		t.Fatalf("405: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/register", `{"allowfrom":["`+strings.Repeat("1", 300)+`"]}`, nil, ""); r.status != 413 || r.errCode(t) != "body_too_large" {
		t.Fatalf("413: %d %s", r.status, r.body)
	}
	r := e.do("OPTIONS", "/update", "", map[string]string{"Origin": "https://ui.example.test", "Access-Control-Request-Method": "POST"}, "")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "https://ui.example.test" || !strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "X-Api-Key") {
		t.Fatalf("CORS preflight: %d %v", r.status, r.header)
	}
	r = e.do("OPTIONS", "/update", "", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, "")
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS allowed an unlisted origin")
	}

	e.store.Close()
	if r := e.do("GET", "/health", "", nil, ""); r.status != 503 || r.body != `{"dns":"serving from memory","status":"degraded","storage":"unreachable"}`+"\n" {
		t.Fatalf("health with storage closed: %d %s", r.status, r.body)
	}
}

func TestBasePath(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BasePath = "/acme" })
	if r := e.do("POST", "/acme/register", "", nil, ""); r.status != 201 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if r := e.do("POST", "/register", "", nil, ""); r.status != 404 {
		t.Fatalf("unprefixed path served: %d", r.status)
	}
}

// panicStore is a stand-in for one function-level check: a panic below the
// handler becomes a JSON 500, never a dropped connection or a crash.
type panicStore struct{ zone.Store }

func (panicStore) CreateAccount(context.Context, storage.Account) (uint32, error) { panic("boom") }

func TestPanicBecomes500(t *testing.T) {
	h := New(Config{Zone: testZone}, Deps{Zone: zone.New(zone.Config{Policy: storage.DefaultTXTPolicy}, panicStore{}, nil)})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/register", nil))
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), "internal_error") {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
}

// unavailableStore reports the database as gone.
type unavailableStore struct{ zone.Store }

func (unavailableStore) CreateAccount(context.Context, storage.Account) (uint32, error) {
	return 0, storage.ErrUnavailable
}

func TestUnavailableIs503(t *testing.T) {
	h := New(Config{Zone: testZone}, Deps{Zone: zone.New(zone.Config{Policy: storage.DefaultTXTPolicy}, unavailableStore{}, nil)})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/register", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "db_error") || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("%d %v %s", rec.Code, rec.Header(), rec.Body.String())
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// TestBcryptFailuresCostTheSameAndAreBounded: while a bcrypt account
// exists, an unknown user and a wrong key on any account each cost one
// bcrypt compare, and past the bcrypt budget failures get 503 with
// Retry-After instead of CPU (issue 12: a wrong key on a bcrypt account
// cost 90-353 ms, an unknown user under 1 ms, without bound).
func TestBcryptFailuresCostTheSameAndAreBounded(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "api.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	keys := secret.NewVerifier(3, clk.now)
	e := &env{store: st, idx: records.New(storage.DefaultTXTPolicy, clk.now)}
	cfg := Config{Zone: testZone, TXTPolicy: storage.DefaultTXTPolicy}
	d := testDeps(cfg, st, e.idx)
	d.Now, d.Keys = clk.now, keys
	e.h = New(cfg, d)

	key := strings.Repeat("k", 40)
	h, _ := bcrypt.GenerateFromPassword([]byte(key), bcrypt.MinCost)
	const user = "0b9e5a8a-1111-4222-8333-444455556666"
	if _, err := st.CreateAccount(t.Context(), storage.Account{Username: user, KeyHash: string(h), Subdomain: "legacy", CreatedAt: clk.now()}); err != nil {
		t.Fatal(err)
	}
	fast := e.register(t, "")
	upd := func(user, key string) result {
		return e.do("POST", "/update", `{"subdomain":"legacy","txt":"`+val1+`"}`, map[string]string{"X-Api-User": user, "X-Api-Key": key}, "")
	}
	wrong := strings.Repeat("w", 40)
	for _, c := range []struct{ name, user, key string }{
		{"wrong key, bcrypt account", user, wrong},
		{"unknown user", "0b9e5a8a-9999-4222-8333-444455556666", wrong},
		{"wrong key, fast account", fast.Username, wrong},
	} {
		before := keys.Compares()
		if r := upd(c.user, c.key); r.status != 401 {
			t.Fatalf("%s: %d %s", c.name, r.status, r.body)
		}
		if n := keys.Compares() - before; n != 1 {
			t.Errorf("%s: %d bcrypt compares, want 1 like the others", c.name, n)
		}
	}
	// The budget (3 a second) is spent: the next failure is refused at
	// once, and so is a bcrypt check even with the right key...
	for _, u := range []string{"0b9e5a8a-9999-4222-8333-444455556666", user} {
		k := wrong
		if u == user {
			k = key
		}
		r := upd(u, k)
		if r.status != http.StatusServiceUnavailable || r.errCode(t) != "busy" || r.header.Get("Retry-After") != "1" {
			t.Fatalf("over the bcrypt budget: %d %s (Retry-After %q)", r.status, r.body, r.header.Get("Retry-After"))
		}
	}
	// ...but a right key on a fast hash costs no bcrypt and passes.
	if r := e.do("POST", "/update", `{"subdomain":"`+fast.Subdomain+`","txt":"`+val1+`"}`, hdrs(fast), ""); r.status != 200 {
		t.Fatalf("fast account while bcrypt is busy: %d %s", r.status, r.body)
	}
	if keys.Compares() != 3 {
		t.Fatalf("%d bcrypt compares, want 3", keys.Compares())
	}
	clk.add(time.Second)
	if r := upd(user, key); r.status != 200 {
		t.Fatalf("bcrypt account after the wait: %d %s", r.status, r.body)
	}
}
