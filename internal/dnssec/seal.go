package dnssec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Sealer encrypts private keys at rest (AES-256-GCM) with the secret of a
// key file, so that the database alone (a backup, a replica, a dump) does
// not give the zone's signing keys away. A nil *Sealer stores them as
// they are.
type Sealer struct {
	aead cipher.AEAD
}

// KeyFileHint says how to make a key file.
const KeyFileHint = "make one with: (umask 077; openssl rand -hex 32 > /etc/acmebroker/dnssec.key)"

// LoadKeyFile reads a key file: 32 random bytes written as 64 hex digits
// or in base64, alone on a line. The error never quotes the file's
// content.
func LoadKeyFile(path string) (*Sealer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dnssec key file: %w (%s)", err, KeyFileHint)
	}
	s, err := ParseKeyFile(b)
	if err != nil {
		return nil, fmt.Errorf("dnssec key file %s: %w", path, err)
	}
	return s, nil
}

// ParseKeyFile reads the content of a key file (see LoadKeyFile).
func ParseKeyFile(b []byte) (*Sealer, error) {
	text := strings.TrimSpace(string(b))
	var secret []byte
	if len(text) == 64 {
		secret, _ = hex.DecodeString(text)
	}
	if secret == nil {
		if d, err := base64.StdEncoding.DecodeString(text); err == nil && len(d) == 32 {
			secret = d
		}
	}
	if len(secret) != 32 {
		return nil, errors.New("it must hold 32 random bytes as 64 hex digits or in base64; " + KeyFileHint)
	}
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// seal encrypts plain; aad binds the result to where it is stored (a
// sealed key copied into another key's place does not open).
func (s *Sealer) seal(plain []byte, aad string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plain, []byte(aad)), nil
}

// errWrongKeyFile: the key file is not the one the keys were sealed with.
var errWrongKeyFile = errors.New("the key file does not decrypt the keys in the database: is dns.dnssec.key_file the file the keys were encrypted with (the same on every node)?")

func (s *Sealer) open(sealed []byte, aad string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, errors.New("sealed key is too short")
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(aad))
	if err != nil {
		return nil, errWrongKeyFile
	}
	return plain, nil
}
