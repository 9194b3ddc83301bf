package dnsserver

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// fakeZone is a ZoneSource over fakeSource for the fuzz target: every
// serial from 1 back is covered by a diff that adds every value.
type fakeZone struct{ *fakeSource }

type fakeWalker struct {
	serial uint32
	left   []ZoneEntry
}

func (w *fakeWalker) Serial() uint32 { return w.serial }
func (w *fakeWalker) Err() error     { return nil }
func (w *fakeWalker) Next(dst []ZoneEntry) ([]ZoneEntry, bool) {
	if len(w.left) > 0 {
		dst = append(dst, w.left[0])
		w.left = w.left[1:]
	}
	return dst, len(w.left) > 0
}

func (z fakeZone) entries() []ZoneEntry {
	var out []ZoneEntry
	for name, v := range z.subs {
		out = append(out, ZoneEntry{Name: name, Values: v})
	}
	slices.SortFunc(out, func(a, b ZoneEntry) int { return cmpString(a.Name, b.Name) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (z fakeZone) Walk() ZoneWalker { return &fakeWalker{serial: z.serial, left: z.entries()} }
func (z fakeZone) Diff(from uint32) (uint32, []ZoneDiff, bool) {
	if from > z.serial || from+10 < z.serial {
		return z.serial, nil, false
	}
	var d []ZoneDiff
	for _, e := range z.entries() {
		d = append(d, ZoneDiff{Name: e.Name, Add: e.Values})
	}
	return z.serial, d, true
}
func (z fakeZone) Changed() <-chan struct{} { return nil }

// FuzzTransfer feeds raw packets to a handler that allows transfers from
// the fuzzer's address without TSIG, over TCP and UDP: transfer requests
// (AXFR, IXFR with any SOA in the authority section), signed queries and
// anything else. Every accepted packet gets at least one well-formed answer
// with its ID; a transfer's answer starts and ends with the SOA; nothing
// panics.
func FuzzTransfer(f *testing.F) {
	seed := func(m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	a := new(dns.Msg)
	a.SetAxfr(zone + ".")
	seed(a)
	for _, s := range []uint32{0, 2024010101, 2024010100, 2024010091, 7} {
		i := new(dns.Msg)
		i.SetIxfr(zone+".", s, "ns1."+zone+".", "h.")
		seed(i)
	}
	ts := query(zone+".", dns.TypeSOA)
	ts.SetTsig("xfr-key.", dns.HmacSHA256, 300, 0)
	seed(ts)
	other := new(dns.Msg)
	other.SetAxfr("example.test.")
	seed(other)

	src := fakeZone{testSource()}
	h := newTestHandler(f, src)
	if err := h.EnableTransfer(TransferConfig{AllowFrom: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) < 12 {
			return
		}
		if acceptMsg(wireHeader(pkt)) != dns.MsgAccept {
			return
		}
		r := new(dns.Msg)
		if err := r.Unpack(pkt); err != nil {
			return
		}
		for _, w := range []*recorder{udpRecorder(), tcpRecorder()} {
			h.ServeDNS(w, r)
			if len(w.Msgs) == 0 {
				t.Fatal("no answer")
			}
			var first, last *dns.Msg
			for _, b := range w.Msgs {
				m := new(dns.Msg)
				if err := m.Unpack(b); err != nil {
					t.Fatalf("answer does not unpack: %v", err)
				}
				if m.Id != r.Id || !m.Response {
					t.Fatalf("answer id %d for %d, QR %v", m.Id, r.Id, m.Response)
				}
				if first == nil {
					first = m
				}
				last = m
			}
			_, tcp := w.Remote.(*net.TCPAddr)
			if len(r.Question) == 1 && r.Question[0].Qtype == dns.TypeAXFR && first.Rcode == dns.RcodeSuccess {
				if !tcp {
					t.Fatal("AXFR answered over UDP")
				}
				if _, ok := first.Answer[0].(*dns.SOA); !ok {
					t.Fatal("AXFR does not start with the SOA")
				}
				if _, ok := last.Answer[len(last.Answer)-1].(*dns.SOA); !ok {
					t.Fatal("AXFR does not end with the SOA")
				}
			}
		}
	})
}
