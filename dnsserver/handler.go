// Package dnsserver is the broker's authoritative DNS server for its one
// delegated zone. It answers challenge TXT queries for registered subdomains
// from a RecordSource (memory, never the database), serves a generated SOA
// and static records from the configuration, and knows nothing of HTTP or
// SQL.
package dnsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/dnsserver/cookie"
)

// Config describes the zone.
type Config struct {
	// Zone is the zone's name, e.g. "auth.example.org".
	Zone string
	// NSName and NSAdmin fill the SOA's MNAME and RNAME.
	NSName, NSAdmin string
	// Records are static records (ParseRecords). Without an NS at the apex
	// the server answers NS with NSName.
	Records []dns.RR
	// TXTTTL is the TTL of challenge TXT answers.
	TXTTTL uint32
	// NegativeTTL is the SOA MINIMUM and the TTL of the SOA sent with
	// NXDOMAIN and NODATA: how long resolvers cache a negative answer.
	NegativeTTL uint32
	// SOATTL is the TTL of the SOA when asked for directly; default 3600.
	SOATTL uint32
	// MaxUDPSize caps UDP answers to EDNS clients; default 1232.
	MaxUDPSize uint16
	// OwnNames are names inside the zone at which the record source may
	// hold the broker's own TXT values (its dns-01 challenges, e.g.
	// _acme-challenge.api.<zone>). The names between them and the apex
	// exist (NODATA, not NXDOMAIN) whether or not a value is there.
	OwnNames []string
	// Cookies, if not nil, makes and checks DNS Cookies (RFC 7873, RFC
	// 9018): every EDNS answer to a query with a COOKIE option carries one
	// back, and a malformed option is FORMERR.
	Cookies *cookie.Jar
	// CookielessUDPSize caps UDP answers to queries without a valid server
	// cookie when Cookies is set (their source may be forged, so they get
	// less to amplify; the client retries over TCP or with its cookie).
	// Default 512; never above MaxUDPSize.
	CookielessUDPSize uint16
	// Signer, if not nil, signs the zone (DNSSEC, dnssec.go): answers to
	// queries with the DO bit carry signatures and proofs of denial.
	Signer Signer
}

// defaultSOATTL is the SOA's TTL when Config.SOATTL is 0.
const defaultSOATTL = 3600

// Handler answers queries for the zone. It implements dns.Handler and is
// safe for concurrent use.
type Handler struct {
	cfg    Config
	origin string // lower-case FQDN of the zone
	mname  string
	rname  string
	static *staticZone
	apexNS []dns.RR
	src    RecordSource
	logger *slog.Logger
	bufs   sync.Pool
	xfr    *transfer // nil: no zone transfers (transfer.go)
}

