package dnsserver

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/dnsserver/cookie"
)

// TestBuildTXTMatchesHandler: what buildTXT writes is the handler's answer
// byte for byte, it takes the cases it is for (a test that passes because
// the handler answered everything would prove nothing), and it leaves the
// others to the handler.
func TestBuildTXTMatchesHandler(t *testing.T) {
	rrs, err := ParseRecords(zone, staticLines)
	if err != nil {
		t.Fatal(err)
	}
	sec, _ := cookie.ParseSecret("e5e973e5a6b2a43f48e7dc849e37bfcf")
	signed, _, _ := newSignedHandler(t, newVersionedSource(), false)
	small := newTestHandler(t, newVersionedSource())
	small.cfg.MaxUDPSize, small.cfg.TXTTTL = 600, 3600
	cookies, err := NewHandler(Config{
		Zone: zone, NSName: "ns1." + zone, NSAdmin: "hostmaster.example.test",
		Records: rrs, TXTTTL: 1, NegativeTTL: 5, MaxUDPSize: 1232,
		Cookies: cookie.NewJar(sec, nil, time.Now), CookielessUDPSize: 512,
	}, newVersionedSource(), nil)
	if err != nil {
		t.Fatal(err)
	}
	handlers := []struct {
		name string
		h    *Handler
	}{{"plain", newTestHandler(t, newVersionedSource())}, {"signed", signed}, {"small", small}, {"cookies", cookies}}

	// take: whether buildTXT must build the answer (plain handler).
	names := []struct {
		label string
		take  bool
	}{
		{sub1, true}, {"single", true}, {"long", true}, {"blank", true}, {"web", true},
		{"_acme-challenge", true},
		{"crowd", false},               // 40 values: over 512 bytes (taken over TCP and EDNS 4096 only)
		{"slash", false},               // a backslash in a value
		{"empty", false},               // registered, no values: NODATA
		{"nothere", false},             // NXDOMAIN
		{"_acme-challenge.api", false}, // two labels
		{"child", false},               // below a delegation
		{"host.child", false},
	}
	built := 0
	for _, hc := range handlers {
		f, err := hc.h.NewFastPath(FastConfig{})
		if err != nil {
			t.Fatal(err)
		}
		sc := f.newScratch()
		for _, n := range names {
			for _, v := range queryVariants {
				for _, tcp := range []bool{false, true} {
					name := n.label + "." + zone + "."
					if v.caseMod != nil {
						name = v.caseMod(name)
					}
					q := query(name, dns.TypeTXT)
					v.mod(q)
					p, err := q.Pack()
					if err != nil {
						t.Fatal(err)
					}
					label := fmt.Sprintf("%s / %s / %s / tcp %v", hc.name, n.label, v.name, tcp)
					out := make([]byte, 65535)
					k, ok := f.buildTXT(sc, p, tcp, time.Now().UnixNano(), 0, out)
					if !ok {
						opt := q.IsEdns0()
						expected := hc.name == "plain" && n.take && (opt == nil || opt.Version() == 0)
						if expected {
							t.Errorf("%s: left to the handler", label)
						}
						continue
					}
					built++
					if want := fullAnswer(t, hc.h, p, tcp); !bytes.Equal(out[:k], want) {
						t.Errorf("%s: built answer differs from the handler's\nbuilt: %x\nfull:  %x", label, out[:k], want)
					}
					if !n.take && n.label != "crowd" {
						t.Errorf("%s: built, want it left to the handler", label)
					}
				}
			}
		}
	}
	if built == 0 {
		t.Fatal("nothing built")
	}
}
