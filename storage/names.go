package storage

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// IsLabel reports whether s is a subdomain as stored: one lower-case DNS
// label of letters, digits and hyphens, not starting or ending with a
// hyphen.
func IsLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// IsDNS01Value reports whether s is a DNS-01 challenge value: the base64url
// SHA-256 digest, 43 characters (all acme-dns ever accepted).
func IsDNS01Value(s string) bool {
	if len(s) != 43 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// EncodeAllowFrom is how every engine stores an account's sources: a JSON
// array of the prefixes' String form, as acme-dns does, so rows move between
// engines (and from acme-dns) as they are. Prefixes are kept as given (not
// masked), so they read back equal, except an IPv4-mapped one, which
// DecodeAllowFrom reads as the IPv4 prefix it means.
func EncodeAllowFrom(ps []netip.Prefix) (string, error) {
	ss := make([]string, len(ps))
	for i, p := range ps {
		if !p.IsValid() {
			return "", fmt.Errorf("allow_from[%d] is not a valid prefix", i)
		}
		ss[i] = p.String()
	}
	b, err := json.Marshal(ss)
	return string(b), err
}

// ParsePrefix parses a CIDR such as "192.0.2.0/24" or "2001:db8::/32", as
// an account's allowfrom, a token's, and the config's lists take them.
// Brackets around IPv6 ("[2001:db8::]/32") are tolerated, as acme-dns does;
// a bare address is refused: write it as /32 or /128. An IPv4-mapped IPv6
// prefix (::ffff:192.0.2.1/128, what a dual-stack socket prints) is
// turned into the IPv4 prefix it means: sources are compared as IPv4, so
// the mapped form would never match and lock the account out.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(strings.NewReplacer("[", "", "]", "").Replace(s))
	if !strings.Contains(s, "/") {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (write a single address as %s/32 or /128)", s, s)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 192.0.2.0/24 or 2001:db8::/32", s)
	}
	return unmapPrefix(p)
}

// ParsePrefixes converts CIDRs already checked (config.Validate reports
// those ParsePrefix refuses): the ones that parse, in order.
func ParsePrefixes(list []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96). A
// shorter prefix over the mapped range also covers addresses that are not
// IPv4 at all: refused, with the IPv4 network to write instead.
func unmapPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.Addr().Is4In6() {
		return p, nil
	}
	if p.Bits() < 96 {
		return netip.Prefix{}, fmt.Errorf("%q reaches outside the IPv4-mapped range ::ffff:0:0/96; write the IPv4 network instead, e.g. 192.0.2.0/24", p)
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96), nil
}

// DecodeAllowFrom reads what EncodeAllowFrom wrote. It also accepts "" and
// bare addresses (a host prefix), which imported rows may hold, and reads an
// IPv4-mapped prefix stored before ParsePrefix normalised them as the IPv4
// prefix it means (so such an account works again).
func DecodeAllowFrom(s string) ([]netip.Prefix, error) {
	if s == "" || s == "[]" {
		return nil, nil
	}
	var ss []string
	if err := json.Unmarshal([]byte(s), &ss); err != nil {
		return nil, fmt.Errorf("stored allow_from is not a JSON array of CIDRs: %w", err)
	}
	if len(ss) == 0 {
		return nil, nil
	}
	ps := make([]netip.Prefix, len(ss))
	for i, c := range ss {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			addr, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return nil, fmt.Errorf("stored allow_from: %w", err)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		if u, err := unmapPrefix(p); err == nil {
			p = u
		}
		ps[i] = p
	}
	return ps, nil
}

// IsOwnName reports whether s is an own name: a name relative to the zone
// at which the broker serves TXT records of its own (its dns-01 challenge
// "_acme-challenge", or "_acme-challenge.api" for api.<zone>), never an
// account's. Its first label starts with an underscore, which no
// subdomain (IsLabel) can; the labels after it are subdomain-like.
func IsOwnName(s string) bool {
	if len(s) < 2 || len(s) > 200 || s[0] != '_' {
		return false
	}
	first, rest, more := strings.Cut(s, ".")
	if len(first) > 63 {
		return false
	}
	for i := 1; i < len(first); i++ {
		c := first[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	for more {
		var l string
		l, rest, more = strings.Cut(rest, ".")
		if !IsLabel(l) {
			return false
		}
	}
	return true
}