// NewHandler checks cfg and returns a handler answering from src.
func NewHandler(cfg Config, src RecordSource, logger *slog.Logger) (*Handler, error) {
	if cfg.Zone == "" {
		return nil, errors.New("zone is required")
	}
	if src == nil {
		return nil, errors.New("a record source is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SOATTL == 0 {
		cfg.SOATTL = defaultSOATTL
	}
	if cfg.MaxUDPSize == 0 {
		cfg.MaxUDPSize = 1232
	}
	if cfg.MaxUDPSize < dns.MinMsgSize {
		cfg.MaxUDPSize = dns.MinMsgSize
	}
	if cfg.CookielessUDPSize == 0 {
		cfg.CookielessUDPSize = dns.MinMsgSize
	}
	cfg.CookielessUDPSize = min(max(cfg.CookielessUDPSize, dns.MinMsgSize), cfg.MaxUDPSize)
	origin := dns.Fqdn(strings.ToLower(cfg.Zone))
	if _, ok := dns.IsDomainName(origin); !ok {
		return nil, fmt.Errorf("zone %q is not a valid name", cfg.Zone)
	}
	h := &Handler{
		cfg:    cfg,
		origin: origin,
		mname:  dns.Fqdn(strings.ToLower(cfg.NSName)),
		rname:  dns.Fqdn(strings.ToLower(cfg.NSAdmin)),
		src:    src,
		logger: logger,
	}
	if cfg.NSName == "" || cfg.NSAdmin == "" {
		return nil, errors.New("nsname and nsadmin are required for the SOA")
	}
	z, err := newStaticZone(origin, cfg.Records)
	if err != nil {
		return nil, err
	}
	for _, n := range cfg.OwnNames {
		n = dns.Fqdn(lowerASCII(n))
		if !dns.IsSubDomain(origin, n) {
			return nil, fmt.Errorf("own name %s is outside the zone %s", n, origin)
		}
		z.addENTs(n, origin)
	}
	if cfg.Signer != nil {
		if err := checkSignedRecords(cfg.Records); err != nil {
			return nil, err
		}
	}
	h.static = z
	if n := z.nodes[origin]; n != nil {
		h.apexNS = n.rrs[dns.TypeNS]
	}
	if len(h.apexNS) == 0 {
		h.apexNS = []dns.RR{&dns.NS{
			Hdr: dns.RR_Header{Name: origin, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: cfg.SOATTL},
			Ns:  h.mname,
		}}
	}
	h.bufs.New = func() any { b := make([]byte, 0, 1500); return &b }
	return h, nil
}

// ServeDNS implements dns.Handler.
func (h *Handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	defer func() {
		if p := recover(); p != nil {
			h.logger.Error("dns handler panic", "panic", p, "remote", w.RemoteAddr().String())
			_ = w.WriteMsg(h.failure(r, dns.RcodeServerFailure))
		}
	}()
	if h.xfr != nil && h.xfr.takes(r) {
		h.xfr.serve(w, r)
		return
	}
	var m *dns.Msg
	if ts := r.IsTsig(); ts != nil {
		m = h.badKey(r, ts)
	} else {
		m = h.AnswerTo(r, w.RemoteAddr())
	}
	bp := h.bufs.Get().(*[]byte)
	out, err := m.PackBuffer((*bp)[:cap(*bp)])
	if err != nil {
		h.logger.Error("dns pack", "err", err, "qname", qname(r))
		out, err = h.failure(r, dns.RcodeServerFailure).PackBuffer((*bp)[:cap(*bp)])
		if err != nil {
			h.bufs.Put(bp)
			return
		}
	}
	_, _ = w.Write(out)
	if cap(out) <= 65535 {
		*bp = out[:0]
	}
	h.bufs.Put(bp)
}

func qname(r *dns.Msg) string {
	if len(r.Question) == 0 {
		return ""
	}
	return r.Question[0].Name
}

func isTCP(w dns.ResponseWriter) bool {
	_, ok := w.RemoteAddr().(*net.TCPAddr)
	return ok
}

// addrOf is the IP address of a UDP or TCP peer (invalid for others).
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// Answer builds the response to r: tcp says whether it goes back over a
// stream (no truncation). Without the client's address it cannot check
// or hand out DNS Cookies: a UDP answer is held to CookielessUDPSize when
// cookies are on. The server uses AnswerTo.
func (h *Handler) Answer(r *dns.Msg, tcp bool) *dns.Msg {
	return h.answer(r, tcp, netip.Addr{})
}

// AnswerTo builds the response to r from remote (a *net.UDPAddr or
// *net.TCPAddr): over TCP never truncated, over UDP truncated to what the
// client can take, and with a DNS Cookie when the handler has a jar.
func (h *Handler) AnswerTo(r *dns.Msg, remote net.Addr) *dns.Msg {
	_, tcp := remote.(*net.TCPAddr)
	return h.answer(r, tcp, addrOf(remote))
}

func (h *Handler) answer(r *dns.Msg, tcp bool, client netip.Addr) *dns.Msg {
	if len(r.Question) != 1 {
		m := h.failure(r, dns.RcodeFormatError)
		m.Question = nil
		return m
	}
	m := new(dns.Msg)
	m.SetReply(r)
	opt := r.IsEdns0()
	cookieOK := false
	if opt != nil {
		o := h.opt(opt)
		m.Extra = append(m.Extra, o)
		if h.cfg.Cookies != nil && client.IsValid() {
			data, found := cookie.Option(r)
			st := h.cfg.Cookies.Check(data, found, client)
			if st == cookie.Malformed {
				m.Rcode = dns.RcodeFormatError // RFC 7873 5.2.2
				return m
			}
			if c := h.cfg.Cookies.Reply(data, st, client); c != nil {
				o.Option = append(o.Option, c)
			}
			cookieOK = st == cookie.Valid
		}
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m
		}
	}
	if tooManyOPT(r) {
		m.Rcode = dns.RcodeFormatError // RFC 6891 6.1.1
		return m
	}
	switch r.Opcode {
	case dns.OpcodeQuery:
	case dns.OpcodeNotify, dns.OpcodeUpdate:
		// This server is the zone's only source; it takes neither.
		m.Rcode = dns.RcodeRefused
		return m
	default:
		m.Rcode = dns.RcodeNotImplemented
		return m
	}
	q := r.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return m
	}
	name := strings.ToLower(q.Name)
	if !dns.IsSubDomain(h.origin, name) {
		m.Rcode = dns.RcodeRefused
		return m
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		m.Rcode = dns.RcodeRefused
		return m
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, dns.TypeMAILA, dns.TypeMAILB, dns.TypeNXNAME:
		m.Rcode = dns.RcodeFormatError // NXNAME: RFC 9824 3.5
		if q.Qtype != dns.TypeOPT && q.Qtype != dns.TypeNXNAME {
			m.Rcode = dns.RcodeNotImplemented
		}
		return m
	}
	h.lookup(m, q, name)
	if h.cfg.Signer != nil && opt != nil && opt.Do() {
		if err := h.secure(m, q, opt); err != nil { // dnssec.go
			return h.failure(r, dns.RcodeServerFailure)
		}
	}
	if !tcp {
		size := dns.MinMsgSize
		if opt != nil {
			size = int(min(opt.UDPSize(), h.cfg.MaxUDPSize))
			if h.cfg.Cookies != nil && !cookieOK {
				size = min(size, int(h.cfg.CookielessUDPSize))
			}
		}
		m.Truncate(size)
	}
	// Truncate turns compression off when the answer fits without it;
	// compress anyway, so that UDP and TCP answers are the same bytes
	// (and smaller: less to amplify).
	m.Compress = true
	return m
}

