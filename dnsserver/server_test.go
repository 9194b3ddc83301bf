package dnsserver

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startServer serves h on addrs (port 0) and stops it when the test ends,
// failing the test if Serve does not return within 10 s of the cancel.
func startServer(t *testing.T, h dns.Handler, addrs ...string) *Server {
	t.Helper()
	srv, err := Listen(addrs)
	if err != nil {
		t.Fatal(err)
	}
	serveForTest(t, srv, h)
	return srv
}

// serveForTest serves h on srv until the test ends, failing the test if
// Serve does not return within 10 s of the cancel.
func serveForTest(t *testing.T, srv *Server, h dns.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10 s of the cancel")
		}
	})
}

func exchange(t *testing.T, network, addr string, q *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	m, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", network, addr, err)
	}
	return m
}

func TestServeUDPAndTCP(t *testing.T) {
	addrs := []string{"127.0.0.1:0"}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		ln.Close()
		addrs = append(addrs, "[::1]:0")
	} else {
		t.Logf("no IPv6 loopback (%v): testing IPv4 only", err)
	}
	srv := startServer(t, newTestHandler(t, testSource()), addrs...)
	got := srv.Addrs()
	if len(got) != len(addrs) {
		t.Fatalf("Addrs %v for %v", got, addrs)
	}
	for _, a := range got {
		if strings.HasSuffix(a, ":0") {
			t.Fatalf("Addrs reports an unbound port: %s", a)
		}
		for _, network := range []string{"udp", "tcp"} {
			m := exchange(t, network, a, query(sub1+"."+zone+".", dns.TypeTXT))
			if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 2 || !m.Authoritative {
				t.Fatalf("%s %s: %s", network, a, m)
			}
		}
		// The large answer: TC over UDP, whole over TCP.
		if m := exchange(t, "udp", a, query("crowd."+zone+".", dns.TypeTXT)); !m.Truncated {
			t.Fatalf("udp %s: 40 values without TC", a)
		}
		if m := exchange(t, "tcp", a, query("crowd."+zone+".", dns.TypeTXT)); m.Truncated || len(m.Answer) != 40 {
			t.Fatalf("tcp %s: TC %v, %d answers", a, m.Truncated, len(m.Answer))
		}
	}
}

func TestServeDropsResponsesAndRejectsBadHeaders(t *testing.T) {
	srv := startServer(t, newTestHandler(t, testSource()), "127.0.0.1:0")
	addr := srv.Addrs()[0]
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// A packet with QR set is never answered (no reflection loops).
	resp := query(sub1+"."+zone+".", dns.TypeTXT)
	resp.Response = true
	b, _ := resp.Pack()
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	// Then a real query: its answer must be the first thing that comes back.
	q := query(sub1+"."+zone+".", dns.TypeTXT)
	q.Id = resp.Id + 1
	b, _ = q.Pack()
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil || m.Id != q.Id {
		t.Fatalf("first packet back: id %d (%v); the response packet %d was answered", m.Id, err, resp.Id)
	}
	// UDP packets are handled concurrently, so an answer to the response
	// packet could come second. Nothing may follow: the short deadline is
	// the assertion (it can only pass early, never fail early).
	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("a second packet (%d bytes) came back: the response packet was answered", n)
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal(err)
	}

	// Two questions: FORMERR.
	two := query(sub1+"."+zone+".", dns.TypeTXT)
	two.Question = append(two.Question, dns.Question{Name: zone + ".", Qtype: dns.TypeSOA, Qclass: dns.ClassINET})
	for _, network := range []string{"udp", "tcp"} {
		if m := exchange(t, network, addr, two); m.Rcode != dns.RcodeFormatError {
			t.Fatalf("%s, two questions: %s", network, dns.RcodeToString[m.Rcode])
		}
	}
	// An opcode we do not know: NOTIMP, from acceptMsg.
	st := query(sub1+"."+zone+".", dns.TypeTXT)
	st.Opcode = dns.OpcodeStatus
	if m := exchange(t, "udp", addr, st); m.Rcode != dns.RcodeNotImplemented {
		t.Fatalf("STATUS: %s", dns.RcodeToString[m.Rcode])
	}
}

