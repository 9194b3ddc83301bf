// Package connlimit bounds what the clients of a stream listener can hold:
// connections open at once in all and per source prefix (an IPv4 /24, an
// IPv6 /56, the way response rate limiting counts sources, so one party
// with a block of addresses counts once), and how long one connection may
// keep reading. Connections over a limit are reset as soon as they are
// accepted. Accept errors (the process out of file descriptors) are logged
// at warn level, sparingly, and retried after a pause instead of spinning.
//
// The DNS server's TCP side and the HTTP API both listen through it.
package connlimit

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Prefix lengths sources are counted by: what one customer, host or
// attacker usually holds.
const (
	IPv4Prefix = 24
	IPv6Prefix = 56
)

// PrefixOf is the source prefix addr counts under. IPv4-mapped IPv6
// addresses (a dual-stack socket) count as IPv4.
func PrefixOf(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	bits := IPv6Prefix
	if addr.Is4() {
		bits = IPv4Prefix
	}
	p, _ := addr.Prefix(bits)
	return p
}

// Limits for one listener. A zero field means no limit.
type Limits struct {
	// Total is the most connections open at once.
	Total int
	// PerPrefix is the most connections open at once from one source
	// prefix (PrefixOf).
	PerPrefix int
	// Exempt sources are not counted per prefix (a reverse proxy all
	// clients come through); they still count towards Total.
	Exempt []netip.Prefix
	// Lifetime bounds how long a connection may keep reading: a read
	// deadline set later than Lifetime after the accept is moved back to
	// it, so a client that trickles queries cannot hold its slot for
	// long. Writes in progress (a zone transfer) are not cut.
	Lifetime time.Duration
}

// Check reports the first invalid field.
func (l Limits) Check() error {
	switch {
	case l.Total < 0:
		return fmt.Errorf("total connections must be 0 (no limit) or more, got %d", l.Total)
	case l.PerPrefix < 0:
		return fmt.Errorf("connections per source must be 0 (no limit) or more, got %d", l.PerPrefix)
	case l.Lifetime < 0:
		return fmt.Errorf("connection lifetime must not be negative, got %s", l.Lifetime)
	}
	return nil
}

// Listener is a net.Listener that applies Limits.
type Listener struct {
	net.Listener
	name   string // for log lines: "api", "dns tcp"
	lim    Limits
	logger *slog.Logger

	mu       sync.Mutex
	open     int
	byPrefix map[netip.Prefix]int

	refused atomic.Uint64
	errLog  sparse
}

// Wrap returns ln with the limits l (checked by the caller). name says in
// log lines which listener it is.
func Wrap(ln net.Listener, name string, l Limits, logger *slog.Logger) *Listener {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: ln, name: name, lim: l, logger: logger, byPrefix: make(map[netip.Prefix]int)}
}

// Pauses after a failed accept: doubling from minPause to maxPause while
// accepts keep failing (as net/http does), so a process out of file
// descriptors waits for some to be released instead of spinning.
const (
	minPause = 5 * time.Millisecond
	maxPause = time.Second
)

// Accept returns the next connection within the limits. Connections over
// a limit are reset and never returned. A temporary accept error (out of
// file descriptors) is logged and retried after a pause; any other error
// (the listener closed) is returned.
func (l *Listener) Accept() (net.Conn, error) {
	var pause time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !temporary(err) {
				return nil, err
			}
			pause = min(max(2*pause, minPause), maxPause)
			if n, ok := l.errLog.due(time.Now()); ok {
				l.logger.Warn(l.name+": accept failed, retrying", "err", err, "pause", pause, "failed_since_last_line", n)
			}
			time.Sleep(pause)
			continue
		}
		pause = 0
		if conn, ok := l.admit(c); ok {
			return conn, nil
		}
	}
}

// temporary reports an accept error worth retrying: EMFILE, ENFILE,
// ECONNABORTED and the like, as net/http and miekg/dns decide it.
func temporary(err error) bool {
	var ne interface{ Temporary() bool }
	return !errors.Is(err, net.ErrClosed) && errors.As(err, &ne) && ne.Temporary()
}

// admit counts c against the limits, returning it wrapped, or resets it.
func (l *Listener) admit(c net.Conn) (net.Conn, bool) {
	var src netip.Addr
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		src = ta.AddrPort().Addr().Unmap()
	}
	p := PrefixOf(src)
	counted := l.lim.PerPrefix > 0 && !l.exempt(src)
	l.mu.Lock()
	over := (l.lim.Total > 0 && l.open >= l.lim.Total) || (counted && l.byPrefix[p] >= l.lim.PerPrefix)
	if !over {
		l.open++
		if counted {
			l.byPrefix[p]++
		}
	}
	open := l.open
	l.mu.Unlock()
	if !over {
		lc := &conn{Conn: c, l: l, prefix: p, counted: counted}
		if l.lim.Lifetime > 0 {
			lc.end = time.Now().Add(l.lim.Lifetime)
			_ = c.SetReadDeadline(lc.end)
		}
		return lc, true
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // a reset: no TIME_WAIT left behind
	}
	_ = c.Close()
	// Log the 1st, 2nd, 4th, 8th... refusal: a flood cannot flood the log.
	if n := l.refused.Add(1); n&(n-1) == 0 {
		l.logger.Warn(l.name+": connection over the limit closed", "remote", src.String(), "prefix", p.String(),
			"per_source", l.lim.PerPrefix, "max_connections", l.lim.Total, "open", open, "refused_total", n)
	}
	return nil, false
}

func (l *Listener) exempt(a netip.Addr) bool {
	for _, p := range l.lim.Exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Open is the number of connections open now; Refused how many were reset
// over a limit so far.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Refused counts the connections reset over a limit so far.
func (l *Listener) Refused() uint64 { return l.refused.Load() }

func (l *Listener) release(c *conn) {
	l.mu.Lock()
	l.open--
	if c.counted {
		if n := l.byPrefix[c.prefix] - 1; n > 0 {
			l.byPrefix[c.prefix] = n
		} else {
			delete(l.byPrefix, c.prefix)
		}
	}
	l.mu.Unlock()
}

// conn gives its slot back when closed (once, however often Close is
// called) and keeps read deadlines within its lifetime.
type conn struct {
	net.Conn
	l       *Listener
	prefix  netip.Prefix
	counted bool
	end     time.Time // zero: no lifetime
	once    sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() { c.l.release(c) })
	return c.Conn.Close()
}

// CloseWrite half-closes a TCP connection (net/http does before closing
// on an error, so the client reads the answer instead of a reset).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *conn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.clamp(t))
}

func (c *conn) SetDeadline(t time.Time) error {
	if c.end.IsZero() {
		return c.Conn.SetDeadline(t)
	}
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetReadDeadline(c.clamp(t))
}

// clamp moves a read deadline back to the end of the connection's life
// (zero, "none", included).
func (c *conn) clamp(t time.Time) time.Time {
	if c.end.IsZero() || (!t.IsZero() && t.Before(c.end)) {
		return t
	}
	return c.end
}

// sparse lets a repeated log line through at most once every
// sparseInterval, counting the ones held back.
type sparse struct {
	mu      sync.Mutex
	next    time.Time
	dropped uint64
}

const sparseInterval = 10 * time.Second

func (s *sparse) due(now time.Time) (heldBack uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.next) {
		s.dropped++
		return 0, false
	}
	s.next = now.Add(sparseInterval)
	n := s.dropped
	s.dropped = 0
	return n, true
}
