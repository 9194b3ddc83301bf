package dnssec

import (
	"testing"
	"time"
)

// FuzzParseKeyset feeds the stored form of a key set (what a database, a
// restored backup or another version wrote) to ParseKeyset, with and
// without a key file: it never panics, and what it accepts is a key set
// that signs and stores again as it was read.
func FuzzParseKeyset(f *testing.F) {
	sealer, err := ParseKeyFile([]byte(keyFileA))
	if err != nil {
		f.Fatal(err)
	}
	for _, split := range []bool{false, true} {
		ks, _ := NewKeyset(testZone, ED25519, split, time.Now())
		for _, s := range []*Sealer{nil, sealer} {
			b, err := ks.Marshal(s)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
		if _, err := ks.StartRollover(ks.Keys[0].Role, ED25519, Timing{}, time.Now()); err != nil {
			f.Fatal(err)
		}
		b, _ := ks.Marshal(nil)
		f.Add(b)
	}
	f.Add([]byte(`{"version":1,"zone":"auth.example.test.","keys":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, s := range []*Sealer{nil, sealer} {
			ks, _, err := ParseKeyset(b, testZone, s)
			if err != nil {
				continue
			}
			again, err := ks.Marshal(s)
			if err != nil {
				t.Fatalf("an accepted key set does not store again: %v", err)
			}
			back, _, err := ParseKeyset(again, testZone, s)
			if err != nil || len(back.Keys) != len(ks.Keys) {
				t.Fatalf("stored again, it does not read back: %v", err)
			}
			if _, err := NewSigner(SignerConfig{Zone: testZone}, ks); err != nil {
				t.Fatalf("an accepted key set cannot sign: %v", err)
			}
		}
	})
}

// FuzzParseKeyFile: any file content is taken or refused, never a panic.
func FuzzParseKeyFile(f *testing.F) {
	f.Add([]byte(keyFileA))
	f.Add([]byte(keyFileA + "\n"))
	f.Add([]byte("ABEiM0RVZneImaq7zN3u/wARIjNEVWZ3iJmqu8zd7v8="))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := ParseKeyFile(b); err == nil {
			sealed, err := s.seal([]byte("x"), "aad")
			if err != nil {
				t.Fatal(err)
			}
			if p, err := s.open(sealed, "aad"); err != nil || string(p) != "x" {
				t.Fatalf("seal/open: %q %v", p, err)
			}
		}
	})
}
