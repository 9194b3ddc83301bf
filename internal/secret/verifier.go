package secret

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// BusyError: the bcrypt budget of this second is spent; nothing was
// checked. The caller answers 503 with Retry-After.
type BusyError struct{ RetryAfter time.Duration }

func (e *BusyError) Error() string {
	return fmt.Sprintf("secret: bcrypt budget spent, retry in %s", e.RetryAfter)
}

// ErrBusy matches every *BusyError with errors.Is.
var ErrBusy = errors.New("secret: bcrypt budget spent")

// Is makes errors.Is(err, ErrBusy) true.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// Verifier checks API keys against stored hashes so that the time a
// failure takes says nothing, and a flood of them cannot pin the CPU.
//
// A wrong key on a legacy bcrypt hash (accounts imported from acme-dns)
// costs a bcrypt compare, 50 to 350 ms of CPU, where an unknown user or a
// wrong key on a fast hash costs a microsecond: an attacker holding a list
// of usernames could tell which exist and which are bcrypt. So while any
// bcrypt hash is known to exist, every failed check (unknown user, wrong
// key on any hash) costs one bcrypt compare at the highest cost seen; once
// none exist (after a restart whose scan finds none) failures are cheap
// again. Every bcrypt compare, real or dummy, takes a token from one
// bucket of perSecond tokens a second: past it, checks that would need
// bcrypt fail at once with a *BusyError instead of queueing CPU work. A
// correct key on a fast hash never needs a token.
//
// Safe for concurrent use.
type Verifier struct {
	rate, burst float64
	now         func() time.Time

	mu     sync.Mutex
	tokens float64
	last   time.Time

	assumed atomic.Int32 // cost assumed present (a scan in progress or its result); 0 none
	seen    atomic.Int32 // highest bcrypt cost met in a check; 0 none

	dummyMu sync.Mutex
	dummies map[int]string // bcrypt hash of a fixed key, by cost

	compares atomic.Uint64 // bcrypt compares run (real and dummy)
}

// DefaultBcryptCost is what acme-dns hashes keys with (bcrypt.DefaultCost),
// the cost assumed while a scan for bcrypt hashes runs.
const DefaultBcryptCost = bcrypt.DefaultCost

// NewVerifier returns a verifier allowing perSecond bcrypt compares a
// second (at least 1), on the clock now (time.Now if nil). It starts
// believing no bcrypt hash exists; SawHash and AssumeBcrypt tell it more.
func NewVerifier(perSecond int, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	r := math.Max(1, float64(perSecond))
	return &Verifier{rate: r, burst: r, tokens: r, last: now(), now: now, dummies: map[int]string{}}
}

func isBcrypt(h string) bool {
	return strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")
}

// BcryptCost is the cost of a stored bcrypt hash, 0 for any other hash.
func BcryptCost(stored string) int {
	if !isBcrypt(stored) {
		return 0
	}
	c, err := bcrypt.Cost([]byte(stored))
	if err != nil {
		return 0
	}
	return c
}

// SawHash notes a stored hash (an account loaded for a check): a bcrypt
// one turns the equal-cost failures on, at its cost if that is the
// highest seen.
func (v *Verifier) SawHash(stored string) {
	c := BcryptCost(stored)
	if c == 0 {
		return
	}
	for {
		old := v.seen.Load()
		if int32(c) <= old || v.seen.CompareAndSwap(old, int32(c)) {
			return
		}
	}
}

// AssumeBcrypt sets the bcrypt cost assumed to exist whatever was seen:
// DefaultBcryptCost while a scan of the accounts runs, then the highest
// cost the scan found (0: none).
func (v *Verifier) AssumeBcrypt(cost int) { v.assumed.Store(int32(cost)) }

// legacyCost is the cost failures are made to cost, 0 while no bcrypt
// hash exists.
func (v *Verifier) legacyCost() int { return int(max(v.assumed.Load(), v.seen.Load())) }

// Compares counts the bcrypt compares run so far (real and dummy).
func (v *Verifier) Compares() uint64 { return v.compares.Load() }

// take spends a bcrypt token, or says how long until there is one.
func (v *Verifier) take() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if dt := now.Sub(v.last).Seconds(); dt > 0 {
		v.tokens = math.Min(v.burst, v.tokens+dt*v.rate)
		v.last = now
	}
	if v.tokens < 1 {
		return &BusyError{RetryAfter: time.Duration((1 - v.tokens) / v.rate * float64(time.Second))}
	}
	v.tokens--
	return nil
}

// Verify checks key against the stored hash of a known user. ok and rehash
// are as for the package's Verify. err is a *BusyError when the check
// needed bcrypt work beyond the budget (nothing was decided), or the
// stored hash's own problem.
func (v *Verifier) Verify(stored, key string) (ok, rehash bool, err error) {
	if isBcrypt(stored) {
		v.SawHash(stored)
		if err := v.take(); err != nil {
			return false, false, err
		}
		v.compares.Add(1)
		return Verify(stored, key)
	}
	ok, rehash, err = Verify(stored, key)
	if ok {
		return ok, rehash, err
	}
	// A wrong key on a fast hash: as dear as one on a bcrypt hash.
	if berr := v.pad(key); berr != nil {
		return false, false, berr
	}
	return ok, rehash, err
}

// Unknown does the work of a failed Verify for a user that does not
// exist: a *BusyError, or nil once the work is done.
func (v *Verifier) Unknown(key string) error {
	if err := v.pad(key); err != nil {
		return err
	}
	if v.legacyCost() == 0 {
		VerifyDummy(key)
	}
	return nil
}

// pad runs a dummy bcrypt compare while bcrypt hashes exist.
func (v *Verifier) pad(key string) error {
	cost := v.legacyCost()
	if cost == 0 {
		return nil
	}
	if err := v.take(); err != nil {
		return err
	}
	v.compares.Add(1)
	_ = bcrypt.CompareHashAndPassword([]byte(v.dummy(cost)), []byte(key))
	return nil
}

// dummy is a bcrypt hash at cost of a key no one has (its own compare
// fails like a wrong key's).
func (v *Verifier) dummy(cost int) string {
	v.dummyMu.Lock()
	defer v.dummyMu.Unlock()
	if h, ok := v.dummies[cost]; ok {
		return h
	}
	b, err := bcrypt.GenerateFromPassword([]byte("acmebroker dummy key, never issued"), cost)
	if err != nil {
		b, _ = bcrypt.GenerateFromPassword([]byte("acmebroker dummy key, never issued"), bcrypt.DefaultCost)
	}
	v.dummies[cost] = string(b)
	return string(b)
}
