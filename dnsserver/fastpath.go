package dnsserver

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// The fast path answers ordinary queries without miekg/dns's per-packet
// server loop: it reads the header and question from the wire, looks the
// query up in a cache of packed answers and sends the cached bytes with
// the query's ID. A miss runs the full handler (ServeDNS, exactly as the
// server does) and keeps what it wrote, so an answer from the cache is the
// full handler's own output for the same query bytes: byte-identical by
// construction, whatever the handler does now or later.
//
// The key is the whole query but its ID (flags, the name as sent, case
// included, type, class and the OPT record), plus the transport, so
// nothing that can change the handler's output is left out of it. Queries
// that do not look ordinary go to the full server untouched: several
// questions or records, opcodes other than QUERY, classes other than IN,
// zone transfers, an OPT with options (cookies, padding, client subnet...),
// TSIG, trailing bytes, compression in the question.
//
// The cache knows what each answer was built from: the handler fills it
// through a record source that notes every name it read (with its version
// in the index) and whether it read the serial. A cached answer is served
// only while all of those are unchanged, before the earliest time at which
// one of the values in it ages out of the window, and for at most
// maxEntryAge.

// Stamp says which version of a subdomain's data a TXT lookup returned.
type Stamp struct {
	// Ref names the version counter of the subdomain (for Version).
	Ref uint32
	// Version is the counter's value when the data was read.
	Version uint32
	// Until is when (Unix nanoseconds) the values served change by age
	// alone, a value leaving the window; 0 if never.
	Until int64
}

// VersionedSource is a RecordSource that says when what it serves changes,
// so that answers built from it can be cached. internal/records.Index
// implements it.
type VersionedSource interface {
	RecordSource
	// TXTStamped is TXT, plus the stamp of the data it returned, read at
	// the same instant.
	TXTStamped(dst []string, subdomain string) ([]string, bool, Stamp)
	// Version returns the current value of the counter ref. It moves
	// whenever what TXT returns may change other than by age, and is
	// cheap and safe to call from any goroutine.
	Version(ref uint32) uint32
}

// Limiter rate-limits UDP answers (response rate limiting; RRL
// implements it).
type Limiter interface {
	// Limit decides the fate of resp, the answer to a UDP query from src:
	// it returns resp to send it, nil to drop it, or a short truncated
	// stand-in it has written over the start of resp.
	Limit(src netip.Addr, resp []byte) []byte
}

// QueryObserver counts the queries the fast path answers
// (internal/metrics implements it).
type QueryObserver interface {
	// Answered counts one query of type qtype answered with rcode
	// (extended rcodes included); rcode < 0: no answer was sent.
	Answered(qtype uint16, rcode int)
	// Took records how long one query took, from its arrival to its
	// answer being sent; called for about one query in 16.
	Took(d time.Duration)
}

// FastConfig configures the fast path.
type FastConfig struct {
	// CacheBytes bounds the memory of the answer cache; 0: no cache (every
	// answer is built by the handler, still without a goroutine per query).
	CacheBytes int
	// UDPSockets is the number of UDP sockets per listen address, each
	// served by one goroutine (SO_REUSEPORT spreads the queries); 0: one
	// per core the process may use (GOMAXPROCS).
	UDPSockets int
	// Limiter, if not nil, rate-limits the UDP answers of the fast path.
	// Give it the same limiter that wraps the handler given to Serve, so
	// that both paths share its buckets.
	Limiter Limiter
	// Observer, if not nil, counts the answers of the fast path. The
	// server's handler chain counts the others.
	Observer QueryObserver
	// Now is the clock; nil: time.Now. It must be the index's clock.
	Now func() time.Time
	// Logger; nil: discard.
	Logger *slog.Logger
}

// FastPath answers ordinary queries from a cache of the handler's own
// answers (see the comment at the top of fastpath.go). Enable it on a
// Server with EnableFastPath.
type FastPath struct {
	h       *Handler
	src     VersionedSource  // nil: the handler's source cannot say when its data changes; nothing is cached
	app     ValueAppender    // the source, if it can copy values out (fastbuild.go); else nil
	wire    wireNames        // the names build writes
	signer  GenerationSigner // the handler's signer, if it is one (signed answers are cached)
	cache   *answerCache     // nil: no cache
	lim     Limiter
	obs     QueryObserver
	now     func() time.Time
	logger  *slog.Logger
	sockets int
	scratch sync.Pool // *fastScratch, for TCP connections
	// seen holds the key hashes of NXDOMAIN answers built once: such an
	// answer is cached the second time its question is asked, so that a
	// flood of random names (each asked once) does not push the answers
	// in use out of the cache.
	seen []atomic.Uint64

	// What the fast path did with the queries it read, summed per batch.
	hits, fills, handed atomic.Uint64
}

