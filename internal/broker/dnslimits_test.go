package broker_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/testenv"
)

// nxBurst sends n NXDOMAIN queries from src to addr at once and counts the
// full answers and the truncated slips that come back (reading until none
// has come for 300 ms, at most 10 s).
func nxBurst(t *testing.T, src, addr, zone string, n int) (full, tc int) {
	t.Helper()
	raddr, _ := net.ResolveUDPAddr("udp", addr)
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, raddr)
	if err != nil {
		testenv.Skipf(t, "cannot bind %s (%v): needs 127.0.0.0/8 on loopback", src, err)
	}
	defer c.Close()
	q := new(dns.Msg)
	q.SetQuestion("no-such-name."+zone+".", dns.TypeTXT)
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
		cfg := config.Default()
		cfg.DNS.Listen = []string{"127.0.0.1:0"}
		cfg.API.Listen = "127.0.0.1:0"
		cfg.Storage.DSN = filepath.Join(t.TempDir(), "broker.db")
		cfg.DNS.RRL.Enabled = enabled
		cfg.DNS.RRL.NXDomainPerSecond = 1 // a burst of one, then one a second
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
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
