package dnsserver_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/dnsserver/rrl"
	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/storage"
)

const (
	xzone   = "auth.example.test."
	keyName = "xfr-key."
	secret  = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ=="
)

var testKey = dnsserver.TSIGKey{Name: "xfr-key", Algorithm: "hmac-sha256", Secret: secret}

type counts struct {
	mu   sync.Mutex
	m    map[string]int
	last time.Time // of the latest outcome
}

func (c *counts) TransferServed(qtype, result string) { c.add(qtype + " " + result) }
func (c *counts) NotifySent(result string)            { c.add("notify " + result) }
func (c *counts) add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[k]++
	c.last = time.Now()
}

// get returns the count of k once it reaches want (the observer is told
// after the answer is written, so the client may see it first), or what it
// is after 5 s.
func (c *counts) get(k string, want int) int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		n := c.m[k]
		c.mu.Unlock()
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type xfrServer struct {
	addr string
	idx  *records.Index
	h    *dnsserver.Handler
	obs  *counts
}

// startXfr serves the zone on loopback with transfers allowed from allow,
// the index holding subs (name → values) at serial 100.
func startXfr(t *testing.T, allow string, require bool, subs map[string][]string) *xfrServer {
	return startXfrTB(t, allow, require, subs)
}

func startXfrTB(t testing.TB, allow string, require bool, subs map[string][]string) *xfrServer {
	return startXfrWrapped(t, allow, require, subs, nil)
}