// FastStats counts what the fast path did with the queries it read.
type FastStats struct {
	Hits   uint64 // answered from the cache
	Fills  uint64 // answered by the handler inline (a miss, or not cacheable)
	Handed uint64 // handed to the full server (not ordinary queries)
}

// Stats returns the counts so far.
func (f *FastPath) Stats() FastStats {
	return FastStats{Hits: f.hits.Load(), Fills: f.fills.Load(), Handed: f.handed.Load()}
}

// FastCounts returns Stats as plain numbers (for internal/metrics).
func (f *FastPath) FastCounts() (hits, fills, handed uint64) {
	s := f.Stats()
	return s.Hits, s.Fills, s.Handed
}

func (f *FastPath) observe(qtype uint16, rcode int) {
	if f.obs != nil {
		f.obs.Answered(qtype, rcode)
	}
}

// outcomes counts the outcomes of one goroutine's batch of queries; flush
// adds them to the totals.
type outcomes [3]uint64

func (t *outcomes) count(o outcome) { t[o]++ }

func (f *FastPath) flush(t *outcomes) {
	if t[hit] > 0 {
		f.hits.Add(t[hit])
	}
	if t[filled] > 0 {
		f.fills.Add(t[filled])
	}
	if t[toFull] > 0 {
		f.handed.Add(t[toFull])
	}
	*t = outcomes{}
}

// maxEntryAge bounds how long an answer stays cached whatever else: a
// guard against time-dependence the cache does not know of.
const maxEntryAge = time.Minute

// maxDeps is the most subdomains one cached answer may be built from (a
// CNAME chain through registered names reads several); an answer that
// read more is not cached.
const maxDeps = 8

// NewFastPath returns a fast path answering as h does.
func (h *Handler) NewFastPath(cfg FastConfig) (*FastPath, error) {
	if cfg.CacheBytes < 0 || cfg.UDPSockets < 0 {
		return nil, errors.New("fast path: cache size and socket count must be 0 or more")
	}
	f := &FastPath{h: h, lim: cfg.Limiter, obs: cfg.Observer, now: cfg.Now, logger: cfg.Logger, sockets: cfg.UDPSockets}
	if f.now == nil {
		f.now = time.Now
	}
	if f.logger == nil {
		f.logger = slog.New(slog.DiscardHandler)
	}
	f.signer, _ = h.cfg.Signer.(GenerationSigner)
	if vs, ok := h.src.(VersionedSource); ok {
		f.src = vs
		f.app, _ = vs.(ValueAppender)
		f.wire = newWireNames(h)
		if cfg.CacheBytes > 0 {
			f.cache = newAnswerCache(cfg.CacheBytes)
			f.seen = make([]atomic.Uint64, 1<<16)
		}
	}
	f.scratch.New = func() any { return f.newScratch() }
	return f, nil
}

// withRecorder returns a handler that answers exactly as h does but reads
// its data through rec, and signs through it (with DNSSEC on): the fast
// path fills its cache through one, to see what each answer was built
// from. Every field but src, bufs and the signer is copied
// (TestWithRecorderCopiesEveryField fails when one is added and not here).
func (h *Handler) withRecorder(rec *recordingSource) *Handler {
	c := &Handler{cfg: h.cfg, origin: h.origin, mname: h.mname, rname: h.rname, static: h.static,
		apexNS: h.apexNS, src: rec, logger: h.logger, xfr: h.xfr}
	if h.cfg.Signer != nil {
		c.cfg.Signer = recordingSigner{h.cfg.Signer, rec}
	}
	c.bufs.New = h.bufs.New
	return c
}

// fastScratch is what one goroutine of the fast path works with.
type fastScratch struct {
	h    *Handler // h.withRecorder(&rec)
	rec  recordingSource
	w    captureWriter
	key  []byte
	meta []byte
	// For build: the question's name in lower case, the values.
	name []byte
	vals []byte
	ends []int
	// sampled counts answers, to time one in 16.
	sampled uint32
}

