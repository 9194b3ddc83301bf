package connlimit

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/testenv"
)

func TestPrefixOf(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.77":                   "192.0.2.0/24",
		"::ffff:192.0.2.77":            "192.0.2.0/24",
		"2001:db8:1:2ff:aaaa::1":       "2001:db8:1:200::/56",
		"2001:db8:1:2ff:ffff:ffff::ff": "2001:db8:1:200::/56",
	} {
		if got := PrefixOf(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("PrefixOf(%s) = %s, want %s", in, got, want)
		}
	}
}

// serve accepts on a limited loopback listener, handing each accepted
// connection to got, until the test ends.
func serve(t *testing.T, lim Limits, logger *slog.Logger) (*Listener, chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Wrap(ln, "test", lim, logger)
	got := make(chan net.Conn, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			got <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(got)
		for c := range got {
			c.Close()
		}
	})
	return l, got
}

func dialFrom(t *testing.T, src string, addr net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr.String())
	if errors.Is(err, syscall.ECONNRESET) {
		// Over loopback the reset of a refused connection can come
		// before the dialer looks: refused all the same.
		return resetConn{c}
	}
	if err != nil {
		testenv.Skipf(t, "cannot connect from %s (%v): this test needs 127.0.0.0/8 on loopback (Linux)", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// resetConn is a connection reset while it was being dialled.
type resetConn struct{ net.Conn }

func (resetConn) Read([]byte) (int, error)        { return 0, syscall.ECONNRESET }
func (resetConn) SetReadDeadline(time.Time) error { return nil }
func (resetConn) Close() error                    { return nil }

// accepted waits for the server side of the next admitted connection.
func accepted(t *testing.T, got chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-got:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection admitted within 5 s")
	}
	return nil
}

// refused: the server reset c (a read sees EOF or a reset, not a timeout).
func refused(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestPerPrefix: addresses of one /24 share one allowance (issue 12: the
// limit counted exact addresses, so 32 addresses held every slot).
func TestPerPrefix(t *testing.T) {
	l, got := serve(t, Limits{PerPrefix: 2, Total: 4, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.3.0/24")}}, nil)
	addr := l.Addr()
	dialFrom(t, "127.0.0.2", addr)
	accepted(t, got)
	dialFrom(t, "127.0.0.3", addr)
	accepted(t, got)
	// A third from the same /24, from yet another address: reset.
	if c := dialFrom(t, "127.0.0.4", addr); !refused(t, c) {
		t.Fatal("3rd connection from 127.0.0.0/24 (limit 2 per prefix) was not reset")
	}
	// Another /24 is counted apart.
	dialFrom(t, "127.0.1.1", addr)
	c4 := accepted(t, got)
	// An exempt source is not counted per prefix but fills the total (4).
	dialFrom(t, "127.0.3.1", addr)
	accepted(t, got)
	if c := dialFrom(t, "127.0.3.2", addr); !refused(t, c) {
		t.Fatal("5th connection in all (total 4) was not reset")
	}
	if l.Open() != 4 {
		t.Fatalf("%d open, want 4", l.Open())
	}
	// Closing gives the slot back.
	c4.Close()
	c4.Close() // twice: counted once
	dialFrom(t, "127.0.2.1", addr)
	accepted(t, got)
	if l.Open() != 4 || l.Refused() != 2 {
		t.Fatalf("open %d refused %d, want 4 and 2", l.Open(), l.Refused())
	}
}

// TestLifetime: a read deadline past the connection's lifetime is moved
// back to it (issue 12: a client sending one query every 5 s kept its
// slot for 21 minutes).
func TestLifetime(t *testing.T) {
	l, got := serve(t, Limits{Lifetime: 300 * time.Millisecond}, nil)
	c := dialFrom(t, "127.0.0.1", l.Addr())
	s := accepted(t, got)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	// Within its life a read works, even with a deadline far off.
	_ = s.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := s.Read(make([]byte, 1)); err != nil {
		t.Fatalf("read within the lifetime: %v", err)
	}
	// A later read waiting with a 10 s deadline (or none) ends at the
	// lifetime instead.
	for _, set := range []func(time.Time) error{s.SetReadDeadline, s.SetDeadline} {
		_ = set(time.Now().Add(10 * time.Second))
		start := time.Now()
		_, err := s.Read(make([]byte, 1))
		if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > 5*time.Second {
			t.Fatalf("read past the lifetime: %v after %s", err, time.Since(start))
		}
		_ = set(time.Time{})
		if _, err := s.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("no deadline past the lifetime: %v", err)
		}
	}
	// Writes are not cut.
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Write([]byte("y")); err != nil {
		t.Fatalf("write after the lifetime: %v", err)
	}
}

// flakyListener fails its first n accepts with EMFILE.
type flakyListener struct {
	net.Listener
	mu sync.Mutex
	n  int
}

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n > 0 {
		f.n--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return f.Listener.Accept()
}

// TestAcceptErrorsLoggedAndPaused: out of file descriptors, Accept waits
// and retries (miekg/dns would spin on it) and says so at warn level,
// once however often it fails (issue 12: only at debug level).
func TestAcceptErrorsLoggedAndPaused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	l := Wrap(&flakyListener{Listener: ln, n: 5}, "api", Limits{}, logger)
	defer l.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	s, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept after 5 EMFILE: %v", err)
	}
	s.Close()
	// 5 pauses of 5, 10, 20, 40, 80 ms: it waited instead of spinning.
	if time.Since(start) < 150*time.Millisecond {
		t.Fatalf("5 failed accepts took %s: no pause", time.Since(start))
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if strings.Count(out, "accept failed") != 1 || !strings.Contains(out, "level=WARN") || !strings.Contains(out, "too many open files") {
		t.Fatalf("log: %s", out)
	}
	// A closed listener ends Accept.
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed listener: %v", err)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func TestCheck(t *testing.T) {
	for _, l := range []Limits{{Total: -1}, {PerPrefix: -1}, {Lifetime: -time.Second}} {
		if l.Check() == nil {
			t.Errorf("%+v accepted", l)
		}
	}
	if (Limits{Total: 1, PerPrefix: 1, Lifetime: time.Second}).Check() != nil {
		t.Fatal("valid limits refused")
	}
}
