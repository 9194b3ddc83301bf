package dnsserver

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/acmebroker/acmebroker/internal/connlimit"
)

// TCPLimits bound what TCP clients may hold. A zero field keeps the
// built-in default (see server.go) or, for the connection counts, means no
// limit.
type TCPLimits struct {
	// PerSource is the most connections open at once from one source
	// prefix (an IPv4 /24 or IPv6 /56, connlimit.PrefixOf); a new one
	// over it is closed as soon as it is accepted.
	PerSource int
	// MaxConnections is the most connections open at once in all (per
	// listen address).
	MaxConnections int
	// IdleTimeout closes a connection that has sent no query for this long
	// after its last answer.
	IdleTimeout time.Duration
	// MaxQueries closes a connection after this many queries.
	MaxQueries int
	// MaxLifetime closes a connection this long after it was accepted,
	// once its current answer is written (a zone transfer in progress is
	// not cut); 0: the default above.
	MaxLifetime time.Duration
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
	case l.MaxLifetime < 0 || l.MaxLifetime > 24*time.Hour:
		return fmt.Errorf("tcp_max_lifetime must be 0 (default) to 24h, got %s", l.MaxLifetime)
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

// tcpListener wraps ln with the connection limits (internal/connlimit).
// It always wraps: even without limits, a failed accept (out of file
// descriptors) is then logged and paused on instead of spinning.
func (s *Server) tcpListener(ln net.Listener) net.Listener {
	lifetime := s.tcpLimits.MaxLifetime
	if lifetime == 0 {
		lifetime = tcpMaxLifetime
	}
	return connlimit.Wrap(ln, "dns tcp", connlimit.Limits{
		Total:     s.tcpLimits.MaxConnections,
		PerPrefix: s.tcpLimits.PerSource,
		Lifetime:  lifetime,
	}, s.tcpLogger)
}
