package rrl

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testConfig() Config {
	return Config{
		ResponsesPerSecond: 100, NXDomainPerSecond: 5, ErrorsPerSecond: 5, LargePerSecond: 5,
		LargeSize: 512, Slip: 2, Window: 3 * time.Second,
		IPv4Prefix: 24, IPv6Prefix: 56, TableSize: 1024,
	}
}

func newTestLimiter(t testing.TB, cfg Config, clk *fakeClock) *Limiter {
	t.Helper()
	r, err := New(cfg, clk.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func key4(s string, cat category) bucketKey {
	return prefixKey(netip.MustParseAddr(s), 24, 56, cat)
}

// at is a clock stopped at ns.
func at(ns int64) func() int64 { return func() int64 { return ns } }

func tally(vs []verdict) (sent, dropped, slipped int) {
	for _, v := range vs {
		switch v {
		case send:
			sent++
		case drop:
			dropped++
		case slip:
			slipped++
		}
	}
	return
}

func TestRRLBucketBurstSlipAndWindow(t *testing.T) {
	tab := newTable(1024, 3*time.Second, 2)
	k := key4("192.0.2.7", catNegative)
	var now int64
	var vs []verdict
	for range 20 {
		v, _ := tab.account(k, 5, at(now))
		vs = append(vs, v)
	}
	if s, d, sl := tally(vs); s != 5 || d != 8 || sl != 7 {
		t.Fatalf("burst of 20 at 5/s: sent %d dropped %d slipped %d, want 5 8 7 (%v)", s, d, sl, vs)
	}
	// Limited answers alternate drop, slip with slip = 2.
	if vs[5] != drop || vs[6] != slip || vs[7] != drop {
		t.Fatalf("slip order %v", vs[5:8])
	}
	// One second later the source is still in debt: still limited.
	now += int64(time.Second)
	if v, _ := tab.account(k, 5, at(now)); v == send {
		t.Fatal("answered one second into a 3 s window after a flood")
	}
	// After the window (and a little) with no queries, answers flow again.
	now += int64(3*time.Second + 500*time.Millisecond)
	if v, _ := tab.account(k, 5, at(now)); v != send {
		t.Fatalf("still limited after the window: %v", v)
	}
}

func TestRRLSustainedFloodGetsOnlySlips(t *testing.T) {
	tab := newTable(1024, 5*time.Second, 2)
	k := key4("198.51.100.1", catLarge)
	var vs []verdict
	// 100 queries a second for 10 s against a limit of 10/s.
	for i := range 1000 {
		v, _ := tab.account(k, 10, at(int64(i)*int64(10*time.Millisecond)))
		vs = append(vs, v)
	}
	s, d, sl := tally(vs)
	// The first second's burst (10) and the refill while the debt builds
	// up get through; once at the floor, nothing but slips.
	if s > 20 || sl < 480 || d < 480 {
		t.Fatalf("flood: sent %d dropped %d slipped %d", s, d, sl)
	}
	t.Logf("10 s flood at 100/s, limit 10/s: sent %d, dropped %d, slipped %d", s, d, sl)
}

func TestRRLSteadyResolverNeverLimited(t *testing.T) {
	tab := newTable(1024, 5*time.Second, 2)
	k := key4("203.0.113.9", catNegative)
	for i := range 600 { // 4 a second for 150 s, limit 5/s
		if v, _ := tab.account(k, 5, at(int64(i)*int64(250*time.Millisecond))); v != send {
			t.Fatalf("query %d at 4/s limited (%v)", i, v)
		}
	}
}

func TestRRLSlipZeroAndOne(t *testing.T) {
	for _, c := range []struct {
		slip            int
		dropped, slipps int
	}{{0, 10, 0}, {1, 0, 10}, {3, 7, 3}} {
		tab := newTable(64, time.Second, c.slip)
		var vs []verdict
		for range 12 {
			v, _ := tab.account(key4("192.0.2.1", catError), 2, at(0))
			vs = append(vs, v)
		}
		if s, d, sl := tally(vs); s != 2 || d != c.dropped || sl != c.slipps {
			t.Errorf("slip %d: sent %d dropped %d slipped %d", c.slip, s, d, sl)
		}
	}
}

func TestRRLPrefixesAndCategoriesSeparate(t *testing.T) {
	tab := newTable(1024, 5*time.Second, 0)
	flood := func(k bucketKey) {
		for range 50 {
			tab.account(k, 5, at(0))
		}
	}
	flood(key4("192.0.2.1", catNegative))
	for _, c := range []struct {
		k    bucketKey
		want verdict
	}{
		{key4("192.0.2.200", catNegative), drop}, // same /24
		{key4("192.0.3.1", catNegative), send},   // next /24
		{key4("192.0.2.1", catNormal), send},     // same source, other kind
		{key4("192.0.2.1", catLarge), send},
		{prefixKey(netip.MustParseAddr("::ffff:192.0.2.9"), 24, 56, catNegative), drop}, // mapped IPv4
	} {
		if v, _ := tab.account(c.k, 5, at(0)); v != c.want {
			t.Errorf("%+v: %v, want %v", c.k, v, c.want)
		}
	}
	a := prefixKey(netip.MustParseAddr("2001:db8:0:1200::1"), 24, 56, catNegative)
	flood(a)
	for _, c := range []struct {
		addr string
		want verdict
	}{{"2001:db8:0:12ff:ffff::1", drop}, {"2001:db8:0:1300::1", send}} {
		if v, _ := tab.account(prefixKey(netip.MustParseAddr(c.addr), 24, 56, catNegative), 5, at(0)); v != c.want {
			t.Errorf("%s: %v, want %v", c.addr, v, c.want)
		}
	}
}

func TestRRLTableMemoryBound(t *testing.T) {
	const size = 256
	tab := newTable(size, 5*time.Second, 2)
	hot := key4("10.0.0.1", catNegative)
	for range 20 { // hot is limited
		tab.account(hot, 5, at(0))
	}
	// 20,000 spoofed prefixes, with hot queried in between: the table never
	// holds more than its size, and the hot source (recently used) keeps
	// its debt instead of being evicted.
	for i := range 20000 {
		k := prefixKey(netip.AddrFrom4([4]byte{byte(i >> 16), byte(i >> 8), byte(i), 1}), 32, 56, catNegative)
		tab.account(k, 5, at(0))
		if i%8 == 0 {
			if v, _ := tab.account(hot, 5, at(0)); v == send {
				t.Fatalf("hot source answered after %d other sources: its bucket was evicted", i)
			}
		}
	}
	if n := tab.len(); n > size {
		t.Fatalf("table holds %d entries, bound %d", n, size)
	}
	for i := range tab.shards {
		s := &tab.shards[i]
		if cap(s.entries) != size/numShards || len(s.index) > cap(s.entries) {
			t.Fatalf("shard %d grew: cap %d, index %d", i, cap(s.entries), len(s.index))
		}
	}
	if tab.evictedActive() == 0 {
		t.Fatal("evicting entries seen a moment ago was not counted")
	}
	// Entries are reused, not leaked: the LRU list covers every slot.
	for i := range tab.shards {
		s := &tab.shards[i]
		n := 0
		for j := s.head; j >= 0; j = s.entries[j].next {
			n++
			if n > len(s.entries) {
				t.Fatalf("shard %d: LRU list loops", i)
			}
		}
		if n != len(s.entries) || n != len(s.index) {
			t.Fatalf("shard %d: list %d, entries %d, index %d", i, n, len(s.entries), len(s.index))
		}
	}
}

func TestClassify(t *testing.T) {
	h := zoneHandler{}
	for _, c := range []struct {
		name  string
		qname string
		qtype uint16
		edns  uint16
		want  category
	}{
		{"challenge TXT", sub1 + "." + zone + ".", dns.TypeTXT, 1232, catNormal},
		{"NXDOMAIN", "nope." + zone + ".", dns.TypeTXT, 1232, catNegative},
		{"NODATA", zone + ".", dns.TypeTXT, 1232, catNegative},
		{"REFUSED", "example.com.", dns.TypeA, 0, catError},
		{"ANY", zone + ".", dns.TypeANY, 0, catNormal},
		{"large TXT", "crowd." + zone + ".", dns.TypeTXT, 4096, catLarge},
		{"truncated TXT", "crowd." + zone + ".", dns.TypeTXT, 0, catLarge},
		{"SOA", zone + ".", dns.TypeSOA, 0, catNormal},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := query(c.qname, c.qtype)
			if c.edns != 0 {
				q.SetEdns0(c.edns, false)
			}
			w := udpRecorder()
			h.ServeDNS(w, q)
			if len(w.Msgs) != 1 {
				t.Fatalf("%d messages", len(w.Msgs))
			}
			if got := classify(w.Msgs[0], 512); got != c.want {
				t.Fatalf("%d bytes classified %v, want %v", len(w.Msgs[0]), got, c.want)
			}
		})
	}
	if classify([]byte{1, 2, 3}, 512) != catError {
		t.Fatal("a runt is not an error")
	}
}