// tooManyOPT reports a query with more than one OPT record.
func tooManyOPT(r *dns.Msg) bool {
	n := 0
	for _, rr := range r.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			n++
		}
	}
	return n > 1
}

// badKey answers a TSIG-signed query that the transfer side did not take
// (no keys are configured): NOTAUTH with an unsigned TSIG saying BADKEY
// (RFC 8945 5.2.1), rather than an unsigned answer the client would have
// to reject. A TSIG with no usable algorithm name is FORMERR (found by
// FuzzServeDNS).
func (h *Handler) badKey(r *dns.Msg, ts *dns.TSIG) *dns.Msg {
	if _, ok := dns.IsDomainName(ts.Algorithm); !ok || ts.Algorithm == "" {
		return h.failure(r, dns.RcodeFormatError)
	}
	m := h.failure(r, dns.RcodeNotAuth)
	m.Extra = append(m.Extra, &dns.TSIG{ // last, as RFC 8945 requires
		Hdr:       dns.RR_Header{Name: ts.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: ts.Algorithm, TimeSigned: ts.TimeSigned, Fudge: ts.Fudge,
		OrigId: ts.OrigId, Error: dns.RcodeBadKey,
	})
	return m
}

// opt is the OPT of a response to a query carrying q: our UDP size and the
// query's DO bit (RFC 3225).
func (h *Handler) opt(q *dns.OPT) *dns.OPT {
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(h.cfg.MaxUDPSize)
	o.SetDo(q.Do())
	return o
}

// failure is a bare rcode answer to r. A query with EDNS gets an OPT back
// even then: RFC 6891 6.1.1 requires one in every response to it.
func (h *Handler) failure(r *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(r, rcode)
	if opt := r.IsEdns0(); opt != nil {
		m.Extra = append(m.Extra, h.opt(opt))
	}
	return m
}

// maxChase bounds CNAME chains inside the zone.
const maxChase = 8

func (h *Handler) lookup(m *dns.Msg, q dns.Question, name string) {
	owner := q.Name
	for hop := 0; ; hop++ {
		if cut, ok := h.static.cutFor(name, h.origin); ok {
			if hop > 0 {
				return // the chain leaves our authority; the resolver follows it
			}
			if name == cut && q.Qtype == dns.TypeDS {
				// DS lives on the parent side of the cut: ours to answer.
				m.Authoritative = true
				if ds := h.staticDS(cut); len(ds) > 0 {
					m.Answer = appendOwned(m.Answer, ds, owner)
					return
				}
				h.negative(m)
				return
			}
			h.referral(m, cut)
			return
		}
		m.Authoritative = true
		if name == h.origin {
			h.apex(m, q, owner)
			return
		}
		if sub, ok := h.challengeLabel(name); ok {
			if q.Qtype == dns.TypeTXT || q.Qtype == dns.TypeANY {
				var vals []string
				vals, registered := h.src.TXT(vals, sub)
				if registered {
					if q.Qtype == dns.TypeANY {
						m.Answer = append(m.Answer, h.hinfo(owner))
						return
					}
					for _, v := range vals {
						m.Answer = append(m.Answer, &dns.TXT{
							Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: h.cfg.TXTTTL},
							Txt: splitTXT(v),
						})
					}
					if len(vals) == 0 {
						h.negative(m)
					}
					return
				}
			} else if _, registered := h.src.TXT(nil, sub); registered && h.static.nodes[name] == nil {
				h.negative(m)
				return
			}
		}
		n := h.static.nodes[name]
		if n == nil {
			if h.static.ents[name] {
				h.negative(m)
				return
			}
			m.Rcode = dns.RcodeNameError // of the last name in a chain (RFC 6604)
			h.negative(m)
			return
		}
		if q.Qtype == dns.TypeANY {
			m.Answer = append(m.Answer, h.hinfo(owner))
			return
		}
		if rrs, ok := n.rrs[q.Qtype]; ok {
			m.Answer = appendOwned(m.Answer, rrs, owner)
			return
		}
		cn, ok := n.rrs[dns.TypeCNAME]
		if !ok {
			h.negative(m)
			return
		}
		m.Answer = appendOwned(m.Answer, cn, owner)
		target := strings.ToLower(cn[0].(*dns.CNAME).Target)
		if hop >= maxChase || !dns.IsSubDomain(h.origin, target) || answered(m.Answer, target) {
			return // out of zone, too long, or a loop: the chain so far is the answer
		}
		name, owner = target, target
	}
}

