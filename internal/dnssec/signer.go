package dnssec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// SignerConfig configures a Signer.
type SignerConfig struct {
	// Zone is the signed zone (the RRSIG signer name).
	Zone string
	// DNSKEYTTL is the TTL of the DNSKEY, CDS and CDNSKEY RRsets; default
	// 3600.
	DNSKEYTTL uint32
	// Validity is how long a signature is valid from when it is made;
	// default DefaultValidity. It is re-made when half of that has passed.
	Validity time.Duration
	// CacheSize bounds the RRsets whose signatures are kept; default
	// DefaultCacheSize.
	CacheSize int
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Logger; nil: discard.
	Logger *slog.Logger
}

// Defaults of SignerConfig.
const (
	DefaultValidity  = 96 * time.Hour
	DefaultCacheSize = 1 << 16
	// InceptionSkew back-dates every signature's inception, so that a
	// validator whose clock is behind ours still takes it.
	InceptionSkew = time.Hour
	// MinValidity bounds Validity from below: signatures must outlive
	// every TTL by far, and re-signing at half-life must stay rare.
	MinValidity = 2 * time.Hour
)

// Signer signs the zone's RRsets with the signing keys of a key set and
// caches the signatures per RRset. It is safe for concurrent use;
// SetKeys swaps the keys while queries are being answered.
type Signer struct {
	zone     string
	ttl      uint32
	validity time.Duration
	now      func() time.Time
	logger   *slog.Logger
	view     atomic.Pointer[view]
	gen      atomic.Uint64
	cache    *sigCache

	signatures, hits atomic.Uint64
}

// view is one key set as the signer uses it.
type view struct {
	gen                  uint64
	data, keys           []*Key // sign the zone's data; sign the apex key sets
	dnskey, cds, cdnskey []dns.RR
}

