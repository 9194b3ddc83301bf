package dnsserver

import (
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/dnsserver/rrl"
	"github.com/acmebroker/acmebroker/internal/testenv"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testRRLConfig: negative answers 5/s, window 3 s, slip 2.
func testRRLConfig() rrl.Config {
	return rrl.Config{
		ResponsesPerSecond: 100, NXDomainPerSecond: 5, ErrorsPerSecond: 5, LargePerSecond: 5,
		LargeSize: 512, Slip: 2, Window: 3 * time.Second,
		IPv4Prefix: 24, IPv6Prefix: 56, TableSize: 1024,
	}
}

func newTestRRL(t testing.TB, cfg rrl.Config, clk *fakeClock) *rrl.Limiter {
	t.Helper()
	r, err := rrl.New(cfg, clk.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// udpFrom is a UDP socket bound to src (any 127.x.y.z is loopback on
// Linux), talking to the server at addr.
func udpFrom(t *testing.T, src, addr string) *net.UDPConn {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, raddr)
	if err != nil {
		testenv.Skipf(t, "cannot bind %s (%v): this test needs 127.0.0.0/8 on loopback (Linux)", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// burst sends n copies of q (IDs 1..n) at once, then reads what comes
// back until want packets have arrived or 5 s have passed, and then 200 ms
// more to catch any extra packet (this wait can only make the test pass
// late, never fail early).
func burst(t *testing.T, c *net.UDPConn, q *dns.Msg, n, want int) []*dns.Msg {
	t.Helper()
	for i := 1; i <= n; i++ {
		q.Id = uint16(i)
		b, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	var got []*dns.Msg
	buf := make([]byte, 65535)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if len(got) >= want {
			deadline = time.Now().Add(200 * time.Millisecond)
		}
		_ = c.SetReadDeadline(deadline)
		k, err := c.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:k]); err != nil {
			t.Fatalf("unparsable answer: %v", err)
		}
		got = append(got, m)
		if len(got) > n {
			t.Fatalf("%d answers to %d queries", len(got), n)
		}
	}
}

func countTC(ms []*dns.Msg) (full, tc int) {
	for _, m := range ms {
		if m.Truncated {
			if len(m.Answer)+len(m.Ns)+len(m.Extra) != 0 {
				panic("a slip carries records")
			}
			tc++
		} else {
			full++
		}
	}
	return
}

func TestRRLOverSockets(t *testing.T) {
	clk := newFakeClock()
	cfg := testRRLConfig() // negative 5/s, window 3 s, slip 2
	r := newTestRRL(t, cfg, clk)
	srv := startServer(t, r.Wrap(newTestHandler(t, testSource())), "127.0.0.1:0")
	addr := srv.Addrs()[0]
	nx := query("nope."+zone+".", dns.TypeTXT)
	nx.SetEdns0(1232, false)

	// 40 NXDOMAIN queries from 127.0.0.2 at one instant: 5 answered, the
	// other 35 limited, of which every 2nd slips (17) and 18 are dropped.
	attacker := udpFrom(t, "127.0.0.2", addr)
	got := burst(t, attacker, nx, 40, 5+17)
	full, tc := countTC(got)
	if full != 5 || tc != 17 {
		t.Fatalf("40 NXDOMAIN queries: %d answers and %d TC slips, want 5 and 17", full, tc)
	}
	for _, m := range got {
		if !m.Truncated && (m.Rcode != dns.RcodeNameError || len(m.Ns) != 1) {
			t.Fatalf("answer that got through is not the NXDOMAIN: %s", m)
		}
	}
	st := r.Stats()
	if st.Slipped != 17 || st.Dropped != 18 {
		t.Fatalf("stats %+v", st)
	}

	// The challenge TXT from a resolver in another /24 is answered in full,
	// and so is one from the attacker's own /24 (another kind of answer).
	for _, src := range []string{"127.0.1.1", "127.0.0.3"} {
		c := udpFrom(t, src, addr)
		txt := query(sub1+"."+zone+".", dns.TypeTXT)
		got := burst(t, c, txt, 3, 3)
		if full, _ := countTC(got); full != 3 || len(got[0].Answer) != 2 {
			t.Fatalf("TXT from %s while 127.0.0.2 floods: %d full answers (%v)", src, full, got)
		}
	}

	// Over TCP the attacker's prefix gets every NXDOMAIN in full.
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second,
		Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}}
	conn, err := c.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 30 {
		m, _, err := c.ExchangeWithConn(nx, conn)
		if err != nil || m.Truncated || m.Rcode != dns.RcodeNameError {
			t.Fatalf("tcp query %d: %v %v", i, m, err)
		}
	}

	// Still limited one second on (the flood left a debt)...
	clk.Advance(time.Second)
	if full, _ := countTC(burst(t, attacker, nx, 2, 1)); full != 0 {
		t.Fatal("answered 1 s after the flood, inside the 3 s window")
	}
	// ...and answered again once the window has passed without queries.
	clk.Advance(cfg.Window + time.Second)
	if full, tc := countTC(burst(t, attacker, nx, 3, 3)); full != 3 {
		t.Fatalf("after the window: %d answers, %d slips, want 3 answers", full, tc)
	}
}

// TestCookieResolverNotRateLimited: over real sockets, a resolver that
// returns the server cookie it was given is answered in full however fast
// it asks, while cookieless queries from its /24 are limited (issue 12).
func TestCookieResolverNotRateLimited(t *testing.T) {
	clk := newFakeClock()
	h := cookieHandler(t, clk.Now, testSource())
	cfg := testRRLConfig()
	cfg.Verified = h.cfg.Cookies.Verified
	srv := startServer(t, newTestRRL(t, cfg, clk).Wrap(h), "127.0.0.1:0")
	addr := srv.Addrs()[0]

	c := udpFrom(t, "127.0.0.4", addr)
	first := burst(t, c, withCookie(query(sub1+"."+zone+".", dns.TypeTXT), 1232, "0102030405060708"), 1, 1)
	if len(first) != 1 || len(answerCookie(first[0])) != 48 {
		t.Fatalf("no server cookie in the first answer: %v", first)
	}
	nx := withCookie(query("nope."+zone+".", dns.TypeTXT), 1232, answerCookie(first[0]))
	if full, tc := countTC(burst(t, c, nx, 40, 40)); full != 40 || tc != 0 {
		t.Fatalf("40 NXDOMAIN queries with a valid cookie: %d answers, %d slips; want 40 answers", full, tc)
	}
	plain := query("nope."+zone+".", dns.TypeTXT)
	plain.SetEdns0(1232, false)
	if full, _ := countTC(burst(t, udpFrom(t, "127.0.0.5", addr), plain, 40, 5+17)); full != 5 {
		t.Fatalf("40 cookieless NXDOMAIN queries from the same /24: %d answers, want 5", full)
	}
}
