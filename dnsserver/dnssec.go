package dnsserver

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Signer signs the zone's RRsets (DNSSEC online signing);
// internal/dnssec implements it. With one, every authoritative answer to a
// query with the DO bit carries RRSIGs, and negative answers prove
// themselves with compact denial of existence (RFC 9824): one NSEC at the
// name asked for, covering nothing but that name, listing the types it
// has (NXNAME if it has none). Queries without DO get exactly the answers
// of an unsigned zone, but for the DNSKEY, CDS and CDNSKEY RRsets, which
// are the zone's own.
type Signer interface {
	// Sign appends to dst the RRSIGs over rrset: records of one owner,
	// class and type with one TTL, in the zone.
	Sign(dst, rrset []dns.RR) ([]dns.RR, error)
	// Keys returns the apex's DNSKEY, CDS and CDNSKEY RRsets, owned by
	// the zone name; any may be empty. Callers do not change them.
	Keys() (dnskey, cds, cdnskey []dns.RR)
}

// GenerationSigner is a Signer that says when its output may change, so
// that the fast path can cache the answers it signed (internal/dnssec
// implements it). An answer signed by a signer without it is built anew
// every time.
type GenerationSigner interface {
	Signer
	// Generation moves whenever the keys change: what Keys returns, or
	// which keys sign. Between two moves, a signature Sign returned for
	// an RRset stays valid to serve for that RRset (it may make a fresh
	// one at half its validity; the older one is still valid then, for
	// far longer than the fast path keeps an answer).
	Generation() uint64
}

// Why compact denial rather than NSEC3 white lies: a compact answer
// needs one NSEC and one signature (beside the SOA's, cached), where a
// white-lie NXDOMAIN needs up to three NSEC3 records, each signed, and a
// SHA-1 hash per name; the answers are smaller (less to amplify, fewer
// truncations); nothing in the zone can be enumerated either way. The
// price is that a signed NXDOMAIN travels as NOERROR/NODATA (the NSEC's
// NXNAME bit says the name does not exist), unless the resolver sets the
// Compact Answers OK flag, when the rcode stays NXDOMAIN (RFC 9824 4).

// checkSignedRecords refuses static records the signer makes itself.
func checkSignedRecords(rrs []dns.RR) error {
	for _, rr := range rrs {
		switch t := rr.Header().Rrtype; t {
		case dns.TypeDNSKEY, dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeNSEC3PARAM, dns.TypeCDS, dns.TypeCDNSKEY:
			return fmt.Errorf("static record %s: with DNSSEC on, the server makes the %s records itself; remove it", rr.Header().Name, dns.TypeToString[t])
		}
	}
	return nil
}

// apexKeys returns the DNSKEY, CDS or CDNSKEY RRset (nil without a signer
// or for another type).
func (h *Handler) apexKeys(qtype uint16) []dns.RR {
	if h.cfg.Signer == nil {
		return nil
	}
	dnskey, cds, cdnskey := h.cfg.Signer.Keys()
	switch qtype {
	case dns.TypeDNSKEY:
		return dnskey
	case dns.TypeCDS:
		return cds
	case dns.TypeCDNSKEY:
		return cdnskey
	}
	return nil
}

// staticDS is the DS RRset of the child zone at the delegation point cut,
// if the static records have one.
func (h *Handler) staticDS(cut string) []dns.RR {
	if n := h.static.nodes[cut]; n != nil {
		return n.rrs[dns.TypeDS]
	}
	return nil
}

// errSign: a signature could not be made; the answer is SERVFAIL (an
// unsigned answer would be bogus to a validator anyway).
var errSign = errors.New("dnssec: signing failed")

// secure signs m, the answer to q built by lookup, for a query with the
// DO bit: RRSIGs after every authoritative RRset, the proof of denial for
// a negative answer, and the DS (or the proof that there is none) of a
// referral.
func (h *Handler) secure(m *dns.Msg, q dns.Question, qopt *dns.OPT) error {
	if m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
		return nil
	}
	var err error
	if !m.Authoritative {
		if len(m.Ns) == 0 {
			return nil
		}
		// A referral: the NS RRset and glue are the child's, unsigned;
		// the DS is ours, or the proof that the child is unsigned.
		cut := m.Ns[0].Header().Name
		if ds := h.staticDS(strings.ToLower(cut)); len(ds) > 0 {
			m.Ns = append(m.Ns, ds...)
			m.Ns, err = h.signSet(m.Ns, ds)
		} else {
			m.Ns, err = h.signedNSEC(m.Ns, cut, false)
		}
		return err
	}
	if m.Answer, err = h.signSection(m.Answer); err != nil {
		return err
	}
	if negative := len(m.Ns) > 0 && m.Ns[0].Header().Rrtype == dns.TypeSOA; negative {
		nx := m.Rcode == dns.RcodeNameError
		denied := deniedName(q.Name, m.Answer)
		if q.Qtype == dns.TypeNSEC && !nx {
			// The compact NSEC is the name's NSEC: answer with it.
			m.Ns = m.Ns[:0]
			if m.Answer, err = h.signedNSEC(m.Answer, denied, false); err != nil {
				return err
			}
		} else {
			if m.Ns, err = h.signSection(m.Ns); err != nil {
				return err
			}
			if m.Ns, err = h.signedNSEC(m.Ns, denied, nx); err != nil {
				return err
			}
		}
		if nx {
			if qopt.Co() {
				setCO(m) // the resolver takes NXDOMAIN with a compact proof
			} else {
				m.Rcode = dns.RcodeSuccess // RFC 9824 3.1
			}
		}
	} else if m.Ns, err = h.signSection(m.Ns); err != nil {
		return err
	}
	// Addresses of the zone's own name servers are its data: signed.
	m.Extra, err = h.signSection(m.Extra)
	return err
}

