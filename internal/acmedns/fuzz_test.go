package acmedns

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/acmebroker/acmebroker/storage"
)

// FuzzConvert: whatever a row of acme-dns's records table holds, convert
// either says why it is refused or returns an account the broker can serve
// and authenticate: a canonical UUID, a bcrypt hash, one lower-case label.
func FuzzConvert(f *testing.F) {
	hash := "$2a$10$" + strings.Repeat("a", 53)
	f.Add("0d7a8c3e-1b2c-4d5e-8f90-123456789abc", hash, "5e1c0f2a-1b2c-4d5e-8f90-123456789abc", `[]`, false)
	f.Add("0D7A8C3E-1B2C-4D5E-8F90-123456789ABC", hash, "Web1", `["192.0.2.0/24","[2001:db8::]/32"]`, false)
	f.Add("x", "plain", "bad_label", `{`, true)
	f.Add("0d7a8c3e-1b2c-4d5e-8f90-123456789abc", hash, "web1", `["192.0.2.1"]`, false)
	f.Fuzz(func(t *testing.T, user, pass, sub, allow string, allowNull bool) {
		a, why := convert(Record{Username: user, Password: pass, Subdomain: sub, AllowFrom: allow, AllowFromNull: allowNull})
		if why != "" {
			return
		}
		if u, err := uuid.Parse(a.Username); err != nil || u.String() != a.Username {
			t.Fatalf("username %q is not a canonical UUID", a.Username)
		}
		if !strings.HasPrefix(a.KeyHash, "$2") || len(a.KeyHash) != 60 {
			t.Fatalf("key hash %q is not bcrypt", a.KeyHash)
		}
		if !storage.IsLabel(a.Subdomain) || a.Subdomain != strings.ToLower(a.Subdomain) {
			t.Fatalf("subdomain %q is not one lower-case label", a.Subdomain)
		}
		for _, p := range a.AllowFrom {
			if !p.IsValid() {
				t.Fatalf("invalid prefix in %q", allow)
			}
		}
	})
}
