package dnsserver

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkServeDNS is the handler alone (no socket): what a query costs
// the server beyond reading and writing the packet.
func BenchmarkServeDNS(b *testing.B) {
	h := newTestHandler(b, testSource())
	for _, bc := range []struct {
		name  string
		qname string
	}{
		{"TXT-hit", sub1 + "." + zone + "."},
		{"NXDOMAIN", "nope." + zone + "."},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q := query(bc.qname, dns.TypeTXT)
			q.SetEdns0(1232, false)
			w := udpRecorder()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeDNS(w, q)
				w.Msgs = w.Msgs[:0]
			}
		})
	}
}

// BenchmarkUDPQuery is a full round trip over loopback UDP, in parallel.
func BenchmarkUDPQuery(b *testing.B) {
	srv, err := Listen([]string{"127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, newTestHandler(b, testSource())) }()
	defer func() { cancel(); <-done }()
	addr := srv.Addrs()[0]
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		conn, err := c.Dial(addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		q := query(sub1+"."+zone+".", dns.TypeTXT)
		for pb.Next() {
			if _, _, err := c.ExchangeWithConn(q, conn); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSignedServeDNS compares the handler answering the same TXT
// and NXDOMAIN queries unsigned and signed (DO set, signatures from the
// cache, as in steady state): the cost of DNSSEC per answer.
//
//	go test -run '^$' -bench SignedServeDNS -cpu 1 ./dnsserver/
func BenchmarkSignedServeDNS(b *testing.B) {
	plain := newTestHandler(b, testSource())
	signed, _, _ := newSignedHandler(b, testSource(), false)
	for _, bc := range []struct {
		name  string
		qname string
	}{
		{"TXT", sub1 + "." + zone + "."},
		{"NXDOMAIN", "nope." + zone + "."},
	} {
		for _, mode := range []struct {
			name string
			h    *Handler
			do   bool
		}{{"unsigned", plain, false}, {"signed", signed, true}} {
			b.Run(bc.name+"/"+mode.name, func(b *testing.B) {
				q := query(bc.qname, dns.TypeTXT)
				q.SetEdns0(1232, mode.do)
				w := udpRecorder()
				mode.h.ServeDNS(w, q) // the signatures are made here, once
				w.Msgs = w.Msgs[:0]
				b.ReportAllocs()
				for b.Loop() {
					mode.h.ServeDNS(w, q)
					w.Msgs = w.Msgs[:0]
				}
			})
		}
	}
}

// BenchmarkFastPath is the fast path alone (no socket): what answering a
// query costs it, from the cache (hit) and built (miss: the cache is off,
// every answer is built, by the fast path for TXT values and NXDOMAIN, by
// the handler for the rest). bench/run.sh prints its allocs/op.
func BenchmarkFastPath(b *testing.B) {
	for _, bc := range []struct {
		name  string
		qname string
		cache int
	}{
		{"TXT-hit", sub1 + "." + zone + ".", 1 << 20},
		{"NXDOMAIN-hit", "nope." + zone + ".", 1 << 20},
		{"TXT-miss", sub1 + "." + zone + ".", 0},
		{"NXDOMAIN-miss", "nope." + zone + ".", 0},
		{"static-miss", "ns1." + zone + ".", 0}, // built by the handler
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newTestHandler(b, newVersionedSource())
			f, err := h.NewFastPath(FastConfig{CacheBytes: bc.cache})
			if err != nil {
				b.Fatal(err)
			}
			sc := f.newScratch()
			q := query(bc.qname, dns.TypeTXT)
			q.SetEdns0(1232, false)
			p, _ := q.Pack()
			out := make([]byte, 4096)
			now := time.Now().UnixNano()
			f.answer(sc, p, testRemote, false, now, out)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, _, o := f.answer(sc, p, testRemote, false, now, out); o == toFull {
					b.Fatal("not taken")
				}
			}
		})
	}
}
