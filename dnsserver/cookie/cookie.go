// Package cookie makes and checks DNS server cookies (RFC 7873) in the
// interoperable form of RFC 9018: version 1, a 32-bit timestamp and a
// SipHash-2-4 of the client cookie, those fields and the client's address
// under a 128-bit secret. Nodes that share the secret accept each other's
// cookies, so a resolver keeps its cookie whichever node answers.
//
// A valid server cookie proves that the client received an earlier answer
// at its source address: the address is not spoofed. The broker uses that
// to answer such clients without response rate limiting and with the full
// UDP size; everything else about a query is unchanged.
package cookie

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// SecretLen is the length of a server secret in bytes (128 bits).
const SecretLen = 16

// Secret is a server secret. Keep it out of logs; every node that answers
// for the zone should have the same one.
type Secret [SecretLen]byte

// String hides the secret, so a secret printed by mistake shows nothing.
func (Secret) String() string { return "cookie secret (hidden)" }

// ParseSecret reads a secret written as 32 hexadecimal digits (the form
// `openssl rand -hex 16` prints).
func ParseSecret(s string) (Secret, error) {
	var sec Secret
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != SecretLen {
		return sec, errors.New("must be 32 hexadecimal digits (128 bits), e.g. the output of `openssl rand -hex 16`")
	}
	copy(sec[:], b)
	return sec, nil
}

// NewSecret returns a random secret.
func NewSecret() (Secret, error) {
	var sec Secret
	if _, err := rand.Read(sec[:]); err != nil {
		return sec, fmt.Errorf("cookie: random secret: %w", err)
	}
	return sec, nil
}

// Lengths of the parts of a COOKIE option (RFC 7873 4): an 8-byte client
// cookie, then nothing or a server cookie of 8 to 32 bytes; ours is 16.
const (
	clientLen    = 8
	serverLen    = 16
	minServerLen = 8
	maxServerLen = 32
)

// Timing of RFC 9018 4.3: a cookie is accepted from 1 hour old to 5
// minutes in the future (clock skew between nodes), and a fresh one is
// handed out once the presented one is half an hour old.
const (
	maxAge   = 3600
	maxAhead = 300
	renewAge = 1800
)

// Status is what a query's COOKIE option proves.
type Status uint8

const (
	// None: no COOKIE option (or no EDNS).
	None Status = iota
	// ClientOnly: a client cookie, with no server cookie or one this
	// server did not make, or made too long ago (RFC 7873 5.2.3: answer
	// as if there were only a client cookie).
	ClientOnly
	// Valid: a server cookie this server (or a node sharing its secret)
	// made for this client and address within the last hour.
	Valid
	// Malformed: an option of a length RFC 7873 does not allow; the
	// answer is FORMERR (RFC 7873 5.2.2).
	Malformed
)

// Jar makes and checks server cookies. Safe for concurrent use: it holds
// no mutable state.
type Jar struct {
	current  Secret
	accepted []Secret // current first, then previous ones (a secret change)
	now      func() time.Time
}

// NewJar returns a jar that makes cookies with current and accepts those
// made with current or any of previous (while a new secret is rolled out
// to every node). now is the clock (time.Now in production).
func NewJar(current Secret, previous []Secret, now func() time.Time) *Jar {
	if now == nil {
		now = time.Now
	}
	return &Jar{current: current, accepted: append([]Secret{current}, previous...), now: now}
}

// Option returns the data of the first COOKIE option of m's OPT record.
func Option(m *dns.Msg) (data []byte, ok bool) {
	opt := m.IsEdns0()
	if opt == nil {
		return nil, false
	}
	for _, o := range opt.Option {
		if c, isCookie := o.(*dns.EDNS0_COOKIE); isCookie {
			b, err := hex.DecodeString(c.Cookie)
			if err != nil {
				// miekg/dns keeps the option as hex it made itself; an odd
				// length cannot come off the wire, but say malformed.
				return []byte{}, true
			}
			return b, true
		}
	}
	return nil, false
}

// Check says what the COOKIE option data (Option) proves for a query from
// client.
func (j *Jar) Check(data []byte, found bool, client netip.Addr) Status {
	if !found {
		return None
	}
	n := len(data)
	if n == clientLen {
		return ClientOnly
	}
	if n < clientLen+minServerLen || n > clientLen+maxServerLen {
		return Malformed
	}
	if n != clientLen+serverLen || data[clientLen] != 1 {
		return ClientOnly // another server's kind of cookie, or a later version
	}
	ts := binary.BigEndian.Uint32(data[clientLen+4:])
	if !usable(ts, j.unix()) {
		return ClientOnly
	}
	want := binary.LittleEndian.Uint64(data[clientLen+8:])
	for i := range j.accepted {
		if hashCookie(&j.accepted[i], data[:clientLen+8], client) == want {
			return Valid
		}
	}
	return ClientOnly
}

// Reply returns the COOKIE option to send back for a query whose option
// was data with status st: the client cookie and a server cookie (the
// presented one while it is fresh, else a new one). Nil for None and
// Malformed.
func (j *Jar) Reply(data []byte, st Status, client netip.Addr) *dns.EDNS0_COOKIE {
	if st != ClientOnly && st != Valid {
		return nil
	}
	now := j.unix()
	if st == Valid && int32(now-binary.BigEndian.Uint32(data[clientLen+4:])) < renewAge &&
		hashCookie(&j.current, data[:clientLen+8], client) == binary.LittleEndian.Uint64(data[clientLen+8:]) {
		// Fresh and made with the current secret: keep it. One made with a
		// previous secret is replaced at once (RFC 9018 A.4).
		return &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: hex.EncodeToString(data)}
	}
	out := make([]byte, clientLen+serverLen)
	copy(out, data[:clientLen])
	out[clientLen] = 1 // version; the 3 reserved bytes stay 0
	binary.BigEndian.PutUint32(out[clientLen+4:], now)
	binary.LittleEndian.PutUint64(out[clientLen+8:], hashCookie(&j.current, out[:clientLen+8], client))
	return &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: hex.EncodeToString(out)}
}

// Verified reports whether the query m from client carries a valid server
// cookie: its source address is proven (rrl.Config.Verified).
func (j *Jar) Verified(m *dns.Msg, client netip.Addr) bool {
	data, found := Option(m)
	return found && j.Check(data, true, client) == Valid
}

func (j *Jar) unix() uint32 { return uint32(j.now().Unix()) }

// usable: ts is at most maxAge old and at most maxAhead in the future, in
// serial arithmetic (the 32-bit timestamp wraps in 2106).
func usable(ts, now uint32) bool {
	d := int32(now - ts)
	return d <= maxAge && d >= -maxAhead
}

// hashCookie is the Hash field of RFC 9018 4.4: SipHash-2-4 over the
// client cookie, version, reserved and timestamp fields (head, as
// received) and the client's address (4 bytes for IPv4, 16 for IPv6).
func hashCookie(sec *Secret, head []byte, client netip.Addr) uint64 {
	var buf [clientLen + 8 + 16]byte
	n := copy(buf[:], head)
	client = client.Unmap()
	if client.Is4() {
		a := client.As4()
		n += copy(buf[n:], a[:])
	} else {
		a := client.As16()
		n += copy(buf[n:], a[:])
	}
	k := [16]byte(*sec)
	return sipHash24(&k, buf[:n])
}
