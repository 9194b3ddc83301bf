package secret

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestNewKey(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		k, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		if !ValidKeyFormat(k) {
			t.Fatalf("key %q has the wrong format", k)
		}
		if seen[k] {
			t.Fatal("repeated key")
		}
		seen[k] = true
	}
}

func TestHashVerify(t *testing.T) {
	k, _ := NewKey()
	h, err := Hash(k)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h, k) {
		t.Fatal("hash contains the key")
	}
	h2, _ := Hash(k)
	if h == h2 {
		t.Fatal("two hashes of one key are equal: no salt")
	}
	if ok, rehash, err := Verify(h, k); !ok || rehash || err != nil {
		t.Fatalf("Verify(right key) = %v %v %v", ok, rehash, err)
	}
	other := k[:39] + "x"
	if other == k {
		other = k[:39] + "y"
	}
	if ok, _, _ := Verify(h, other); ok {
		t.Fatal("a wrong key verified")
	}
}

func TestBcryptAccepted(t *testing.T) {
	k, _ := NewKey()
	b, err := bcrypt.GenerateFromPassword([]byte(k), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if ok, rehash, err := Verify(string(b), k); !ok || !rehash || err != nil {
		t.Fatalf("bcrypt: %v %v %v", ok, rehash, err)
	}
	if ok, _, err := Verify(string(b), "wrong"); ok || err != nil {
		t.Fatalf("bcrypt wrong key: %v %v", ok, err)
	}
}

func TestUnknownScheme(t *testing.T) {
	for _, h := range []string{"", "plain", "$b2$", "$b2$!!$!!", "$b2$AAAA$AAAA"} {
		if ok, _, err := Verify(h, "k"); ok || err == nil {
			t.Errorf("Verify(%q) = %v, %v", h, ok, err)
		}
	}
}

func TestValidKeyFormat(t *testing.T) {
	for s, want := range map[string]bool{
		strings.Repeat("a", 40):          true,
		strings.Repeat("-_", 20):         true,
		strings.Repeat("a", 39):          false,
		strings.Repeat("a", 39) + "=":    false,
		strings.Repeat("a", 39) + "\x00": false,
	} {
		if ValidKeyFormat(s) != want {
			t.Errorf("ValidKeyFormat(%q) != %v", s, want)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	k, _ := NewKey()
	h, _ := Hash(k)
	for b.Loop() {
		Verify(h, k)
	}
}

func TestNewToken(t *testing.T) {
	tok, id, hash, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	gotID, sec, ok := strings.Cut(tok, ".")
	if !ok || gotID != id || len(id) != 12 || !ValidKeyFormat(sec) {
		t.Fatalf("token %q id %q", tok, id)
	}
	if ok, _, err := Verify(hash, sec); !ok || err != nil {
		t.Fatalf("the hash does not verify the token's secret: %v %v", ok, err)
	}
	if strings.Contains(hash, sec) {
		t.Fatal("the hash holds the secret")
	}
	tok2, _, _, _ := NewToken()
	if tok2 == tok {
		t.Fatal("two tokens are equal")
	}
}
