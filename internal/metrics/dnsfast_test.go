package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestDNSObserverCountsFastAnswers: the fast path's answers land in the
// same series as the others (qtype, rcode; "none" when nothing was sent),
// and its timings in the same histogram.
func TestDNSObserverCountsFastAnswers(t *testing.T) {
	m := newMetrics(t)
	o := m.DNSObserver()
	o.Answered(dns.TypeTXT, dns.RcodeSuccess)
	o.Answered(dns.TypeTXT, dns.RcodeSuccess)
	o.Answered(dns.TypeA, dns.RcodeNameError)
	o.Answered(dns.TypeTXT, -1)               // dropped by the rate limiter
	o.Answered(dns.TypeSOA, dns.RcodeBadVers) // extended rcode
	o.Answered(dns.TypeHINFO, dns.RcodeRefused)
	for _, c := range []struct {
		qtype, rcode string
		want         float64
	}{{"TXT", "NOERROR", 2}, {"A", "NXDOMAIN", 1}, {"TXT", "none", 1}, {"SOA", "BADVERS", 1}, {"other", "REFUSED", 1}} {
		if got := testutil.ToFloat64(m.dns.queries.WithLabelValues(c.qtype, c.rcode)); got != c.want {
			t.Errorf("%s %s: %v, want %v", c.qtype, c.rcode, got, c.want)
		}
	}
	before := histogramCount(t, m.dns.latency)
	o.Took(300 * time.Microsecond)
	if got := histogramCount(t, m.dns.latency); got != before+1 {
		t.Fatalf("histogram count %d, want %d", got, before+1)
	}
}

type fastCounts struct{ hits, fills, handed uint64 }

func (f fastCounts) FastCounts() (uint64, uint64, uint64) { return f.hits, f.fills, f.handed }

// TestWatchFastPath exports what the fast path did, by what answered.
func TestWatchFastPath(t *testing.T) {
	m := newMetrics(t)
	if err := m.WatchFastPath(fastCounts{7, 2, 1}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP acmebroker_dns_fast_path_queries_total Queries the DNS fast path read, by what answered them: the answer cache, the handler (a miss), or the full server (queries that are not ordinary).
# TYPE acmebroker_dns_fast_path_queries_total counter
acmebroker_dns_fast_path_queries_total{answered_by="cache"} 7
acmebroker_dns_fast_path_queries_total{answered_by="full_server"} 1
acmebroker_dns_fast_path_queries_total{answered_by="handler"} 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "acmebroker_dns_fast_path_queries_total"); err != nil {
		t.Fatal(err)
	}
}