func TestSlipAnswer(t *testing.T) {
	h := zoneHandler{}
	q := query("crowd."+zone+".", dns.TypeTXT)
	q.SetEdns0(4096, false)
	qb, _ := q.Pack()
	w := udpRecorder()
	h.ServeDNS(w, q)
	full := w.Msgs[0]
	s := slipAnswer(full)
	if len(s) > len(qb) {
		t.Fatalf("slip of %d bytes for a query of %d", len(s), len(qb))
	}
	m := new(dns.Msg)
	if err := m.Unpack(s); err != nil {
		t.Fatal(err)
	}
	if !m.Truncated || !m.Response || m.Id != q.Id || len(m.Answer)+len(m.Ns)+len(m.Extra) != 0 ||
		len(m.Question) != 1 || m.Question[0] != q.Question[0] {
		t.Fatalf("slip answer: %s", m)
	}
	if !bytes.Equal(full[12:len(s)], s[12:]) {
		t.Fatal("question not copied as is")
	}
	// Garbage in: never longer than the input, never a panic.
	for _, b := range [][]byte{nil, make([]byte, 11), make([]byte, 12), {0, 1, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12}} {
		if out := slipAnswer(b); len(out) > len(b) {
			t.Fatalf("%x -> %x", b, out)
		}
	}
}