// answered reports whether the answer already holds records of name.
func answered(rrs []dns.RR, name string) bool {
	for _, rr := range rrs {
		if strings.EqualFold(rr.Header().Name, name) {
			return true
		}
	}
	return false
}

// challengeLabel reports whether name is where the record source may hold
// values and returns it relative to the zone: a single label directly
// below the zone (where registered subdomains live), or a name whose first
// label starts with an underscore (where the broker answers its own dns-01
// challenges: _acme-challenge, _acme-challenge.api).
func (h *Handler) challengeLabel(name string) (string, bool) {
	if len(name) <= len(h.origin)+1 {
		return "", false
	}
	label := name[:len(name)-len(h.origin)-1]
	if strings.IndexByte(label, '\\') >= 0 || (label[0] != '_' && strings.IndexByte(label, '.') >= 0) {
		return "", false
	}
	return label, true
}

func (h *Handler) apex(m *dns.Msg, q dns.Question, owner string) {
	switch q.Qtype {
	case dns.TypeSOA:
		m.Answer = append(m.Answer, h.soa(owner, h.cfg.SOATTL))
		return
	case dns.TypeNS:
		m.Answer = appendOwned(m.Answer, h.apexNS, owner)
		h.glue(m, h.apexNS)
		return
	case dns.TypeANY:
		m.Answer = append(m.Answer, h.hinfo(owner))
		return
	case dns.TypeDNSKEY, dns.TypeCDS, dns.TypeCDNSKEY:
		if rrs := h.apexKeys(q.Qtype); len(rrs) > 0 { // dnssec.go
			m.Answer = appendOwned(m.Answer, rrs, owner)
			return
		}
	}
	if n := h.static.nodes[h.origin]; n != nil {
		if rrs, ok := n.rrs[q.Qtype]; ok {
			m.Answer = appendOwned(m.Answer, rrs, owner)
			return
		}
	}
	h.negative(m)
}

