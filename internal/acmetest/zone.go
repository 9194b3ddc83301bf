package acmetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Zone is a small authoritative DNS server for one zone on 127.0.0.1 (UDP and
// TCP on the same port) whose records a test changes while it runs. Every
// record has TTL 0 and the SOA minimum is 0, so nothing downstream has a
// reason to cache.
//
// The apex has an SOA and one NS, ns.<zone>, which has an A record of
// 127.0.0.1 (the port of a real NS record cannot be expressed, so resolvers
// reach the zone through a stub, not through that NS).
//
// A Zone is safe for concurrent use.
type Zone struct {
	tb     testing.TB
	origin string // canonical: lower case, fully qualified
	addr   string

	mu     sync.RWMutex
	serial uint32
	cnames map[string]string   // owner -> target, both canonical
	txts   map[string][]string // owner -> values
}

// StartZone starts an authoritative server for origin on 127.0.0.1:0 (UDP and
// TCP) and stops it in tb.Cleanup.
func StartZone(tb testing.TB, origin string) *Zone {
	tb.Helper()
	z := newZone(tb, origin)

	pc, ln, err := listenDual(20)
	if err != nil {
		tb.Fatalf("acmetest: zone %s: %v", z.origin, err)
	}
	z.addr = pc.LocalAddr().String()

	handler := dns.HandlerFunc(z.serveDNS)
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	servers := []*dns.Server{
		{PacketConn: pc, Handler: handler, NotifyStartedFunc: notify},
		{Listener: ln, Handler: handler, NotifyStartedFunc: notify},
	}
	serveErr := make(chan error, len(servers))
	for _, s := range servers {
		go func() { serveErr <- s.ActivateAndServe() }()
	}
	tb.Cleanup(func() {
		for _, s := range servers {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.ShutdownContext(ctx); err != nil {
				tb.Logf("acmetest: zone %s: shutdown: %v", z.origin, err)
			}
			cancel()
		}
	})

	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for range servers {
		select {
		case <-started:
		case err := <-serveErr:
			tb.Fatalf("acmetest: zone %s: serve on %s: %v", z.origin, z.addr, err)
		case <-timeout.C:
			tb.Fatalf("acmetest: zone %s: server on %s did not start within 5s", z.origin, z.addr)
		}
	}
	return z
}

func newZone(tb testing.TB, origin string) *Zone {
	if _, ok := dns.IsDomainName(origin); !ok || origin == "" || origin == "." {
		tb.Fatalf("acmetest: zone origin %q is not a domain name", origin)
	}
	return &Zone{
		tb:     tb,
		origin: dns.CanonicalName(origin),
		serial: 1,
		cnames: map[string]string{},
		txts:   map[string][]string{},
	}
}

// Addr is the host:port the zone is served on (UDP and TCP).
func (z *Zone) Addr() string { return z.addr }

// Origin is the zone's name, lower case and fully qualified.
func (z *Zone) Origin() string { return z.origin }

// SetCNAME makes name (inside the zone, not its apex) a CNAME to target,
// replacing whatever name had. It answers the CNAME for every query type and
// leaves the chase to the resolver. A name whose first label is "*" is a
// wildcard (RFC 4592): names below its parent that do not exist get the
// CNAME, owned by the name asked for, as
// "*._acme-challenge.example.test. CNAME ..." gives every dns-account-01
// label. Like t.Fatal, it must be called from the
// test's goroutine.
func (z *Zone) SetCNAME(name, target string) {
	z.tb.Helper()
	owner := z.owner(name)
	if owner == z.origin || owner == z.nsName() {
		z.tb.Fatalf("acmetest: zone %s: %s cannot be a CNAME", z.origin, owner)
	}
	if _, ok := dns.IsDomainName(target); !ok || target == "" {
		z.tb.Fatalf("acmetest: zone %s: CNAME target %q is not a domain name", z.origin, target)
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	delete(z.txts, owner)
	z.cnames[owner] = dns.CanonicalName(target)
	z.serial++
}

// SetTXT makes values the TXT records of name (inside the zone), replacing
// whatever name had (apart from the SOA and NS of the apex). Values longer
// than 255 octets are split into several strings of one record.
func (z *Zone) SetTXT(name string, values ...string) {
	z.tb.Helper()
	owner := z.owner(name)
	if owner == z.nsName() {
		z.tb.Fatalf("acmetest: zone %s: %s is reserved for the zone's NS", z.origin, owner)
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	delete(z.cnames, owner)
	z.txts[owner] = slices.Clone(values)
	z.serial++
}

// Remove deletes the CNAME or TXT records of name; the name then answers
// NXDOMAIN unless names below it still exist.
func (z *Zone) Remove(name string) {
	z.tb.Helper()
	owner := z.owner(name)
	z.mu.Lock()
	defer z.mu.Unlock()
	delete(z.cnames, owner)
	delete(z.txts, owner)
	z.serial++
}

func (z *Zone) owner(name string) string {
	z.tb.Helper()
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		z.tb.Fatalf("acmetest: zone %s: %q is not a domain name", z.origin, name)
	}
	owner := dns.CanonicalName(name)
	if !dns.IsSubDomain(z.origin, owner) {
		z.tb.Fatalf("acmetest: zone %s: %s is outside the zone", z.origin, owner)
	}
	return owner
}

func (z *Zone) nsName() string { return "ns." + z.origin }

func (z *Zone) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := z.safeAnswer(req)
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		resp.Truncate(size)
	}
	// The client is gone if this fails; there is nobody to tell.
	_ = w.WriteMsg(resp)
}