func FuzzSlipAnswer(f *testing.F) {
	h := zoneHandler{}
	for _, q := range []*dns.Msg{query(sub1+"."+zone+".", dns.TypeTXT), query("nope."+zone+".", dns.TypeA), query("example.com.", dns.TypeA)} {
		w := udpRecorder()
		h.ServeDNS(w, q)
		f.Add(w.Msgs[0])
	}
	f.Add([]byte{0, 1, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = classify(b, 512)
		out := slipAnswer(b)
		if len(out) > len(b) {
			t.Fatalf("slip of %d bytes from %d", len(out), len(b))
		}
		if len(b) >= 12 {
			if len(out) < 12 || out[2]&0x02 == 0 || out[6]|out[7]|out[8]|out[9]|out[10]|out[11] != 0 {
				t.Fatalf("slip %x from %x", out, b)
			}
			m := new(dns.Msg)
			if len(out) > 12 && m.Unpack(out) != nil {
				t.Fatalf("slip with a question does not parse: %x", out)
			}
		}
	})
}

func TestRRLMiddleware(t *testing.T) {
	clk := newFakeClock()
	cfg := testConfig()
	cfg.Exempt = []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")}
	r := newTestLimiter(t, cfg, clk)
	hh := zoneHandler{}
	h := r.Wrap(hh)
	from := func(ip string, tcp bool) *recorder {
		w := &recorder{Remote: &net.UDPAddr{IP: net.ParseIP(ip), Port: 5353}}
		if tcp {
			w.Remote = &net.TCPAddr{IP: net.ParseIP(ip), Port: 5353}
		}
		return w
	}
	nx := query("nope."+zone+".", dns.TypeTXT)
	udp, tcp, exempt := from("192.0.2.1", false), from("192.0.2.1", true), from("192.0.2.200", false)
	for range 20 {
		h.ServeDNS(udp, nx)
		h.ServeDNS(tcp, nx)
		h.ServeDNS(exempt, nx)
	}
	if len(udp.Msgs) != 5+7 {
		t.Fatalf("udp: %d messages, want 5 answers and 7 slips", len(udp.Msgs))
	}
	tcs := 0
	for _, b := range udp.Msgs {
		if b[2]&0x02 != 0 {
			tcs++
		}
	}
	if tcs != 7 {
		t.Fatalf("%d TC slips, want 7", tcs)
	}
	if len(tcp.Msgs) != 20 || len(exempt.Msgs) != 20 {
		t.Fatalf("tcp %d, exempt %d answers: both must be unlimited", len(tcp.Msgs), len(exempt.Msgs))
	}
	st := r.Stats()
	if st.Dropped != 8 || st.Slipped != 7 {
		t.Fatalf("stats %+v", st)
	}
	// The panic path answers with WriteMsg: limited too.
	boom := query("boom."+zone+".", dns.TypeTXT)
	w := from("198.51.100.1", false)
	for range 20 {
		h.ServeDNS(w, boom)
	}
	if len(w.Msgs) != 12 {
		t.Fatalf("SERVFAIL through WriteMsg: %d messages, want 12", len(w.Msgs))
	}
}

