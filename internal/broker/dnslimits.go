package broker

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/dnsserver/cookie"
	"github.com/acmebroker/acmebroker/dnsserver/rrl"
	"github.com/acmebroker/acmebroker/internal/config"
)

// cookieJar makes the DNS Cookie jar of c, or nil when cookies are off.
// Without a configured secret a random one is made: cookies then stay valid
// only on this node until it restarts.
func cookieJar(c config.Cookies, logger *slog.Logger) (*cookie.Jar, error) {
	if !c.Enabled {
		return nil, nil
	}
	var (
		cur cookie.Secret
		err error
	)
	if c.Secret == "" {
		cur, err = cookie.NewSecret()
		logger.Info("dns cookies: no secret configured, using a random one; give every node the same dns.cookies.secret (openssl rand -hex 16) so resolvers keep their cookie across nodes and restarts")
	} else {
		cur, err = cookie.ParseSecret(c.Secret)
	}
	if err != nil {
		return nil, fmt.Errorf("dns.cookies.secret: %w", err)
	}
	var prev []cookie.Secret
	for i, s := range c.PreviousSecrets {
		p, err := cookie.ParseSecret(s)
		if err != nil {
			return nil, fmt.Errorf("dns.cookies.previous_secrets[%d]: %w", i, err)
		}
		prev = append(prev, p)
	}
	return cookie.NewJar(cur, prev, time.Now), nil
}

// dnsLimits applies the abuse limits of c to the DNS server: TCP
// connection limits on srv, and response rate limiting around h (the
// handler to serve is returned, with the limiter for the fast path, nil
// when off; the limiter's counters go to ins). Queries with a valid DNS
// server cookie (jar, nil when off) are not rate limited.
func dnsLimits(c config.DNS, srv *dnsserver.Server, h dns.Handler, jar *cookie.Jar, ins *instruments, logger *slog.Logger) (dns.Handler, *rrl.Limiter, error) {
	if err := srv.LimitTCP(c.TCPLimits(), logger); err != nil {
		return nil, nil, fmt.Errorf("dns: %w", err)
	}
	if !c.RRL.Enabled {
		return h, nil, nil
	}
	rc := c.RRL.Limiter()
	if jar != nil {
		rc.Verified = jar.Verified
	}
	lim, err := rrl.New(rc, time.Now, logger)
	if err != nil {
		return nil, nil, fmt.Errorf("dns.rrl: %w", err)
	}
	if ins != nil {
		if err := ins.m.WatchRRL(lim); err != nil {
			return nil, nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return lim.Wrap(h), lim, nil
}
