package broker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/dnssec"
)

// DNSSECStore opens the key store of the zone as [dns.dnssec] says (its
// key file read and checked): for the broker and for the `acmebroker
// dnssec` commands. A key file that cannot be read is a *ConfigError.
func DNSSECStore(c config.DNS, v dnssec.Values, logger *slog.Logger) (*dnssec.Store, error) {
	var sealer *dnssec.Sealer
	if c.DNSSEC.KeyFile != "" {
		s, err := dnssec.LoadKeyFile(c.DNSSEC.KeyFile)
		if err != nil {
			return nil, &ConfigError{fmt.Errorf("dns.dnssec.key_file: %w", err)}
		}
		sealer = s
	}
	return dnssec.NewStore(v, dnssec.StoreConfig{Zone: c.Zone, Sealer: sealer, Logger: logger})
}

// DNSSECGeneration is what keys a zone gets when it has none.
func DNSSECGeneration(c config.DNSSEC) dnssec.Generation {
	alg, _ := dnssec.ParseAlgorithm(c.Algorithm) // validated
	return dnssec.Generation{Algorithm: alg, Split: c.SplitKeys}
}

// RolloverTiming is what a rollover of the zone of c waits for: its TTLs,
// the parent's DS TTL, two key refresh intervals for every node to follow
// a step, and the safety margin.
func RolloverTiming(c config.DNS, static []dns.RR) dnssec.Timing {
	sec := func(n uint32) time.Duration { return time.Duration(n) * time.Second }
	return dnssec.Timing{
		DNSKEYTTL:   sec(c.DNSSEC.DNSKEYTTL),
		MaxTTL:      sec(dnsserver.MaxTTL(handlerConfig(c, static))),
		ParentDSTTL: sec(c.DNSSEC.ParentDSTTL),
		Propagation: 2 * c.DNSSEC.KeyRefresh.Duration,
		Safety:      c.DNSSEC.SafetyMargin.Duration,
	}
}

// handlerConfig is the part of the DNS handler's configuration that
// follows from [dns] alone.
func handlerConfig(c config.DNS, static []dns.RR) dnsserver.Config {
	return dnsserver.Config{
		Zone:              c.Zone,
		NSName:            c.NSName,
		NSAdmin:           c.NSAdmin,
		Records:           static,
		TXTTTL:            c.TXTTTL,
		NegativeTTL:       c.NegativeTTL,
		SOATTL:            c.SOATTL,
		MaxUDPSize:        c.MaxUDPSize,
		CookielessUDPSize: c.Cookies.CookielessUDPSize,
	}
}

// setupDNSSEC loads the zone's keys (generating them at the very first
// start, once for all nodes) and returns the signer for the DNS handler
// and the loop that keeps it on the keys in the database; nil, nil when
// signing is off.
func setupDNSSEC(ctx context.Context, c config.DNS, v dnssec.Values, logger *slog.Logger) (*dnssec.Signer, *dnssec.Node, error) {
	if !c.DNSSEC.Enabled {
		return nil, nil, nil
	}
	store, err := DNSSECStore(c, v, logger)
	if err != nil {
		return nil, nil, err
	}
	ks, err := store.LoadOrCreate(ctx, DNSSECGeneration(c.DNSSEC))
	if err != nil {
		return nil, nil, fmt.Errorf("dnssec: %w", err)
	}
	signer, err := dnssec.NewSigner(dnssec.SignerConfig{
		Zone: c.Zone, DNSKEYTTL: c.DNSSEC.DNSKEYTTL, Validity: c.DNSSEC.SignatureValidity.Duration, Logger: logger,
	}, ks)
	if err != nil {
		return nil, nil, &ConfigError{fmt.Errorf("dns.dnssec: %w", err)}
	}
	node := dnssec.NewNode(store, signer, ks, dnssec.NodeConfig{Refresh: c.DNSSEC.KeyRefresh.Duration, Logger: logger})
	keys := make([]string, 0, len(ks.Keys))
	for _, k := range ks.Keys {
		keys = append(keys, k.String())
	}
	logger.Info("dnssec: signing", "zone", c.Zone, "keys", keys)
	return signer, node, nil
}
