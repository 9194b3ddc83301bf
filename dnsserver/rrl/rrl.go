// Package rrl is response rate limiting (RRL) of UDP answers, in the spirit
// of BIND, Knot and NSD: a spoofed source cannot turn the server into an
// amplifier, while a real resolver in the same prefix still gets its answers
// over TCP (slip). It is dns.Handler middleware (Limiter.Wrap) and knows
// nothing of the zone: it sorts packed answers by their header and size.
package rrl

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acmebroker/acmebroker/internal/fieldcheck"
	"github.com/miekg/dns"
)

// Config configures the limiter. TCP is never limited: its source is not
// spoofed.
type Config struct {
	// Per-second limits per source prefix for each kind of answer; 0 means
	// no limit for that kind. Responses is for ordinary answers (challenge
	// TXT, SOA, NS...), NXDomain for NXDOMAIN and NODATA, Errors for any
	// other rcode, Large for answers over LargeSize bytes or truncated.
	ResponsesPerSecond, NXDomainPerSecond, ErrorsPerSecond, LargePerSecond int
	// LargeSize is the size in bytes above which an answer counts as large.
	LargeSize int
	// Slip: every Slip-th limited response is sent as a bare truncated
	// answer (TC, no records) so a real resolver retries over TCP; the
	// others are dropped. 0 drops them all; 1 slips every one.
	Slip int
	// Window: a source that floods stays limited until about Window after
	// it stops (its debt is at most Window times the rate).
	Window time.Duration
	// IPv4Prefix and IPv6Prefix are the prefix lengths sources are counted by.
	IPv4Prefix, IPv6Prefix int
	// TableSize bounds the number of (prefix, kind) buckets held; the least
	// recently used is reused when full.
	TableSize int
	// Exempt sources are never limited (e.g. the operator's monitoring).
	Exempt []netip.Prefix
	// Verified, if not nil, is asked about every UDP query before it is
	// answered: true means the query proves its source address (it carries
	// a valid DNS server cookie, RFC 7873 5.3), so its answer cannot be
	// reflected at a victim and goes out unlimited.
	Verified func(q *dns.Msg, from netip.Addr) bool
}

// Check reports every invalid field, each named by its key in the
// [dns.rrl] table of config.toml (fieldcheck.Error).
func (c Config) Check() error {
	var errs fieldcheck.List
	for _, f := range []struct {
		name string
		v    int
	}{{"responses_per_second", c.ResponsesPerSecond}, {"nxdomain_per_second", c.NXDomainPerSecond},
		{"errors_per_second", c.ErrorsPerSecond}, {"large_per_second", c.LargePerSecond}} {
		if f.v < 0 {
			errs.Add(f.name, "must be 0 (no limit) or a number per second")
		}
	}
	if c.Slip < 0 || c.Slip > 10 {
		errs.Add("slip", "%d is out of range: 0 (drop every limited answer) to 10", c.Slip)
	}
	if c.LargeSize < 1 || c.LargeSize > 65535 {
		errs.Add("large_size", "%d is out of range: 1 to 65535 bytes", c.LargeSize)
	}
	if c.Window < time.Second || c.Window > time.Hour {
		errs.Add("window", "%s is out of range: 1s to 1h", c.Window)
	}
	if c.IPv4Prefix < 8 || c.IPv4Prefix > 32 {
		errs.Add("ipv4_prefix", "%d is out of range: 8 to 32", c.IPv4Prefix)
	}
	if c.IPv6Prefix < 16 || c.IPv6Prefix > 128 {
		errs.Add("ipv6_prefix", "%d is out of range: 16 to 128", c.IPv6Prefix)
	}
	if c.TableSize < numShards || c.TableSize > 1<<24 {
		errs.Add("table_size", "%d is out of range: %d to %d entries", c.TableSize, numShards, 1<<24)
	}
	return errs.Err()
}

// Stats counts what the limiter did with UDP responses. Answers sent
// are not counted: that would cost every answer a shared atomic.
type Stats struct {
	Dropped, Slipped uint64
	// Entries is the number of buckets held; EvictedActive counts buckets
	// reused while they may still have been limiting (raise table_size if
	// this grows).
	Entries       int
	EvictedActive uint64
}

// Limiter is response rate limiting as dns.Handler middleware (Wrap). It is
// safe for concurrent use.
type Limiter struct {
	cfg     Config
	rates   [numCategories]float64
	table   *table
	now     func() time.Time
	epoch   time.Time
	logger  *slog.Logger
	writers sync.Pool
	clock   func() int64 // ns since epoch

	dropped, slipped atomic.Uint64
	nextLog          atomic.Int64 // ns since epoch before which episodes are not logged
	unlogged         atomic.Uint64
}

