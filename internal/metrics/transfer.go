package metrics

import "github.com/prometheus/client_golang/prometheus"

type transferMetrics struct {
	transfers *prometheus.CounterVec
	notifies  *prometheus.CounterVec
}

func newTransferMetrics() *transferMetrics {
	t := &transferMetrics{
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "dns", Name: "zone_transfers_total",
			Help: "Zone transfer requests, by type (AXFR, IXFR) and result (ok, refused, error).",
		}, []string{"qtype", "result"}),
		notifies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "dns", Name: "notifies_total",
			Help: "NOTIFY messages sent to secondaries, by result (acked, failed).",
		}, []string{"result"}),
	}
	// Exported at zero from the start, so that rate() and alerts see
	// the series before the first transfer.
	for _, q := range []string{"AXFR", "IXFR"} {
		for _, r := range []string{"ok", "refused", "error"} {
			t.transfers.WithLabelValues(q, r)
		}
	}
	t.notifies.WithLabelValues("acked")
	t.notifies.WithLabelValues("failed")
	return t
}

func (t *transferMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{t.transfers, t.notifies}
}

// TransferServed counts a zone transfer request (dnsserver.TransferObserver):
// qtype "AXFR" or "IXFR", result "ok", "refused" or "error". Other values
// are counted as "other" so that a caller's mistake cannot grow the label
// set. A nil *Metrics (metrics off) counts nothing.
func (m *Metrics) TransferServed(qtype, result string) {
	if m == nil {
		return
	}
	switch qtype {
	case "AXFR", "IXFR":
	default:
		qtype = "other"
	}
	switch result {
	case "ok", "refused", "error":
	default:
		result = "other"
	}
	m.transfers.transfers.WithLabelValues(qtype, result).Inc()
}

// NotifySent counts a NOTIFY sent to a secondary
// (dnsserver.TransferObserver): result "acked" or "failed".
func (m *Metrics) NotifySent(result string) {
	if m == nil {
		return
	}
	switch result {
	case "acked", "failed":
	default:
		result = "other"
	}
	m.transfers.notifies.WithLabelValues(result).Inc()
}
