package client

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLockExcludes: a second taker (another open of the file, as another
// process has) waits, says for what and for whom, and gets the lock when
// the first lets go; with a short timeout it gives up with both in the
// message; a cancelled context stops the wait.
func TestLockExcludes(t *testing.T) {
	st := &State{Dir: t.TempDir()}
	ctx := context.Background()
	first, err := st.LockCertificate(ctx, "example.test", LockOptions{Command: "acmebroker client renew"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.LockCertificate(ctx, "example.test", LockOptions{Timeout: 50 * time.Millisecond})
	var lt *ErrLockTimeout
	if !errors.As(err, &lt) || lt.Holder.PID != os.Getpid() || lt.Holder.Command != "acmebroker client renew" ||
		!strings.Contains(err.Error(), "certificate example.test") || !strings.Contains(err.Error(), "--lock-timeout") {
		t.Fatalf("timeout error = %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := st.LockCertificate(cctx, "example.test", LockOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	// Another certificate's lock is independent.
	other, err := st.LockCertificate(ctx, "other.test", LockOptions{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("another certificate's lock: %v", err)
	}
	other.Unlock()

	var mu sync.Mutex
	var msgs []string
	got := make(chan error, 1)
	go func() {
		l, err := st.LockCertificate(ctx, "example.test", LockOptions{Wait: func(m string) {
			mu.Lock()
			msgs = append(msgs, m)
			mu.Unlock()
		}})
		l.Unlock()
		got <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(msgs)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
	first.Unlock()
	if err := <-got; err != nil {
		t.Fatalf("the waiter did not get the lock after it was released: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(msgs) != 1 || !strings.Contains(msgs[0], "waiting for certificate example.test: locked by pid ") ||
		!strings.Contains(msgs[0], "(acmebroker client renew)") {
		t.Fatalf("wait messages %q", msgs)
	}
	first.Unlock() // twice is harmless
	if b, _ := os.ReadFile(filepath.Join(st.Dir, "locks", "cert-example.test.lock")); len(b) != 0 {
		t.Fatalf("a released lock file still names a holder: %q", b)
	}
}

func TestParseLockHolder(t *testing.T) {
	h := ParseLockHolder([]byte("pid=42\ncommand=acmebroker client obtain\x1b[2J\nsince=2027-01-02T03:04:05Z\n"))
	if h.PID != 42 || h.Command != "acmebroker client obtain[2J" || h.Since.Year() != 2027 {
		t.Fatalf("%+v", h)
	}
	if h := ParseLockHolder([]byte("pid=-1\ngarbage")); h.PID != 0 || h.String() != "another run (it has not said which yet)" {
		t.Fatalf("%+v %s", h, h)
	}
}

func FuzzParseLockHolder(f *testing.F) {
	f.Add([]byte("pid=42\ncommand=acmebroker client renew\nsince=2027-01-02T03:04:05Z\n"))
	f.Add([]byte("pid=99999999999999999999\n"))
	f.Add([]byte("command=" + strings.Repeat("x", 500)))
	f.Fuzz(func(t *testing.T, b []byte) {
		h := ParseLockHolder(b)
		if h.PID < 0 || len(h.Command) > 200 || strings.ContainsAny(h.Command, "\n\r\x00") {
			t.Fatalf("%+v", h)
		}
		_ = h.String()
	})
}
