package rrl

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// TestLimitMatchesWrap: the fast path's Limit sends, drops and slips the
// same answers as the middleware, byte for byte, from the same buckets,
// and leaves exempt sources alone.
func TestLimitMatchesWrap(t *testing.T) {
	cfg := testConfig()
	cfg.Exempt = []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")}
	viaWrap := newTestLimiter(t, cfg, newFakeClock())
	viaLimit := newTestLimiter(t, cfg, newFakeClock())
	h := viaWrap.Wrap(zoneHandler{})
	for _, src := range []string{"192.0.2.1", "192.0.2.200"} {
		for _, name := range []string{"nope." + zone + ".", sub1 + "." + zone + ".", "crowd." + zone + "."} {
			w := &recorder{Remote: &net.UDPAddr{IP: net.ParseIP(src), Port: 5353}}
			full := udpRecorder()
			var got [][]byte
			for range 30 {
				q := query(name, dns.TypeTXT)
				h.ServeDNS(w, q)
				zoneHandler{}.ServeDNS(full, q) // the answer before the limiter
				resp := append([]byte(nil), full.Msgs[len(full.Msgs)-1]...)
				if out := viaLimit.Limit(netip.MustParseAddr(src), resp); out != nil {
					got = append(got, append([]byte(nil), out...))
				}
			}
			if len(got) != len(w.Msgs) {
				t.Fatalf("%s from %s: Limit sent %d, Wrap %d", name, src, len(got), len(w.Msgs))
			}
			for i := range got {
				if !bytes.Equal(got[i], w.Msgs[i]) {
					t.Fatalf("%s from %s, answer %d: Limit %x, Wrap %x", name, src, i, got[i], w.Msgs[i])
				}
			}
		}
	}
	if a, b := viaWrap.Stats(), viaLimit.Stats(); a.Dropped != b.Dropped || a.Slipped != b.Slipped || a.Dropped == 0 {
		t.Fatalf("stats Wrap %+v, Limit %+v: want the same, with drops", a, b)
	}
}
