package metrics

import (
	"syscall"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/dnstest"
	"github.com/miekg/dns"
)

// BenchmarkDNSHandler is the broker's handler alone (as
// dnsserver.BenchmarkServeDNS) and the same handler behind the metrics
// middleware: the difference is what metrics cost a query. Compare with
// benchstat -col /handler, on cpu-sec/op.
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
			{"metrics-timing-all", timeEvery(newMetrics(b)).DNS(bare)}, // what sampling saves
		} {
			b.Run("query="+qc.name+"/handler="+hc.name, func(b *testing.B) {
				r := q(qc.qname, dns.TypeTXT)
				r.SetEdns0(1232, false)
				w := dnstest.UDPRecorder()
				b.ReportAllocs()
				cpu := cpuTime()
				for b.Loop() {
					hc.h.ServeDNS(w, r)
					w.Msgs = w.Msgs[:0]
				}
				reportCPU(b, cpu)
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
		b.Run("handler="+hc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := q(sub+"."+zone+".", dns.TypeTXT)
				r.SetEdns0(1232, false)
				w := dnstest.UDPRecorder()
				for pb.Next() {
					hc.h.ServeDNS(w, r)
					w.Msgs = w.Msgs[:0]
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
		b.Run("handler="+hc.name, func(b *testing.B) {
			w := dnstest.UDPRecorder()
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				hc.h.ServeDNS(w, r)
				w.Msgs = w.Msgs[:0]
			}
			reportCPU(b, cpu)
		})
	}
}

// cpuTime is the CPU time the process has used (all threads, GC included).
// On a shared machine ns/op counts the time other processes hold the CPU
// as well; cpu-ns/op does not, so it is the figure to compare.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, since time.Duration) {
	b.ReportMetric(float64(cpuTime()-since)/float64(b.N), "cpu-ns/op")
}

func timeEvery(m *Metrics) *Metrics {
	m.dns.sampleMask = 0
	return m
}
