package dnsserver

import (
	"bytes"
	"encoding/binary"
	"unsafe"

	"github.com/miekg/dns"
)

// The commonest answers the cache does not hold yet are a CA's first look
// at a challenge name (the TXT values of a registered subdomain) and, in a
// flood of random names, NXDOMAIN. Built by the handler, each costs one to
// two dozen allocations (the unpacked query, the reply's records,
// miekg/dns's compression map); at tens of thousands of new names a second
// that garbage makes the collector run every two seconds, and on one core
// each collection, and the sweeping after it, holds the answers back for
// several milliseconds. So the fast path writes these two answers itself,
// into the send buffer, without allocating: build below, with the values
// copied out of the index by a ValueAppender.
//
// It writes exactly the bytes the handler writes for the same query: the
// header bits SetReply copies and AA; the question as asked; for values,
// one TXT record per value owned by a pointer to the question, each value
// split into character-strings of 255 bytes; for NXDOMAIN, the zone's SOA
// in the authority section; the OPT the handler adds; names compressed as
// miekg/dns compresses them (compressor). It declines, leaving the answer
// to the handler, whenever the handler would do anything else: a name that
// is not one plain label directly below the zone, a delegated name, a
// static name or an empty non-terminal, a subdomain registered without
// values, a value with a backslash (miekg/dns reads escapes in TXT
// strings), EDNS other than version 0, a DO bit with DNSSEC on, an answer
// that would not fit the client's size untruncated.
// TestBuildMatchesHandler, TestFastPathByteIdentical and FuzzFastPath
// compare the two.

// ValueAppender is a VersionedSource that also copies a subdomain's TXT
// values into the caller's buffers (internal/records.Index implements
// it): with it the fast path builds the answers of the commonest misses
// without allocating (fastbuild.go).
type ValueAppender interface {
	// AppendTXT is TXTStamped with the values appended end to end to buf
	// and where each ends in buf appended to ends. sub is only read
	// during the call.
	AppendTXT(buf []byte, ends []int, sub string) ([]byte, []int, bool, Stamp)
}

// wireNames are the names build writes, in wire form, lower case; nil
// when one of them is not made of plain labels (build then declines all).
type wireNames struct {
	origin, mname, rname []byte
}

func newWireNames(h *Handler) wireNames {
	w := wireNames{plainWire(h.origin), plainWire(h.mname), plainWire(h.rname)}
	if w.origin == nil || w.mname == nil || w.rname == nil {
		return wireNames{}
	}
	return w
}

// plainWire is the wire form of name, a lower-case FQDN, when every label
// is made of letters, digits, '-' and '_' (no byte its text form would
// escape); else nil.
func plainWire(name string) []byte {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(name, buf, 0, nil, false)
	if err != nil {
		return nil
	}
	buf = buf[:n]
	for i := 0; i < len(buf) && buf[i] != 0; i += 1 + int(buf[i]) {
		for _, c := range buf[i+1 : i+1+int(buf[i])] {
			if !plainByte(c) {
				return nil
			}
		}
	}
	return buf
}

func plainByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// build writes into out the handler's answer to p, an ordinary query
// (ordinaryQuery) of type qtype, when it is one of the answers above,
// caches it as fill would, and returns its length and rcode; ok false:
// the handler must build this one.
func (f *FastPath) build(sc *fastScratch, p []byte, qtype uint16, tcp bool, now int64, h uint64, out []byte) (n, rcode int, ok bool) {
	if f.app == nil || f.wire.origin == nil || (qtype != dns.TypeTXT && qtype != dns.TypeA && qtype != dns.TypeAAAA) {
		return 0, 0, false
	}
	defer func() {
		if recover() != nil { // the source failed: the handler asks it again and answers SERVFAIL, as it does
			n, rcode, ok = 0, 0, false
		}
	}()
	// The question: one label of characters that need no escaping in the
	// name's text form, then the zone in any case.
	origin := f.wire.origin
	l := int(p[12])
	if l == 0 || l > 63 || 13+l+len(origin)+4 > len(p) {
		return 0, 0, false
	}
	sc.name = sc.name[:0]
	for _, c := range p[13 : 13+l] {
		if !plainByte(c) {
			return 0, 0, false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		sc.name = append(sc.name, c)
	}
	zoneAt := 13 + l
	for i, c := range origin {
		if d := p[zoneAt+i]; d != c && !('A' <= d && d <= 'Z' && d+'a'-'A' == c) {
			return 0, 0, false
		}
	}
	qEnd := zoneAt + len(origin) + 4 // after the question's type and class
	sc.name = append(sc.name, '.')
	sc.name = append(sc.name, f.h.origin...)
	name := unsafe.String(&sc.name[0], len(sc.name))
	if _, cut := f.h.static.cutFor(name, f.h.origin); cut {
		return 0, 0, false // a referral
	}

	// EDNS, as the handler reads it: the size an answer must fit
	// untruncated over UDP, and the DO bit.
	hasOPT := p[11] == 1
	size, do := dns512, false
	if hasOPT {
		o := qEnd // root owner, type, class (size), TTL (ext. rcode, version, flags), no data
		if p[o+6] != 0 {
			return 0, 0, false // BADVERS
		}
		do = p[o+7]&0x80 != 0
		size = int(min(binary.BigEndian.Uint16(p[o+3:]), f.h.cfg.MaxUDPSize))
		if f.h.cfg.Cookies != nil {
			size = min(size, int(f.h.cfg.CookielessUDPSize)) // a query without a cookie
		}
		size = max(size, dns512) // as Msg.Truncate takes it
	}
	if do && f.h.cfg.Signer != nil {
		return 0, 0, false // signed: the handler's
	}

	label := sc.name[:l]
	vals, ends, registered, st := f.app.AppendTXT(sc.vals[:0], sc.ends[:0], unsafe.String(&label[0], len(label)))
	sc.vals, sc.ends = vals, ends
	sc.rec.reset()
	sc.rec.deps[0], sc.rec.n = st, 1 // what the handler reads first: the subdomain
	var w int
	switch {
	case registered && qtype == dns.TypeTXT && len(ends) > 0 && bytes.IndexByte(vals, '\\') < 0:
		rcode = dns.RcodeSuccess
		w, ok = f.writeTXT(p, qEnd, tcp, size, hasOPT, do, vals, ends, out)
	case !registered && f.h.static.nodes[name] == nil && !f.h.static.ents[name]:
		rcode = dns.RcodeNameError
		w, ok = f.writeNXDOMAIN(sc, p, qEnd, tcp, size, hasOPT, do, out)
	}
	if !ok {
		return 0, 0, false
	}
	if f.cache != nil && f.admit(h, rcode) {
		f.cache.put(h, sc.key, sc.rec.meta(sc.meta, rcode, now+int64(maxEntryAge)), out[:w])
	}
	return w, rcode, true
}

// writeTXT writes the answer holding the values (vals, split where ends
// says) to the question of p, which ends at qEnd.
func (f *FastPath) writeTXT(p []byte, qEnd int, tcp bool, size int, hasOPT, do bool, vals []byte, ends []int, out []byte) (int, bool) {
	// Lengths: uncompressed (what Truncate holds to the size) and as sent.
	qlen := qEnd - 12
	rdata := 0
	for i, end := range ends {
		rdata += txtRdataLen(end - start(ends, i))
	}
	full := 12 + qlen + len(ends)*(qlen-4+10) + rdata + optLen(hasOPT)
	sent := 12 + qlen + len(ends)*(2+10) + rdata + optLen(hasOPT)
	if (!tcp && full > size) || sent > len(out) || len(ends) > 0xffff {
		return 0, false
	}
	w := writeHeader(out, p, qEnd, dns.RcodeSuccess, len(ends), 0, hasOPT)
	for i, end := range ends {
		v := vals[start(ends, i):end]
		binary.BigEndian.PutUint16(out[w:], 0xc000|12) // the question's name
		w = writeRRHeader(out, w+2, dns.TypeTXT, f.h.cfg.TXTTTL, txtRdataLen(len(v)))
		for { // character-strings of at most 255 bytes, as splitTXT cuts them
			c := v[:min(len(v), 255)]
			out[w] = byte(len(c))
			w += 1 + copy(out[w+1:], c)
			if v = v[len(c):]; len(v) == 0 {
				break
			}
		}
	}
	return f.writeOPT(out, w, hasOPT, do), true
}

// writeNXDOMAIN writes the NXDOMAIN answer to the question of p: the
// zone's SOA (its serial read now, and noted in sc.rec) in the authority
// section.
func (f *FastPath) writeNXDOMAIN(sc *fastScratch, p []byte, qEnd int, tcp bool, size int, hasOPT, do bool, out []byte) (int, bool) {
	wn := &f.wire
	qlen := qEnd - 12
	soaData := len(wn.mname) + len(wn.rname) + 20
	full := 12 + qlen + len(wn.origin) + 10 + soaData + optLen(hasOPT)
	if (!tcp && full > size) || full > len(out) {
		return 0, false // (compressed, it is shorter than full)
	}
	serial := f.src.Serial()
	sc.rec.serial, sc.rec.hasSerial = serial, true
	w := writeHeader(out, p, qEnd, dns.RcodeNameError, 0, 1, hasOPT)
	var c compressor
	c.record(p[12:qEnd-4], 12) // the question's name, as asked
	w = c.put(out, w, wn.origin)
	at := w
	w = writeRRHeader(out, w, dns.TypeSOA, f.h.cfg.NegativeTTL, 0)
	w = c.put(out, w, wn.mname)
	w = c.put(out, w, wn.rname)
	for _, v := range [...]uint32{serial, soaRefresh, soaRetry, soaExpire, f.h.cfg.NegativeTTL} { // as Handler.soa
		binary.BigEndian.PutUint32(out[w:], v)
		w += 4
	}
	binary.BigEndian.PutUint16(out[at+8:], uint16(w-at-10))
	if c.overflow {
		return 0, false
	}
	return f.writeOPT(out, w, hasOPT, do), true
}

// writeHeader writes the header SetReply makes (the ID, RD and CD copied),
// with AA and rcode, and the question of p (which ends at qEnd); it
// returns where the answer section starts.
func writeHeader(out, p []byte, qEnd, rcode, an, ns int, hasOPT bool) int {
	out[0], out[1] = p[0], p[1]
	out[2] = 0x80 | 0x04 | p[2]&0x01
	out[3] = p[3]&0x10 | byte(rcode)
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint16(out[6:], uint16(an))
	binary.BigEndian.PutUint16(out[8:], uint16(ns))
	binary.BigEndian.PutUint16(out[10:], uint16(optLen(hasOPT)/11))
	return 12 + copy(out[12:], p[12:qEnd])
}

// writeRRHeader writes a record's type, class IN, TTL and RDATA length
// after its owner name, which ends at w.
func writeRRHeader(out []byte, w int, rrtype uint16, ttl uint32, rdlen int) int {
	binary.BigEndian.PutUint16(out[w:], rrtype)
	binary.BigEndian.PutUint16(out[w+2:], dns.ClassINET)
	binary.BigEndian.PutUint32(out[w+4:], ttl)
	binary.BigEndian.PutUint16(out[w+8:], uint16(rdlen))
	return w + 10
}

// writeOPT writes the handler's OPT (its own UDP size, the query's DO bit)
// at w if the query had one.
func (f *FastPath) writeOPT(out []byte, w int, hasOPT, do bool) int {
	if !hasOPT {
		return w
	}
	out[w] = 0
	binary.BigEndian.PutUint16(out[w+1:], dns.TypeOPT)
	binary.BigEndian.PutUint16(out[w+3:], f.h.cfg.MaxUDPSize)
	out[w+5], out[w+6], out[w+7], out[w+8] = 0, 0, 0, 0
	if do {
		out[w+7] = 0x80
	}
	out[w+9], out[w+10] = 0, 0
	return w + 11
}

func optLen(hasOPT bool) int {
	if hasOPT {
		return 11
	}
	return 0
}

// start is where value i begins, given where each ends.
func start(ends []int, i int) int {
	if i == 0 {
		return 0
	}
	return ends[i-1]
}

// txtRdataLen is the length of the RDATA of a TXT record holding a value
// of n bytes, split into character-strings of at most 255 (an empty value
// is one empty string).
func txtRdataLen(n int) int {
	return n + max(1, (n+254)/255)
}

// compressor compresses names as miekg/dns does with Msg.Compress: going
// down a name label by label, the first (longest) suffix already written
// becomes a pointer to where it was written; each suffix written in full
// before it is remembered at its offset (below 0x3fff). Suffixes match
// byte for byte, case included, as miekg/dns matches the text forms of
// plain names. It holds the few names of one answer, without allocating.
type compressor struct {
	n        int
	overflow bool // more suffixes than names holds: the answer cannot be trusted
	names    [16]struct {
		wire []byte // the suffix, uncompressed wire form
		off  int
	}
}

// record notes the suffixes of name (uncompressed wire form, with its
// final 0) written at off.
func (c *compressor) record(name []byte, off int) {
	for i := 0; name[i] != 0; i += 1 + int(name[i]) {
		c.add(name[i:], off+i)
	}
}

func (c *compressor) add(suffix []byte, off int) {
	switch {
	case off >= 0x3fff:
	case c.n == len(c.names):
		c.overflow = true
	default:
		c.names[c.n].wire, c.names[c.n].off = suffix, off
		c.n++
	}
}

// put writes name (uncompressed wire form) at out[w:], compressed, and
// returns where it ends.
func (c *compressor) put(out []byte, w int, name []byte) int {
	for i := 0; name[i] != 0; i += 1 + int(name[i]) {
		for _, e := range c.names[:c.n] {
			if bytes.Equal(e.wire, name[i:]) {
				binary.BigEndian.PutUint16(out[w:], 0xc000|uint16(e.off))
				return w + 2
			}
		}
		c.add(name[i:], w)
		w += copy(out[w:], name[i:i+1+int(name[i])])
	}
	out[w] = 0
	return w + 1
}