// referral answers for a name at or below a delegation point.
func (h *Handler) referral(m *dns.Msg, cut string) {
	ns := h.static.nodes[cut].rrs[dns.TypeNS]
	m.Authoritative = false
	m.Ns = append(m.Ns, ns...)
	h.glue(m, ns)
}

// glue adds in-zone addresses of the name servers in ns.
func (h *Handler) glue(m *dns.Msg, ns []dns.RR) {
	for _, rr := range ns {
		target := rr.(*dns.NS).Ns
		if n := h.static.nodes[target]; n != nil {
			m.Extra = append(m.Extra, n.rrs[dns.TypeA]...)
			m.Extra = append(m.Extra, n.rrs[dns.TypeAAAA]...)
		}
	}
}

// negative adds the SOA that makes NXDOMAIN and NODATA cacheable for
// NegativeTTL (RFC 2308).
func (h *Handler) negative(m *dns.Msg) {
	m.Ns = append(m.Ns, h.soa(h.origin, h.cfg.NegativeTTL))
}

func (h *Handler) soa(owner string, ttl uint32) dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: owner, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      h.mname,
		Mbox:    h.rname,
		Serial:  h.src.Serial(),
		Refresh: soaRefresh,
		Retry:   soaRetry,
		Expire:  soaExpire,
		Minttl:  h.cfg.NegativeTTL,
	}
}

// The SOA's timers (seconds), for secondaries (fastbuild.go writes them too).
const (
	soaRefresh = 300
	soaRetry   = 60
	soaExpire  = 1209600
)

// hinfo is the minimal answer to ANY (RFC 8482): no amplification.
func (h *Handler) hinfo(owner string) dns.RR {
	return &dns.HINFO{
		Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: h.cfg.TXTTTL},
		Cpu: "RFC8482",
	}
}

// appendOwned appends copies of rrs renamed to owner, so the answer echoes
// the query's case (0x20 randomisation) without touching shared records.
func appendOwned(dst, rrs []dns.RR, owner string) []dns.RR {
	for _, rr := range rrs {
		if rr.Header().Name == owner {
			dst = append(dst, rr)
			continue
		}
		c := dns.Copy(rr)
		c.Header().Name = owner
		dst = append(dst, c)
	}
	return dst
}

// splitTXT splits a value into character-strings of at most 255 bytes.
func splitTXT(v string) []string {
	if len(v) <= 255 {
		return []string{v}
	}
	var out []string
	for len(v) > 255 {
		out = append(out, v[:255])
		v = v[255:]
	}
	return append(out, v)
}
