package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Locks serialise runs that share a state directory (cron and a person at
// once, two timers, parallel deploy scripts). They are flock(2) locks on
// files under <state>/locks: the kernel drops a lock when its holder exits,
// however it exits, so a lock is never stale. A lock file is never deleted
// (a waiter holding the old file open would then lock a file nobody else
// sees); it holds the pid and command of its current holder, for the
// message of whoever waits.
//
//	locks/account.lock        ACME accounts (key, registration) and accounts.json
//	locks/cert-<name>.lock    one certificate: obtain, renew, revoke, delete
//	locks/broker-<sub>.lock   one broker account's TXT values while a batch is validated

// LockTimeout is how long a run waits for a lock by default.
const LockTimeout = 5 * time.Minute

// ErrLockTimeout: another run held a lock for longer than the wait allowed.
type ErrLockTimeout struct {
	What   string // "the ACME account and credentials"
	Path   string
	Holder LockHolder
	Waited time.Duration
}

func (e *ErrLockTimeout) Error() string {
	return fmt.Sprintf("gave up after %s waiting for %s: %s is held by %s. Let that run finish (or stop it), then try again; use --lock-timeout to wait longer",
		e.Waited.Round(time.Second), e.What, e.Path, e.Holder)
}

// LockHolder is what a lock file says about the run holding it.
type LockHolder struct {
	PID     int
	Command string
	Since   time.Time
}

func (h LockHolder) String() string {
	if h.PID == 0 {
		return "another run (it has not said which yet)"
	}
	s := fmt.Sprintf("pid %d", h.PID)
	if h.Command != "" {
		s += " (" + h.Command + ")"
	}
	if !h.Since.IsZero() {
		s += " since " + h.Since.UTC().Format(time.RFC3339)
	}
	return s
}

func (h LockHolder) encode() []byte {
	return fmt.Appendf(nil, "pid=%d\ncommand=%s\nsince=%s\n", h.PID, h.Command, h.Since.UTC().Format(time.RFC3339))
}

// ParseLockHolder reads a lock file's content. It is forgiving: the file
// may be half written by its holder, or from an older version.
func ParseLockHolder(b []byte) LockHolder {
	var h LockHolder
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch k {
		case "pid":
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				h.PID = n
			}
		case "command":
			h.Command = strings.Map(func(r rune) rune {
				if r < ' ' || r == 0x7f {
					return -1
				}
				return r
			}, v)
			if len(h.Command) > 200 {
				h.Command = h.Command[:200]
			}
		case "since":
			if t, err := time.Parse(time.RFC3339, v); err == nil {
				h.Since = t
			}
		}
	}
	return h
}

// Lock is a held lock; Unlock releases it.
type Lock struct {
	f *os.File
}

// Unlock releases the lock. It is safe to call on a nil Lock and twice.
func (l *Lock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = unlockFile(l.f)
	_ = l.f.Close()
	l.f = nil
}

// LockOptions say how to wait for a lock.
type LockOptions struct {
	Timeout time.Duration // 0: LockTimeout
	// Wait is told, once when the wait starts and then every 30 s, that
	// the run waits and for whom. nil: silent.
	Wait func(msg string)
	// Command names this run in the lock file (never its flags: they may
	// hold secrets). "" : the program name.
	Command string
}

// lock takes the lock file name under <state>/locks, waiting for another
// holder as o says. what says what the lock protects, for messages.
func (s *State) lock(ctx context.Context, name, what string, o LockOptions) (*Lock, error) {
	dir := filepath.Join(s.Dir, "locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state: lock: %w", err)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = LockTimeout
	}
	start := time.Now()
	var told time.Time
	delay := 10 * time.Millisecond
	for {
		err := tryLockFile(f)
		if err == nil {
			break
		}
		if !errors.Is(err, errLocked) {
			f.Close()
			return nil, fmt.Errorf("state: lock %s: %w", path, err)
		}
		holder := readHolder(path)
		waited := time.Since(start)
		if waited >= timeout {
			f.Close()
			return nil, &ErrLockTimeout{What: what, Path: path, Holder: holder, Waited: waited}
		}
		if o.Wait != nil && (told.IsZero() || time.Since(told) >= 30*time.Second) {
			o.Wait(fmt.Sprintf("waiting for %s: locked by %s (lock file %s; waiting up to %s)", what, holder, path, timeout.Round(time.Second)))
			told = time.Now()
		}
		t := time.NewTimer(min(delay, timeout-waited))
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 250*time.Millisecond)
	}
	cmd := o.Command
	if cmd == "" {
		cmd = filepath.Base(os.Args[0])
	}
	h := LockHolder{PID: os.Getpid(), Command: cmd, Since: time.Now()}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt(h.encode(), 0)
	}
	return &Lock{f: f}, nil
}

func readHolder(path string) LockHolder {
	b, err := os.ReadFile(path)
	if err != nil {
		return LockHolder{}
	}
	return ParseLockHolder(b)
}

// lockName makes a lock file name from a certificate or account name
// (already checked to be a plain name without path separators).
func lockName(kind, name string) string {
	return kind + "-" + strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < ' ' {
			return '_'
		}
		return r
	}, name) + ".lock"
}
