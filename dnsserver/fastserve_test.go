package dnsserver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/storage"
)

const fzone = "fast.example.test"

// fakeClock is a clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time            { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) add(d time.Duration)       { c.ns.Add(int64(d)) }
func newFakeClock() *fakeClock                 { c := &fakeClock{}; c.ns.Store(time.Now().UnixNano()); return c }
func fastQuery(name string, t uint16) *dns.Msg { m := new(dns.Msg); m.SetQuestion(name, t); return m }

// fastServer serves h on 127.0.0.1:0, through the fast path when fp is
// not nil (with fp's handler chain: chain(h)), until the test ends.
func fastServer(t *testing.T, h *dnsserver.Handler, fp *dnsserver.FastPath, chain func(dns.Handler) dns.Handler) string {
	t.Helper()
	srv, err := dnsserver.Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if fp != nil {
		srv.EnableFastPath(fp)
	}
	var served dns.Handler = h
	if chain != nil {
		served = chain(h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, served) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10 s")
		}
	})
	return srv.Addrs()[0]
}

func fastHandler(t *testing.T, idx *records.Index) *dnsserver.Handler {
	t.Helper()
	static, err := dnsserver.ParseRecords(fzone, []string{fzone + ". NS ns1." + fzone + ".", "ns1 A 192.0.2.53", "www CNAME abc"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := dnsserver.NewHandler(dnsserver.Config{
		Zone: fzone, NSName: "ns1." + fzone, NSAdmin: "hostmaster.example.test",
		Records: static, TXTTTL: 1, NegativeTTL: 5, MaxUDPSize: 1232,
	}, idx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// exchange sends m over UDP to addr and returns the raw answer.
func exchange(t *testing.T, addr string, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return exchangeRaw(t, addr, b)
}

func exchangeRaw(t *testing.T, addr string, b []byte) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 65535)
	for try := 0; try < 3; try++ { // a datagram may be lost on a loaded machine
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return buf[:n]
	}
	t.Fatalf("no answer from %s", addr)
	return nil
}

func txtValues(t *testing.T, b []byte) (int, []string) {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatal(err)
	}
	var vals []string
	for _, rr := range m.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			vals = append(vals, txt.Txt...)
		}
	}
	return m.Rcode, vals
}

