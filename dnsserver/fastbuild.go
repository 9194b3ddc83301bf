package dnsserver

import (
	"bytes"
	"encoding/binary"
	"unsafe"

	"github.com/miekg/dns"
)

// The commonest answer the cache does not hold yet is a CA's first look at
// a challenge name: the TXT values of a registered subdomain. Built by the
// handler it costs two dozen allocations (the unpacked query, the reply's
// records, miekg/dns's compression map); at tens of thousands of new names
// a second that garbage makes the collector run every two seconds, and on
// one core each collection and the sweeping after it hold the answers back
// for several milliseconds. So the fast path writes this one answer itself,
// into the send buffer, without allocating: buildTXT below, with the
// values copied out of the index by a ValueAppender.
//
// It writes exactly the bytes the handler writes for the same query (the
// header bits SetReply copies, AA, the question as asked, one TXT record
// per value owned by a pointer to the question, the values split into
// character-strings of 255 bytes, the OPT the handler adds) and declines,
// leaving the answer to the handler, whenever the handler would do
// anything else: a name that is not one plain label directly below the
// zone, a delegated name, a subdomain not registered or without values, a
// value with a backslash (miekg/dns reads escapes in TXT strings), EDNS
// other than version 0, a DO bit with DNSSEC on, an answer that would not
// fit the client's size untruncated. TestBuildTXTMatchesHandler,
// TestFastPathByteIdentical and FuzzFastPath compare the two.

// ValueAppender is a VersionedSource that also copies a subdomain's TXT
// values into the caller's buffers (internal/records.Index implements
// it): with it the fast path builds the TXT answer of a registered
// subdomain without allocating (fastbuild.go).
type ValueAppender interface {
	// AppendTXT is TXTStamped with the values appended end to end to buf
	// and where each ends in buf appended to ends. sub is only read
	// during the call.
	AppendTXT(buf []byte, ends []int, sub string) ([]byte, []int, bool, Stamp)
}

// buildTXT writes into out the handler's answer to p, an ordinary query
// (ordinaryQuery) of type TXT, when it is the values of a registered
// subdomain (see above), caches it like fill, and returns its length; ok
// false: the handler must build this one.
func (f *FastPath) buildTXT(sc *fastScratch, p []byte, tcp bool, now int64, h uint64, out []byte) (n int, ok bool) {
	if f.app == nil || f.originWire == nil {
		return 0, false
	}
	defer func() {
		if recover() != nil { // the source failed: the handler asks it again and answers SERVFAIL, as it does
			n, ok = 0, false
		}
	}()
	// The question: one label of characters that need no escaping in the
	// name's text form, then the zone in any case.
	l := int(p[12])
	if l == 0 || l > 63 || 13+l+len(f.originWire)+4 > len(p) {
		return 0, false
	}
	sc.name = sc.name[:0]
	for _, c := range p[13 : 13+l] {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		default:
			return 0, false
		}
		sc.name = append(sc.name, c)
	}
	zoneAt := 13 + l
	for i, c := range f.originWire {
		if d := p[zoneAt+i]; d != c && !('A' <= d && d <= 'Z' && d+'a'-'A' == c) {
			return 0, false
		}
	}
	qEnd := zoneAt + len(f.originWire) + 4 // after the question's type and class
	sc.name = append(sc.name, '.')
	sc.name = append(sc.name, f.h.origin...)
	if _, cut := f.h.static.cutFor(unsafe.String(&sc.name[0], len(sc.name)), f.h.origin); cut {
		return 0, false // a referral
	}

	// EDNS, as the handler reads it: the size an answer must fit
	// untruncated over UDP, and the DO bit.
	hasOPT := p[11] == 1
	size, do := dns512, false
	if hasOPT {
		o := qEnd // root owner, type, class (size), TTL (ext. rcode, version, flags), no data
		if p[o+6] != 0 {
			return 0, false // BADVERS
		}
		do = p[o+7]&0x80 != 0
		size = int(min(binary.BigEndian.Uint16(p[o+3:]), f.h.cfg.MaxUDPSize))
		if f.h.cfg.Cookies != nil {
			size = min(size, int(f.h.cfg.CookielessUDPSize)) // a query without a cookie
		}
		size = max(size, dns512) // as Msg.Truncate takes it
	}
	if do && f.h.cfg.Signer != nil {
		return 0, false // signed: the handler's
	}

	label := sc.name[:l]
	vals, ends, registered, st := f.app.AppendTXT(sc.vals[:0], sc.ends[:0], unsafe.String(&label[0], len(label)))
	sc.vals, sc.ends = vals, ends
	if !registered || len(ends) == 0 || bytes.IndexByte(vals, '\\') >= 0 {
		return 0, false
	}

	// Lengths: uncompressed (what Truncate holds to the size) and as sent.
	qlen := qEnd - 12
	rdata := 0
	for i, end := range ends {
		rdata += txtRdataLen(end - start(ends, i))
	}
	optLen := 0
	if hasOPT {
		optLen = 11
	}
	full := 12 + qlen + len(ends)*(qlen-4+10) + rdata + optLen
	sent := 12 + qlen + len(ends)*(2+10) + rdata + optLen
	if (!tcp && full > size) || sent > len(out) || len(ends) > 0xffff {
		return 0, false
	}

	// The header SetReply makes, with AA: the ID, RD and CD copied.
	out[0], out[1] = p[0], p[1]
	out[2] = 0x80 | 0x04 | p[2]&0x01
	out[3] = p[3] & 0x10
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint16(out[6:], uint16(len(ends)))
	binary.BigEndian.PutUint16(out[8:], 0)
	binary.BigEndian.PutUint16(out[10:], uint16(optLen/11))
	w := 12 + copy(out[12:], p[12:qEnd])
	for i, end := range ends {
		v := vals[start(ends, i):end]
		binary.BigEndian.PutUint16(out[w:], 0xc000|12) // the question's name
		binary.BigEndian.PutUint16(out[w+2:], dns.TypeTXT)
		binary.BigEndian.PutUint16(out[w+4:], dns.ClassINET)
		binary.BigEndian.PutUint32(out[w+6:], f.h.cfg.TXTTTL)
		binary.BigEndian.PutUint16(out[w+10:], uint16(txtRdataLen(len(v))))
		w += 12
		for { // character-strings of at most 255 bytes, as splitTXT cuts them
			c := v[:min(len(v), 255)]
			out[w] = byte(len(c))
			w += 1 + copy(out[w+1:], c)
			if v = v[len(c):]; len(v) == 0 {
				break
			}
		}
	}
	if hasOPT { // the handler's OPT: its own UDP size, the query's DO bit
		out[w] = 0
		binary.BigEndian.PutUint16(out[w+1:], dns.TypeOPT)
		binary.BigEndian.PutUint16(out[w+3:], f.h.cfg.MaxUDPSize)
		out[w+5], out[w+6], out[w+7], out[w+8] = 0, 0, 0, 0
		if do {
			out[w+7] = 0x80
		}
		out[w+9], out[w+10] = 0, 0
		w += 11
	}

	if f.cache != nil {
		sc.rec.reset()
		sc.rec.deps[0], sc.rec.n = st, 1 // what the handler would have read: these values
		f.cache.put(h, sc.key, sc.rec.meta(sc.meta, dns.RcodeSuccess, now+int64(maxEntryAge)), out[:w])
	}
	return w, true
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
