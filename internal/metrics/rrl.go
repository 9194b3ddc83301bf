package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/acmebroker/acmebroker/dnsserver/rrl"
)

// RRLStats is what the DNS response rate limiter reports.
type RRLStats interface {
	Stats() rrl.Stats
}

// WatchRRL exports the rate limiter's counters: answers dropped and sent
// truncated (slipped), buckets held, and buckets reused while they may still
// have been limiting (raise dns.rrl.table_size if that grows).
func (m *Metrics) WatchRRL(r RRLStats) error {
	counter := func(name, help string, v func(rrl.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "dns_rrl", Name: name, Help: help,
		}, func() float64 { return float64(v(r.Stats())) })
	}
	return register(m.reg,
		counter("dropped_total", "UDP answers dropped by response rate limiting.",
			func(s rrl.Stats) uint64 { return s.Dropped }),
		counter("slipped_total", "UDP answers replaced by an empty truncated answer (TC) by response rate limiting.",
			func(s rrl.Stats) uint64 { return s.Slipped }),
		counter("evicted_active_total", "Rate-limit buckets reused while they may still have been limiting.",
			func(s rrl.Stats) uint64 { return s.EvictedActive }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "dns_rrl", Name: "buckets",
			Help: "Rate-limit buckets held (one per source prefix and kind of answer).",
		}, func() float64 { return float64(r.Stats().Entries) }),
	)
}