// NewSigner returns a signer using the keys of ks.
func NewSigner(cfg SignerConfig, ks *Keyset) (*Signer, error) {
	if cfg.Zone == "" {
		return nil, errors.New("dnssec: zone is required")
	}
	if cfg.DNSKEYTTL == 0 {
		cfg.DNSKEYTTL = 3600
	}
	if cfg.Validity == 0 {
		cfg.Validity = DefaultValidity
	}
	if cfg.Validity < MinValidity {
		return nil, fmt.Errorf("dnssec: signature validity %s is below the minimum of %s", cfg.Validity, MinValidity)
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Signer{zone: dns.CanonicalName(cfg.Zone), ttl: cfg.DNSKEYTTL, validity: cfg.Validity, now: cfg.Now,
		logger: cfg.Logger, cache: newSigCache(cfg.CacheSize)}
	if err := s.SetKeys(ks); err != nil {
		return nil, err
	}
	return s, nil
}

// SetKeys makes ks the key set the signer signs with and publishes.
// Signatures made with the previous keys are not served again.
func (s *Signer) SetKeys(ks *Keyset) error {
	if ks == nil {
		return errors.New("dnssec: no key set")
	}
	if ks.Zone != s.zone {
		return fmt.Errorf("dnssec: keys of zone %s given to the signer of %s", ks.Zone, s.zone)
	}
	if err := ks.check(); err != nil {
		return err
	}
	v := &view{gen: s.gen.Add(1)}
	for _, k := range ks.Keys {
		if k.Publish {
			v.dnskey = append(v.dnskey, k.DNSKEY(s.ttl))
		}
		if k.DS {
			v.cds = append(v.cds, k.DSRecord(s.ttl).ToCDS())
			v.cdnskey = append(v.cdnskey, k.DNSKEY(s.ttl).ToCDNSKEY())
		}
		if k.Sign && k.Role.signsData() {
			v.data = append(v.data, k)
		}
		if k.Sign && k.Role.signsKeys() {
			v.keys = append(v.keys, k)
		}
	}
	s.view.Store(v)
	return nil
}

// Generation moves whenever SetKeys is called (dnsserver.GenerationSigner):
// answers signed before it may hold keys or signatures no longer served.
// It is read from the key set in use, so a caller that reads it before
// Sign never pairs a new generation with the old keys.
func (s *Signer) Generation() uint64 { return s.view.Load().gen }

// Keys returns the apex's DNSKEY, CDS and CDNSKEY RRsets (owned by the
// zone name). They are shared: callers copy before changing them.
func (s *Signer) Keys() (dnskey, cds, cdnskey []dns.RR) {
	v := s.view.Load()
	return v.dnskey, v.cds, v.cdnskey
}

// Stats counts the signatures made and the RRsets whose signatures came
// from the cache.
type Stats struct {
	Signatures uint64
	CacheHits  uint64
}

// Stats returns the counts so far.
func (s *Signer) Stats() Stats {
	return Stats{Signatures: s.signatures.Load(), CacheHits: s.hits.Load()}
}

// Sign appends to dst the RRSIGs over rrset: records of one owner name,
// class and type with one TTL, in the zone. The owner name of each RRSIG
// is the owner as the RRset spells it (a query's case is echoed).
func (s *Signer) Sign(dst, rrset []dns.RR) ([]dns.RR, error) {
	if len(rrset) == 0 {
		return dst, nil
	}
	h := rrset[0].Header()
	v := s.view.Load()
	keys := v.data
	switch h.Rrtype {
	case dns.TypeDNSKEY, dns.TypeCDS, dns.TypeCDNSKEY:
		keys = v.keys
	}
	var kbuf, fbuf [512]byte
	key := cacheKey(kbuf[:0], h)
	fp := fingerprint(fbuf[:0], rrset)
	now := s.now().Unix()
	if e := s.cache.get(key); e != nil && e.gen == v.gen && now < e.refresh && bytes.Equal(e.fp, fp) {
		s.hits.Add(1)
		return appendOwned(dst, e.sigs, h.Name), nil
	}
	sigs, err := s.sign(keys, rrset, now)
	if err != nil {
		return dst, err
	}
	s.cache.put(key, &sigEntry{gen: v.gen, fp: bytes.Clone(fp), sigs: sigs, refresh: now + int64(s.validity/time.Second)/2})
	return append(dst, sigs...), nil
}

func (s *Signer) sign(keys []*Key, rrset []dns.RR, now int64) ([]dns.RR, error) {
	h := rrset[0].Header()
	out := make([]dns.RR, 0, len(keys))
	for _, k := range keys {
		sig := &dns.RRSIG{
			Hdr:        dns.RR_Header{Ttl: h.Ttl},
			Algorithm:  k.Algorithm(),
			SignerName: s.zone,
			KeyTag:     k.Tag(),
			OrigTtl:    h.Ttl,
			Inception:  uint32(now - int64(InceptionSkew/time.Second)),
			Expiration: uint32(now + int64(s.validity/time.Second)),
		}
		if err := sig.Sign(k.priv, rrset); err != nil {
			return nil, fmt.Errorf("dnssec: sign %s %s with %s: %w", h.Name, dns.TypeToString[h.Rrtype], k, err)
		}
		sig.Hdr.Ttl = h.Ttl
		out = append(out, sig)
		s.signatures.Add(1)
	}
	return out, nil
}

// appendOwned appends sigs, renamed to owner where they spell it
// otherwise (a copy: cached signatures are shared).
func appendOwned(dst, sigs []dns.RR, owner string) []dns.RR {
	for _, rr := range sigs {
		sig := rr.(*dns.RRSIG)
		if sig.Hdr.Name == owner {
			dst = append(dst, sig)
			continue
		}
		c := *sig
		c.Hdr.Name = owner
		dst = append(dst, &c)
	}
	return dst
}

// cacheKey names an RRset in the cache: its owner in lower case, class,
// type and TTL (the SOA is served with two TTLs: asked for, and in
// negative answers).
func cacheKey(dst []byte, h *dns.RR_Header) []byte {
	for i := 0; i < len(h.Name); i++ {
		c := h.Name[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return append(dst, 0, byte(h.Class>>8), byte(h.Class), byte(h.Rrtype>>8), byte(h.Rrtype),
		byte(h.Ttl>>24), byte(h.Ttl>>16), byte(h.Ttl>>8), byte(h.Ttl))
}

// fingerprint writes the data of rrset (not its owner, which the key has
// in a case-free form), so that a cached signature is only served over
// the very records it was made for.
func fingerprint(dst []byte, rrset []dns.RR) []byte {
	str := func(dst []byte, s string) []byte {
		dst = append(dst, byte(len(s)>>8), byte(len(s)))
		return append(dst, s...)
	}
	for _, rr := range rrset {
		switch r := rr.(type) {
		case *dns.TXT:
			dst = append(dst, 't', byte(len(r.Txt)))
			for _, t := range r.Txt {
				dst = str(dst, t)
			}
		case *dns.SOA:
			dst = str(str(append(dst, 's'), r.Ns), r.Mbox)
			for _, n := range [...]uint32{r.Serial, r.Refresh, r.Retry, r.Expire, r.Minttl} {
				dst = binary.BigEndian.AppendUint32(dst, n)
			}
		case *dns.NSEC:
			dst = str(append(dst, 'n'), r.NextDomain)
			for _, t := range r.TypeBitMap {
				dst = append(dst, byte(t>>8), byte(t))
			}
		case *dns.A:
			dst = append(append(dst, 'a'), r.A.To16()...)
		case *dns.AAAA:
			dst = append(append(dst, 'q'), r.AAAA.To16()...)
		case *dns.NS:
			dst = str(append(dst, 'N'), r.Ns)
		case *dns.CNAME:
			dst = str(append(dst, 'c'), r.Target)
		case *dns.HINFO:
			dst = str(str(append(dst, 'h'), r.Cpu), r.Os)
		default:
			// Rare types (static MX, CAA, DS...): their text form less
			// the header.
			full := rr.String()
			dst = str(append(dst, 'x'), strings.TrimPrefix(full, rr.Header().String()))
		}
	}
	return dst
}
