package metrics

import (
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkDNSHandler is the broker's handler alone (as
// dnsserver.BenchmarkServeDNS) and the same handler behind the metrics
// middleware: the difference is what metrics cost a query.
func BenchmarkDNSHandler(b *testing.B) {
	bare := zoneHandler(b)
	for _, qc := range []struct{ name, qname string }{
		{"TXT-hit", sub + "." + zone + "."},
		{"NXDOMAIN", "nope." + zone + "."},
	} {
		for _, hc := range []struct {
			name string
			h    dns.Handler
		}{
			{"bare", bare},
			{"metrics", newMetrics(b).DNS(bare)},
		} {
			b.Run(qc.name+"/"+hc.name, func(b *testing.B) {
				r := q(qc.qname, dns.TypeTXT)
				r.SetEdns0(1232, false)
				w := &writer{}
				b.ReportAllocs()
				for b.Loop() {
					hc.h.ServeDNS(w, r)
					w.out = w.out[:0]
				}
			})
		}
	}
}

// BenchmarkDNSHandlerParallel is the same on every core, where the
// counters' cache lines are shared.
func BenchmarkDNSHandlerParallel(b *testing.B) {
	bare := zoneHandler(b)
	for _, hc := range []struct {
		name string
		h    dns.Handler
	}{
		{"bare", bare},
		{"metrics", newMetrics(b).DNS(bare)},
	} {
		b.Run(hc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := q(sub+"."+zone+".", dns.TypeTXT)
				r.SetEdns0(1232, false)
				w := &writer{}
				for pb.Next() {
					hc.h.ServeDNS(w, r)
					w.out = w.out[:0]
				}
			})
		})
	}
}

// BenchmarkDNSMiddleware is the middleware around a handler that only
// writes a packed answer with an OPT (what dnsserver.Handler does last):
// the metrics' own cost per query, free of the handler's noise.
func BenchmarkDNSMiddleware(b *testing.B) {
	a := q(sub+"."+zone+".", dns.TypeTXT)
	a.Response = true
	a.SetEdns0(1232, false)
	a.Answer = append(a.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: a.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 1}, Txt: []string{val}})
	packed, err := a.Pack()
	if err != nil {
		b.Fatal(err)
	}
	write := dns.HandlerFunc(func(w dns.ResponseWriter, _ *dns.Msg) { _, _ = w.Write(packed) })
	r := q(sub+"."+zone+".", dns.TypeTXT)
	for _, hc := range []struct {
		name string
		h    dns.Handler
	}{
		{"bare", write},
		{"metrics", newMetrics(b).DNS(write)},
	} {
		b.Run(hc.name, func(b *testing.B) {
			w := &writer{}
			b.ReportAllocs()
			for b.Loop() {
				hc.h.ServeDNS(w, r)
				w.out = w.out[:0]
			}
		})
	}
}
