package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/nodesync"
	"github.com/acmebroker/acmebroker/internal/zone"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/postgres"
	"github.com/acmebroker/acmebroker/storage/sqlite"
	"github.com/miekg/dns"
)

// OpenStore opens the configured storage engine for the broker.
func OpenStore(ctx context.Context, c config.Storage, logger *slog.Logger) (storage.Store, error) {
	return openStore(ctx, c, logger, false)
}

// OpenAdminStore opens the configured storage engine for an admin command:
// its changes to what DNS serves reach a broker running on the same SQLite
// file (which polls for them; PostgreSQL notifies every node anyway).
func OpenAdminStore(ctx context.Context, c config.Storage, logger *slog.Logger) (storage.Store, error) {
	return openStore(ctx, c, logger, true)
}

func openStore(ctx context.Context, c config.Storage, logger *slog.Logger, admin bool) (storage.Store, error) {
	switch c.Engine {
	case "sqlite":
		st, err := sqlite.Open(ctx, c.DSN, sqlite.Options{Logger: logger, BusyTimeout: c.BusyTimeout.Duration, Announce: admin})
		if err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		return st, nil
	case "postgres":
		st, err := postgres.Open(ctx, c.DSN, postgres.Options{Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("storage.engine %q is not supported", c.Engine)
}

// nodeSync returns the watcher that keeps idx current with other nodes'
// changes, or nil for an engine only one node uses (SQLite).
func nodeSync(st storage.Store, w *zone.Writer, c config.Storage, logger *slog.Logger) *nodesync.Watcher {
	pg, ok := st.(*postgres.Store)
	if !ok {
		return nil
	}
	var n nodesync.Notifier
	if pg.Notifies() {
		n = nodesync.NotifierFunc(func(ctx context.Context) (nodesync.Subscription, error) {
			l, err := pg.Listen(ctx)
			if errors.Is(err, postgres.ErrNoNotify) {
				return nil, fmt.Errorf("%w: %w", nodesync.ErrUnsupported, err)
			}
			if err != nil {
				return nil, err
			}
			return l, nil
		})
	}
	return nodesync.New(nodesync.Config{ResyncInterval: c.ResyncInterval.Duration, Logger: logger}, w, n)
}

// adminPoller returns the poller that applies to idx what admin commands
// change in a SQLite file the broker serves from, or nil for PostgreSQL.
func adminPoller(st storage.Store, w *zone.Writer, logger *slog.Logger) *nodesync.Poller {
	lite, ok := st.(*sqlite.Store)
	if !ok {
		return nil
	}
	return nodesync.NewPoller(nodesync.PollConfig{Logger: logger}, lite, w)
}

// Reserved says why an account may not take a subdomain: the names the
// zone's own records use (static records, delegations, the name server's
// name) and the first labels of the API certificate's names (apitls.go)
// are not for accounts. The broker and the admin commands use it alike.
func Reserved(cfg config.Config, static []dns.RR) func(string) string {
	return reservedWithACME(dnsserver.Reserved(cfg.DNS.Zone, cfg.DNS.NSName, static), cfg)
}
