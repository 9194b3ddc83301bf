package dnsserver

import (
	"context"
	"net"
	"strings"
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
	return srv
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

	// Two questions: FORMERR.
	two := query(sub1+"."+zone+".", dns.TypeTXT)
	two.Question = append(two.Question, dns.Question{Name: zone + ".", Qtype: dns.TypeSOA, Qclass: dns.ClassINET})
	if m := exchange(t, "udp", addr, two); m.Rcode != dns.RcodeFormatError {
		t.Fatalf("two questions: %s", dns.RcodeToString[m.Rcode])
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
