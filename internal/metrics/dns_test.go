package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/internal/dnstest"
	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/storage"
)

const (
	zone = "auth.example.test"
	sub  = "d2121c1a-55ec-49c1-832c-695d6a198111"
	val  = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"
)

// zoneHandler is the broker's real DNS handler answering from a real index
// holding one subdomain with one value.
func zoneHandler(t testing.TB) *dnsserver.Handler {
	t.Helper()
	idx := records.New(storage.DefaultTXTPolicy, time.Now)
	idx.Set(sub, []storage.TXTRecord{{Value: val, UpdatedAt: time.Now()}}, 7)
	h, err := dnsserver.NewHandler(dnsserver.Config{
		Zone: zone, NSName: "ns1." + zone, NSAdmin: "hostmaster.example.test", TXTTTL: 1, NegativeTTL: 5,
	}, idx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func newMetrics(t testing.TB) *Metrics {
	t.Helper()
	m, err := New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func q(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func TestDNSCountsByQtypeAndRcode(t *testing.T) {
	m := newMetrics(t)
	m.dns.sampleMask = 0 // time every query
	h := m.DNS(zoneHandler(t))
	badvers := q(zone+".", dns.TypeSOA)
	badvers.SetEdns0(1232, false)
	badvers.IsEdns0().SetVersion(1)
	withOpt := q(sub+"."+zone+".", dns.TypeTXT)
	withOpt.SetEdns0(1232, false)
	queries := []*dns.Msg{
		q(sub+"."+zone+".", dns.TypeTXT), // TXT NOERROR
		withOpt,                          // TXT NOERROR, OPT walked
		q("nope."+zone+".", dns.TypeTXT), // TXT NXDOMAIN
		q("example.com.", dns.TypeA),     // A REFUSED
		q(zone+".", dns.TypeNAPTR),       // other NOERROR (NODATA)
		q(zone+".", dns.TypeAXFR),        // AXFR, whatever the handler says
		badvers,                          // SOA BADVERS (extended rcode in the OPT)
	}
	w := dnstest.UDPRecorder()
	for _, r := range queries {
		h.ServeDNS(w, r)
	}
	if len(w.Msgs) != len(queries) {
		t.Fatalf("%d answers for %d queries", len(w.Msgs), len(queries))
	}
	// The label the metric gave each answer must be the rcode the client reads.
	for i, b := range w.Msgs {
		var a dns.Msg
		if err := a.Unpack(b); err != nil {
			t.Fatal(err)
		}
		if rc, _ := packedRcode(b); rc != a.Rcode {
			t.Errorf("answer %d: packedRcode %d, the message says %d", i, rc, a.Rcode)
		}
	}
	axfr := func() string { // what the handler answers AXFR today (REFUSED, or a transfer)
		var a dns.Msg
		_ = a.Unpack(w.Msgs[5])
		return dns.RcodeToString[a.Rcode]
	}()
	for _, c := range []struct {
		qtype, rcode string
		want         float64
	}{
		{"TXT", "NOERROR", 2},
		{"TXT", "NXDOMAIN", 1},
		{"A", "REFUSED", 1},
		{"other", "NOERROR", 1},
		{"AXFR", axfr, 1},
		{"SOA", "BADVERS", 1},
	} {
		if got := testutil.ToFloat64(m.dns.queries.WithLabelValues(c.qtype, c.rcode)); got != c.want {
			t.Errorf("queries{qtype=%s,rcode=%s} = %v, want %v", c.qtype, c.rcode, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.dns.queries); n != 6 {
		t.Errorf("%d query series, want the 6 that occurred", n)
	}
	if got := histogramCount(t, m.dns.latency); got != uint64(len(queries)) {
		t.Errorf("latency histogram counted %d, want %d", got, len(queries))
	}
}

// A handler that answers with WriteMsg (as miekg/dns's helpers do) is
// counted by the message's rcode, extended ones included; one that writes
// nothing is counted as "none".
func TestDNSWriteMsgAndNoAnswer(t *testing.T) {
	m := newMetrics(t)
	h := m.DNS(dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Question[0].Qtype == dns.TypeMX {
			return // dropped
		}
		a := new(dns.Msg)
		a.SetRcode(r, dns.RcodeBadCookie)
		a.SetEdns0(1232, false)
		_ = w.WriteMsg(a)
	}))
	w := dnstest.UDPRecorder()
	h.ServeDNS(w, q("x.", dns.TypeTXT))
	h.ServeDNS(w, q("x.", dns.TypeMX))
	if got := testutil.ToFloat64(m.dns.queries.WithLabelValues("TXT", "BADCOOKIE")); got != 1 {
		t.Errorf("BADCOOKIE via WriteMsg counted %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.dns.queries.WithLabelValues("MX", "none")); got != 1 {
		t.Errorf("dropped query counted %v as none, want 1", got)
	}
}

func histogramCount(t testing.TB, h prometheus.Histogram) uint64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs[0].GetMetric()[0].GetHistogram().GetSampleCount()
}

// FuzzPackedRcode: on any bytes packedRcode must not panic, and on any
// message miekg/dns can unpack it must agree with it.
func FuzzPackedRcode(f *testing.F) {
	a := q("x.example.", dns.TypeTXT)
	a.Response = true
	a.Rcode = dns.RcodeBadVers
	a.SetEdns0(1232, false)
	a.Extra[0].(*dns.OPT).SetExtendedRcode(dns.RcodeBadVers)
	a.Answer = append(a.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: "x.example.", Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{"v"}})
	b, _ := a.Pack()
	f.Add(b)
	b2, _ := q("x.example.", dns.TypeA).Pack()
	f.Add(b2)
	f.Add([]byte{0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0xc0})
	// CI's crasher: miekg/dns takes the last OPT, whatever its owner name.
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
		0, 0, 41, 0, 0, 0, 0, 0, 0, 0, 0,
		1, 'x', 0, 0, 41, 0, 0, 48, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		rc, ok := packedRcode(b)
		var m dns.Msg
		if m.Unpack(b) != nil {
			return
		}
		if !ok || rc != m.Rcode {
			t.Fatalf("packedRcode = %d, %v; dns.Msg says %d", rc, ok, m.Rcode)
		}
	})
}

// Every metric follows Prometheus' naming rules (promtool's linter).
func TestLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WatchIndex(records.New(storage.DefaultTXTPolicy, time.Now)); err != nil {
		t.Fatal(err)
	}
	w := dnstest.UDPRecorder()
	m.DNS(zoneHandler(t)).ServeDNS(w, q(zone+".", dns.TypeSOA))
	m.TransferServed("AXFR", "ok")
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "acmebroker_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
	// A second registration on the same registry is refused, not a panic.
	if _, err := New(reg); err == nil {
		t.Error("registering twice on one registry succeeded")
	}
}