// Over TCP one connection's messages are handled in order, so if the
// response packet were answered its answer would arrive first.
func TestServeTCPDropsResponses(t *testing.T) {
	srv := startServer(t, newTestHandler(t, testSource()), "127.0.0.1:0")
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	conn, err := c.Dial(srv.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp := query(sub1+"."+zone+".", dns.TypeTXT)
	resp.Response = true
	if err := conn.WriteMsg(resp); err != nil {
		t.Fatal(err)
	}
	q := query(sub1+"."+zone+".", dns.TypeTXT)
	q.Id = resp.Id + 1
	if err := conn.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := conn.ReadMsg()
	if err != nil {
		t.Fatal(err)
	}
	if m.Id != q.Id || len(m.Answer) != 2 {
		t.Fatalf("first message back: id %d with %d answers, want the answer to %d", m.Id, len(m.Answer), q.Id)
	}
}

func TestServeEDNSOverUDP(t *testing.T) {
	srv := startServer(t, newTestHandler(t, testSource()), "127.0.0.1:0")
	conn, err := net.Dial("udp", srv.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := query("crowd."+zone+".", dns.TypeTXT)
	q.SetEdns0(4096, true)
	b, _ := q.Pack()
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	// Read with room for what the client offered; we must stay within ours.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	opt := m.IsEdns0()
	if !m.Truncated || n > 1232 || opt == nil || !opt.Do() || opt.UDPSize() != 1232 {
		t.Fatalf("TC %v, %d bytes, OPT %v: want TC within 1232 and our OPT with DO", m.Truncated, n, opt)
	}
}

func TestListenErrors(t *testing.T) {
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.LocalAddr().String()
	_, err = Listen([]string{"127.0.0.1:0", addr})
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("Listen on a busy address: %v (want the address and a hint)", err)
	}
	// The UDP port is free but TCP is taken: still an error naming the
	// address, and nothing left bound.
	busyTCP, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyTCP.Close()
	addr = busyTCP.Addr().String()
	want := "(tcp)"
	if pc, err := net.ListenPacket("udp", addr); err != nil {
		t.Logf("udp %s is taken too (%v): the UDP error is checked instead", addr, err)
		want = "(udp)"
	} else {
		pc.Close()
	}
	_, err = Listen([]string{addr})
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Listen on a busy TCP port: %v (want the address and %s)", err, want)
	}
	if pc, err := net.ListenPacket("udp", addr); err == nil {
		pc.Close()
	} else if !strings.Contains(err.Error(), "in use") {
		t.Fatalf("udp %s not released after the failed Listen: %v", addr, err)
	}
	for _, bad := range []string{"nonsense", "127.0.0.1"} {
		if _, err := Listen([]string{bad}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Fatalf("Listen(%q): %v", bad, err)
		}
	}
	if _, err := Listen(nil); err == nil {
		t.Fatal("Listen with no address succeeded")
	}
}

func TestServeReturnsOnCancelWithoutTraffic(t *testing.T) {
	srv, err := Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // cancelled before Serve even starts
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, newTestHandler(t, testSource())) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	// The sockets are released: the same address can be bound again.
	again, err := Listen(srv.Addrs())
	if err != nil {
		t.Fatalf("address not released after Serve returned: %v", err)
	}
	again.Close()
}

// An idle TCP client must not hold Serve open after the cancel.
func TestServeReturnsOnCancelWithOpenConnection(t *testing.T) {
	srv, err := Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, newTestHandler(t, testSource())) }()

	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	conn, err := c.Dial(srv.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// One answered query proves the server is up and the connection open.
	if _, _, err := c.ExchangeWithConn(query(sub1+"."+zone+".", dns.TypeTXT), conn); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10 s of the cancel")
	}
	// The server closed its end: the client sees EOF, not a hang.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.ReadMsg(); err == nil {
		t.Fatal("read a message from a stopped server")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("connection still open after Serve returned")
	}
}

// TestListenErrorHints: the hint names systemd-resolved and dnsmasq only for
// port 53, the port they hold; every hint says what to do.
func TestListenErrorHints(t *testing.T) {
	inUse := &net.OpError{Op: "listen", Net: "udp", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}
	denied := &net.OpError{Op: "listen", Net: "udp", Err: os.NewSyscallError("bind", syscall.EACCES)}
	for _, tc := range []struct {
		addr    string
		err     error
		want    []string
		wantNot []string
	}{
		{"0.0.0.0:53", inUse, []string{"0.0.0.0:53", "systemd-resolved", "dnsmasq", "another address"}, nil},
		{"[::]:53", inUse, []string{"systemd-resolved"}, nil},
		{"127.0.0.1:5353", inUse, []string{"127.0.0.1:5353", "another process is using it", "another address"}, []string{"systemd-resolved", "dnsmasq"}},
		{"127.0.0.1:8053", inUse, []string{"another process"}, []string{"systemd-resolved", "port 53"}},
		{"0.0.0.0:53", denied, []string{"CAP_NET_BIND_SERVICE"}, []string{"systemd-resolved"}},
	} {
		msg := listenError(tc.addr, "udp", tc.err).Error()
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q lacks %q", tc.addr, msg, w)
			}
		}
		for _, w := range tc.wantNot {
			if strings.Contains(msg, w) {
				t.Errorf("%s: %q should not mention %q", tc.addr, msg, w)
			}
		}
		if !errors.Is(listenError(tc.addr, "udp", tc.err), syscall.EADDRINUSE) && tc.err == inUse {
			t.Errorf("%s: the error no longer wraps EADDRINUSE", tc.addr)
		}
	}
}
