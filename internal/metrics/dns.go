package metrics

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Query types counted by name; anything else is "other".
var dnsQtypes = [...]uint16{
	dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeSOA, dns.TypeNS, dns.TypeCNAME,
	dns.TypeMX, dns.TypeCAA, dns.TypePTR, dns.TypeSRV, dns.TypeDS, dns.TypeDNSKEY,
	dns.TypeHTTPS, dns.TypeSVCB, dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR,
}

const (
	qtypeAXFR  = 15 // dnsQtypes[qtypeAXFR] == dns.TypeAXFR (checked by a test)
	qtypeIXFR  = 16
	qtypeOther = len(dnsQtypes)
	numQtypes  = qtypeOther + 1
	// Rcodes 0-23 (header and EDNS extended) by name, then "none" when
	// the handler wrote no answer. Anything above 23 cannot be written by
	// the server (it is counted as "other" with index rcodeOther).
	rcodeNone  = 24
	rcodeOther = 25
	numRcodes  = 26
)

func qtypeIndex(t uint16) int {
	// A linear scan of 17 constants beats a map lookup and allocates nothing.
	for i, q := range dnsQtypes {
		if q == t {
			return i
		}
	}
	return qtypeOther
}

func qtypeName(i int) string {
	if i == qtypeOther {
		return "other"
	}
	return dns.TypeToString[dnsQtypes[i]]
}

func rcodeName(i int) string {
	switch i {
	case rcodeNone:
		return "none"
	case rcodeOther:
		return "other"
	case dns.RcodeBadVers:
		// 16 in a message header+OPT is BADVERS; BADSIG (also 16) only
		// appears in a TSIG record, which miekg/dns names it after.
		return "BADVERS"
	}
	if s, ok := dns.RcodeToString[i]; ok {
		return s
	}
	return "RCODE" + strconv.Itoa(i)
}

// latencySampleMask: one query in 16 is timed. Reading the clock is the
// dearest part of the metrics (two reads cost more than the rest together,
// and a tenth of a whole answer where the clock is slow, as on some VMs);
// counting stays exact.
const latencySampleMask = 15

type dnsMetrics struct {
	queries *prometheus.CounterVec
	latency prometheus.Histogram
	// base is a monotonic reference: time.Since(base) reads only the
	// monotonic clock, where time.Now reads the wall clock as well.
	base       time.Time
	sampleMask uint32
	writers    sync.Pool // of *dnsWriter: no allocation per query
	// children caches the counter of each (qtype, rcode) pair, created
	// on first use so that only pairs that occurred are exported, and
	// read without the vector's hash lookup afterwards.
	children [numQtypes][numRcodes]atomic.Pointer[counter]
}

type counter struct{ prometheus.Counter }

func newDNSMetrics() *dnsMetrics {
	return &dnsMetrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "dns", Name: "queries_total",
			Help: "DNS queries answered, by query type (known types by name, else \"other\") and response code (\"none\" if no answer was written).",
		}, []string{"qtype", "rcode"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "dns", Name: "request_duration_seconds",
			Help:    "Time the DNS handler took to answer a query, from receiving it to writing the answer; one query in 16 is timed (count the queries with acmebroker_dns_queries_total).",
			Buckets: []float64{5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3, 100e-3, 1},
		}),
		base:       time.Now(),
		sampleMask: latencySampleMask,
	}
}

func (d *dnsMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{d.queries, d.latency}
}

func (d *dnsMetrics) count(q, rc int) {
	p := d.children[q][rc].Load()
	if p == nil {
		p = &counter{d.queries.WithLabelValues(qtypeName(q), rcodeName(rc))}
		d.children[q][rc].Store(p) // a racing store holds the same child
	}
	p.Inc()
}

// DNS wraps a DNS handler so that every query it answers is counted by
// qtype and rcode and timed.
func (m *Metrics) DNS(next dns.Handler) dns.Handler {
	return &dnsHandler{next: next, m: m.dns}
}

type dnsHandler struct {
	next dns.Handler
	m    *dnsMetrics
}