func TestRRLConfigCheck(t *testing.T) {
	for _, c := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.NXDomainPerSecond = -1 }, "nxdomain_per_second"},
		{func(c *Config) { c.Slip = 11 }, "slip"},
		{func(c *Config) { c.LargeSize = 0 }, "large_size"},
		{func(c *Config) { c.Window = 0 }, "window"},
		{func(c *Config) { c.IPv4Prefix = 33 }, "ipv4_prefix"},
		{func(c *Config) { c.IPv6Prefix = 8 }, "ipv6_prefix"},
		{func(c *Config) { c.TableSize = 1 }, "table_size"},
	} {
		cfg := testConfig()
		c.mut(&cfg)
		err := cfg.Check()
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
			t.Errorf("%s: %v", c.want, err)
		}
	}
	if err := testConfig().Check(); err != nil {
		t.Fatal(err)
	}
}

func TestRRLLogsEpisodesSparingly(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	clk := newFakeClock()
	r, err := New(testConfig(), clk.Now, logger)
	if err != nil {
		t.Fatal(err)
	}
	h := r.Wrap(zoneHandler{})
	nx := query("nope."+zone+".", dns.TypeTXT)
	flood := func(ip string) {
		w := &recorder{Remote: &net.UDPAddr{IP: net.ParseIP(ip), Port: 5353}}
		for range 20 {
			h.ServeDNS(w, nx)
		}
	}
	// Three prefixes start being limited within one second: one line.
	flood("192.0.2.1")
	flood("198.51.100.1")
	flood("203.0.113.1")
	if n := strings.Count(buf.String(), "dns rate limit"); n != 1 {
		t.Fatalf("%d log lines in one second, want 1:\n%s", n, &buf)
	}
	if !strings.Contains(buf.String(), "remote=192.0.2.0/24") || !strings.Contains(buf.String(), "kind=negative") {
		t.Fatalf("log line lacks the prefix or the kind: %s", &buf)
	}
	// A second later the next episode is logged, counting the two unlogged.
	clk.Advance(time.Second)
	flood("192.0.2.200") // same /24, still limited: not a new episode
	flood("100.64.0.1")
	if n := strings.Count(buf.String(), "dns rate limit"); n != 2 || !strings.Contains(buf.String(), "other_sources_since_last_line=2") {
		t.Fatalf("second line missing or miscounted:\n%s", &buf)
	}
}

// TestRRLVerifiedSourcesUnlimited: a query that proves its source (a valid
// DNS server cookie) is answered however much its prefix floods; the same
// query from an address the check refuses is limited as before.
func TestRRLVerifiedSourcesUnlimited(t *testing.T) {
	cfg := testConfig()
	var asked []netip.Addr
	cfg.Verified = func(q *dns.Msg, from netip.Addr) bool {
		asked = append(asked, from)
		return q.Id == 7 && from == netip.MustParseAddr("192.0.2.1")
	}
	h := newTestLimiter(t, cfg, newFakeClock()).Wrap(zoneHandler{})
	nx := query("nope."+zone+".", dns.TypeTXT)
	proven, spoofed := udpRecorder(), &recorder{Remote: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 5353}}
	for range 20 {
		nx.Id = 7
		h.ServeDNS(proven, nx)
		h.ServeDNS(spoofed, nx)
	}
	if len(proven.Msgs) != 20 {
		t.Fatalf("verified source: %d answers to 20 queries", len(proven.Msgs))
	}
	for _, b := range proven.Msgs {
		if b[2]&0x02 != 0 {
			t.Fatal("a verified source got a slip")
		}
	}
	if len(spoofed.Msgs) >= 20 {
		t.Fatalf("unverified source in the same /24: %d answers, not limited", len(spoofed.Msgs))
	}
	if len(asked) != 40 {
		t.Fatalf("Verified asked %d times for 40 UDP queries", len(asked))
	}
}
