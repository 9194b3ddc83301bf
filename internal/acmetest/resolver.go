package acmetest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/testenv"
)

// ResolverOptions describe a resolver started on its own (StartResolver).
type ResolverOptions struct {
	// Stubs are the zones it resolves, each with the loopback host:port
	// of its servers (it asks any of them).
	Stubs map[string][]string
	// TrustAnchors (DS or DNSKEY records in zone-file syntax) make it a
	// validating resolver trusting them.
	TrustAnchors []string
	// Cache keeps answers for their TTLs, as a resolver in service does;
	// otherwise it caches nothing.
	Cache bool
}

// Resolver is a running unbound, stopped when the test ends.
type Resolver struct {
	// Addr is its host:port (UDP and TCP).
	Addr string
	log  string
}

// Log returns the tail of its log (with val-log-level 2, why an answer
// failed to validate).
func (r *Resolver) Log() string { return tailFile(r.log, 80) }

// StartResolver runs unbound as o says, on loopback; it skips (fails
// under CI) when unbound is not installed.
func StartResolver(tb testing.TB, o ResolverOptions) *Resolver {
	tb.Helper()
	sbin := []string{"/usr/sbin", "/usr/local/sbin", "/sbin"}
	tl := &tools{unbound: findProgram("unbound", sbin...), unboundCheckconf: findProgram("unbound-checkconf", sbin...)}
	if tl.unbound == "" || tl.unboundCheckconf == "" {
		testenv.Skip(tb, "unbound is not installed; install with: apt-get install -y unbound")
	}
	var stubs []stub
	for zone, addrs := range o.Stubs {
		for _, a := range addrs {
			ap, err := netip.ParseAddrPort(a)
			if err != nil || !ap.Addr().IsLoopback() {
				tb.Fatalf("acmetest: stub %s of %s must be a loopback ip:port", a, zone)
			}
			stubs = append(stubs, stub{zone: dns.CanonicalName(zone), addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())})
		}
	}
	if len(stubs) == 0 {
		tb.Fatal("acmetest: a resolver needs a stub zone")
	}
	dir := tb.TempDir()
	ub, err := startUnbound(tb, tl, dir, stubs, validation{anchors: o.TrustAnchors, cache: o.Cache})
	if err != nil {
		tb.Fatalf("acmetest: %v", err)
	}
	ub.stopOnCleanup(tb)
	return &Resolver{Addr: ub.addr, log: ub.log}
}

// DelvPath returns the delv binary (Debian's bind9-dnsutils), or "".
func DelvPath() string { return findProgram("delv", "/usr/bin", "/usr/local/bin") }

// Delv asks server (host:port, a resolver) for name and type with BIND's
// delv, which validates the answer itself from the trust anchors given
// (DS or DNSKEY records of the zone anchor, in zone-file syntax), and
// returns what delv printed. It skips (fails under CI) when delv is not
// installed.
func Delv(tb testing.TB, server, anchor string, anchors []string, name string, qtype uint16) (string, error) {
	tb.Helper()
	bin := DelvPath()
	if bin == "" {
		testenv.Skip(tb, "delv is not installed; install with: apt-get install -y bind9-dnsutils")
	}
	var b strings.Builder
	b.WriteString("trust-anchors {\n")
	for _, a := range anchors {
		rr, err := dns.NewRR(a)
		if err != nil {
			tb.Fatalf("acmetest: trust anchor %q: %v", a, err)
		}
		switch r := rr.(type) {
		case *dns.DS:
			fmt.Fprintf(&b, "  %q static-ds %d %d %d %q;\n", r.Hdr.Name, r.KeyTag, r.Algorithm, r.DigestType, r.Digest)
		case *dns.DNSKEY:
			fmt.Fprintf(&b, "  %q static-key %d %d %d %q;\n", r.Hdr.Name, r.Flags, r.Protocol, r.Algorithm, r.PublicKey)
		default:
			tb.Fatalf("acmetest: trust anchor %q is neither DS nor DNSKEY", a)
		}
	}
	b.WriteString("};\n")
	file := filepath.Join(tb.TempDir(), "anchors.conf")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		tb.Fatal(err)
	}
	out, err := runCommand(tb.Context(), 30*time.Second, os.Environ(), "", bin,
		"@"+host, "-p", port, "-a", file, "+root="+dns.CanonicalName(anchor), "+tcp", name, dns.TypeToString[qtype])
	return string(out), err
}
