package dnsserver

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// TCPLimits bound what TCP clients may hold. A zero field keeps the
// built-in default (see server.go) or, for the connection counts, means no
// limit.
type TCPLimits struct {
	// PerSource is the most connections open at once from one address;
	// a new one over it is closed as soon as it is accepted.
	PerSource int
	// MaxConnections is the most connections open at once in all (per
	// listen address).
	MaxConnections int
	// IdleTimeout closes a connection that has sent no query for this long
	// after its last answer.
	IdleTimeout time.Duration
	// MaxQueries closes a connection after this many queries.
	MaxQueries int
}

// Check reports the first invalid field, naming its config key.
func (l TCPLimits) Check() error {
	switch {
	case l.PerSource < 0:
		return fmt.Errorf("tcp_per_source must be 0 (no limit) or more, got %d", l.PerSource)
	case l.MaxConnections < 0:
		return fmt.Errorf("tcp_max_connections must be 0 (no limit) or more, got %d", l.MaxConnections)
	case l.IdleTimeout < 0 || l.IdleTimeout > time.Hour:
		return fmt.Errorf("tcp_idle_timeout must be 0 (default) to 1h, got %s", l.IdleTimeout)
	case l.MaxQueries < 0 || l.MaxQueries > 65535:
		return fmt.Errorf("tcp_max_queries must be 0 (default) to 65535, got %d", l.MaxQueries)
	}
	return nil
}

// LimitTCP sets the TCP limits Serve applies; call it before Serve.
func (s *Server) LimitTCP(l TCPLimits, logger *slog.Logger) error {
	if err := l.Check(); err != nil {
		return err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s.tcpLimits, s.tcpLogger = l, logger
	return nil
}

func (s *Server) tcpIdle() time.Duration {
	if s.tcpLimits.IdleTimeout > 0 {
		return s.tcpLimits.IdleTimeout
	}
	return tcpIdleTimeout
}

func (s *Server) tcpQueries() int {
	if s.tcpLimits.MaxQueries > 0 {
		return s.tcpLimits.MaxQueries
	}
	return tcpMaxQueries
}

// tcpListener wraps ln with the connection limits, if there are any.
func (s *Server) tcpListener(ln net.Listener) net.Listener {
	if s.tcpLimits.PerSource == 0 && s.tcpLimits.MaxConnections == 0 {
		return ln
	}
	return newLimitListener(ln, s.tcpLimits.PerSource, s.tcpLimits.MaxConnections, s.tcpLogger)
}

// limitListener closes, at once, connections over the per-source or total
// limit. Only sources with open connections are remembered, so its memory
// is bounded by the connections the kernel lets it hold.
type limitListener struct {
	net.Listener
	perSource, total int
	logger           *slog.Logger

	mu       sync.Mutex
	open     int
	bySource map[netip.Addr]int
	rejected atomic.Uint64
}

func newLimitListener(ln net.Listener, perSource, total int, logger *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, perSource: perSource, total: total, logger: logger, bySource: make(map[netip.Addr]int)}
}

// Accept returns the next connection within the limits; the others are
// closed with a reset (no TIME_WAIT left behind) and never reach the
// DNS server.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var src netip.Addr
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			src = ta.AddrPort().Addr().Unmap()
		}
		l.mu.Lock()
		over := (l.total > 0 && l.open >= l.total) || (l.perSource > 0 && l.bySource[src] >= l.perSource)
		if !over {
			l.open++
			l.bySource[src]++
		}
		l.mu.Unlock()
		if !over {
			return &limitConn{Conn: c, l: l, src: src}, nil
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
		// Log the 1st, 2nd, 4th, 8th... rejection: a flood cannot flood the log.
		if n := l.rejected.Add(1); n&(n-1) == 0 {
			l.logger.Warn("dns tcp: connection over the limit closed", "remote", src.String(),
				"per_source", l.perSource, "max_connections", l.total, "rejected_total", n)
		}
	}
}

func (l *limitListener) release(src netip.Addr) {
	l.mu.Lock()
	l.open--
	if n := l.bySource[src] - 1; n > 0 {
		l.bySource[src] = n
	} else {
		delete(l.bySource, src)
	}
	l.mu.Unlock()
}

// limitConn gives its slot back when closed (once, however often Close is
// called).
type limitConn struct {
	net.Conn
	l    *limitListener
	src  netip.Addr
	once sync.Once
}

func (c *limitConn) Close() error {
	c.once.Do(func() { c.l.release(c.src) })
	return c.Conn.Close()
}
