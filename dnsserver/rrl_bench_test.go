package dnsserver

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/dnsserver/rrl"
)

// BenchmarkRRL is the handler alone and behind the RRL middleware, on the
// path every answer takes when no one is limited (the production clock,
// 256 source prefixes in turn, limits far above the load): what RRL adds
// to each query.
//
//	go test -run '^$' -bench 'BenchmarkRRL' -count 5 ./dnsserver/
func BenchmarkRRL(b *testing.B) {
	plain := newTestHandler(b, testSource())
	cfg := testRRLConfig()
	cfg.ResponsesPerSecond, cfg.NXDomainPerSecond, cfg.LargePerSecond, cfg.ErrorsPerSecond = 1e9, 1e9, 1e9, 1e9
	r, err := rrl.New(cfg, time.Now, nil)
	if err != nil {
		b.Fatal(err)
	}
	wrapped := r.Wrap(plain)
	ws := make([]*recorder, 256)
	for i := range ws {
		ws[i] = &recorder{Remote: &net.UDPAddr{IP: net.IPv4(198, 18, byte(i), 7), Port: 5353}}
	}
	for _, bc := range []struct {
		name  string
		qname string
	}{
		{"TXT-hit", sub1 + "." + zone + "."},
		{"NXDOMAIN", "nope." + zone + "."},
	} {
		for _, hc := range []struct {
			name string
			h    dns.Handler
		}{{"plain", plain}, {"rrl", wrapped}} {
			b.Run(bc.name+"/"+hc.name, func(b *testing.B) {
				q := query(bc.qname, dns.TypeTXT)
				q.SetEdns0(1232, false)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					w := ws[i&255]
					hc.h.ServeDNS(w, q)
					w.Msgs = w.Msgs[:0]
					i++
				}
			})
		}
	}
	if st := r.Stats(); st.Dropped+st.Slipped != 0 {
		b.Fatalf("the benchmark was limited: %+v", st)
	}
}

// BenchmarkRRLParallel is the middleware under contention: every core
// answering, each from its own prefix.
func BenchmarkRRLParallel(b *testing.B) {
	plain := newTestHandler(b, testSource())
	cfg := testRRLConfig()
	cfg.ResponsesPerSecond = 1e9
	r, err := rrl.New(cfg, time.Now, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, hc := range []struct {
		name string
		h    dns.Handler
	}{{"plain", plain}, {"rrl", r.Wrap(plain)}} {
		b.Run(hc.name, func(b *testing.B) {
			var n atomic.Uint32
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				id := n.Add(1)
				w := &recorder{Remote: &net.UDPAddr{IP: net.IPv4(198, 18, byte(id), 7), Port: 5353}}
				q := query(sub1+"."+zone+".", dns.TypeTXT)
				for pb.Next() {
					hc.h.ServeDNS(w, q)
					w.Msgs = w.Msgs[:0]
				}
			})
		})
	}
}