// By default about one query in 16 is timed, and every one is counted.
func TestDNSLatencySampled(t *testing.T) {
	m := newMetrics(t)
	h := m.DNS(zoneHandler(t))
	const n = 4096
	w := dnstest.UDPRecorder()
	r := q(sub+"."+zone+".", dns.TypeTXT)
	for range n {
		h.ServeDNS(w, r)
		w.Msgs = w.Msgs[:0]
	}
	if got := testutil.ToFloat64(m.dns.queries.WithLabelValues("TXT", "NOERROR")); got != n {
		t.Errorf("counted %v of %d queries", got, n)
	}
	// 256 expected; the bounds are 8 standard deviations either side.
	if got := histogramCount(t, m.dns.latency); got < 128 || got > 384 {
		t.Errorf("%d of %d queries timed, want about 1 in 16", got, n)
	}
}

// Writers of zone transfers and of hijacked connections may be written to
// after ServeDNS returns, so they must never be reused; others are.
func TestDNSWriterReuse(t *testing.T) {
	if dnsQtypes[qtypeAXFR] != dns.TypeAXFR || dnsQtypes[qtypeIXFR] != dns.TypeIXFR {
		t.Fatal("qtypeAXFR/qtypeIXFR do not index AXFR and IXFR")
	}
	m := newMetrics(t)
	kept := make(chan dns.ResponseWriter, 1)
	h := m.DNS(dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Question[0].Qtype == dns.TypeNULL {
			w.Hijack()
		}
		kept <- w
	}))
	w := dnstest.UDPRecorder()
	for _, qt := range []uint16{dns.TypeAXFR, dns.TypeIXFR, dns.TypeNULL} {
		h.ServeDNS(w, q("x.", qt))
		first := <-kept
		h.ServeDNS(w, q("x.", dns.TypeA))
		if second := <-kept; first == second {
			t.Errorf("the writer of a %s query was reused", dns.TypeToString[qt])
		}
		if first.(*dnsWriter).ResponseWriter == nil {
			t.Errorf("the writer of a %s query was cleared after ServeDNS", dns.TypeToString[qt])
		}
	}
}

// The same methods as dnsserver.TransferObserver (declared there by the
// zone-transfer work), so *Metrics can be handed to the DNS server.
var _ interface {
	TransferServed(qtype string, result string)
	NotifySent(result string)
} = (*Metrics)(nil)