func (f *FastPath) newScratch() *fastScratch {
	sc := &fastScratch{key: make([]byte, 0, 512), meta: make([]byte, metaMax),
		name: make([]byte, 0, 256), vals: make([]byte, 0, 4096), ends: make([]int, 0, 64)}
	sc.rec.src = f.src
	if f.src != nil {
		sc.h = f.h.withRecorder(&sc.rec)
	} else {
		sc.h = f.h
	}
	return sc
}

// outcome is what the fast path did with a query.
type outcome uint8

const (
	toFull outcome = iota // not for the fast path: hand it to the full server
	hit                   // out holds the answer, from the cache
	filled                // out holds the answer the handler wrote (n == 0: none)
)

// answer writes the answer to the query p from remote into out (tcp: it
// goes back over a stream) and returns its length, the query type and the
// answer's rcode. now is the time the query arrived (Unix ns).
func (f *FastPath) answer(sc *fastScratch, p []byte, remote netip.AddrPort, tcp bool, now int64, out []byte) (n int, qtype uint16, rcode int, o outcome) {
	qtype, ok := ordinaryQuery(p)
	if !ok {
		return 0, 0, 0, toFull
	}
	sc.key = append(append(sc.key[:0], p[2:]...), transportByte(tcp))
	var h uint64
	if f.cache != nil {
		h = f.cache.hash(sc.key)
		if nm, na, ok := f.cache.get(h, sc.key, sc.meta, out); ok {
			if rc, ok := f.valid(sc.meta[:nm], now); ok {
				out[0], out[1] = p[0], p[1] // the ID: the only bytes the key leaves out
				return na, qtype, rc, hit
			}
		}
	}
	if n, rcode, ok := f.build(sc, p, qtype, tcp, now, h, out); ok {
		return n, qtype, rcode, filled
	}
	n, rcode, o = f.fill(sc, p, remote, tcp, now, h, out)
	return n, qtype, rcode, o
}

func transportByte(tcp bool) byte {
	if tcp {
		return 1
	}
	return 0
}

// fill runs the full handler on p, caches what it wrote if it can be
// cached (h: the key's hash) and copies it into out.
func (f *FastPath) fill(sc *fastScratch, p []byte, remote netip.AddrPort, tcp bool, now int64, h uint64, out []byte) (int, int, outcome) {
	req := new(dns.Msg)
	if err := req.Unpack(p); err != nil {
		return 0, 0, toFull // the full server answers FORMERR its own way
	}
	sc.rec.reset()
	sc.w.reset(remote, tcp)
	sc.h.ServeDNS(&sc.w, req)
	switch {
	case sc.w.writes == 0:
		return 0, -1, filled
	case sc.w.writes > 1 || len(sc.w.buf) > len(out) || len(sc.w.buf) < 12:
		// Not one answer that fits: the full server sends what the
		// handler writes, as it is.
		return 0, 0, toFull
	}
	resp := sc.w.buf
	rcode := packedRcode(resp)
	if f.cache != nil && sc.rec.cacheable() && rcode != dns.RcodeServerFailure && f.admit(h, rcode) {
		meta := sc.rec.meta(sc.meta, rcode, now+int64(maxEntryAge))
		f.cache.put(h, sc.key, meta, resp)
	}
	return copy(out, resp), rcode, filled
}

// admit reports whether an answer with rcode, for the key with hash h,
// goes into the cache: NXDOMAIN answers only when asked a second time.
func (f *FastPath) admit(h uint64, rcode int) bool {
	if rcode != dns.RcodeNameError {
		return true
	}
	slot := &f.seen[h&uint64(len(f.seen)-1)]
	if slot.Load() == h {
		return true
	}
	slot.Store(h)
	return false
}

