package broker_test

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/testenv"
)

// nxBurst sends n NXDOMAIN queries from src to addr at once and counts the
// full answers and the truncated slips that come back (reading until none
// has come for 300 ms, at most 10 s).
func nxBurst(t *testing.T, src, addr, zone string, n int) (full, tc int) {
	t.Helper()
	return nxBurstCookie(t, src, addr, zone, n, "")
}

// nxBurstCookie is nxBurst with a DNS Cookie option (hex) in each query;
// "" sends none.
func nxBurstCookie(t *testing.T, src, addr, zone string, n int, ck string) (full, tc int) {
	t.Helper()
	raddr, _ := net.ResolveUDPAddr("udp", addr)
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, raddr)
	if err != nil {
		testenv.Skipf(t, "cannot bind %s (%v): needs 127.0.0.0/8 on loopback", src, err)
	}
	defer c.Close()
	q := new(dns.Msg)
	q.SetQuestion("no-such-name."+zone+".", dns.TypeTXT)
	if ck != "" {
		q.SetEdns0(1232, false)
		q.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: ck}}
	}
	for i := range n {
		q.Id = uint16(i + 1)
		b, _ := q.Pack()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 4096)
	end := time.Now().Add(10 * time.Second)
	for time.Now().Before(end) {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		k, err := c.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:k]); err != nil {
			t.Fatal(err)
		}
		if m.Truncated {
			tc++
		} else {
			full++
		}
	}
	return full, tc
}

// TestBrokerDNSLimitsWired: the broker applies [dns.rrl] from its
// configuration, and enabled = false (what bench/ uses) turns it off.
func TestBrokerDNSLimitsWired(t *testing.T) {
	for _, enabled := range []bool{true, false} {
		cfg := brokertest.Config(t, "", func(c *config.Config) {
			c.DNS.RRL.Enabled = enabled
			c.DNS.RRL.NXDomainPerSecond = 1 // a burst of one, then one a second
		})
		rd := brokertest.Start(t, cfg)
		full, tc := nxBurst(t, "127.0.0.2", rd.DNS[0], cfg.DNS.Zone, 30)
		t.Logf("rrl enabled=%v: 30 NXDOMAIN queries, %d answered, %d slipped", enabled, full, tc)
		if enabled && (full > 5 || tc < 10) {
			t.Fatalf("rrl on: %d answered, %d slipped; want about 1 and 15", full, tc)
		}
		if !enabled && (full != 30 || tc != 0) {
			t.Fatalf("rrl off: %d answered, %d slipped; want all 30 answered", full, tc)
		}
	}
}

// serverCookie asks addr once from src with a client cookie and returns
// the whole COOKIE option of the answer (client and server cookie, hex).
func serverCookie(t *testing.T, src, addr, zone string) string {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}}
	q := new(dns.Msg)
	q.SetQuestion(zone+".", dns.TypeSOA)
	q.SetEdns0(1232, false)
	q.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "a1b2c3d4e5f60718"}}
	m, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatal(err)
	}
	if o := m.IsEdns0(); o != nil {
		for _, e := range o.Option {
			if ck, ok := e.(*dns.EDNS0_COOKIE); ok && len(ck.Cookie) == 48 {
				return ck.Cookie
			}
		}
	}
	t.Fatalf("no server cookie in %s", m)
	return ""
}

// TestBrokerCookiesWired: with [dns.cookies] (on by default) a resolver
// that returns its server cookie is not rate limited, and two nodes that
// share dns.cookies.secret accept each other's cookies (issue 12).
func TestBrokerCookiesWired(t *testing.T) {
	const secret = "e5e973e5a6b2a43f48e7dc849e37bfcf"
	start := func(secret string) broker.Ready {
		return brokertest.Start(t, brokertest.Config(t, "", func(c *config.Config) {
			c.DNS.RRL.NXDomainPerSecond = 1
			c.DNS.Cookies.Secret = secret
		}))
	}
	zone := config.Default().DNS.Zone
	a, b, other := start(secret), start(secret), start("")
	ck := serverCookie(t, "127.0.0.2", a.DNS[0], zone)
	for _, c := range []struct {
		name string
		addr string
		src  string
		ck   string
		all  bool
	}{
		{"node A, its own cookie", a.DNS[0], "127.0.0.2", ck, true},
		{"node B, same secret", b.DNS[0], "127.0.0.2", ck, true},
		{"node C, another secret", other.DNS[0], "127.0.0.2", ck, false},
		{"node A, the cookie from another address", a.DNS[0], "127.0.0.3", ck, false},
		{"node B, no cookie", b.DNS[0], "127.0.1.2", "", false},
	} {
		full, tc := nxBurstCookie(t, c.src, c.addr, zone, 30, c.ck)
		if c.all && (full != 30 || tc != 0) {
			t.Errorf("%s: %d of 30 answered, %d slipped; want all answered", c.name, full, tc)
		}
		if !c.all && full > 5 {
			t.Errorf("%s: %d of 30 answered; want it rate limited", c.name, full)
		}
	}
}