func (h *dnsHandler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	timed := rand.Uint32()&h.m.sampleMask == 0
	var start time.Duration
	if timed {
		start = time.Since(h.m.base)
	}
	q := qtypeOther
	if len(r.Question) > 0 {
		q = qtypeIndex(r.Question[0].Qtype)
	}
	rw, _ := h.m.writers.Get().(*dnsWriter)
	if rw == nil {
		rw = new(dnsWriter)
	}
	*rw = dnsWriter{ResponseWriter: w, rcode: rcodeNone}
	h.next.ServeDNS(rw, r)
	if timed {
		h.m.latency.Observe((time.Since(h.m.base) - start).Seconds())
	}
	h.m.count(q, rw.rcode)
	// A zone transfer, or a handler that took the connection over, may
	// still write through rw after ServeDNS returns: such writers are
	// left to the garbage collector, never reused.
	if q != qtypeAXFR && q != qtypeIXFR && !rw.hijacked {
		*rw = dnsWriter{}
		h.m.writers.Put(rw)
	}
}

// dnsWriter notes the rcode of the first answer written, and whether the
// handler hijacked the connection. Other methods (TsigStatus, addresses,
// Close) go straight to the wrapped writer.
type dnsWriter struct {
	dns.ResponseWriter
	rcode    int
	hijacked bool
}

func (w *dnsWriter) Hijack() {
	w.hijacked = true
	w.ResponseWriter.Hijack()
}

func (w *dnsWriter) WriteMsg(m *dns.Msg) error {
	if w.rcode == rcodeNone {
		w.rcode = rcodeIndex(m.Rcode)
	}
	return w.ResponseWriter.WriteMsg(m)
}

// Write is what dnsserver.Handler uses: it packs the answer itself.
func (w *dnsWriter) Write(b []byte) (int, error) {
	if w.rcode == rcodeNone {
		if rc, ok := packedRcode(b); ok {
			w.rcode = rcodeIndex(rc)
		}
	}
	return w.ResponseWriter.Write(b)
}

func rcodeIndex(rc int) int {
	if rc < 0 || rc >= rcodeNone {
		return rcodeOther
	}
	return rc
}

// packedRcode reads the full response code of a packed message: the 4 bits
// of the header, plus the 8 upper bits an OPT record carries in its TTL
// (RFC 6891 6.1.3), as in BADVERS. ok is false if b is not a message.
func packedRcode(b []byte) (rcode int, ok bool) {
	if len(b) < 12 {
		return 0, false
	}
	rcode = int(b[3] & 0x0f)
	arcount := int(b[10])<<8 | int(b[11])
	if arcount == 0 {
		return rcode, true
	}
	qd := int(b[4])<<8 | int(b[5])
	rrs := (int(b[6])<<8 | int(b[7])) + (int(b[8])<<8 | int(b[9]))
	off := 12
	for range qd {
		if off = skipName(b, off); off < 0 || off+4 > len(b) {
			return rcode, true
		}
		off += 4
	}
	// The last OPT of the additional section counts, whatever its owner
	// name, as miekg/dns reads it: a stranger's odd message is then
	// counted under the rcode the rest of the code sees.
	ext := 0
	for i := range rrs + arcount {
		if off = skipName(b, off); off < 0 || off+10 > len(b) {
			break
		}
		typ := int(b[off])<<8 | int(b[off+1])
		rdlen := int(b[off+8])<<8 | int(b[off+9])
		if off+10+rdlen > len(b) {
			break
		}
		if i >= rrs && typ == int(dns.TypeOPT) {
			// The OPT's TTL: extended rcode, version, flags.
			ext = int(b[off+4]) << 4
		}
		off += 10 + rdlen
	}
	return ext | rcode, true
}

// skipName returns the offset just past the domain name at off, or -1 if
// it runs off the end. A compression pointer ends a name.
func skipName(b []byte, off int) int {
	for n := 0; n < 128; n++ { // at most 127 labels fit in 255 bytes
		if off >= len(b) {
			return -1
		}
		c := int(b[off])
		switch c & 0xc0 {
		case 0x00:
			if c == 0 {
				return off + 1
			}
			off += 1 + c
		case 0xc0:
			if off+2 > len(b) {
				return -1
			}
			return off + 2
		default:
			return -1 // 0x40 and 0x80 label types are obsolete
		}
	}
	return -1
}
