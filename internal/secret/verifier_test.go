package secret

import (
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func bcryptOf(t *testing.T, key string) string {
	t.Helper()
	b, err := bcrypt.GenerateFromPassword([]byte(key), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestVerifierEqualCost: while a bcrypt hash exists, an unknown user, a
// wrong key on a bcrypt hash and a wrong key on a fast hash each cost
// one bcrypt compare (issue 12: a wrong key on a bcrypt account cost
// 90-353 ms, an unknown user under 1 ms). Without bcrypt hashes failures
// stay cheap, and a right key on a fast hash never pays.
func TestVerifierEqualCost(t *testing.T) {
	key, _ := NewKey()
	wrong, _ := NewKey()
	fast, _ := Hash(key)
	slow := bcryptOf(t, key)
	v := NewVerifier(1000, nil)

	if err := v.Unknown(wrong); err != nil || v.Compares() != 0 {
		t.Fatalf("no bcrypt known: unknown user ran %d bcrypt compares (%v)", v.Compares(), err)
	}
	if ok, _, _ := v.Verify(fast, wrong); ok || v.Compares() != 0 {
		t.Fatalf("no bcrypt known: a wrong key on a fast hash ran %d bcrypt compares", v.Compares())
	}

	v.SawHash(slow)
	for _, c := range []struct {
		name  string
		check func() (bool, error)
		ok    bool
		cost  uint64
	}{
		{"unknown user", func() (bool, error) { return false, v.Unknown(wrong) }, false, 1},
		{"wrong key, bcrypt hash", func() (bool, error) { ok, _, err := v.Verify(slow, wrong); return ok, err }, false, 1},
		{"wrong key, fast hash", func() (bool, error) { ok, _, err := v.Verify(fast, wrong); return ok, err }, false, 1},
		{"right key, bcrypt hash", func() (bool, error) { ok, _, err := v.Verify(slow, key); return ok, err }, true, 1},
		{"right key, fast hash", func() (bool, error) { ok, _, err := v.Verify(fast, key); return ok, err }, true, 0},
	} {
		before := v.Compares()
		ok, err := c.check()
		if err != nil || ok != c.ok || v.Compares()-before != c.cost {
			t.Errorf("%s: ok %v err %v, %d bcrypt compares; want ok %v and %d", c.name, ok, err, v.Compares()-before, c.ok, c.cost)
		}
	}
}

// TestVerifierBudget: bcrypt work is bounded per second; past it a check
// that needs bcrypt fails at once with a wait, and a right key on a fast
// hash still passes.
func TestVerifierBudget(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	key, _ := NewKey()
	fast, _ := Hash(key)
	v := NewVerifier(2, clk.now)
	v.AssumeBcrypt(bcrypt.MinCost)
	for i := range 2 {
		if err := v.Unknown("x"); err != nil {
			t.Fatalf("check %d within the budget: %v", i+1, err)
		}
	}
	err := v.Unknown("x")
	var busy *BusyError
	if !errors.As(err, &busy) || !errors.Is(err, ErrBusy) || busy.RetryAfter <= 0 || busy.RetryAfter > time.Second {
		t.Fatalf("3rd check in a second at 2/s: %v", err)
	}
	if _, _, err := v.Verify(bcryptOf(t, key), key); !errors.Is(err, ErrBusy) {
		t.Fatalf("a bcrypt check over the budget: %v", err)
	}
	if ok, _, err := v.Verify(fast, key); !ok || err != nil {
		t.Fatalf("right key on a fast hash while busy: %v %v", ok, err)
	}
	if v.Compares() != 2 {
		t.Fatalf("%d bcrypt compares, want 2", v.Compares())
	}
	clk.add(busy.RetryAfter)
	if err := v.Unknown("x"); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
}

func TestVerifierAssume(t *testing.T) {
	v := NewVerifier(1000, nil)
	v.AssumeBcrypt(bcrypt.MinCost) // a scan runs: assume bcrypt
	_ = v.Unknown("x")
	if v.Compares() != 1 {
		t.Fatal("assumed bcrypt, yet an unknown user was cheap")
	}
	v.AssumeBcrypt(0) // the scan found none
	_ = v.Unknown("x")
	if v.Compares() != 1 {
		t.Fatal("no bcrypt any more, yet an unknown user cost bcrypt")
	}
	v.SawHash("$2a$04$notreallyahash") // unparsable cost: ignored
	v.SawHash(bcryptOf(t, "k"))        // seen in a check
	v.AssumeBcrypt(0)                  // a scan that missed it cannot turn it off
	_ = v.Unknown("x")
	if v.Compares() != 2 {
		t.Fatal("a bcrypt hash seen in a check was forgotten")
	}
}