// setCO sets the Compact Answers OK flag on the answer's OPT.
func setCO(m *dns.Msg) {
	for _, rr := range m.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			o.SetCo(true)
		}
	}
}

// deniedName is the name a negative answer is about: the end of the CNAME
// chain in the answer (in-zone, or the chain would not have been
// followed), else the name asked for.
func deniedName(qname string, answer []dns.RR) string {
	name := qname
	for _, rr := range answer {
		if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, name) {
			name = c.Target
		}
	}
	return name
}

// signSection returns rrs with the RRSIGs of each RRset after it. RRsets
// are runs of records of one owner, class and type, as lookup builds
// them. OPT records are left as they are.
func (h *Handler) signSection(rrs []dns.RR) ([]dns.RR, error) {
	if len(rrs) == 0 {
		return rrs, nil
	}
	out := make([]dns.RR, 0, 2*len(rrs))
	for i := 0; i < len(rrs); {
		j := i + 1
		hi := rrs[i].Header()
		for j < len(rrs) && sameSet(hi, rrs[j].Header()) {
			j++
		}
		out = append(out, rrs[i:j]...)
		if hi.Rrtype != dns.TypeOPT && hi.Rrtype != dns.TypeRRSIG {
			var err error
			if out, err = h.cfg.Signer.Sign(out, rrs[i:j]); err != nil {
				h.logger.Error("dnssec sign", "err", err, "name", hi.Name)
				return nil, errSign
			}
		}
		i = j
	}
	return out, nil
}

func sameSet(a, b *dns.RR_Header) bool {
	return a.Rrtype == b.Rrtype && a.Class == b.Class && strings.EqualFold(a.Name, b.Name)
}

// signSet appends the RRSIGs of rrset to dst.
func (h *Handler) signSet(dst, rrset []dns.RR) ([]dns.RR, error) {
	out, err := h.cfg.Signer.Sign(dst, rrset)
	if err != nil {
		h.logger.Error("dnssec sign", "err", err, "name", rrset[0].Header().Name)
		return nil, errSign
	}
	return out, nil
}

// signedNSEC appends the compact NSEC of name (as the answer spells it)
// and its RRSIG to dst: it covers only name itself (next: \000.name) and
// lists the types name has; nx says name does not exist (NXNAME).
func (h *Handler) signedNSEC(dst []dns.RR, name string, nx bool) ([]dns.RR, error) {
	lower := strings.ToLower(name)
	var types []uint16
	if nx {
		types = []uint16{dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNXNAME}
	} else {
		types = append(h.typesAt(lower), dns.TypeRRSIG, dns.TypeNSEC)
		slices.Sort(types)
		types = slices.Compact(types)
	}
	nsec := &dns.NSEC{
		Hdr:        dns.RR_Header{Name: name, Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: h.cfg.NegativeTTL},
		NextDomain: nextName(lower),
		TypeBitMap: types,
	}
	dst = append(dst, nsec)
	return h.signSet(dst, dst[len(dst)-1:])
}

// nextName is the NSEC next name that covers nothing but name: \000.name,
// the first name after it in canonical order. For a name too long to take
// one more label, the first label with its last byte raised (trailing
// 0xff bytes dropped): every name between the two is longer than the
// longest name possible.
func nextName(name string) string {
	var buf [256]byte
	n, err := dns.PackDomainName(name, buf[:], 0, nil, false)
	if err != nil || n+2 <= 255 {
		return `\000.` + name
	}
	l := int(buf[0])
	for l > 0 && buf[l] == 0xff {
		l--
	}
	if l == 0 {
		return `\000.` + name // a label of 0xff bytes only: no answer fits (it fails to pack: SERVFAIL)
	}
	buf[l]++
	// The label shrank: move the rest of the name up behind it.
	copy(buf[l+1:], buf[1+int(buf[0]):n])
	n -= int(buf[0]) - l
	buf[0] = byte(l)
	next, _, err := dns.UnpackDomainName(buf[:n], 0)
	if err != nil {
		return `\000.` + name
	}
	return next
}

// typesAt lists the types name (lower case, in the zone, not below a
// delegation) has, for the NSEC of a NODATA answer.
func (h *Handler) typesAt(name string) []uint16 {
	var types []uint16
	if n := h.static.nodes[name]; n != nil {
		for t := range n.rrs {
			types = append(types, t)
		}
	}
	if name == h.origin {
		types = append(types, dns.TypeSOA, dns.TypeNS)
		for _, t := range []uint16{dns.TypeDNSKEY, dns.TypeCDS, dns.TypeCDNSKEY} {
			if len(h.apexKeys(t)) > 0 {
				types = append(types, t)
			}
		}
		return types
	}
	if sub, ok := h.challengeLabel(name); ok {
		var buf [4]string
		if vals, registered := h.src.TXT(buf[:0], sub); registered && len(vals) > 0 {
			types = append(types, dns.TypeTXT)
		}
	}
	return types
}

// MaxTTL is the longest TTL of the RRsets c makes the handler serve, but
// the apex key sets (DNSKEY, CDS, CDNSKEY): how long a signature made
// over any of them may live in a cache. A key rollover waits for it.
func MaxTTL(c Config) uint32 {
	soa := c.SOATTL
	if soa == 0 {
		soa = defaultSOATTL
	}
	m := max(soa, c.TXTTTL, c.NegativeTTL)
	for _, rr := range c.Records {
		m = max(m, rr.Header().Ttl)
	}
	return m
}