// TestFastServerFollowsIndex: over real sockets, with the real index and
// its clock, every change is served from the moment the call that made it
// returns, cached answers or not: a new value, a registration, a removal,
// a value leaving the window without any write, a prune.
func TestFastServerFollowsIndex(t *testing.T) {
	clock := newFakeClock()
	policy := storage.TXTPolicy{Always: 2, Window: 10 * time.Minute, Max: 16}
	idx := records.New(policy, clock.now)
	h := fastHandler(t, idx)
	fp, err := h.NewFastPath(dnsserver.FastConfig{CacheBytes: 1 << 20, UDPSockets: 2, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	addr := fastServer(t, h, fp, nil)
	name := "abc." + fzone + "."
	ask := func(qtype uint16) (int, []string) {
		t.Helper()
		q := fastQuery(name, qtype)
		q.SetEdns0(1232, false)
		return txtValues(t, exchange(t, addr, q))
	}
	expect := func(what string, rcode int, vals ...string) {
		t.Helper()
		for range 3 { // the first fills the cache, the others come from it
			rc, got := ask(dns.TypeTXT)
			if rc != rcode || !slices.Equal(got, vals) {
				t.Fatalf("%s: %s %q, want %s %q", what, dns.RcodeToString[rc], got, dns.RcodeToString[rcode], vals)
			}
		}
	}
	expect("before registration", dns.RcodeNameError)
	idx.Add("abc", 1)
	expect("registered, no value", dns.RcodeSuccess)
	now := clock.now()
	idx.Set("abc", []storage.TXTRecord{{Value: "one", UpdatedAt: now}}, 2)
	expect("first value", dns.RcodeSuccess, "one")
	idx.Set("abc", []storage.TXTRecord{{Value: "two", UpdatedAt: now}, {Value: "one", UpdatedAt: now.Add(-time.Second)}}, 3)
	expect("second value", dns.RcodeSuccess, "two", "one")
	// Three values: the third is served while it is in the window.
	idx.Set("abc", []storage.TXTRecord{{Value: "3", UpdatedAt: now}, {Value: "2", UpdatedAt: now.Add(-time.Second)},
		{Value: "1", UpdatedAt: now.Add(-2 * time.Minute)}}, 4)
	expect("three values", dns.RcodeSuccess, "3", "2", "1")
	clock.add(8*time.Minute - time.Second)
	expect("the third still in the window", dns.RcodeSuccess, "3", "2", "1")
	clock.add(time.Second)
	expect("the third aged out, no write", dns.RcodeSuccess, "3", "2")
	// A prune deletes it: the serial moves, the answer stays.
	serial := func() uint32 {
		t.Helper()
		m := new(dns.Msg)
		if err := m.Unpack(exchange(t, addr, fastQuery(fzone+".", dns.TypeSOA))); err != nil || len(m.Answer) != 1 {
			t.Fatalf("SOA: %v %v", m, err)
		}
		return m.Answer[0].(*dns.SOA).Serial
	}
	before := serial()
	for _, sub := range idx.Due(clock.now()) { // what the zone writer's prune does after the store's
		idx.Pruned(sub, clock.now(), 1, 5)
	}
	if after := serial(); after != 5 || before != 4 {
		t.Fatalf("serial %d before the prune, %d after: want 4 and 5", before, after)
	}
	expect("pruned", dns.RcodeSuccess, "3", "2")
	// A name CNAMEd to it follows it too.
	www := func() []string {
		_, vals := txtValues(t, exchange(t, addr, fastQuery("www."+fzone+".", dns.TypeTXT)))
		return vals
	}
	if got := www(); !slices.Equal(got, []string{"3", "2"}) {
		t.Fatalf("through the CNAME: %q", got)
	}
	idx.Set("abc", []storage.TXTRecord{{Value: "4", UpdatedAt: clock.now()}}, 6)
	if got := www(); !slices.Equal(got, []string{"4"}) {
		t.Fatalf("through the CNAME after a change: %q", got)
	}
	idx.Remove("abc", 7)
	expect("removed", dns.RcodeNameError)
	if s := fp.Stats(); s.Hits == 0 || s.Fills == 0 {
		t.Fatalf("stats %+v: want answers both from the cache and from the handler", s)
	}
}

// TestFastServerSameBytes sends the same datagrams to a server with the
// fast path and to one without: the answers are the same bytes.
func TestFastServerSameBytes(t *testing.T) {
	idx := records.New(storage.DefaultTXTPolicy, time.Now)
	idx.Add("abc", 1)
	idx.Set("abc", []storage.TXTRecord{{Value: "v1", UpdatedAt: time.Now()}}, 2)
	h := fastHandler(t, idx)
	fp, err := h.NewFastPath(dnsserver.FastConfig{CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	fast := fastServer(t, h, fp, nil)
	plain := fastServer(t, h, nil, nil)
	var queries []*dns.Msg
	for _, name := range []string{"abc." + fzone + ".", "AbC." + fzone + ".", "nope." + fzone + ".", fzone + ".", "www." + fzone + ".", "example.com."} {
		for _, qt := range []uint16{dns.TypeTXT, dns.TypeA, dns.TypeSOA, dns.TypeNS, dns.TypeANY, dns.TypeAXFR} {
			queries = append(queries, fastQuery(name, qt))
			e := fastQuery(name, qt)
			e.SetEdns0(512, true)
			queries = append(queries, e)
		}
	}
	cookie := fastQuery("abc."+fzone+".", dns.TypeTXT)
	cookie.SetEdns0(1232, false)
	cookie.IsEdns0().Option = append(cookie.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	queries = append(queries, cookie)
	for i, q := range queries {
		for range 2 {
			a, b := exchange(t, fast, q), exchange(t, plain, q)
			if !bytes.Equal(a, b) {
				t.Fatalf("query %d (%s): fast path answer differs:\nfast:  %x\nplain: %x", i, q.Question[0].String(), a, b)
			}
		}
	}
	// Runts and responses get no answer, as from the full server.
	for _, raw := range [][]byte{{1, 2, 3}, mustPack(t, func() *dns.Msg { m := fastQuery("abc."+fzone+".", dns.TypeTXT); m.Response = true; return m }())} {
		if got := noAnswer(t, fast, raw); got != nil {
			t.Fatalf("answered %x: %x", raw, got)
		}
	}
}

func mustPack(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// noAnswer sends b and returns what comes back within half a second.
func noAnswer(t *testing.T, addr string, b []byte) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// TestFastServerSlowPath: queries the fast path does not take reach the
// full handler chain, and what it answers goes back to the asker: a
// TSIG-signed query is answered signed, NOTIFY is refused, and the chain's
// middleware sees them (and only them).
func TestFastServerSlowPath(t *testing.T) {
	idx := records.New(storage.DefaultTXTPolicy, time.Now)
	idx.EnableJournal(16)
	h := fastHandler(t, idx)
	key := dnsserver.TSIGKey{Name: "xfr-key", Algorithm: "hmac-sha256", Secret: "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI="}
	if err := h.EnableTransfer(dnsserver.TransferConfig{Keys: []dnsserver.TSIGKey{key}}); err != nil {
		t.Fatal(err)
	}
	fp, err := h.NewFastPath(dnsserver.FastConfig{CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := dnsserver.Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetTSIG(dnsserver.TSIGSecrets([]dnsserver.TSIGKey{key}))
	srv.EnableFastPath(fp)
	var chained atomic.Int64
	served := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) { chained.Add(1); h.ServeDNS(w, r) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, served) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	addr := srv.Addrs()[0]

	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second, TsigSecret: dnsserver.TSIGSecrets([]dnsserver.TSIGKey{key})}
	q := fastQuery(fzone+".", dns.TypeSOA)
	q.SetTsig("xfr-key.", dns.HmacSHA256, 300, time.Now().Unix())
	m, _, err := c.Exchange(q, addr)
	if err != nil || m.Rcode != dns.RcodeSuccess || m.IsTsig() == nil {
		t.Fatalf("signed SOA query: %v %v", m, err)
	}
	n := fastQuery(fzone+".", dns.TypeSOA)
	n.Opcode = dns.OpcodeNotify
	if m, _, err := (&dns.Client{Net: "udp", Timeout: 2 * time.Second}).Exchange(n, addr); err != nil || m.Rcode != dns.RcodeRefused {
		t.Fatalf("NOTIFY: %v %v", m, err)
	}
	before := chained.Load()
	for range 5 {
		exchange(t, addr, fastQuery(fzone+".", dns.TypeSOA))
	}
	if got := chained.Load(); got != 2 || before != 2 {
		t.Fatalf("the handler chain saw %d queries, then %d: want the 2 unusual ones only", before, got)
	}
	if s := fp.Stats(); s.Handed != 2 || s.Hits+s.Fills != 5 {
		t.Fatalf("stats %+v", s)
	}
}

// TestFastServerManyClients: many sources at once, over several sockets
// sharing the address, each get their own answers.
func TestFastServerManyClients(t *testing.T) {
	idx := records.New(storage.DefaultTXTPolicy, time.Now)
	for i := range 50 {
		sub := fmt.Sprintf("s%d", i)
		idx.Add(sub, uint32(2*i+1))
		idx.Set(sub, []storage.TXTRecord{{Value: "value-of-" + sub, UpdatedAt: time.Now()}}, uint32(2*i+2))
	}
	h := fastHandler(t, idx)
	fp, err := h.NewFastPath(dnsserver.FastConfig{CacheBytes: 1 << 20, UDPSockets: 4})
	if err != nil {
		t.Fatal(err)
	}
	addr := fastServer(t, h, fp, nil)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
			conn, err := c.Dial(addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			for i := range 100 {
				sub := fmt.Sprintf("s%d", (g*7+i)%50)
				m, _, err := c.ExchangeWithConn(fastQuery(sub+"."+fzone+".", dns.TypeTXT), conn)
				if err != nil {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						continue // lost on a loaded machine
					}
					t.Error(err)
					return
				}
				if len(m.Answer) != 1 || m.Answer[0].(*dns.TXT).Txt[0] != "value-of-"+sub {
					t.Errorf("%s: %v", sub, m.Answer)
					return
				}
			}
		})
	}
	wg.Wait()
	if runtime.GOOS == "linux" && fp.Stats().Hits == 0 {
		t.Fatal("no answer from the cache")
	}
}
