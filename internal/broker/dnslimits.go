package broker

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/dnsserver/rrl"
	"github.com/acmebroker/acmebroker/internal/config"
)

// dnsLimits applies the abuse limits of c to the DNS server: TCP
// connection limits on srv, and response rate limiting around h (the
// handler to serve is returned; the limiter's counters go to ins).
func dnsLimits(c config.DNS, srv *dnsserver.Server, h dns.Handler, ins *instruments, logger *slog.Logger) (dns.Handler, error) {
	if err := srv.LimitTCP(dnsserver.TCPLimits{
		PerSource:      c.TCPPerSource,
		MaxConnections: c.TCPMaxConnections,
		IdleTimeout:    c.TCPIdleTimeout.Duration,
		MaxQueries:     c.TCPMaxQueries,
	}, logger); err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	if !c.RRL.Enabled {
		return h, nil
	}
	r := c.RRL
	lim, err := rrl.New(rrl.Config{
		ResponsesPerSecond: r.ResponsesPerSecond,
		NXDomainPerSecond:  r.NXDomainPerSecond,
		ErrorsPerSecond:    r.ErrorsPerSecond,
		LargePerSecond:     r.LargePerSecond,
		LargeSize:          r.LargeSize,
		Slip:               r.Slip,
		Window:             r.Window.Duration,
		IPv4Prefix:         r.IPv4Prefix,
		IPv6Prefix:         r.IPv6Prefix,
		TableSize:          r.TableSize,
		Exempt:             prefixes(r.Exempt),
	}, time.Now, logger)
	if err != nil {
		return nil, fmt.Errorf("dns.rrl: %w", err)
	}
	if ins != nil {
		if err := ins.m.WatchRRL(lim); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return lim.Wrap(h), nil
}
