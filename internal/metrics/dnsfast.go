package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DNSObserver counts and times the queries the DNS server's fast path
// answers (dnsserver.QueryObserver) in the same series as DNS does for the
// others: acmebroker_dns_queries_total and the request duration.
type DNSObserver struct{ m *dnsMetrics }

// DNSObserver returns the observer for the DNS fast path.
func (m *Metrics) DNSObserver() *DNSObserver { return &DNSObserver{m: m.dns} }

// Answered counts one query of type qtype answered with rcode (< 0: no
// answer was sent, counted as "none").
func (o *DNSObserver) Answered(qtype uint16, rcode int) {
	rc := rcodeNone
	if rcode >= 0 {
		rc = rcodeIndex(rcode)
	}
	o.m.count(qtypeIndex(qtype), rc)
}

// Took records the time one query took.
func (o *DNSObserver) Took(d time.Duration) { o.m.latency.Observe(d.Seconds()) }

// FastPathStats is what the metrics read from the DNS fast path.
type FastPathStats interface {
	// FastCounts returns how many queries were answered from the answer
	// cache, by the handler inline, and handed to the full server.
	FastCounts() (hits, fills, handed uint64)
}

// WatchFastPath exports the counts of f, read at each scrape.
func (m *Metrics) WatchFastPath(f FastPathStats) error {
	read := func(i int) func() float64 {
		return func() float64 {
			h, fl, hd := f.FastCounts()
			return float64([3]uint64{h, fl, hd}[i])
		}
	}
	help := "Queries the DNS fast path read, by what answered them: the answer cache, the handler (a miss), or the full server (queries that are not ordinary)."
	return register(m.reg,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Subsystem: "dns", Name: "fast_path_queries_total",
			Help: help, ConstLabels: prometheus.Labels{"answered_by": "cache"}}, read(0)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Subsystem: "dns", Name: "fast_path_queries_total",
			Help: help, ConstLabels: prometheus.Labels{"answered_by": "handler"}}, read(1)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Subsystem: "dns", Name: "fast_path_queries_total",
			Help: help, ConstLabels: prometheus.Labels{"answered_by": "full_server"}}, read(2)),
	)
}