// safeAnswer turns a panic in answer into SERVFAIL, so that a bug shows up
// as a failed lookup instead of a crashed test binary.
func (z *Zone) safeAnswer(req *dns.Msg) (resp *dns.Msg) {
	defer func() {
		if p := recover(); p != nil {
			resp = new(dns.Msg)
			resp.SetRcode(req, dns.RcodeServerFailure)
		}
	}()
	return z.answer(req)
}

// answer builds the reply to req without any socket, so tests can drive it
// directly.
func (z *Zone) answer(req *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	if len(req.Question) != 1 {
		resp.SetRcode(req, dns.RcodeFormatError)
		return resp
	}
	if req.Opcode != dns.OpcodeQuery {
		resp.SetRcode(req, dns.RcodeNotImplemented)
		return resp
	}
	resp.SetReply(req)
	if req.IsEdns0() != nil {
		resp.SetEdns0(dns.DefaultMsgSize, false)
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	if !dns.IsSubDomain(z.origin, name) || (q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY) {
		resp.Rcode = dns.RcodeRefused
		return resp
	}
	resp.Authoritative = true

	z.mu.RLock()
	defer z.mu.RUnlock()

	if target, ok := z.cnames[name]; ok {
		resp.Answer = append(resp.Answer, &dns.CNAME{Hdr: z.hdr(name, dns.TypeCNAME), Target: target})
		return resp
	}
	rrs, exists := z.lookup(name, q.Qtype)
	if !exists {
		if target, ok := z.wildcardCNAME(name); ok {
			resp.Answer = append(resp.Answer, &dns.CNAME{Hdr: z.hdr(name, dns.TypeCNAME), Target: target})
			return resp
		}
	}
	switch {
	case len(rrs) > 0:
		resp.Answer = rrs
	case exists: // NODATA
		resp.Ns = []dns.RR{z.soa()}
	default:
		resp.Rcode = dns.RcodeNameError
		resp.Ns = []dns.RR{z.soa()}
	}
	return resp
}

// lookup returns the records of name that match qtype, and whether name
// exists at all (including as an empty non-terminal, which must be NODATA and
// not NXDOMAIN or a resolver doing QNAME minimisation stops there).
// z.mu must be held.
func (z *Zone) lookup(name string, qtype uint16) (rrs []dns.RR, exists bool) {
	want := func(t uint16) bool { return qtype == t || qtype == dns.TypeANY }
	switch name {
	case z.origin:
		exists = true
		if want(dns.TypeSOA) {
			rrs = append(rrs, z.soa())
		}
		if want(dns.TypeNS) {
			rrs = append(rrs, &dns.NS{Hdr: z.hdr(name, dns.TypeNS), Ns: z.nsName()})
		}
	case z.nsName():
		exists = true
		if want(dns.TypeA) {
			rrs = append(rrs, &dns.A{Hdr: z.hdr(name, dns.TypeA), A: net.IPv4(127, 0, 0, 1)})
		}
	}
	if values, ok := z.txts[name]; ok {
		exists = true
		if want(dns.TypeTXT) {
			for _, v := range values {
				rrs = append(rrs, &dns.TXT{Hdr: z.hdr(name, dns.TypeTXT), Txt: splitTXT(v)})
			}
		}
	}
	if !exists {
		exists = z.hasDescendant(name)
	}
	return rrs, exists
}

// wildcardCNAME returns the target of the wildcard CNAME that synthesizes
// an answer for name, which does not exist: the one at "*." + its closest
// encloser (the nearest ancestor that exists), if there is one there.
// z.mu must be held.
func (z *Zone) wildcardCNAME(name string) (string, bool) {
	for anc := name; anc != z.origin; {
		i, end := dns.NextLabel(anc, 0)
		if end {
			return "", false
		}
		anc = anc[i:]
		if _, exists := z.lookup(anc, 0); exists || anc == z.origin {
			target, ok := z.cnames["*."+anc]
			return target, ok
		}
	}
	return "", false
}

func (z *Zone) hasDescendant(name string) bool {
	for owner := range z.cnames {
		if owner != name && dns.IsSubDomain(name, owner) {
			return true
		}
	}
	for owner := range z.txts {
		if owner != name && dns.IsSubDomain(name, owner) {
			return true
		}
	}
	return false
}

func (z *Zone) hdr(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: 0}
}

func (z *Zone) soa() *dns.SOA {
	return &dns.SOA{
		Hdr:     z.hdr(z.origin, dns.TypeSOA),
		Ns:      z.nsName(),
		Mbox:    "hostmaster." + z.origin,
		Serial:  z.serial,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  0,
	}
}

// splitTXT splits v into <character-string>s of at most 255 octets.
func splitTXT(v string) []string {
	var out []string
	for len(v) > 255 {
		out = append(out, v[:255])
		v = v[255:]
	}
	return append(out, v)
}

// listenDual binds UDP and TCP on the same free port of 127.0.0.1, trying up
// to attempts ports (the UDP port found may be taken for TCP).
func listenDual(attempts int) (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range attempts {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp: %w", err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, errors.Join(fmt.Errorf("no port free for both UDP and TCP after %d attempts", attempts), lastErr)
}

// freeDualPort returns a port of 127.0.0.1 that was free for both UDP and TCP
// a moment ago, for a program that binds it itself.
func freeDualPort() (int, error) {
	pc, ln, err := listenDual(20)
	if err != nil {
		return 0, err
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	ln.Close()
	return port, nil
}

// freeTCPPorts returns n distinct ports of 127.0.0.1 that were free for TCP a
// moment ago. All are held open together so none is returned twice.
func freeTCPPorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("listen tcp: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