// New checks cfg and returns a limiter. now is the clock (time.Now in
// production; tests move it by hand).
func New(cfg Config, now func() time.Time, logger *slog.Logger) (*Limiter, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if now == nil {
		return nil, errors.New("rrl: a clock is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Limiter{cfg: cfg, table: newTable(cfg.TableSize, cfg.Window, cfg.Slip), now: now, epoch: now(), logger: logger}
	r.rates = [numCategories]float64{
		catNormal:   float64(cfg.ResponsesPerSecond),
		catNegative: float64(cfg.NXDomainPerSecond),
		catError:    float64(cfg.ErrorsPerSecond),
		catLarge:    float64(cfg.LargePerSecond),
	}
	r.writers.New = func() any { return &writer{r: r} }
	r.clock = func() int64 { return int64(r.now().Sub(r.epoch)) }
	return r, nil
}

// Stats returns the counters so far.
func (r *Limiter) Stats() Stats {
	return Stats{
		Dropped: r.dropped.Load(), Slipped: r.slipped.Load(),
		Entries: r.table.len(), EvictedActive: r.table.evictedActive(),
	}
}

// Wrap returns a handler that rate-limits the UDP answers of next. Answers
// over TCP pass untouched.
func (r *Limiter) Wrap(next dns.Handler) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		ua, ok := w.RemoteAddr().(*net.UDPAddr)
		if !ok || (r.cfg.Verified != nil && r.cfg.Verified(q, ua.AddrPort().Addr().Unmap())) {
			next.ServeDNS(w, q)
			return
		}
		rw := r.writers.Get().(*writer)
		rw.ResponseWriter = w
		next.ServeDNS(rw, q)
		rw.ResponseWriter = nil
		r.writers.Put(rw)
	})
}

// writer decides, response by response, whether it goes out.
type writer struct {
	dns.ResponseWriter
	r *Limiter
}

// WriteMsg packs m and sends it through the limiter like Write.
func (w *writer) WriteMsg(m *dns.Msg) error {
	if m.IsTsig() != nil && w.TsigStatus() == nil {
		// A signed answer goes only to a query whose signature with one
		// of our keys verified (dnsserver/transfer.go), which a spoofer cannot make;
		// and only the server's WriteMsg computes the MAC.
		return w.ResponseWriter.WriteMsg(m)
	}
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// Write sends b, drops it (reporting success: the handler has nothing to
// do about it) or sends a bare truncated answer in its place.
func (w *writer) Write(b []byte) (int, error) {
	switch w.r.decide(w.ResponseWriter.RemoteAddr(), b) {
	case drop:
		return len(b), nil
	case slip:
		if _, err := w.ResponseWriter.Write(slipAnswer(b)); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// decide classifies the packed response b to remote and accounts for it.
func (r *Limiter) decide(remote net.Addr, b []byte) verdict {
	ua, ok := remote.(*net.UDPAddr)
	if !ok {
		return send
	}
	addr, ok := netip.AddrFromSlice(ua.IP)
	if !ok {
		return send
	}
	return r.decideAddr(addr, b)
}

// decideAddr is decide for a source address (fast.go uses it too).
func (r *Limiter) decideAddr(addr netip.Addr, b []byte) verdict {
	cat := classify(b, r.cfg.LargeSize)
	rate := r.rates[cat]
	if rate == 0 {
		return send
	}
	if len(r.cfg.Exempt) > 0 && r.exempt(addr.Unmap()) {
		return send
	}
	k := prefixKey(addr, r.cfg.IPv4Prefix, r.cfg.IPv6Prefix, cat)
	v, started := r.table.account(k, rate, r.clock)
	switch v {
	case drop:
		r.dropped.Add(1)
	case slip:
		r.slipped.Add(1)
	}
	if started {
		r.logEpisode(k, addr, cat, r.clock())
	}
	return v
}

func (r *Limiter) exempt(addr netip.Addr) bool {
	for _, p := range r.cfg.Exempt {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// logEpisode logs a source that has just become limited, at most one line
// a second (a spoofed flood from many prefixes must not flood the log);
// the line says how many other episodes went unlogged.
func (r *Limiter) logEpisode(k bucketKey, addr netip.Addr, cat category, now int64) {
	next := r.nextLog.Load()
	if now < next || !r.nextLog.CompareAndSwap(next, now+int64(time.Second)) {
		r.unlogged.Add(1)
		return
	}
	bits := r.cfg.IPv6Prefix
	if k.v4 {
		bits = r.cfg.IPv4Prefix
	}
	p, _ := addr.Unmap().Prefix(bits)
	r.logger.Info("dns rate limit: limiting udp answers", "remote", p.String(), "kind", cat.String(),
		"per_second", r.rates[cat], "slip", r.cfg.Slip, "other_sources_since_last_line", r.unlogged.Swap(0))
}

// classify sorts a packed response into a bucket category from its header
// and size.
func classify(b []byte, largeSize int) category {
	if len(b) < 12 {
		return catError
	}
	rcode := b[3] & 0x0F
	switch {
	case rcode == dns.RcodeNameError:
		return catNegative
	case rcode != dns.RcodeSuccess:
		return catError
	case b[2]&0x02 != 0 || len(b) > largeSize: // TC, or large
		return catLarge
	case binary.BigEndian.Uint16(b[6:8]) == 0 && b[2]&0x04 != 0: // AA, no answer: NODATA
		return catNegative
	}
	return catNormal
}

// slipAnswer is the tiny stand-in for the response b: the same ID, flags
// and rcode with TC set, the question, and nothing else (no OPT either), so
// it is never larger than the query that caused it.
func slipAnswer(b []byte) []byte {
	if len(b) < 12 {
		return nil
	}
	return slipInPlace(append([]byte(nil), b...)) // fast.go
}

// questionEnd returns the offset just past the one question that starts at
// 12 in b, or 12 if it is not a well-formed uncompressed question.
func questionEnd(b []byte) int {
	off, n := 12, 0
	for {
		if off >= len(b) {
			return 12
		}
		l := int(b[off])
		if l == 0 {
			off++
			break
		}
		if l&0xC0 != 0 {
			return 12 // compressed or extended label: not in a first question
		}
		off += l + 1
		n += l + 1
		if n > 255 {
			return 12
		}
	}
	if off+4 > len(b) {
		return 12
	}
	return off + 4
}
