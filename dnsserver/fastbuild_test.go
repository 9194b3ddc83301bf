package dnsserver

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestBuildMatchesHandler: what build writes is the handler's answer byte
// for byte, it takes the cases it is for (a test that passes because the
// handler answered everything would prove nothing), and it leaves the
// others to the handler.
func TestBuildMatchesHandler(t *testing.T) {
	signed, _, _ := newSignedHandler(t, newVersionedSource(), false)
	small := newTestHandler(t, newVersionedSource())
	small.cfg.MaxUDPSize, small.cfg.TXTTTL = 600, 3600
	cookies := cookieHandler(t, time.Now, newVersionedSource())
	handlers := []struct {
		name string
		h    *Handler
	}{{"plain", newTestHandler(t, newVersionedSource())}, {"signed", signed}, {"small", small}, {"cookies", cookies}}

	// take: the qtypes build must build the answer for (plain handler).
	txt, nx := []uint16{dns.TypeTXT}, []uint16{dns.TypeTXT, dns.TypeA, dns.TypeAAAA}
	names := []struct {
		label string
		take  []uint16
	}{
		{sub1, txt}, {"single", txt}, {"long", txt}, {"blank", txt}, {"web", txt},
		{"_acme-challenge", txt},
		{"nothere", nx}, {"NoThere", nx}, {"x--y_z", nx}, // NXDOMAIN
		{"crowd", nil},               // 40 values: over 512 bytes (built over TCP and EDNS 4096 only)
		{"slash", nil},               // a backslash in a value
		{"empty", nil},               // registered, no values: NODATA
		{"_acme-challenge.api", nil}, // two labels
		{"child", nil},               // a delegation
		{"host.child", nil},          // below it
		{"ns1", nil},                 // static
		{"www", nil},                 // a CNAME
		{"b", nil},                   // an empty non-terminal (deep.a.b)
		{"y", nil},                   // one above an own name (_acme-challenge.x.y)
		{"a b", nil},                 // a byte the text form escapes
	}
	qtypes := []uint16{dns.TypeTXT, dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeANY}
	built := 0
	for _, hc := range handlers {
		f, err := hc.h.NewFastPath(FastConfig{})
		if err != nil {
			t.Fatal(err)
		}
		sc := f.newScratch()
		for _, n := range names {
			for _, qt := range qtypes {
				for _, v := range queryVariants {
					for _, tcp := range []bool{false, true} {
						name := n.label + "." + zone + "."
						if v.caseMod != nil {
							name = v.caseMod(name)
						}
						q := query(name, qt)
						v.mod(q)
						p, err := q.Pack()
						if err != nil {
							t.Fatal(err)
						}
						label := fmt.Sprintf("%s / %s %s / %s / tcp %v", hc.name, n.label, dns.TypeToString[qt], v.name, tcp)
						out := make([]byte, 65535)
						k, _, ok := f.build(sc, p, qt, tcp, time.Now().UnixNano(), 0, out)
						take := hc.name == "plain" && slices.Contains(n.take, qt)
						if !ok {
							if opt := q.IsEdns0(); take && (opt == nil || opt.Version() == 0) {
								t.Errorf("%s: left to the handler", label)
							}
							continue
						}
						built++
						if want := fullAnswer(t, hc.h, p, tcp); !bytes.Equal(out[:k], want) {
							t.Errorf("%s: built answer differs from the handler's\nbuilt: %x\nfull:  %x", label, out[:k], want)
						}
						if hc.name == "plain" && !slices.Contains(n.take, qt) && n.label != "crowd" {
							t.Errorf("%s: built, want it left to the handler", label)
						}
					}
				}
			}
		}
	}
	if built == 0 {
		t.Fatal("nothing built")
	}
}
