package dnsserver

import (
	"log/slog"
	"net"
	"time"

	"github.com/acmebroker/acmebroker/internal/connlimit"
	"github.com/acmebroker/acmebroker/internal/fieldcheck"
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

// Check reports every invalid field, each named by its key in the [dns]
// table of config.toml (fieldcheck.Error).
func (l TCPLimits) Check() error {
	var errs fieldcheck.List
	if l.PerSource < 0 {
		errs.Add("tcp_per_source", "must be 0 (no limit) or a number of connections")
	}
	if l.MaxConnections < 0 {
		errs.Add("tcp_max_connections", "must be 0 (no limit) or a number of connections")
	}
	if d := l.IdleTimeout; d != 0 && (d < 100*time.Millisecond || d > time.Hour) {
		errs.Add("tcp_idle_timeout", "%s is out of range: 100ms to 1h (0: the default, %s)", d, tcpIdleTimeout)
	}
	if q := l.MaxQueries; q < 0 || q > 65535 {
		errs.Add("tcp_max_queries", "%d is out of range: 1 to 65535 (0: the default, %d)", q, tcpMaxQueries)
	}
	if d := l.MaxLifetime; d != 0 && (d < time.Second || d > 24*time.Hour) {
		errs.Add("tcp_max_lifetime", "%s is out of range: 1s to 24h (0: the default, %s)", d, tcpMaxLifetime)
	}
	return errs.Err()
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
