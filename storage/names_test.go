package storage

import (
	"strings"
	"testing"
)

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