// ordinaryQuery reports whether p is a query the fast path takes, and its
// type: a QUERY with one question of class IN that is no zone transfer,
// no other records than one OPT without options, and no byte after them.
func ordinaryQuery(p []byte) (qtype uint16, ok bool) {
	if len(p) < 12+1+4 || p[2]&0xf8 != 0 { // QR clear, opcode QUERY
		return 0, false
	}
	if binary.BigEndian.Uint16(p[4:]) != 1 || binary.BigEndian.Uint16(p[6:]) != 0 || binary.BigEndian.Uint16(p[8:]) != 0 {
		return 0, false
	}
	ar := binary.BigEndian.Uint16(p[10:])
	if ar > 1 {
		return 0, false
	}
	off := 12
	for {
		if off >= len(p) {
			return 0, false
		}
		l := int(p[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 { // a pointer or an obsolete label type
			return 0, false
		}
		off += 1 + l
		if off-12 > 254 { // the name with its final 0 is at most 255 bytes
			return 0, false
		}
	}
	if off+4 > len(p) {
		return 0, false
	}
	qtype = binary.BigEndian.Uint16(p[off:])
	if binary.BigEndian.Uint16(p[off+2:]) != dns.ClassINET || qtype == dns.TypeAXFR || qtype == dns.TypeIXFR {
		return 0, false
	}
	off += 4
	if ar == 1 {
		// OPT: root owner, type 41, class (UDP size) and TTL (extended
		// rcode, version, flags) any, no options.
		if off+11 != len(p) || p[off] != 0 || binary.BigEndian.Uint16(p[off+1:]) != dns.TypeOPT || binary.BigEndian.Uint16(p[off+9:]) != 0 {
			return 0, false
		}
		return qtype, true
	}
	return qtype, off == len(p)
}

// packedRcode is the rcode of a packed answer: the header's 4 bits, plus
// the upper 8 bits from the TTL of its OPT record when it has one
// (BADVERS, BADCOOKIE). A record it cannot walk ends the search.
func packedRcode(b []byte) int {
	rcode := int(b[3] & 0x0f)
	ar := int(binary.BigEndian.Uint16(b[10:]))
	if ar == 0 {
		return rcode
	}
	off := 12
	for range binary.BigEndian.Uint16(b[4:]) { // questions
		if off = skipName(b, off) + 4; off < 4 || off > len(b) {
			return rcode
		}
	}
	an := int(binary.BigEndian.Uint16(b[6:])) + int(binary.BigEndian.Uint16(b[8:]))
	for i := range an + ar {
		if off = skipName(b, off); off < 0 || off+10 > len(b) {
			return rcode
		}
		if i >= an && binary.BigEndian.Uint16(b[off:]) == dns.TypeOPT {
			return int(b[off+4])<<4 | rcode
		}
		off += 10 + int(binary.BigEndian.Uint16(b[off+8:]))
	}
	return rcode
}

// skipName returns the offset just past the name at off in b, or -1.
func skipName(b []byte, off int) int {
	for range 128 {
		if off >= len(b) {
			return -1
		}
		switch c := int(b[off]); {
		case c == 0:
			return off + 1
		case c&0xc0 == 0xc0:
			return off + 2 // a pointer ends the name
		case c&0xc0 != 0:
			return -1
		default:
			off += 1 + c
		}
	}
	return -1
}

// Meta data of a cache entry: when it expires (Unix ns), its rcode, the
// serial it holds (if it read one), the signer's generation (if it was
// signed), and the version of each subdomain it was built from.
const (
	metaFixed   = 8 + 2 + 1 + 4 + 1 + 8
	metaPerDep  = 8
	metaMax     = metaFixed + maxDeps*metaPerDep
	metaHasSOA  = 1
	metaHasGen  = 2
	metaRcodeAt = 8
	metaGenAt   = 16
)

// valid reports whether the entry with meta data m may be served at now,
// and its rcode.
func (f *FastPath) valid(m []byte, now int64) (int, bool) {
	if len(m) < metaFixed || now >= int64(binary.LittleEndian.Uint64(m)) {
		return 0, false
	}
	rcode := int(binary.LittleEndian.Uint16(m[metaRcodeAt:]))
	if m[10]&metaHasSOA != 0 && f.src.Serial() != binary.LittleEndian.Uint32(m[11:]) {
		return 0, false
	}
	if m[10]&metaHasGen != 0 && (f.signer == nil || f.signer.Generation() != binary.LittleEndian.Uint64(m[metaGenAt:])) {
		return 0, false
	}
	deps := int(m[15])
	if len(m) != metaFixed+deps*metaPerDep {
		return 0, false
	}
	for d := m[metaFixed:]; len(d) > 0; d = d[metaPerDep:] {
		if f.src.Version(binary.LittleEndian.Uint32(d)) != binary.LittleEndian.Uint32(d[4:]) {
			return 0, false
		}
	}
	return rcode, true
}

// recordingSource passes the handler's reads to the real source and notes
// what they returned.
type recordingSource struct {
	src       VersionedSource
	deps      [maxDeps]Stamp
	n         int
	tooMany   bool
	serial    uint32
	hasSerial bool
	// gen is the generation of the DNSSEC signer's keys the answer was
	// signed with (recordingSigner); unversioned: it went through a signer
	// that cannot say when its output changes.
	hasGen, unversioned bool
	gen                 uint64
}

func (r *recordingSource) reset() {
	r.n, r.tooMany, r.hasSerial, r.hasGen, r.unversioned = 0, false, false, false, false
}

func (r *recordingSource) TXT(dst []string, sub string) ([]string, bool) {
	dst, ok, st := r.src.TXTStamped(dst, sub)
	if r.n == len(r.deps) {
		r.tooMany = true
	} else {
		r.deps[r.n] = st
		r.n++
	}
	return dst, ok
}

func (r *recordingSource) Serial() uint32 {
	s := r.src.Serial()
	if r.hasSerial && s != r.serial {
		r.tooMany = true // two serials in one answer: a change raced with it
	}
	r.serial, r.hasSerial = s, true
	return s
}

func (r *recordingSource) cacheable() bool { return !r.tooMany && !r.unversioned }

// recordingSigner notes that an answer was signed (or holds the zone's
// keys) and with which generation of the signer's keys. A signed answer is
// cached like any other when the signer is a GenerationSigner, and served
// only while its generation is unchanged (a key rollover, keys loaded from
// another node); the signatures' own renewal at half their validity needs
// no invalidation, the older ones staying valid for days. A signer that
// cannot say when its output changes (a test hook that breaks signatures,
// say) gets its answers built anew each time.
type recordingSigner struct {
	s   Signer
	rec *recordingSource
}

func (r recordingSigner) Sign(dst, rrset []dns.RR) ([]dns.RR, error) {
	r.note() // before signing: a move during it invalidates the entry
	return r.s.Sign(dst, rrset)
}

func (r recordingSigner) Keys() (dnskey, cds, cdnskey []dns.RR) {
	r.note()
	return r.s.Keys()
}

func (r recordingSigner) note() {
	rec := r.rec
	gs, ok := r.s.(GenerationSigner)
	if !ok {
		rec.unversioned = true
		return
	}
	g := gs.Generation()
	if rec.hasGen && g != rec.gen {
		rec.tooMany = true // the keys changed while the answer was built
	}
	rec.gen, rec.hasGen = g, true
}

// meta encodes the entry's meta data into buf: it expires at the earliest
// of maxAge and the moments a value in it ages out.
func (r *recordingSource) meta(buf []byte, rcode int, maxAge int64) []byte {
	until := maxAge
	for _, d := range r.deps[:r.n] {
		if d.Until != 0 && d.Until < until {
			until = d.Until
		}
	}
	buf = buf[:metaFixed+r.n*metaPerDep]
	binary.LittleEndian.PutUint64(buf, uint64(until))
	binary.LittleEndian.PutUint16(buf[metaRcodeAt:], uint16(rcode))
	buf[10] = 0
	if r.hasSerial {
		buf[10] |= metaHasSOA
	}
	if r.hasGen {
		buf[10] |= metaHasGen
	}
	binary.LittleEndian.PutUint32(buf[11:], r.serial)
	binary.LittleEndian.PutUint64(buf[metaGenAt:], r.gen)
	buf[15] = byte(r.n)
	for i, d := range r.deps[:r.n] {
		binary.LittleEndian.PutUint32(buf[metaFixed+i*metaPerDep:], d.Ref)
		binary.LittleEndian.PutUint32(buf[metaFixed+i*metaPerDep+4:], d.Version)
	}
	return buf
}

// captureWriter is the dns.ResponseWriter the handler writes to when it
// fills the cache: it keeps the first answer written.
type captureWriter struct {
	remote net.Addr
	buf    []byte
	writes int
}

func (w *captureWriter) reset(remote netip.AddrPort, tcp bool) {
	w.writes = 0
	w.buf = w.buf[:0]
	if tcp {
		w.remote = net.TCPAddrFromAddrPort(remote)
	} else {
		w.remote = net.UDPAddrFromAddrPort(remote)
	}
}

func (w *captureWriter) Write(b []byte) (int, error) {
	w.writes++
	if w.writes == 1 {
		w.buf = append(w.buf[:0], b...)
	}
	return len(b), nil
}

// WriteMsg packs m as the server's writer does for an unsigned answer.
func (w *captureWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (w *captureWriter) LocalAddr() net.Addr  { return nil }
func (w *captureWriter) RemoteAddr() net.Addr { return w.remote }
func (w *captureWriter) Close() error         { return nil }
func (w *captureWriter) TsigStatus() error    { return nil }
func (w *captureWriter) TsigTimersOnly(bool)  {}
func (w *captureWriter) Hijack()              {}
