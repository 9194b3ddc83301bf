package broker

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/dnsserver/rrl"
	"github.com/acmebroker/acmebroker/internal/config"
)

// fastPath enables the DNS fast path on srv as c says (dns.fast_path,
// answer_cache_mb, udp_sockets): the same handler, the same rate limiter
// (its buckets shared with the full path) and the same query metrics.
func fastPath(c config.DNS, srv *dnsserver.Server, h *dnsserver.Handler, limiter *rrl.Limiter, ins *instruments, logger *slog.Logger) error {
	if !c.FastPath {
		return nil
	}
	cfg := dnsserver.FastConfig{
		CacheBytes: c.AnswerCacheMB << 20,
		UDPSockets: c.UDPSockets,
		Observer:   ins.dnsObserver(),
		Now:        time.Now, // the index's clock (records.New in Run)
		Logger:     logger,
	}
	if limiter != nil {
		cfg.Limiter = limiter
	}
	f, err := h.NewFastPath(cfg)
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	if ins != nil {
		if err := ins.m.WatchFastPath(f); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	srv.EnableFastPath(f)
	return nil
}

// dnsObserver counts the fast path's answers with the other DNS queries;
// nil when metrics are off.
func (in *instruments) dnsObserver() dnsserver.QueryObserver {
	if in == nil {
		return nil
	}
	return in.m.DNSObserver()
}
