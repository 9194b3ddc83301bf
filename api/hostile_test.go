package api

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

// hostileServer is the API behind a real net/http server (the timeouts and
// header limits of NewHTTPServer) on 127.0.0.1:0, with a real SQLite store.
type hostileServer struct {
	addr  string
	store *sqlite.Store
	idx   *records.Index
}

func startHostileServer(t *testing.T, mod func(*Config)) *hostileServer {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hostile.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	idx := records.New(storage.DefaultTXTPolicy, time.Now)
	cfg := Config{Zone: testZone, TXTPolicy: storage.DefaultTXTPolicy}
	if mod != nil {
		mod(&cfg)
	}
	srv := NewHTTPServer(New(cfg, testDeps(cfg, st, idx)), slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(JSONErrors(ln)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	return &hostileServer{addr: ln.Addr().String(), store: st, idx: idx}
}

// raw sends req as bytes on a new connection (half-closing it when asked,
// so a body shorter than its Content-Length ends) and reads one response.
func (s *hostileServer) raw(t *testing.T, req string, halfClose bool) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil && !errors.Is(err, net.ErrClosed) {
		// The server may answer and close before reading all of a huge
		// request; the response is still there to read.
		t.Logf("write: %v", err)
	}
	if halfClose {
		conn.(*net.TCPConn).CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no HTTP response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// request builds a request with a correct Content-Length (when body is
// not empty or the method is POST) and Connection: close.
func request(method, target string, hdr []string, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: broker.example.test\r\nConnection: close\r\n", method, target)
	for _, h := range hdr {
		b.WriteString(h + "\r\n")
	}
	if body != "" || method == "POST" {
		b.WriteString("Content-Length: {CL}\r\n") // filled in after the placeholders
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

// fillLength puts the length of the body in place of {CL}.
func fillLength(req string) string {
	_, body, _ := strings.Cut(req, "\r\n\r\n")
	return strings.Replace(req, "{CL}", strconv.Itoa(len(body)), 1)
}

type hostileCase struct {
	name string
	// req is the raw request; in it {USER}, {KEY}, {SUB} stand for the
	// account's credentials and subdomain, {LOCKED...} for the account
	// whose allowfrom is 192.0.2.1/32, {VAL} for a new valid TXT value.
	req       string
	halfClose bool
	status    int
	code      string // the JSON "error"; "" for a success, "-" when net/http answers in plain text
	// stored: the request's {VAL} must (true) or must not (false) be served
	// afterwards.
	stored bool
}

// TestHostileHTTPInputs sends hand-written hostile requests to a real
// server and checks each answer; afterwards the server still works, only
// the values of accepted updates are served, and the database is sound.
func TestHostileHTTPInputs(t *testing.T) {
	s := startHostileServer(t, nil)
	reg := func(body string) acct {
		resp, b := s.raw(t, fillLength(request("POST", "/register", nil, body)), false)
		var a acct
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &a) != nil {
			t.Fatalf("register: %d %s", resp.StatusCode, b)
		}
		return a
	}
	a := reg("")
	locked := reg(`{"allowfrom":["192.0.2.1/32"]}`)
	other := reg("")

	auth := []string{"X-Api-User: {USER}", "X-Api-Key: {KEY}"}
	jsonCT := "Content-Type: application/json"
	upd := func(sub, txt string) string { return `{"subdomain":"` + sub + `","txt":"` + txt + `"}` }
	good := upd("{SUB}", "{VAL}")
	post := func(path, body string, hdr ...string) string { return request("POST", path, hdr, body) }
	postAuth := func(path, body string, hdr ...string) string {
		return request("POST", path, append(append([]string{}, auth...), hdr...), body)
	}
	big := strings.Repeat("a", 17<<10)
	deep := strings.Repeat("[", 8000) + strings.Repeat("]", 8000)
	deepObj := strings.Repeat(`{"subdomain":`, 1000) + `"x"` + strings.Repeat("}", 1000)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(strings.Repeat("{", 1<<20)))
	zw.Close()
	chunkedBig := func() string {
		var b strings.Builder
		for range 20 {
			fmt.Fprintf(&b, "%x\r\n%s\r\n", 1024, strings.Repeat("x", 1024))
		}
		return b.String() + "0\r\n\r\n"
	}()
	longHdr := "X-Junk: " + strings.Repeat("j", 20<<10)
	hugeHdr := "X-Junk: " + strings.Repeat("j", 200<<10)
	manyHdrs := make([]string, 2000)
	for i := range manyHdrs {
		manyHdrs[i] = "X-H" + strconv.Itoa(i) + ": v"
	}

	cases := []hostileCase{
		// Sizes.
		{name: "update body over 16 KiB", req: postAuth("/update", `{"subdomain":"{SUB}","txt":"`+big+`"}`), status: 413, code: "body_too_large"},
		{name: "register body over 16 KiB", req: post("/register", `{"allowfrom":["`+big+`"]}`), status: 413, code: "body_too_large"},
		{name: "chunked body over 16 KiB", req: "POST /update HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Api-User: {USER}\r\nX-Api-Key: {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedBig, status: 413, code: "body_too_large"},
		// Issue 18: net/http answered these in plain text.
		{name: "header over 16 KiB", req: postAuth("/update", good, longHdr), status: 431, code: "header_too_large"},
		{name: "2000 small headers", req: postAuth("/update", good, manyHdrs...), status: 431, code: "header_too_large"},
		{name: "header over 64 KiB (net/http's own limit)", req: postAuth("/update", good, hugeHdr), status: 431, code: "header_too_large"},
		{name: "query string of 10 KiB on health", req: request("GET", "/health?x="+strings.Repeat("q", 10<<10), nil, ""), status: 200, code: ""},
		// Content types and encodings: the body is JSON whatever the label says.
		{name: "text/plain label on a JSON update", req: postAuth("/update", good, "Content-Type: text/plain"), status: 200, stored: true},
		{name: "form-encoded update", req: postAuth("/update", "subdomain={SUB}&txt={VAL}", "Content-Type: application/x-www-form-urlencoded"), status: 400, code: "malformed_json_payload"},
		{name: "multipart update", req: postAuth("/update", "--b\r\nContent-Disposition: form-data; name=\"txt\"\r\n\r\n{VAL}\r\n--b--\r\n", "Content-Type: multipart/form-data; boundary=b"), status: 400, code: "malformed_json_payload"},
		{name: "gzip bomb body (not decoded)", req: postAuth("/update", gz.String(), "Content-Encoding: gzip", jsonCT), status: 400, code: "malformed_json_payload"},
		{name: "UTF-8 BOM before the JSON", req: postAuth("/update", "\xef\xbb\xbf"+good, jsonCT), status: 400, code: "malformed_json_payload"},
		{name: "UTF-16 body", req: postAuth("/update", "\xff\xfe{\x00}\x00", jsonCT), status: 400, code: "malformed_json_payload"},
		// Unicode and NUL in names and values.
		{name: "NUL in subdomain", req: postAuth("/update", upd(`{SUB}\u0000`, "{VAL}")), status: 400, code: "bad_subdomain"},
		{name: "raw NUL byte in subdomain", req: postAuth("/update", upd("{SUB}\x00", "{VAL}")), status: 400, code: "malformed_json_payload"},
		{name: "NUL in txt", req: postAuth("/update", upd("{SUB}", `{VAL}\u0000`)), status: 400, code: "bad_txt"},
		{name: "NUL inside a 43-char txt", req: postAuth("/update", upd("{SUB}", `abcdefghijklmnopqrstuvwxyz0123456789ABCDE\u0000F`)), status: 400, code: "bad_txt"},
		{name: "Cyrillic homoglyph subdomain", req: postAuth("/update", upd("\u0430"+"{SUBTAIL}", "{VAL}")), status: 400, code: "bad_subdomain"},
		{name: "fullwidth letters in txt", req: postAuth("/update", upd("{SUB}", strings.Repeat("\uff41", 43))), status: 400, code: "bad_txt"},
		{name: "invalid UTF-8 in subdomain", req: postAuth("/update", upd("\xff\xfe{SUB}", "{VAL}")), status: 400, code: "bad_subdomain"},
		{name: "right-to-left override in txt", req: postAuth("/update", upd("{SUB}", "\u202e"+strings.Repeat("a", 42))), status: 400, code: "bad_txt"},
		{name: "zone-file injection in txt", req: postAuth("/update", upd("{SUB}", `a\" IN A 192.0.2.1 ; 01234567890123456789`)), status: 400, code: "bad_txt"},
		{name: "dotted subdomain", req: postAuth("/update", upd("{SUB}.evil", "{VAL}")), status: 400, code: "bad_subdomain"},
		{name: "txt with base64 padding", req: postAuth("/update", upd("{SUB}", strings.Repeat("A", 43)+"=")), status: 400, code: "bad_txt"},
		{name: "empty txt", req: postAuth("/update", upd("{SUB}", "")), status: 400, code: "bad_txt"},
		// JSON shapes.
		{name: "duplicate key, own subdomain last", req: postAuth("/update", `{"subdomain":"{OTHERSUB}","subdomain":"{SUB}","txt":"{VAL}"}`), status: 200, stored: true},
		{name: "duplicate key, other's subdomain last", req: postAuth("/update", `{"subdomain":"{SUB}","subdomain":"{OTHERSUB}","txt":"{VAL}"}`), status: 401, code: "forbidden"},
		{name: "keys in another case", req: postAuth("/update", `{"SUBDOMAIN":"{SUB}","Txt":"{VAL}"}`), status: 200, stored: true},
		{name: "unknown extra field", req: postAuth("/update", `{"subdomain":"{SUB}","txt":"{VAL}","admin":true}`), status: 200, stored: true},
		{name: "huge number as subdomain", req: postAuth("/update", `{"subdomain":1e999999,"txt":"{VAL}"}`), status: 400, code: "malformed_json_payload"},
		{name: "big integer as txt", req: postAuth("/update", `{"subdomain":"{SUB}","txt":123456789012345678901234567890123456789012345678901234567890}`), status: 400, code: "malformed_json_payload"},
		{name: "8000 nested arrays", req: postAuth("/update", deep), status: 400, code: "malformed_json_payload"},
		{name: "1000 nested objects", req: postAuth("/update", deepObj), status: 400, code: "malformed_json_payload"},
		{name: "null body", req: postAuth("/update", "null"), status: 400, code: "bad_subdomain"},
		{name: "two JSON objects", req: postAuth("/update", good+good), status: 400, code: "malformed_json_payload"},
		{name: "garbage after the object", req: postAuth("/update", good+"xyz"), status: 400, code: "malformed_json_payload"},
		{name: "array of updates", req: postAuth("/update", "["+good+"]"), status: 400, code: "malformed_json_payload"},
		{name: "register allowfrom not a list", req: post("/register", `{"allowfrom":"0.0.0.0/0"}`), status: 400, code: "malformed_json_payload"},
		{name: "register allowfrom /33", req: post("/register", `{"allowfrom":["192.0.2.0/33"]}`), status: 400, code: "invalid_allowfrom_cidr"},
		{name: "register allowfrom with NUL", req: post("/register", `{"allowfrom":["192.0.2.0/24\u0000"]}`), status: 400, code: "invalid_allowfrom_cidr"},
		{name: "register allowfrom with zone", req: post("/register", `{"allowfrom":["fe80::1%eth0/128"]}`), status: 400, code: "invalid_allowfrom_cidr"},
		// Credentials and headers.
		{name: "SQL in X-Api-User", req: post("/update", good, "X-Api-User: ' OR 1=1 --", "X-Api-Key: {KEY}"), status: 401, code: "forbidden"},
		{name: "10 KiB X-Api-Key", req: post("/update", good, "X-Api-User: {USER}", "X-Api-Key: "+strings.Repeat("k", 10<<10)), status: 401, code: "forbidden"},
		{name: "right user, other account's key", req: post("/update", good, "X-Api-User: {USER}", "X-Api-Key: {OTHERKEY}"), status: 401, code: "forbidden"},
		{name: "wrong key first, right key second", req: post("/update", good, "X-Api-User: {USER}", "X-Api-Key: {OTHERKEY}", "X-Api-Key: {KEY}"), status: 401, code: "forbidden"},
		{name: "other account's subdomain", req: postAuth("/update", upd("{OTHERSUB}", "{VAL}")), status: 401, code: "forbidden"},
		{name: "NUL in a header value", req: post("/update", good, "X-Api-User: {USER}\x00", "X-Api-Key: {KEY}"), status: 400, code: "-"},
		{name: "header injection via obs-fold (folded into X-Api-User)", req: post("/update", good, "X-Api-User: {USER}", " X-Api-Key: {KEY}"), status: 401, code: "forbidden"},
		{name: "space before the colon", req: post("/update", good, "X-Api-User : {USER}", "X-Api-Key: {KEY}"), status: 400, code: "-"},
		{name: "bearer on open register (ignored)", req: post("/register", "", "Authorization: Bearer abc.def"), status: 201, code: ""},
		// Allowfrom and forwarded headers from an untrusted peer.
		{name: "X-Forwarded-For spoof of the allowed source", req: post("/update", upd("{LSUB}", "{VAL}"), "X-Api-User: {LUSER}", "X-Api-Key: {LKEY}", "X-Forwarded-For: 192.0.2.1"), status: 401, code: "forbidden"},
		{name: "X-Forwarded-For chain ending in the allowed source", req: post("/update", upd("{LSUB}", "{VAL}"), "X-Api-User: {LUSER}", "X-Api-Key: {LKEY}", "X-Forwarded-For: 127.0.0.1, 192.0.2.1"), status: 401, code: "forbidden"},
		{name: "X-Real-IP and Forwarded spoof", req: post("/update", upd("{LSUB}", "{VAL}"), "X-Api-User: {LUSER}", "X-Api-Key: {LKEY}", "X-Real-IP: 192.0.2.1", "Forwarded: for=192.0.2.1"), status: 401, code: "forbidden"},
		{name: "allowfrom change from outside the list", req: post("/account/allowfrom", `{"allowfrom":[]}`, "X-Api-User: {LUSER}", "X-Api-Key: {LKEY}", "X-Forwarded-For: 192.0.2.1"), status: 401, code: "forbidden"},
		{name: "delete from outside the list", req: request("DELETE", "/account", []string{"X-Api-User: {LUSER}", "X-Api-Key: {LKEY}", "X-Forwarded-For: 192.0.2.1"}, ""), status: 401, code: "forbidden"},
		// Paths and methods.
		{name: "path traversal to update", req: postAuth("/register/../update", good), status: 404, code: "not_found"},
		{name: "encoded traversal", req: postAuth("/%2e%2e/update", good), status: 404, code: "not_found"},
		{name: "encoded slash", req: postAuth("/account%2Frotate", ""), status: 404, code: "not_found"},
		{name: "NUL in the path", req: postAuth("/update%00", good), status: 404, code: "not_found"},
		{name: "double slash", req: postAuth("//update", good), status: 404, code: "not_found"},
		{name: "upper-case path", req: postAuth("/UPDATE", good), status: 404, code: "not_found"},
		{name: "absolute URI in the request line", req: request("GET", "http://evil.example/health", nil, ""), status: 200, code: ""},
		{name: "GET on update", req: request("GET", "/update", auth, ""), status: 405, code: "method_not_allowed"},
		{name: "PUT on register", req: request("PUT", "/register", nil, "{}"), status: 405, code: "method_not_allowed"},
		{name: "TRACE on health", req: request("TRACE", "/health", nil, ""), status: 405, code: "method_not_allowed"},
		{name: "made-up method", req: request("BREW", "/update", auth, good), status: 405, code: "method_not_allowed"},
		{name: "method with a NUL", req: "PO\x00ST /update HTTP/1.1\r\nHost: x\r\n\r\n", status: 400, code: "-"},
		{name: "query string carries the update", req: postAuth("/update?subdomain={SUB}&txt={VAL}", ""), status: 400, code: "malformed_json_payload"},
		// Framing.
		{name: "Content-Length larger than the body", req: "POST /update HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Api-User: {USER}\r\nX-Api-Key: {KEY}\r\nContent-Length: 5000\r\n\r\n" + good, halfClose: true, status: 400, code: "malformed_json_payload"},
		{name: "negative Content-Length", req: "POST /update HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", status: 400, code: "-"},
		{name: "two different Content-Lengths", req: "POST /update HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", status: 400, code: "-"},
		{name: "Content-Length and chunked (smuggling: chunked wins)", req: "POST /update HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 401, code: "forbidden"},
		{name: "HTTP/1.1 without Host", req: "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n", status: 400, code: "bad_request"},
		{name: "HTTP/9.9", req: "GET /health HTTP/9.9\r\nHost: x\r\n\r\n", status: 505, code: "-"}, // JSON too: TestNetHTTPErrorsAreJSON
		// dns-persist-01 records (persist.go): what could reach the zone.
		{name: "persist issuer with NUL", req: postAuth("/persist", `{"issuer":"letsencrypt.org\u0000","accounturi":"https://a.example/1"}`), status: 400, code: "bad_persist"},
		{name: "persist issuer zone-file injection", req: postAuth("/persist", `{"issuer":"a.org\" IN A 192.0.2.1 ;","accounturi":"https://a.example/1"}`), status: 400, code: "bad_persist"},
		{name: "persist issuer homoglyph", req: postAuth("/persist", `{"issuer":"l\u0435tsencrypt.org","accounturi":"https://a.example/1"}`), status: 400, code: "bad_persist"},
		{name: "persist accounturi with a second record", req: postAuth("/persist", `{"issuer":"letsencrypt.org","accounturi":"https://a.example/1\" \"evil.example; accounturi=https://b.example/2"}`), status: 400, code: "bad_persist"},
		{name: "persist accounturi with newline", req: postAuth("/persist", `{"issuer":"letsencrypt.org","accounturi":"https://a.example/1\nb"}`), status: 400, code: "bad_persist"},
		{name: "persist accounturi javascript:", req: postAuth("/persist", `{"issuer":"letsencrypt.org","accounturi":"javascript:alert(1)"}`), status: 400, code: "bad_persist"},
		{name: "persist accounturi of 10 KiB", req: postAuth("/persist", `{"issuer":"letsencrypt.org","accounturi":"https://a.example/`+strings.Repeat("a", 10<<10)+`"}`), status: 400, code: "bad_persist"},
		{name: "persist policy injection", req: postAuth("/persist", `{"issuer":"letsencrypt.org","accounturi":"https://a.example/1","policy":"wildcard; persistUntil=1"}`), status: 400, code: "bad_persist"},
		{name: "persist_until huge", req: postAuth("/persist", `{"issuer":"letsencrypt.org","accounturi":"https://a.example/1","persist_until":1e999999}`), status: 400, code: "bad_persist"},
		{name: "persist_until object", req: postAuth("/persist", `{"issuer":"letsencrypt.org","accounturi":"https://a.example/1","persist_until":{"$gt":0}}`), status: 400, code: "bad_persist"},
		{name: "persist 1000 nested objects", req: postAuth("/persist", strings.Repeat(`{"issuer":`, 1000)+`"x"`+strings.Repeat("}", 1000)), status: 400, code: "bad_persist"},
		{name: "persist body over 16 KiB", req: postAuth("/persist", `{"issuer":"`+big+`"}`), status: 413, code: "body_too_large"},
		{name: "persist from outside allowfrom (spoofed)", req: post("/persist", `{"issuer":"letsencrypt.org","accounturi":"https://a.example/1"}`, "X-Api-User: {LUSER}", "X-Api-Key: {LKEY}", "X-Forwarded-For: 192.0.2.1"), status: 401, code: "forbidden"},
		{name: "persist list without credentials", req: request("GET", "/persist", nil, ""), status: 401, code: "forbidden"},
		{name: "persist list with the other's key", req: request("GET", "/persist", []string{"X-Api-User: {USER}", "X-Api-Key: {OTHERKEY}"}, ""), status: 401, code: "forbidden"},
		{name: "persist delete with encoded traversal", req: request("DELETE", "/persist/..%2F..%2Faccount", auth, ""), status: 400, code: "bad_persist"},
		{name: "persist delete with a NUL", req: request("DELETE", "/persist/letsencrypt.org%00", auth, ""), status: 400, code: "bad_persist"},
		{name: "persist delete without issuer", req: request("DELETE", "/persist/", auth, ""), status: 404, code: "not_found"},
		{name: "persist delete of another path", req: request("DELETE", "/persist/a.org/b", auth, ""), status: 404, code: "not_found"},
		{name: "PUT on persist", req: request("PUT", "/persist", auth, "{}"), status: 405, code: "method_not_allowed"},
		{name: "persist set, the good one", req: postAuth("/persist", `{"issuer":"letsencrypt.org","accounturi":"https://a.example/1","policy":"wildcard"}`), status: 200, code: ""},
	}

	placeholders := strings.NewReplacer(
		"{USER}", a.Username, "{KEY}", a.Password, "{SUBTAIL}", a.Subdomain[1:], "{SUB}", a.Subdomain,
		"{LUSER}", locked.Username, "{LKEY}", locked.Password, "{LSUB}", locked.Subdomain,
		"{OTHERSUB}", other.Subdomain, "{OTHERKEY}", other.Password)
	var accepted, refused []string
	for i, c := range cases {
		val := fmt.Sprintf("hostile%036d", i) // 43 characters of base64url
		req := fillLength(placeholders.Replace(strings.ReplaceAll(c.req, "{VAL}", val)))
		resp, body := s.raw(t, req, c.halfClose)
		switch {
		case resp.StatusCode != c.status:
			t.Errorf("%d %s: status %d, want %d; body %.200q", i, c.name, resp.StatusCode, c.status, body)
			continue
		case c.code == "-":
		case c.code == "":
			if resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%d %s: Content-Type %q", i, c.name, resp.Header.Get("Content-Type"))
			}
		default:
			var e errorBody
			if json.Unmarshal(body, &e) != nil || e.Error != c.code || e.Detail == "" {
				t.Errorf("%d %s: body %.200q, want error %q with a detail", i, c.name, body, c.code)
			}
			if c.status == http.StatusServiceUnavailable || c.status >= 500 {
				t.Errorf("%d %s: a server error for bad input", i, c.name)
			}
		}
		if c.stored {
			accepted = append(accepted, val)
		} else {
			refused = append(refused, val)
		}
	}
	t.Logf("%d hostile HTTP requests", len(cases))
	if len(cases) < 50 {
		t.Errorf("only %d cases", len(cases))
	}

	// Only the accepted values were stored, and the store agrees with DNS.
	stored := map[string]bool{}
	for _, sub := range []string{a.Subdomain, locked.Subdomain, other.Subdomain} {
		got, _, err := s.store.Subdomain(context.Background(), sub)
		if err != nil {
			t.Fatal(err)
		}
		served, _ := s.idx.TXT(nil, sub)
		if len(served) != len(got.Records)+len(got.Persist) {
			t.Errorf("%s: %d values served, %d values and %d persist records stored", sub, len(served), len(got.Records), len(got.Persist))
		}
		for _, p := range got.Persist {
			if !slices.Contains(served, p.Value()) || p.Value() != "letsencrypt.org; accounturi=https://a.example/1; policy=wildcard" {
				t.Errorf("%s: persist record %q stored (served %v); only the good one may be", sub, p.Value(), served)
			}
		}
		for _, r := range got.Records {
			stored[r.Value] = true
		}
	}
	for _, v := range refused {
		if stored[v] {
			t.Errorf("value %s of a refused request was stored", v)
		}
	}
	for _, v := range accepted {
		if !stored[v] {
			t.Errorf("value %s of an accepted request is not stored", v)
		}
	}
	// The locked account's allowfrom is unchanged and the server still works.
	la, err := s.store.Account(context.Background(), locked.Username)
	if err != nil || len(la.AllowFrom) != 1 || la.AllowFrom[0] != netip.MustParsePrefix("192.0.2.1/32") {
		t.Fatalf("locked account after the spoofs: %+v %v", la, err)
	}
	resp, body := s.raw(t, fillLength(request("GET", "/health", nil, "")), false)
	if resp.StatusCode != 200 {
		t.Fatalf("health after the hostile inputs: %d %s", resp.StatusCode, body)
	}
	resp, body = s.raw(t, fillLength(placeholders.Replace(postAuth("/update", upd("{SUB}", val1)))), false)
	if resp.StatusCode != 200 {
		t.Fatalf("a normal update after the hostile inputs: %d %s", resp.StatusCode, body)
	}
}

// TestNetHTTPErrorsAreJSON: the answers net/http writes itself, before any
// handler runs, come out as JSON through JSONErrors (issue 18: an
// oversized header got a plain-text 431), on keep-alive connections too.
func TestNetHTTPErrorsAreJSON(t *testing.T) {
	s := startHostileServer(t, nil)
	for _, c := range []struct {
		req    string
		status int
		code   string
	}{
		{"GET /health HTTP/1.1\r\nHost: x\r\nX-Junk: " + strings.Repeat("j", 200<<10) + "\r\n\r\n", 431, "header_too_large"},
		{"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 505, "http_version_not_supported"},
		{"GET /health HTTP/1.1\r\n\r\n", 400, "bad_request"},
		{"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "not_implemented"},
		// After a good request on the same connection.
		{"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nX-Junk: " + strings.Repeat("j", 100<<10) + "\r\n\r\n", 431, "header_too_large"},
	} {
		conn, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		go io.WriteString(conn, c.req) // the server may answer before reading it all
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err == nil && resp.StatusCode == 200 { // the good request first
			io.Copy(io.Discard, resp.Body)
			resp, err = http.ReadResponse(br, nil)
		}
		if err != nil {
			t.Fatalf("%.40q: %v", c.req, err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		var e errorBody
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/json" ||
			json.Unmarshal(body, &e) != nil || e.Error != c.code || e.Detail == "" {
			t.Errorf("%.40q: %d %q %q, want %d JSON %q", c.req, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.status, c.code)
		}
	}
	// Nothing else is touched: a handler's own error and a success pass as they are.
	if resp, body := s.raw(t, fillLength(request("GET", "/nope", nil, "")), false); resp.StatusCode != 404 || !strings.Contains(string(body), `"not_found"`) {
		t.Fatalf("404: %d %s", resp.StatusCode, body)
	}
}
