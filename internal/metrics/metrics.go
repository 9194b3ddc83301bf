// Package metrics is the broker's Prometheus instrumentation: DNS queries,
// API requests, storage errors, the in-memory index, zone transfers and
// NOTIFY, plus the Go runtime and process collectors. Everything is
// registered on a registry the caller injects (never the default one), all
// names share the namespace "acmebroker", and no label ever carries a
// subdomain, username or address: only small fixed sets (qtype, rcode, route
// pattern, status code, operation, result).
package metrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "acmebroker"

// Metrics holds the broker's collectors. Its methods are safe for concurrent
// use.
type Metrics struct {
	reg       *prometheus.Registry
	dns       *dnsMetrics
	api       *apiMetrics
	storage   *prometheus.CounterVec
	transfers *transferMetrics
}

// New creates the broker's collectors and registers them, with the Go
// runtime and process collectors, on reg.
func New(reg *prometheus.Registry) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("metrics: a registry is required")
	}
	m := &Metrics{
		reg:       reg,
		dns:       newDNSMetrics(),
		api:       newAPIMetrics(),
		storage:   newStorageErrors(),
		transfers: newTransferMetrics(),
	}
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.storage,
	}
	cs = append(cs, m.dns.collectors()...)
	cs = append(cs, m.api.collectors()...)
	cs = append(cs, m.transfers.collectors()...)
	if err := register(reg, cs...); err != nil {
		return nil, err
	}
	return m, nil
}

// Registry is the registry the collectors are on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// IndexStats is what the metrics read from the DNS server's in-memory index.
type IndexStats interface {
	Len() int       // subdomains served from memory
	Serial() uint32 // the zone's SOA serial
}

// WatchIndex exports the size and serial of x, read at each scrape.
func (m *Metrics) WatchIndex(x IndexStats) error {
	return register(m.reg,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "dns", Name: "cached_subdomains",
			Help: "Registered subdomains whose TXT values the DNS server answers from memory.",
		}, func() float64 { return float64(x.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "dns", Name: "zone_serial",
			Help: "The SOA serial of the zone as served.",
		}, func() float64 { return float64(x.Serial()) }),
	)
}

func register(reg *prometheus.Registry, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("metrics: register: %w", err)
		}
	}
	return nil
}
