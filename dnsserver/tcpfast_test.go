package dnsserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startFast serves h on 127.0.0.1:0 through the fast path (with TCP
// limits l) until the test ends, and returns the address and the fast
// path.
func startFast(t *testing.T, h *Handler, l TCPLimits) (string, *FastPath) {
	t.Helper()
	srv, err := Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.LimitTCP(l, nil); err != nil {
		t.Fatal(err)
	}
	f, err := h.NewFastPath(FastConfig{CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	srv.EnableFastPath(f)
	serveForTest(t, srv, h)
	return srv.Addrs()[0], f
}

// pipeline writes every query of qs on one TCP connection at once and
// returns the raw answers, in order.
func pipeline(t *testing.T, addr string, qs [][]byte) [][]byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var all []byte
	for _, q := range qs {
		all = append(binary.BigEndian.AppendUint16(all, uint16(len(q))), q...)
	}
	if _, err := c.Write(all); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for range qs {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			t.Fatalf("answer %d of %d: %v", len(out)+1, len(qs), err)
		}
		b := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestFastTCPSameBytes pipelines the same queries on one connection to a
// server with the fast path and to one without: the same answers, in the
// same order, also after a query the fast path hands to the full server
// (which then serves the rest of the connection).
func TestFastTCPSameBytes(t *testing.T) {
	h := newTestHandler(t, newVersionedSource())
	fast, f := startFast(t, h, TCPLimits{})
	srv, err := Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	serveForTest(t, srv, h)
	plain := srv.Addrs()[0]

	var qs [][]byte
	add := func(m *dns.Msg) {
		m.Id = uint16(len(qs) + 1)
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		qs = append(qs, b)
	}
	for range 3 {
		for _, tc := range answerTests() {
			if tc.qtype == dns.TypeAXFR || tc.qtype == dns.TypeIXFR {
				continue
			}
			q := query(tc.qname, tc.qtype)
			q.SetEdns0(512, true)
			add(q)
		}
		add(query("crowd."+zone+".", dns.TypeTXT)) // 2.4 KB: no truncation over TCP
	}
	before := len(qs)
	n := query(zone+".", dns.TypeSOA)
	n.Opcode = dns.OpcodeNotify
	add(n) // handed to the full server, with what follows
	add(query(sub1+"."+zone+".", dns.TypeTXT))
	add(query("nope."+zone+".", dns.TypeTXT))

	a, b := pipeline(t, fast, qs), pipeline(t, plain, qs)
	for i := range qs {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("answer %d differs:\nfast:  %x\nplain: %x", i, a[i], b[i])
		}
	}
	if s := f.Stats(); s.Hits == 0 || s.Handed != 1 || s.Hits+s.Fills != uint64(before) {
		t.Fatalf("stats %+v: want %d answered by the fast path, one handed over", s, before)
	}
}

// TestFastTCPTransfer: a secondary asks for the SOA (fast path), then the
// zone (handed over) on one connection.
func TestFastTCPTransfer(t *testing.T) {
	src := &walkingSource{versionedSource: newVersionedSource()}
	h := newTestHandler(t, src)
	if err := h.EnableTransfer(TransferConfig{AllowFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}); err != nil {
		t.Fatal(err)
	}
	addr, _ := startFast(t, h, TCPLimits{})
	c, err := dns.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.WriteMsg(query(zone+".", dns.TypeSOA)); err != nil {
		t.Fatal(err)
	}
	if m, err := c.ReadMsg(); err != nil || len(m.Answer) != 1 {
		t.Fatalf("SOA: %v %v", m, err)
	}
	if err := c.WriteMsg(query(zone+".", dns.TypeAXFR)); err != nil {
		t.Fatal(err)
	}
	soas := 0
	for soas < 2 {
		m, err := c.ReadMsg()
		if err != nil || m.Rcode != dns.RcodeSuccess {
			t.Fatalf("AXFR: %v %v", m, err)
		}
		for _, rr := range m.Answer {
			if rr.Header().Rrtype == dns.TypeSOA {
				soas++
			}
		}
	}
}

// walkingSource is a versionedSource that can be transferred.
type walkingSource struct{ *versionedSource }

func (w *walkingSource) Walk() ZoneWalker                       { return &oneChunk{serial: w.Serial()} }
func (w *walkingSource) Diff(uint32) (uint32, []ZoneDiff, bool) { return w.Serial(), nil, false }
func (w *walkingSource) Changed() <-chan struct{}               { return nil }

type oneChunk struct{ serial uint32 }

func (o *oneChunk) Serial() uint32 { return o.serial }
func (o *oneChunk) Err() error     { return nil }
func (o *oneChunk) Next(dst []ZoneEntry) ([]ZoneEntry, bool) {
	return append(dst, ZoneEntry{Name: "abc", Values: []string{"v"}}), false
}

// TestFastTCPLimits: the connection limits, the idle timeout and the
// query cap hold on the fast path too, and stopping the server ends the
// connections it serves.
func TestFastTCPLimits(t *testing.T) {
	h := newTestHandler(t, newVersionedSource())
	addr, _ := startFast(t, h, TCPLimits{PerSource: 2, IdleTimeout: 300 * time.Millisecond, MaxQueries: 3})
	a1, a2 := tcpFrom(t, "127.0.0.2", addr), tcpFrom(t, "127.0.0.2", addr)
	for i, c := range []*dns.Conn{a1, a2} {
		if m, err := ask(c); err != nil || len(m.Answer) != 2 {
			t.Fatalf("connection %d: %v %v", i+1, m, err)
		}
	}
	if m, err := ask(tcpFrom(t, "127.0.0.2", addr)); !closedByServer(err) {
		t.Fatalf("3rd connection from 127.0.0.2 (limit 2): answer %v, err %v; want it closed", m, err)
	}
	// Idle: closed by the server after 300 ms without a query.
	_ = a1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := a1.ReadMsg(); !closedByServer(err) {
		t.Fatalf("idle connection: %v; want it closed by the server", err)
	}
	// Query cap: three answers, then closed.
	b := tcpFrom(t, "127.0.0.3", addr)
	for i := range 3 {
		if _, err := ask(b); err != nil {
			t.Fatalf("query %d of 3: %v", i+1, err)
		}
	}
	if _, err := ask(b); !closedByServer(err) {
		t.Fatalf("4th query on a connection capped at 3: %v; want it closed", err)
	}
}

// TestFastTCPStop: Serve returns at once when stopped, even with a
// connection open and idle (its read is ended, not waited for).
func TestFastTCPStop(t *testing.T) {
	h := newTestHandler(t, newVersionedSource())
	srv, err := Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := h.NewFastPath(FastConfig{CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	srv.EnableFastPath(f)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, h) }()
	c := tcpFrom(t, "127.0.0.1", srv.Addrs()[0])
	if _, err := ask(c); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return within 5 s with an idle connection open")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Serve took %s to return", d)
	}
}
