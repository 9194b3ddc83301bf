// Package secret makes API keys and checks them against stored hashes.
//
// Keys are 40 characters from crypto/rand over the URL-safe base64 alphabet:
// 240 bits of entropy. Guessing such a key is hopeless, so a slow password
// hash (bcrypt, which caps acme-dns at ~16 updates/s per core) buys nothing;
// what matters is that the stored form cannot be turned back into the key.
// New keys are stored as a salted BLAKE2b-256 digest ("$b2$" scheme), which
// is one-way and costs under a microsecond. bcrypt hashes ("$2a$", "$2b$",
// "$2y$", as acme-dns stores them) are still accepted so imported accounts
// keep working; Verify reports when such a hash should be upgraded.
package secret

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/blake2b"
)

// KeyLen is the length of an API key, as acme-dns hands them out.
const KeyLen = 40

const (
	alphabet  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b2Prefix  = "$b2$"
	saltBytes = 16
)

var b64 = base64.RawURLEncoding

// NewKey returns a fresh random API key.
func NewKey() (string, error) {
	var raw [KeyLen]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("secret: random key: %w", err)
	}
	for i, b := range raw {
		raw[i] = alphabet[b&63] // 64 symbols: no modulo bias
	}
	return string(raw[:]), nil
}

// Hash returns the stored form of key.
func Hash(key string) (string, error) {
	var salt [saltBytes]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return "", fmt.Errorf("secret: random salt: %w", err)
	}
	sum := digest(salt[:], key)
	return b2Prefix + b64.EncodeToString(salt[:]) + "$" + b64.EncodeToString(sum[:]), nil
}

func digest(salt []byte, key string) [32]byte {
	h, _ := blake2b.New256(salt) // a 16-byte key is always accepted
	h.Write([]byte(key))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// ErrUnknownScheme: the stored hash is in no format this package knows.
var ErrUnknownScheme = errors.New("secret: unknown hash scheme")

// Verify reports whether key matches the stored hash, in time that does not
// depend on where they differ. rehash is true when the key matched a legacy
// (bcrypt) hash that should be replaced by Hash(key).
func Verify(stored, key string) (ok, rehash bool, err error) {
	switch {
	case strings.HasPrefix(stored, b2Prefix):
		rest := stored[len(b2Prefix):]
		i := strings.IndexByte(rest, '$')
		if i < 0 {
			return false, false, ErrUnknownScheme
		}
		salt, err1 := b64.DecodeString(rest[:i])
		want, err2 := b64.DecodeString(rest[i+1:])
		if err1 != nil || err2 != nil || len(want) != 32 {
			return false, false, ErrUnknownScheme
		}
		got := digest(salt, key)
		return subtle.ConstantTimeCompare(got[:], want) == 1, false, nil
	case strings.HasPrefix(stored, "$2a$"), strings.HasPrefix(stored, "$2b$"), strings.HasPrefix(stored, "$2y$"):
		err := bcrypt.CompareHashAndPassword([]byte(stored), []byte(key))
		if err == nil {
			return true, true, nil
		}
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, false, nil
		}
		return false, false, fmt.Errorf("secret: bcrypt: %w", err)
	}
	return false, false, ErrUnknownScheme
}

// dummy is compared against when the user does not exist, so that an unknown
// user costs the same as a wrong key.
var dummy = func() string {
	h, _ := Hash("0000000000000000000000000000000000000000")
	return h
}()

// VerifyDummy does the work of a failed Verify, for unknown users.
func VerifyDummy(key string) {
	_, _, _ = Verify(dummy, key)
}

// ValidKeyFormat reports whether s looks like an API key (40 URL-safe characters).
func ValidKeyFormat(s string) bool {
	if len(s) != KeyLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

// NewToken returns a fresh registration token "<id>.<secret>", its public ID
// and the stored form of its secret (Hash). Only the hash is kept; the API
// checks a presented token with Verify(hash, secret).
func NewToken() (token, id, hash string, err error) {
	var raw [6]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", "", fmt.Errorf("secret: random token id: %w", err)
	}
	id = hex.EncodeToString(raw[:])
	key, err := NewKey()
	if err != nil {
		return "", "", "", err
	}
	if hash, err = Hash(key); err != nil {
		return "", "", "", err
	}
	return id + "." + key, id, hash, nil
}
