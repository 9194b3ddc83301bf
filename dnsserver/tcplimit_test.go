package dnsserver

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/testenv"
)

// startLimited serves the test zone with TCP limits l.
func startLimited(t *testing.T, l TCPLimits) string {
	t.Helper()
	srv, err := Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.LimitTCP(l, nil); err != nil {
		t.Fatal(err)
	}
	serveForTest(t, srv, newTestHandler(t, testSource()))
	return srv.Addrs()[0]
}

// tcpFrom opens a DNS-over-TCP connection from src (a 127.x.y.z address).
// A connection the server resets at once may fail already here; ask
// reports that error.
func tcpFrom(t *testing.T, src, addr string) *dns.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		if !closedByServer(err) {
			testenv.Skipf(t, "cannot connect from %s (%v): this test needs 127.0.0.0/8 on loopback (Linux)", src, err)
		}
		return &dns.Conn{Conn: failedConn{err}}
	}
	dc := &dns.Conn{Conn: c}
	t.Cleanup(func() { dc.Close() })
	return dc
}

// failedConn is a connection whose dial was reset.
type failedConn struct{ err error }

func (f failedConn) Read([]byte) (int, error)         { return 0, f.err }
func (f failedConn) Write([]byte) (int, error)        { return 0, f.err }
func (f failedConn) Close() error                     { return nil }
func (f failedConn) LocalAddr() net.Addr              { return nil }
func (f failedConn) RemoteAddr() net.Addr             { return nil }
func (f failedConn) SetDeadline(time.Time) error      { return nil }
func (f failedConn) SetReadDeadline(time.Time) error  { return nil }
func (f failedConn) SetWriteDeadline(time.Time) error { return nil }

// ask sends one TXT query on c and returns the answer or the error.
func ask(c *dns.Conn) (*dns.Msg, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMsg(query(sub1+"."+zone+".", dns.TypeTXT)); err != nil {
		return nil, err
	}
	return c.ReadMsg()
}

// closedByServer: the server closed (or reset) the connection, as opposed
// to an answer or a client-side timeout.
func closedByServer(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "broken pipe")
}

func TestTCPConnectionLimits(t *testing.T) {
	addr := startLimited(t, TCPLimits{PerSource: 2, MaxConnections: 3})
	a1, a2 := tcpFrom(t, "127.0.0.2", addr), tcpFrom(t, "127.0.0.2", addr)
	for i, c := range []*dns.Conn{a1, a2} {
		if m, err := ask(c); err != nil || len(m.Answer) != 2 {
			t.Fatalf("connection %d from 127.0.0.2: %v %v", i+1, m, err)
		}
	}
	// The third from the same address is closed at once.
	if m, err := ask(tcpFrom(t, "127.0.0.2", addr)); !closedByServer(err) {
		t.Fatalf("3rd connection from 127.0.0.2 (limit 2): answer %v, err %v; want it closed", m, err)
	}
	// Another source still gets in (3 of 3 in all)...
	b1 := tcpFrom(t, "127.0.1.1", addr)
	if m, err := ask(b1); err != nil || len(m.Answer) != 2 {
		t.Fatalf("127.0.1.1 while 127.0.0.2 is at its limit: %v %v", m, err)
	}
	// ...but the 4th connection in all is over the total.
	if _, err := ask(tcpFrom(t, "127.0.2.1", addr)); !closedByServer(err) {
		t.Fatalf("4th connection in all (total 3): err %v; want it closed", err)
	}
	// Closing one gives its slot back: 127.0.0.2 connects again (the
	// server notices the close asynchronously; poll, bounded).
	a1.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := ask(tcpFrom(t, "127.0.0.2", addr))
		if err == nil && len(m.Answer) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not given back 5 s after a close: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The connections within the limits still work.
	if _, err := ask(a2); err != nil {
		t.Fatalf("connection within the limit broken: %v", err)
	}
}

func TestTCPIdleTimeoutAndQueryCap(t *testing.T) {
	addr := startLimited(t, TCPLimits{IdleTimeout: 300 * time.Millisecond, MaxQueries: 3})

	// Idle: after an answer, a connection that sends nothing is closed by
	// the server (well before the client's 5 s deadline).
	c := tcpFrom(t, "127.0.0.1", addr)
	if _, err := ask(c); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := c.ReadMsg(); !closedByServer(err) {
		t.Fatalf("idle connection: %v after %s; want it closed by the server", err, time.Since(start))
	}

	// Query cap: 3 answers, then the connection is closed.
	c = tcpFrom(t, "127.0.0.1", addr)
	for i := range 3 {
		if _, err := ask(c); err != nil {
			t.Fatalf("query %d of 3: %v", i+1, err)
		}
	}
	if _, err := ask(c); !closedByServer(err) {
		t.Fatalf("4th query on a connection capped at 3: %v; want it closed", err)
	}
}

func TestTCPLimitsCheck(t *testing.T) {
	for _, c := range []struct {
		l    TCPLimits
		want string
	}{
		{TCPLimits{PerSource: -1}, "tcp_per_source"},
		{TCPLimits{MaxConnections: -1}, "tcp_max_connections"},
		{TCPLimits{IdleTimeout: -time.Second}, "tcp_idle_timeout"},
		{TCPLimits{MaxQueries: 70000}, "tcp_max_queries"},
	} {
		if err := c.l.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v", c.l, err)
		}
	}
}

// TestTCPLimitPerPrefix: the per-source limit counts a /24 as one source
// (issue 12: 32 addresses of one network held all 512 slots).
func TestTCPLimitPerPrefix(t *testing.T) {
	addr := startLimited(t, TCPLimits{PerSource: 2, MaxConnections: 100})
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		if _, err := ask(tcpFrom(t, src, addr)); err != nil {
			t.Fatalf("%s: %v", src, err)
		}
	}
	if m, err := ask(tcpFrom(t, "127.0.0.4", addr)); !closedByServer(err) {
		t.Fatalf("3rd connection from 127.0.0.0/24 (limit 2 per source prefix): answer %v, err %v; want it closed", m, err)
	}
	if _, err := ask(tcpFrom(t, "127.0.5.1", addr)); err != nil {
		t.Fatalf("another /24: %v", err)
	}
}

// TestTCPTricklerLosesItsSlot: a client that sends a query just within
// the idle timeout, again and again, is closed at the connection's
// lifetime (issue 12: one query every 5 s held a slot for 21 minutes).
func TestTCPTricklerLosesItsSlot(t *testing.T) {
	addr := startLimited(t, TCPLimits{IdleTimeout: 2 * time.Second, MaxLifetime: time.Second, MaxQueries: 1000})
	c := tcpFrom(t, "127.0.0.1", addr)
	start := time.Now()
	for i := range 40 { // 40 × 100 ms: far past the 1 s lifetime
		if _, err := ask(c); err != nil {
			if !closedByServer(err) {
				t.Fatalf("query %d: %v; want the connection closed", i+1, err)
			}
			if i == 0 || time.Since(start) > 3*time.Second {
				t.Fatalf("closed after %d queries, %s", i, time.Since(start))
			}
			return
		}
		time.Sleep(100 * time.Millisecond) // the trickle: the client's pace, not a wait for the server
	}
	t.Fatalf("a trickling client kept its connection for %s (lifetime 1 s)", time.Since(start))
}
