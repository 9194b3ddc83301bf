package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/cli"
	"github.com/acmebroker/acmebroker/internal/dnssec"
	"github.com/acmebroker/acmebroker/internal/pgtest"
)

// parentZone is a signed parent of secZone, served on loopback, whose DS
// of the child can be changed while it runs (as a registry does when the
// operator, or a CDS scan, asks).
type parentZone struct {
	t      *testing.T
	zone   string
	addr   string
	signer *dnssec.Signer
	keys   *dnssec.Keyset
	h      atomic.Pointer[dnsserver.Handler]
	ds     []string // the child's DS records served now
	mu     sync.Mutex
	serial uint32
}

func (p *parentZone) TXT(dst []string, _ string) ([]string, bool) { return dst, false }
func (p *parentZone) Serial() uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.serial
}

func (p *parentZone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) { p.h.Load().ServeDNS(w, r) }

// setDS makes the parent serve ds (the child's DS records, zone-file
// lines with the parent's DS TTL) from now on.
func (p *parentZone) setDS(ds []string) {
	p.t.Helper()
	child := secZone + "."
	lines := append([]string{
		p.zone + ". 2 NS ns1." + p.zone + ".",
		"ns1." + p.zone + ". 2 A 127.0.0.1",
		child + " 2 NS ns1." + child,
		"ns1." + child + " 2 A 127.0.0.1",
	}, ds...)
	static, err := dnsserver.ParseRecords(p.zone, lines)
	if err != nil {
		p.t.Fatal(err)
	}
	h, err := dnsserver.NewHandler(dnsserver.Config{Zone: p.zone, NSName: "ns1." + p.zone, NSAdmin: "hostmaster." + p.zone,
		Records: static, TXTTTL: 2, NegativeTTL: 2, SOATTL: 2, Signer: p.signer}, p, slog.New(slog.DiscardHandler))
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.serial++
	p.ds = ds
	p.mu.Unlock()
	p.h.Store(h)
}

func startParent(t *testing.T, zone string) *parentZone {
	t.Helper()
	ks, err := dnssec.NewKeyset(zone, dnssec.ECDSAP256SHA256, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := dnssec.NewSigner(dnssec.SignerConfig{Zone: zone, DNSKEYTTL: 2}, ks)
	if err != nil {
		t.Fatal(err)
	}
	p := &parentZone{t: t, zone: zone, signer: s, keys: ks, serial: 1}
	p.setDS(nil)
	srv, err := dnsserver.Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, p) }()
	t.Cleanup(func() { cancel(); <-done })
	p.addr = srv.Addrs()[0]
	return p
}

// cdsAsDS asks addr for the child's CDS and returns it as DS records with
// the parent's TTL: what a parent that scans for CDS (RFC 7344) does.
func cdsAsDS(ctx context.Context, addr string) ([]string, error) {
	q := new(dns.Msg)
	q.SetQuestion(secZone+".", dns.TypeCDS)
	r, _, err := (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).ExchangeContext(ctx, q, addr)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range r.Answer {
		if c, ok := rr.(*dns.CDS); ok {
			ds := c.DS
			ds.Hdr.Rrtype, ds.Hdr.Ttl = dns.TypeDS, 2
			out = append(out, ds.String())
		}
	}
	slices.Sort(out)
	return out, nil
}

