package dnsserver

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkServeDNSTransferOn is BenchmarkServeDNS/TXT-hit with zone
// transfers enabled: ordinary queries must cost the same (one check more).
func BenchmarkServeDNSTransferOn(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			h := newTestHandler(b, fakeZone{testSource()})
			if on {
				if err := h.EnableTransfer(TransferConfig{AllowFrom: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}); err != nil {
					b.Fatal(err)
				}
			}
			q := query(sub1+"."+zone+".", dns.TypeTXT)
			q.SetEdns0(1232, false)
			w := udpRecorder()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeDNS(w, q)
				w.Msgs = w.Msgs[:0]
			}
		})
	}
}
