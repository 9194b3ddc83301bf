package broker

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

// OpenStore opens the configured storage engine.
func OpenStore(ctx context.Context, c config.Storage, logger *slog.Logger) (storage.Store, error) {
	switch c.Engine {
	case "sqlite":
		st, err := sqlite.Open(ctx, c.DSN, sqlite.Options{Logger: logger, BusyTimeout: c.BusyTimeout.Duration})
		if err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("storage.engine %q is not supported", c.Engine)
}

// prefixes converts CIDRs that config.Validate has already checked.
func prefixes(list []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := config.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func checkKeyPair(cert, key string) error {
	_, err := tls.LoadX509KeyPair(cert, key)
	return err
}
