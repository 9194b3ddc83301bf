package storage

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.0/24":      "192.0.2.0/24",
		"[2001:db8::]/32":   "2001:db8::/32",
		" 198.51.100.7/32 ": "198.51.100.7/32",
		// Issue 12: mapped IPv6 was stored as given and never matched
		// (sources are compared unmapped); it means the IPv4 prefix.
		"::ffff:127.0.0.1/128":   "127.0.0.1/32",
		"[::ffff:192.0.2.0]/120": "192.0.2.0/24",
		"::ffff:0.0.0.0/96":      "0.0.0.0/0",
		"::ffff:c000:0200/120":   "192.0.2.0/24",
	} {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"192.0.2.1", "", "abc/8", "192.0.2.0/33", "::ffff:0:0/95", "::ffff:192.0.2.1"} {
		if _, err := ParsePrefix(in); err == nil {
			t.Errorf("ParsePrefix(%q) accepted", in)
		}
	}
}

func TestDecodeAllowFromUnmaps(t *testing.T) {
	// A row written before ParsePrefix normalised mapped prefixes.
	ps, err := DecodeAllowFrom(`["::ffff:127.0.0.1/128","2001:db8::/32","192.0.2.7"]`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1/32", "2001:db8::/32", "192.0.2.7/32"}
	for i, p := range ps {
		if p.String() != want[i] {
			t.Fatalf("%v, want %v", ps, want)
		}
	}
	if !ps[0].Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Fatal("the decoded prefix does not match its IPv4 source")
	}
}

// FuzzParsePrefix: whatever ParsePrefix accepts is a valid prefix that
// survives the store's encoding unchanged, never a mapped one.
func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"192.0.2.0/24", "[2001:db8::]/32", "::ffff:127.0.0.1/128", "::ffff:0:0/95", "1.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p.Addr().Is4In6() {
			t.Fatalf("ParsePrefix(%q) = %v", s, p)
		}
		enc, err := EncodeAllowFrom([]netip.Prefix{p})
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeAllowFrom(enc)
		if err != nil || len(back) != 1 || back[0] != p {
			t.Fatalf("%v encoded %s read back as %v (%v)", p, enc, back, err)
		}
	})
}

func TestIsOwnName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"_acme-challenge", true},
		{"_acme-challenge.api", true},
		{"_acme-challenge.a.b-c.d0", true},
		{"_x", true},
		{"_", false},
		{"", false},
		{"acme-challenge", false}, // an account's subdomain
		{"3f1c1d0e-0000-4000-8000-000000000000", false},
		{"_ACME-challenge", false}, // lower case only, as stored
		{"_acme-challenge.", false},
		{"_acme-challenge..api", false},
		{"_acme-challenge.-api", false},
		{"_acme-challenge._api", false},
		{"_acme-challenge.api.", false},
		{"x._acme-challenge", false},
		{"_acme challenge", false},
		{"_acme\\.challenge", false},
		{"_" + strings.Repeat("a", 63), false},
		{"_" + strings.Repeat("a", 62), true},
		{"_a." + strings.Repeat("b", 64), false},
		{"_a" + strings.Repeat(".bbbbbbbbb", 20), false}, // over 200 bytes
	} {
		if got := IsOwnName(tc.name); got != tc.want {
			t.Errorf("IsOwnName(%q) = %v, want %v", tc.name, got, tc.want)
		}
		if IsOwnName(tc.name) && IsLabel(tc.name) {
			t.Errorf("%q is both an own name and a subdomain", tc.name)
		}
	}
}

// TestParsePrefixes: the prefixes that parse, in order, as ParsePrefix
// gives them; the others are left out.
func TestParsePrefixes(t *testing.T) {
	got := ParsePrefixes([]string{"192.0.2.0/24", "not a cidr", "::ffff:198.51.100.7/128", "2001:db8::1"})
	want := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.7/32")}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
