package dnssec

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Algorithms the broker signs with: ECDSA P-256 with SHA-256 (13, the
// default: small signatures, validated everywhere) and Ed25519 (15).
const (
	ECDSAP256SHA256 = dns.ECDSAP256SHA256
	ED25519         = dns.ED25519
)

// ParseAlgorithm reads an algorithm's name or number as the config gives
// it: "ecdsap256sha256" or "13", "ed25519" or "15" (any case).
func ParseAlgorithm(s string) (uint8, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "ecdsap256sha256", "ecdsa-p256-sha256", "13":
		return ECDSAP256SHA256, nil
	case "ed25519", "15":
		return ED25519, nil
	}
	return 0, fmt.Errorf("%q is not a signing algorithm the broker offers: \"ecdsap256sha256\" (13, the default) or \"ed25519\" (15)", s)
}

// AlgorithmName is the mnemonic of alg (RFC 8624), e.g. ECDSAP256SHA256.
func AlgorithmName(alg uint8) string {
	if n, ok := dns.AlgorithmToString[alg]; ok {
		return n
	}
	return fmt.Sprintf("algorithm %d", alg)
}

// Role is what a key signs.
type Role string

const (
	// CSK is a combined signing key: it signs every RRset, and the parent
	// holds its DS. The default: one key, one signature per RRset.
	CSK Role = "csk"
	// KSK signs the apex's DNSKEY, CDS and CDNSKEY RRsets; the parent
	// holds its DS.
	KSK Role = "ksk"
	// ZSK signs every other RRset.
	ZSK Role = "zsk"
)

func (r Role) valid() bool { return r == CSK || r == KSK || r == ZSK }

// signsData reports whether the key signs the zone's RRsets other than the
// apex key sets.
func (r Role) signsData() bool { return r == CSK || r == ZSK }

// signsKeys reports whether the key signs the DNSKEY, CDS and CDNSKEY
// RRsets (and so whether the parent's DS points at it).
func (r Role) signsKeys() bool { return r == CSK || r == KSK }

// flags is the DNSKEY flags field: zone key, plus SEP for keys the parent
// points at.
func (r Role) flags() uint16 {
	if r.signsKeys() {
		return dns.ZONE | dns.SEP // 257
	}
	return dns.ZONE // 256
}

// Key is one of the zone's keys with its place in the key set. Its
// private half is never printed: String and LogValue show the public
// facts only.
type Key struct {
	// ID names the key in the key set (key tags may collide).
	ID      string
	Role    Role
	Created time.Time
	// Publish: the key is in the DNSKEY RRset.
	Publish bool
	// Sign: the key makes signatures (which RRsets: see Role).
	Sign bool
	// DS: the parent should hold the key's DS; it is in the CDS and
	// CDNSKEY RRsets.
	DS bool

	dnskey *dns.DNSKEY // owner is the zone
	priv   crypto.Signer
}

// NewKey makes a new key for zone (an FQDN) with algorithm alg, in no
// state (not published, not signing).
func NewKey(zone string, alg uint8, role Role, now time.Time) (*Key, error) {
	if !role.valid() {
		return nil, fmt.Errorf("dnssec: unknown key role %q", role)
	}
	if alg != ECDSAP256SHA256 && alg != ED25519 {
		return nil, fmt.Errorf("dnssec: algorithm %s is not offered", AlgorithmName(alg))
	}
	k := &dns.DNSKEY{
		Hdr:       dns.RR_Header{Name: dns.CanonicalName(zone), Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET},
		Flags:     role.flags(),
		Protocol:  3,
		Algorithm: alg,
	}
	priv, err := k.Generate(256)
	if err != nil {
		return nil, fmt.Errorf("dnssec: generate %s key: %w", AlgorithmName(alg), err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, errors.New("dnssec: generated key cannot sign")
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("dnssec: key id: %w", err)
	}
	return &Key{ID: hex.EncodeToString(id), Role: role, Created: now.UTC(), dnskey: k, priv: signer}, nil
}

// Tag is the key tag (RFC 4034 appendix B).
func (k Key) Tag() uint16 { return k.dnskey.KeyTag() }

// Algorithm is the key's DNSSEC algorithm number.
func (k Key) Algorithm() uint8 { return k.dnskey.Algorithm }

// DNSKEY returns a copy of the key's DNSKEY record with the given TTL.
func (k *Key) DNSKEY(ttl uint32) *dns.DNSKEY {
	c := *k.dnskey
	c.Hdr.Ttl = ttl
	return &c
}

// DSRecord returns the key's DS record (SHA-256 digest) with the given TTL.
func (k *Key) DSRecord(ttl uint32) *dns.DS {
	ds := k.dnskey.ToDS(dns.SHA256)
	ds.Hdr.Ttl = ttl
	return ds
}

// String describes the key without its private half. String, GoString
// and LogValue have value receivers, so that a Key printed by value (%v,
// %+v, %#v, slog) never shows its private half either.
func (k Key) String() string {
	return fmt.Sprintf("%s %d (%s, id %s)", k.Role, k.Tag(), AlgorithmName(k.Algorithm()), k.ID)
}

// LogValue implements slog.LogValuer: public facts only.
func (k Key) LogValue() slog.Value {
	return slog.GroupValue(slog.String("role", string(k.Role)), slog.Int("tag", int(k.Tag())),
		slog.String("algorithm", AlgorithmName(k.Algorithm())), slog.String("id", k.ID))
}

// GoString keeps %#v from printing the private key.
func (k Key) GoString() string { return "dnssec.Key{" + k.String() + "}" }

// privateDER is the private key as PKCS #8 DER.
func (k *Key) privateDER() ([]byte, error) {
	return x509.MarshalPKCS8PrivateKey(k.priv)
}

// loadKey rebuilds a key from its stored parts and checks that the
// private half belongs to the public one.
func loadKey(zone string, alg uint8, flags uint16, public string, der []byte) (*dns.DNSKEY, crypto.Signer, error) {
	k := &dns.DNSKEY{
		Hdr:   dns.RR_Header{Name: dns.CanonicalName(zone), Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET},
		Flags: flags, Protocol: 3, Algorithm: alg, PublicKey: public,
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, nil, fmt.Errorf("private key: %w", err)
	}
	var pub []byte
	switch p := parsed.(type) {
	case *ecdsa.PrivateKey:
		if alg != ECDSAP256SHA256 {
			return nil, nil, fmt.Errorf("an ECDSA private key for algorithm %s", AlgorithmName(alg))
		}
		ecdh, err := p.PublicKey.ECDH()
		if err != nil {
			return nil, nil, fmt.Errorf("private key: %w", err)
		}
		pub = ecdh.Bytes()[1:] // uncompressed point without its 0x04 prefix: X || Y, as RFC 6605 writes it
	case ed25519.PrivateKey:
		if alg != ED25519 {
			return nil, nil, fmt.Errorf("an Ed25519 private key for algorithm %s", AlgorithmName(alg))
		}
		pub = p.Public().(ed25519.PublicKey)
	default:
		return nil, nil, fmt.Errorf("private key of type %T is not offered", parsed)
	}
	match := base64.StdEncoding.EncodeToString(pub) == public
	if !match {
		return nil, nil, errors.New("the private key does not belong to the public key")
	}
	return k, parsed.(crypto.Signer), nil
}