// TestAmplification measures what a forged flood from one /24 gets out of
// the server: bytes sent to the victim over bytes the attacker sent, with
// and without RRL, for the answers worth forging. The attack runs at 1,000
// queries a second for 3 s on the injected clock, so the figures are
// exact and repeatable; the limits are the defaults of config.toml.
// Without RRL every query of an attack gets an answer of the same size;
// the test checks that on the first queries and counts the rest from it,
// which keeps it quick under the race detector.
//
//	go test -run TestAmplification -v ./dnsserver/
func TestAmplification(t *testing.T) {
	const qps, seconds, sampled = 1000, 3, 20
	src := testSource()
	plain, cookies := newTestHandler(t, src), cookieHandler(t, time.Now, testSource()) // cookieless UDP: 512 bytes
	cfg := testRRLConfig()
	cfg.ResponsesPerSecond, cfg.NXDomainPerSecond, cfg.ErrorsPerSecond = 100, 10, 10
	cfg.LargeSize, cfg.LargePerSecond, cfg.Window = 512, 20, 5*time.Second

	type attack struct {
		name string
		q    func(i int) *dns.Msg
	}
	edns := func(m *dns.Msg) *dns.Msg { m.SetEdns0(4096, false); return m }
	attacks := []attack{
		{"NXDOMAIN (random names)", func(i int) *dns.Msg { return edns(query(fmt.Sprintf("x%07d.%s.", i, zone), dns.TypeTXT)) }},
		{"ANY at the apex", func(int) *dns.Msg { return edns(query(zone+".", dns.TypeANY)) }},
		{"large TXT (40 values)", func(int) *dns.Msg { return edns(query("crowd."+zone+".", dns.TypeTXT)) }},
		{"challenge TXT (2 values)", func(int) *dns.Msg { return edns(query(sub1+"."+zone+".", dns.TypeTXT)) }},
		{"REFUSED (out of zone)", func(int) *dns.Msg { return edns(query("example.com.", dns.TypeANY)) }},
	}
	t.Logf("%-26s %9s %12s %12s %8s %8s", "attack (1000 q/s, 3 s)", "bytes in", "out no RRL", "out RRL", "x no RRL", "x RRL")
	for _, a := range append(attacks, attack{"large TXT, cookies on", attacks[2].q}) {
		h := plain
		if strings.HasSuffix(a.name, "cookies on") {
			h = cookies
		}
		var in, outPlain, outRRL, plainSize int
		clk := newFakeClock()
		r := newTestRRL(t, cfg, clk)
		limited := r.Wrap(h)
		victim := &recorder{Remote: &net.UDPAddr{IP: net.IPv4(203, 0, 113, 77), Port: 53}}
		for i := range qps * seconds {
			q := a.q(i)
			q.Id = uint16(i)
			qb, err := q.Pack()
			if err != nil {
				t.Fatal(err)
			}
			in += len(qb)
			if i < sampled {
				h.ServeDNS(victim, q)
				if len(victim.Msgs) != 1 || (i > 0 && len(victim.Msgs[0]) != plainSize) {
					t.Fatalf("%s: answers without RRL differ in size: %d messages", a.name, len(victim.Msgs))
				}
				plainSize = len(victim.Msgs[0])
				victim.Msgs = victim.Msgs[:0]
			}
			outPlain += plainSize
			limited.ServeDNS(victim, q)
			for _, m := range victim.Msgs {
				outRRL += len(m)
			}
			victim.Msgs = victim.Msgs[:0]
			clk.Advance(time.Second / qps)
		}
		ampPlain, ampRRL := float64(outPlain)/float64(in), float64(outRRL)/float64(in)
		t.Logf("%-26s %9d %12d %12d %8.2f %8.2f", a.name, in, outPlain, outRRL, ampPlain, ampRRL)
		// With RRL a forged flood never gets more bytes out than it sends.
		if ampRRL > 1 {
			t.Errorf("%s: amplification %.2f with RRL", a.name, ampRRL)
		}
	}
}

// BenchmarkRRLOverhead isolates what the middleware itself costs per
// answer: a handler that only writes a ready packed answer, bare and
// wrapped (figures less at the mercy of a busy machine than the whole
// handler's).
func BenchmarkRRLOverhead(b *testing.B) {
	h := newTestHandler(b, testSource())
	rec := udpRecorder()
	q := query(sub1+"."+zone+".", dns.TypeTXT)
	q.SetEdns0(1232, false)
	h.ServeDNS(rec, q)
	answer := rec.Msgs[0]
	writeOnly := dns.HandlerFunc(func(w dns.ResponseWriter, _ *dns.Msg) { _, _ = w.Write(answer) })
	cfg := testRRLConfig()
	cfg.ResponsesPerSecond = 1e9
	r, err := rrl.New(cfg, time.Now, nil)
	if err != nil {
		b.Fatal(err)
	}
	fixed := time.Now()
	rFixed, err := rrl.New(cfg, func() time.Time { return fixed }, nil)
	if err != nil {
		b.Fatal(err)
	}
	ws := make([]*recorder, 256)
	for i := range ws {
		ws[i] = &recorder{Remote: &net.UDPAddr{IP: net.IPv4(198, 18, byte(i), 7), Port: 5353}}
	}
	for _, hc := range []struct {
		name string
		h    dns.Handler
	}{{"bare", writeOnly}, {"rrl", r.Wrap(writeOnly)}, {"rrl-frozen-clock", rFixed.Wrap(writeOnly)}} {
		b.Run(hc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				w := ws[i&255]
				hc.h.ServeDNS(w, q)
				w.Msgs = w.Msgs[:0]
				i++
			}
		})
	}
}