// TestDNSSECRolloverValidatesThroughout walks a whole CSK rollover,
// started with `acmebroker dnssec rollover --resolver PARENT`, on two
// broker nodes sharing one PostgreSQL database, below a signed parent
// that copies the child's CDS into its DS (RFC 7344) when it changes. A
// validating unbound that caches (everything for its TTL) and trusts only
// the parent's key is asked, all along, for a challenge TXT, the DNSKEY
// set, the SOA and fresh names that do not exist, from whichever node it
// picks: every answer validates, and the signatures it saw were made
// first by the old key and at the end by the new one only.
func TestDNSSECRolloverValidatesThroughout(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dsn := pgtest.Schema(t)
	parent := startParent(t, "example.test")
	dir := t.TempDir()
	// All TTLs of a second or two, so that the waits computed from them
	// (two key refreshes, the TTL, the safety margin) are seconds.
	cfg, path := dnssecConfig(t, dir, fmt.Sprintf("engine = \"postgres\"\ndsn = %q", dsn),
		"parent_ds_ttl = 2\nkey_refresh = \"200ms\"\nsafety_margin = \"500ms\"")
	nodeA, _ := runBroker(t, cfg)
	nodeB, _ := runBroker(t, cfg)
	before, err := cdsAsDS(t.Context(), nodeA.DNS[0])
	if err != nil || len(before) != 1 {
		t.Fatalf("CDS before: %v %v", before, err)
	}
	if b, _ := cdsAsDS(t.Context(), nodeB.DNS[0]); !slices.Equal(b, before) {
		t.Fatalf("the two nodes publish different keys: %v and %v", before, b)
	}
	parent.setDS(before)
	oldTag := strings.Fields(before[0])[4]

	api := &client.BrokerClient{}
	acct, err := api.Register(t.Context(), nodeA.API, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Update(t.Context(), acct, "rollover-0000000000000000000000000000000000"); err != nil {
		t.Fatal(err)
	}

	anchor := []string{parent.keys.ParentKeys()[0].DSRecord(2).String()}
	res := acmetest.StartResolver(t, acmetest.ResolverOptions{
		Stubs:        map[string][]string{"example.test": {parent.addr}, secZone: {nodeA.DNS[0], nodeB.DNS[0]}},
		TrustAnchors: anchor,
		Cache:        true,
	})

	// The querier: until stopped, every 20 ms, one question, all checked.
	type failure struct {
		at   time.Duration
		what string
	}
	var (
		mu       sync.Mutex
		failures []failure
		asked    int
		tags     []string // key tags of the TXT's RRSIGs, in order seen
	)
	start := time.Now()
	stop := make(chan struct{})
	querierDone := make(chan struct{})
	go func() {
		defer close(querierDone)
		c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
		questions := []struct {
			name  func() string
			qtype uint16
		}{
			{func() string { return acct.FullDomain + "." }, dns.TypeTXT},
			{func() string { return secZone + "." }, dns.TypeDNSKEY},
			{func() string { return secZone + "." }, dns.TypeSOA},
			{func() string { return fmt.Sprintf("n%d.%s.", rand.Uint32(), secZone) }, dns.TypeTXT},
			{func() string { return acct.FullDomain + "." }, dns.TypeA},
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			qs := questions[i%len(questions)]
			q := new(dns.Msg)
			q.SetQuestion(qs.name(), qs.qtype)
			q.SetEdns0(1232, true)
			r, _, err := c.Exchange(q, res.Addr)
			if err == nil && r.Truncated {
				r, _, err = (&dns.Client{Net: "tcp", Timeout: 3 * time.Second}).Exchange(q, res.Addr)
			}
			mu.Lock()
			asked++
			switch {
			case err != nil:
				failures = append(failures, failure{time.Since(start), fmt.Sprintf("%s %s: %v", q.Question[0].Name, dns.TypeToString[qs.qtype], err)})
			case r.Rcode != dns.RcodeSuccess || !r.AuthenticatedData:
				failures = append(failures, failure{time.Since(start), fmt.Sprintf("%s %s: %s AD %v", q.Question[0].Name, dns.TypeToString[qs.qtype], dns.RcodeToString[r.Rcode], r.AuthenticatedData)})
			case qs.qtype == dns.TypeTXT && i%len(questions) == 0:
				var ts []string
				for _, rr := range r.Answer {
					if s, ok := rr.(*dns.RRSIG); ok {
						ts = append(ts, fmt.Sprint(s.KeyTag))
					}
				}
				slices.Sort(ts)
				if k := strings.Join(ts, "+"); len(tags) == 0 || tags[len(tags)-1] != k {
					tags = append(tags, k)
				}
			}
			mu.Unlock()
		}
	}()

	// The parent: copies the child's CDS into its DS when it changes.
	parentCtx, stopParent := context.WithCancel(t.Context())
	parentDone := make(chan struct{})
	go func() {
		defer close(parentDone)
		for {
			select {
			case <-parentCtx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			cds, err := cdsAsDS(parentCtx, nodeB.DNS[0])
			if err == nil && len(cds) > 0 && !slices.Equal(cds, parent.ds) {
				parent.setDS(cds)
			}
		}
	}()

	// answered waits (bounded) until the querier has had n more answers.
	answered := func(n int) {
		t.Helper()
		mu.Lock()
		want := asked + n
		mu.Unlock()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) { // polling with a deadline
			mu.Lock()
			got := asked
			mu.Unlock()
			if got >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the querier had %d answers of %d in 30 s", got, want)
			}
		}
	}
	// Let the resolver fill its cache with the old key's answers first.
	answered(100)
	var out, errb bytes.Buffer
	rollCtx, cancelRoll := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancelRoll()
	code := cli.Run(rollCtx, []string{"dnssec", "rollover", "-config", path, "--resolver", parent.addr}, &out, &errb)
	took := time.Since(start)
	// Caches drain with the new key alone for a while.
	answered(150)
	close(stop)
	<-querierDone
	stopParent()
	<-parentDone
	if code != 0 || !strings.Contains(out.String(), "Done: rollover csk "+oldTag) {
		t.Fatalf("dnssec rollover: exit %d\n%s%s", code, out.String(), errb.String())
	}
	t.Logf("rollover in %s:\n%s", took.Round(time.Millisecond), out.String())

	mu.Lock()
	defer mu.Unlock()
	for _, f := range failures {
		t.Errorf("at %s: %s", f.at.Round(time.Millisecond), f.what)
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d answers did not validate during the rollover\nunbound:\n%s", len(failures), asked, res.Log())
	}
	newDS, _ := cdsAsDS(t.Context(), nodeA.DNS[0])
	newTag := strings.Fields(newDS[0])[4]
	if newTag == oldTag || len(tags) < 2 || tags[0] != oldTag || tags[len(tags)-1] != newTag {
		t.Fatalf("TXT signatures seen %v: want the old key %s first and the new %s alone at the end", tags, oldTag, newTag)
	}
	if asked < 300 {
		t.Fatalf("only %d questions asked", asked)
	}
	t.Logf("%d answers, all validated; TXT signed by %v", asked, tags)
}