// startXfrWrapped serves the handler through wrap (nil: as is).
func startXfrWrapped(t testing.TB, allow string, require bool, subs map[string][]string, wrap func(dns.Handler) dns.Handler) *xfrServer {
	t.Helper()
	now := time.Now()
	idx := records.New(storage.TXTPolicy{Always: 2, Window: time.Hour, Max: 16}, time.Now)
	for name, vals := range subs {
		recs := make([]storage.TXTRecord, len(vals))
		for i, v := range vals {
			recs[i] = storage.TXTRecord{Value: v, UpdatedAt: now.Add(-time.Duration(i) * time.Second)}
		}
		idx.Add(name, 99)
		idx.Set(name, recs, 100)
	}
	idx.EnableJournal(1000)
	static, err := dnsserver.ParseRecords(xzone, []string{"@ NS ns1", "ns1 A 192.0.2.53"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := dnsserver.NewHandler(dnsserver.Config{Zone: xzone, NSName: "ns1." + xzone, NSAdmin: "hostmaster." + xzone,
		Records: static, TXTTTL: 1, NegativeTTL: 1}, idx, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	obs := &counts{}
	if err := h.EnableTransfer(dnsserver.TransferConfig{AllowFrom: []netip.Prefix{netip.MustParsePrefix(allow)},
		Keys: []dnsserver.TSIGKey{testKey}, RequireTSIG: require, Observer: obs}); err != nil {
		t.Fatal(err)
	}
	srv, err := dnsserver.Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetTSIG(dnsserver.TSIGSecrets([]dnsserver.TSIGKey{testKey}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var served dns.Handler = h
	if wrap != nil {
		served = wrap(h)
	}
	go func() { defer close(done); _ = srv.Serve(ctx, served) }()
	t.Cleanup(func() { cancel(); <-done })
	return &xfrServer{addr: srv.Addrs()[0], idx: idx, h: h, obs: obs}
}

// xfr runs a transfer and returns every record received.
func xfr(t *testing.T, addr string, q *dns.Msg, signed bool) ([]dns.RR, int, error) {
	t.Helper()
	tr := &dns.Transfer{}
	if signed {
		tr.TsigSecret = map[string]string{keyName: secret}
		q.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
	}
	ch, err := tr.In(q, addr)
	if err != nil {
		return nil, 0, err
	}
	var rrs []dns.RR
	msgs := 0
	for env := range ch {
		if env.Error != nil {
			return rrs, msgs, env.Error
		}
		msgs++
		rrs = append(rrs, env.RR...)
	}
	return rrs, msgs, nil
}

func axfrQuery() *dns.Msg {
	q := new(dns.Msg)
	q.SetAxfr(xzone)
	return q
}

func ixfrQuery(serial uint32) *dns.Msg {
	q := new(dns.Msg)
	q.SetIxfr(xzone, serial, "ns1."+xzone, "hostmaster."+xzone)
	return q
}

// summary renders records as "TYPE owner-label data" lines, SOAs as "SOA serial".
func summary(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.SOA:
			out = append(out, fmt.Sprintf("SOA %d", rr.Serial))
		case *dns.TXT:
			out = append(out, "TXT "+strings.TrimSuffix(rr.Hdr.Name, "."+xzone)+" "+strings.Join(rr.Txt, ""))
		default:
			out = append(out, dns.TypeToString[rr.Header().Rrtype]+" "+rr.Header().Name)
		}
	}
	return out
}

func TestAXFR(t *testing.T) {
	s := startXfr(t, "127.0.0.0/8", true, map[string][]string{"web1": {"v1", "v2"}, "web2": {"w"}, "empty": nil})
	rrs, _, err := xfr(t, s.addr, axfrQuery(), true)
	if err != nil {
		t.Fatal(err)
	}
	got := summary(rrs)
	if len(got) < 2 || got[0] != "SOA 100" || got[len(got)-1] != "SOA 100" {
		t.Fatalf("AXFR not framed by the SOA: %v", got)
	}
	want := map[string]bool{"NS " + xzone: true, "A ns1." + xzone: true, "TXT web1 v1": true, "TXT web1 v2": true, "TXT web2 w": true}
	body := got[1 : len(got)-1]
	if len(body) != len(want) {
		t.Fatalf("AXFR body %v, want %v", body, want)
	}
	for _, l := range body {
		if !want[l] {
			t.Fatalf("unexpected %q in %v", l, body)
		}
	}
	if s.obs.get("AXFR ok", 1) != 1 {
		t.Fatal("observer not told of every transfer")
	}
}

func TestAXFRLargeZoneSplitAndSigned(t *testing.T) {
	subs := map[string][]string{}
	const n = 5000
	for i := range n {
		subs[fmt.Sprintf("%08x-0000-4000-8000-000000000000", i)] = []string{fmt.Sprintf("%043d", i), fmt.Sprintf("%043d", i+1)}
	}
	s := startXfr(t, "127.0.0.1/32", true, subs)
	rrs, msgs, err := xfr(t, s.addr, axfrQuery(), true) // every message's TSIG is checked by the client
	if err != nil {
		t.Fatal(err)
	}
	if len(rrs) != 2*n+4 || msgs < 10 {
		t.Fatalf("%d records in %d messages; want %d in many", len(rrs), msgs, 2*n+4)
	}
}

func TestTransferRefused(t *testing.T) {
	s := startXfr(t, "127.0.0.1/32", true, map[string][]string{"web1": {"v1"}})
	other := startXfr(t, "10.0.0.0/8", true, nil) // our source is not allowed there
	badKey := map[string]string{keyName: "d3Jvbmctd3Jvbmctd3Jvbmctd3JvbmctIQ=="}
	unknownKey := map[string]string{"other-key.": secret}
	good := map[string]string{keyName: secret}
	const unsigned = -1
	tests := []struct {
		name   string
		addr   string
		net    string
		q      *dns.Msg
		secret map[string]string
		key    string
		alg    string
		rcode  int
		tsig   int // the answer's TSIG error; unsigned: no TSIG
		signed bool
	}{
		{"unsigned", s.addr, "tcp", axfrQuery(), nil, "", "", dns.RcodeRefused, unsigned, false},
		{"unsigned IXFR", s.addr, "tcp", ixfrQuery(1), nil, "", "", dns.RcodeRefused, unsigned, false},
		// RFC 8945 5.2: NOTAUTH with the TSIG error, unsigned.
		{"wrong secret", s.addr, "tcp", axfrQuery(), badKey, keyName, dns.HmacSHA256, dns.RcodeNotAuth, dns.RcodeBadSig, false},
		{"unknown key", s.addr, "tcp", axfrQuery(), unknownKey, "other-key.", dns.HmacSHA256, dns.RcodeNotAuth, dns.RcodeBadKey, false},
		// Issue 12: a key configured as hmac-sha256 accepted transfers
		// signed with hmac-sha1 or hmac-sha512 under the same secret.
		{"hmac-sha1 under an hmac-sha256 key", s.addr, "tcp", axfrQuery(), good, keyName, dns.HmacSHA1, dns.RcodeNotAuth, dns.RcodeBadKey, false},
		{"hmac-sha512 under an hmac-sha256 key", s.addr, "tcp", axfrQuery(), good, keyName, dns.HmacSHA512, dns.RcodeNotAuth, dns.RcodeBadKey, false},
		{"hmac-sha1 SOA query", s.addr, "udp", func() *dns.Msg { q := new(dns.Msg); q.SetQuestion(xzone, dns.TypeSOA); return q }(), good, keyName, dns.HmacSHA1, dns.RcodeNotAuth, dns.RcodeBadKey, false},
		// Correctly signed requests that are refused get a signed refusal.
		{"source not allowed", other.addr, "tcp", axfrQuery(), good, keyName, dns.HmacSHA256, dns.RcodeRefused, dns.RcodeSuccess, true},
		{"AXFR over UDP", s.addr, "udp", axfrQuery(), good, keyName, dns.HmacSHA256, dns.RcodeRefused, dns.RcodeSuccess, true},
		{"other zone", s.addr, "tcp", func() *dns.Msg { q := new(dns.Msg); q.SetAxfr("example.test."); return q }(), good, keyName, dns.HmacSHA256, dns.RcodeRefused, dns.RcodeSuccess, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &dns.Client{Net: tt.net, Timeout: 5 * time.Second}
			if tt.secret != nil {
				c.TsigSecret = tt.secret
				tt.q.SetTsig(tt.key, tt.alg, 300, time.Now().Unix())
			}
			// The client checks the answer's signature: an error means it
			// does not verify (expected of the unsigned TSIG errors).
			r, _, err := c.Exchange(tt.q, tt.addr)
			if r == nil {
				t.Fatal(err)
			}
			if r.Rcode != tt.rcode || len(r.Answer) != 0 {
				t.Fatalf("rcode %s with %d records, want %s and nothing", dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[tt.rcode])
			}
			ts := r.IsTsig()
			switch {
			case tt.tsig == unsigned && ts != nil:
				t.Fatalf("a TSIG in the answer to an unsigned request: %v", ts)
			case tt.tsig != unsigned && (ts == nil || int(ts.Error) != tt.tsig):
				t.Fatalf("answer TSIG %v, want error %s", ts, dns.RcodeToString[tt.tsig])
			case tt.signed && (err != nil || ts.MAC == ""):
				t.Fatalf("a refusal of a correctly signed request is not signed: %v (MAC %q)", err, ts.MAC)
			case !tt.signed && ts != nil && ts.MAC != "":
				t.Fatalf("a %s answer is signed", dns.RcodeToString[int(ts.Error)])
			}
		})
	}
	if s.obs.get("AXFR refused", 7) != 7 || s.obs.get("IXFR refused", 1) != 1 || other.obs.get("AXFR refused", 1) != 1 {
		t.Fatal("observer not told of every transfer")
	}

	// A NOTIFY, even signed with our key, is not taken: this server is
	// the zone's only source.
	n := new(dns.Msg)
	n.SetNotify(xzone)
	n.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
	c := &dns.Client{Net: "udp", TsigSecret: map[string]string{keyName: secret}, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(n, s.addr)
	if err != nil || r.Rcode != dns.RcodeRefused {
		t.Fatalf("NOTIFY: %v %v", r, err)
	}
}

func TestSignedQueryAnsweredSigned(t *testing.T) {
	t.Run("plain", func(t *testing.T) { testSignedQuery(t, nil) })
	t.Run("behind RRL", func(t *testing.T) {
		// RRL sees UDP answers first; a signed one must keep its MAC.
		lim, err := rrl.New(rrl.Config{ResponsesPerSecond: 100, LargeSize: 512, LargePerSecond: 20, Slip: 2, Window: 5 * time.Second, IPv4Prefix: 24, IPv6Prefix: 56, TableSize: 1024}, time.Now, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		testSignedQuery(t, lim.Wrap)
	})
}

func testSignedQuery(t *testing.T, wrap func(dns.Handler) dns.Handler) {
	s := startXfrWrapped(t, "127.0.0.1/32", true, map[string][]string{"web1": {"v1"}}, wrap)
	for _, network := range []string{"udp", "tcp"} {
		q := new(dns.Msg)
		q.SetQuestion(xzone, dns.TypeSOA)
		q.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
		c := &dns.Client{Net: network, TsigSecret: map[string]string{keyName: secret}, Timeout: 5 * time.Second}
		r, _, err := c.Exchange(q, s.addr) // fails if the answer's TSIG does not verify
		if err != nil {
			t.Fatal(err)
		}
		if r.IsTsig() == nil || len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Serial != 100 {
			t.Fatalf("%s: signed SOA query answered %v", network, r)
		}
	}
	// An unsigned query is answered as before, unsigned.
	q := new(dns.Msg)
	q.SetQuestion("web1."+xzone, dns.TypeTXT)
	r, err := dns.Exchange(q, s.addr)
	if err != nil || r.IsTsig() != nil || len(r.Answer) != 1 {
		t.Fatalf("unsigned query: %v %v", r, err)
	}
}

func TestIXFR(t *testing.T) {
	s := startXfr(t, "127.0.0.1/32", true, map[string][]string{"web1": {"v1"}, "web2": {"w"}})
	now := time.Now()

	rrs, _, err := xfr(t, s.addr, ixfrQuery(100), true)
	if err != nil || fmt.Sprint(summary(rrs)) != "[SOA 100]" {
		t.Fatalf("current serial: %v %v; want one SOA", summary(rrs), err)
	}

	s.idx.Set("web1", []storage.TXTRecord{{Value: "v2", UpdatedAt: now}, {Value: "v1", UpdatedAt: now.Add(-time.Second)}}, 101)
	s.idx.Remove("web2", 102)
	s.idx.Set("web3", []storage.TXTRecord{{Value: "x", UpdatedAt: now}}, 103)
	rrs, _, err = xfr(t, s.addr, ixfrQuery(100), true)
	want := "[SOA 103 SOA 100 TXT web2 w SOA 103 TXT web1 v2 TXT web3 x SOA 103]"
	if err != nil || fmt.Sprint(summary(rrs)) != want {
		t.Fatalf("incremental:\n got %v %v\nwant %v", summary(rrs), err, want)
	}

	// A serial the history does not reach: the whole zone.
	rrs, _, err = xfr(t, s.addr, ixfrQuery(50), true)
	got := summary(rrs)
	if err != nil || len(got) != 7 || got[0] != "SOA 103" || got[1] == "SOA 50" {
		t.Fatalf("fallback to AXFR: %v %v", got, err)
	}

	// Over UDP: just the current SOA, the client comes back over TCP.
	q := ixfrQuery(100)
	q.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
	c := &dns.Client{Net: "udp", TsigSecret: map[string]string{keyName: secret}, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(q, s.addr)
	if err != nil || fmt.Sprint(summary(r.Answer)) != "[SOA 103]" {
		t.Fatalf("IXFR over UDP: %v %v", r, err)
	}
	if s.obs.get("IXFR ok", 4) != 4 {
		t.Fatal("observer not told of every transfer")
	}
}

func TestTransferWithoutTSIG(t *testing.T) {
	s := startXfr(t, "127.0.0.1/32", false, map[string][]string{"web1": {"v1"}})
	rrs, _, err := xfr(t, s.addr, axfrQuery(), false)
	if err != nil || len(rrs) != 5 {
		t.Fatalf("unsigned transfer with require_tsig off: %v %v", summary(rrs), err)
	}
	// A signature, when there is one, must still be good.
	c := &dns.Client{Net: "tcp", TsigSecret: map[string]string{keyName: "d3Jvbmctd3Jvbmctd3Jvbmctd3JvbmctIQ=="}, Timeout: 5 * time.Second}
	q := axfrQuery()
	q.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
	r, _, _ := c.Exchange(q, s.addr)
	if r == nil || r.Rcode != dns.RcodeNotAuth || r.IsTsig() == nil || r.IsTsig().Error != dns.RcodeBadSig {
		t.Fatalf("badly signed: %v", r)
	}
}

// BenchmarkAXFR transfers a zone of a million subdomains (two values each)
// over loopback TCP, signed, and reports its size.
func BenchmarkAXFR(b *testing.B) {
	const n = 1_000_000
	subs := make(map[string][]string, n)
	for i := range n {
		subs[fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)] = []string{fmt.Sprintf("%043d", i), fmt.Sprintf("%043d", i+1)}
	}
	s := startXfrTB(b, "127.0.0.1/32", true, subs)
	subs = nil
	var msgs, rrs int
	for b.Loop() {
		q := axfrQuery()
		q.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
		tr := &dns.Transfer{TsigSecret: map[string]string{keyName: secret}}
		ch, err := tr.In(q, s.addr)
		if err != nil {
			b.Fatal(err)
		}
		msgs, rrs = 0, 0
		for env := range ch {
			if env.Error != nil {
				b.Fatal(env.Error)
			}
			msgs++
			rrs += len(env.RR)
		}
	}
	if rrs != 2*n+4 {
		b.Fatalf("%d records", rrs)
	}
	b.ReportMetric(float64(msgs), "messages")
	b.ReportMetric(float64(rrs), "records")
}

// TestAXFROutlastsTCPTimeouts: a transfer that a secondary stops reading
// for longer than the server's TCP write timeout (2 s) is not cut off. The
// zone is larger than the socket buffers hold, so the server is still
// writing when the timeout would have passed (the log line says how long
// it wrote).
func TestAXFROutlastsTCPTimeouts(t *testing.T) {
	const n = 50_000 // about 10 MB: more than the socket buffers hold
	subs := make(map[string][]string, n)
	for i := range n {
		subs[fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)] = []string{fmt.Sprintf("%043d", i), fmt.Sprintf("%043d", i+1)}
	}
	s := startXfr(t, "127.0.0.1/32", true, subs)
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	q := axfrQuery()
	q.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Unix())
	tr := &dns.Transfer{Conn: &dns.Conn{Conn: conn}, TsigSecret: map[string]string{keyName: secret}, ReadTimeout: 10 * time.Second}
	start := time.Now()
	ch, err := tr.In(q, s.addr)
	if err != nil {
		t.Fatal(err)
	}
	rrs := 0
	for env := range ch {
		if env.Error != nil {
			t.Fatalf("after %s and %d records: %v", time.Since(start), rrs, env.Error)
		}
		rrs += len(env.RR)
		if rrs == len(env.RR) {
			// A secondary that stalls: the server fills the socket
			// buffers and waits past its write timeout.
			time.Sleep(2500 * time.Millisecond)
		}
	}
	if rrs != 2*n+4 {
		t.Fatalf("%d records, want %d", rrs, 2*n+4)
	}
	if s.obs.get("AXFR ok", 1) != 1 {
		t.Fatal("the server did not report the transfer done")
	}
	s.obs.mu.Lock()
	wrote := s.obs.last.Sub(start)
	s.obs.mu.Unlock()
	t.Logf("%d records read in %s; the server wrote for %s", rrs, time.Since(start).Round(time.Millisecond), wrote.Round(time.Millisecond))
}

// TestTSIGBadTime: a good signature made an hour ago is answered NOTAUTH
// with BADTIME, signed, carrying the server's clock (RFC 8945 5.2.3).
func TestTSIGBadTime(t *testing.T) {
	s := startXfr(t, "127.0.0.1/32", true, map[string][]string{"web1": {"v1"}})
	q := axfrQuery()
	q.SetTsig(keyName, dns.HmacSHA256, 300, time.Now().Add(-time.Hour).Unix())
	c := &dns.Client{Net: "tcp", TsigSecret: map[string]string{keyName: secret}, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(q, s.addr)
	if r == nil {
		t.Fatal(err)
	}
	ts := r.IsTsig()
	// Signed: an HMAC-SHA256 MAC (miekg/dns's client will not check the
	// MAC of any NOTAUTH answer, hence err).
	if r.Rcode != dns.RcodeNotAuth || ts == nil || ts.Error != dns.RcodeBadTime || ts.MACSize != 32 || ts.OtherLen != 6 || len(r.Answer) != 0 {
		t.Fatalf("answer %v (client: %v)", r, err)
	}
}

// TestTSIGKeyCheck: the rules for a key live here; the config check calls
// the same functions (adding the key names), and EnableTransfer refuses
// what they refuse, without ever showing the secret.
func TestTSIGKeyCheck(t *testing.T) {
	for _, tc := range []struct {
		key  dnsserver.TSIGKey
		want string // "" : accepted
	}{
		{testKey, ""},
		{dnsserver.TSIGKey{Name: "k", Algorithm: "HMAC-SHA512.", Secret: secret}, ""},
		{dnsserver.TSIGKey{Name: "k", Algorithm: "hmac-md5", Secret: secret}, "algorithm \"hmac-md5\" is not supported"},
		{dnsserver.TSIGKey{Name: "k", Algorithm: "hmac-sha256", Secret: "c2hvcnQ="}, "secret must be base64 of at least 16 bytes"},
		{dnsserver.TSIGKey{Name: "k", Algorithm: "hmac-sha256", Secret: "not base64!"}, "secret must be base64"},
	} {
		err := tc.key.Check()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.key, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.key, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), tc.key.Secret) {
			t.Errorf("the error shows the secret: %v", err)
		}
		h, err := dnsserver.NewHandler(dnsserver.Config{Zone: xzone, NSName: "ns1." + xzone, NSAdmin: "hostmaster." + xzone},
			records.New(storage.DefaultTXTPolicy, time.Now), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.EnableTransfer(dnsserver.TransferConfig{Keys: []dnsserver.TSIGKey{tc.key}}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("EnableTransfer with %v: %v, want %q", tc.key, err, tc.want)
		}
	}
}
