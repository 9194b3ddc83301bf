// Package broker assembles a running broker from its parts: storage, the
// in-memory record index, the authoritative DNS server and the HTTP API. The
// CLI's serve command and end-to-end tests both start brokers through Run.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/acmebroker/acmebroker/api"
	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/connlimit"
	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/internal/zone"
	"github.com/acmebroker/acmebroker/storage"
)

// ConfigError is a configuration problem found while starting (the process
// should exit with a usage status).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return "config: " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Ready describes a broker that has bound its sockets and is serving.
type Ready struct {
	DNS      []string // host:port, each UDP and TCP
	API      string   // base URL, e.g. http://127.0.0.1:8080
	Accounts int      // registered subdomains loaded at start-up
	Metrics  string   // Prometheus scrape URL; "" when [metrics] listen is off
	Startup  time.Duration
	// Reload re-reads the API's certificate files (tls = "cert"), or
	// re-checks its ACME certificate's renewal information (tls =
	// "acme"), now; the serve command calls it on SIGHUP.
	Reload func()
}

// Run binds every socket (failing before anything else if one cannot be
// had, so a second instance on the same addresses creates no database), opens
// storage, loads the records, calls ready, and serves until ctx ends; then it
// shuts down in order: API (finishing in-flight requests), DNS, storage.
func Run(ctx context.Context, cfg config.Config, logger *slog.Logger, ready func(Ready)) error {
	start := time.Now()
	static, err := dnsserver.ParseRecords(cfg.DNS.Zone, cfg.DNS.Records)
	if err != nil {
		return &ConfigError{fmt.Errorf("dns.records: %w", err)}
	}
	ownNames, err := ownChallengeNames(cfg, static) // apitls.go
	if err != nil {
		return err
	}
	policy := cfg.DNS.TXTPolicy()
	idx := records.New(policy, time.Now)

	// Bind everything before touching storage: an address in use (another
	// instance) fails here, before a database file is created or migrated.
	// Nothing is served until every step below has succeeded.
	dnsSrv, err := dnsserver.Listen(cfg.DNS.Listen)
	if err != nil {
		return err
	}
	defer dnsSrv.Close()
	apiLn, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("api.listen %s: %w (is another process using it? choose another address in [api] listen)", cfg.API.Listen, err)
	}
	defer apiLn.Close() // after Serve, closing again is harmless
	// Metrics ([metrics] listen; nil when off): the listener is bound here,
	// served with the rest and shut down after DNS.
	ins, err := newInstruments(cfg.Metrics.Listen, idx, logger)
	if err != nil {
		return err
	}
	defer ins.shutdown(context.Background(), logger) // releases the listener on an early return

	st, err := OpenStore(ctx, cfg.Storage, logger)
	if err != nil {
		if ctx.Err() != nil { // a stop asked for during start-up is no failure
			logger.Info("stopped during start-up", "err", err)
			return nil
		}
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			logger.Error("closing storage", "err", err)
			return
		}
		logger.Info("storage closed")
	}()

	// used is the store as the zone writer and the API use it (its failures
	// counted).
	used := ins.store(st)
	// The one writer of the zone: the API, the pruner, node sync and the
	// admin-change poller all change storage and idx through it.
	writer := zone.New(zone.Config{
		Zone: cfg.DNS.Zone, Policy: policy, Reserved: Reserved(cfg, static), Now: time.Now, Logger: logger,
	}, used, idx)
	// Follows what admin commands change in a SQLite file while this runs
	// (nil for PostgreSQL, whose notifications carry those too). Its mark is
	// taken before the load so that nothing committed in between is missed.
	poller := adminPoller(st, writer, logger)
	if poller != nil {
		if err := poller.Mark(ctx); err != nil {
			return fmt.Errorf("reading storage: %w", err)
		}
	}
	if err := idx.Load(ctx, st); err != nil {
		if ctx.Err() != nil {
			logger.Info("stopped during start-up", "err", err)
			return nil
		}
		return fmt.Errorf("loading records from storage: %w", err)
	}
	logger.Info("records loaded", "subdomains", idx.Len(), "serial", idx.Serial(), "took", time.Since(start).Round(time.Millisecond))

	jar, err := cookieJar(cfg.DNS.Cookies, logger) // dnslimits.go; nil when off
	if err != nil {
		return &ConfigError{err}
	}
	// DNSSEC ([dns.dnssec]; dnssec.go): nil, nil when off.
	signer, keyNode, err := setupDNSSEC(ctx, cfg.DNS, used, logger)
	if err != nil {
		if ctx.Err() != nil {
			logger.Info("stopped during start-up", "err", err)
			return nil
		}
		return err
	}
	hcfg := handlerConfig(cfg.DNS, static)
	hcfg.Cookies = jar
	hcfg.OwnNames = ownNames
	if signer != nil {
		hcfg.Signer = signer
	}
	dnsHandler, err := dnsserver.NewHandler(hcfg, idx, logger)
	if err != nil {
		return &ConfigError{fmt.Errorf("dns: %w", err)}
	}
	// Keeps idx current with other nodes' changes (shared PostgreSQL); nil
	// for SQLite. Started below, stopped before storage closes.
	watcher := nodeSync(st, writer, cfg.Storage, logger)
	var syncStatus api.SyncStatus
	if watcher != nil {
		syncStatus = watcher
	}
	// Key checks with bounded bcrypt work (legacykeys.go).
	keys, scanKeys := keyVerifier(st, cfg.API.BcryptPerSecond, logger)
	apiHandler := api.New(api.Config{
		Zone:           cfg.DNS.Zone,
		Registration:   cfg.API.Registration,
		CORSOrigins:    cfg.API.CORSOrigins,
		TrustedProxies: storage.ParsePrefixes(cfg.API.TrustedProxies),
		BasePath:       cfg.API.BasePath,
		TXTPolicy:      policy,
		Limits: api.Limits{
			RegisterPerSource: cfg.API.RegisterLimit, UpdatePerAccount: cfg.API.UpdateLimit,
			UpdatePerSource: cfg.API.UpdateSourceLimit, AuthFailPerSource: cfg.API.AuthFailLimit,
		},
	}, api.Deps{Accounts: used, Zone: writer, Logger: logger, Now: time.Now, Sync: syncStatus, Keys: keys,
		WriteProbe: func(ctx context.Context) error {
			return used.PutValue(ctx, "health/write-probe", []byte("ok"), time.Now())
		}})

	// The API's certificate ([api] tls; nil for plain HTTP): its own
	// dns-01 challenges go through the zone writer like any value.
	apiCert, err := newAPITLS(cfg, static, used, writer, logger)
	if err != nil {
		return err
	}

	startNotify, err := setupTransfer(cfg.DNS.Transfer, idx, dnsHandler, dnsSrv, writer.Quiesce, ins.transferObserver())
	if err != nil {
		return err
	}
	dnsServed, limiter, err := dnsLimits(cfg.DNS, dnsSrv, dnsHandler, jar, ins, logger) // dnslimits.go
	if err != nil {
		return &ConfigError{err}
	}
	if err := fastPath(cfg.DNS, dnsSrv, dnsHandler, limiter, ins, logger); err != nil { // fastpath.go
		return &ConfigError{err}
	}
	// Connection limits in all and per source prefix, within the
	// open-files limit (fdlimit.go); net/http's own errors as JSON.
	limitedLn := connlimit.Wrap(apiLn, "api", connlimit.Limits{
		Total:     apiConnections(cfg, logger),
		PerPrefix: cfg.API.ConnectionsPerSource,
		Exempt:    storage.ParsePrefixes(cfg.API.TrustedProxies),
	}, logger)
	httpSrv := api.NewHTTPServer(ins.api(apiHandler), logger)
	httpSrv.IdleTimeout = cfg.API.IdleTimeout.Duration
	httpSrv.TLSConfig = apiCert.config()

	// The background loops stop (and are waited for) before storage closes.
	defer background(scanKeys)()
	defer background(func(ctx context.Context) {
		writer.PruneEvery(ctx, pruneInterval(policy.Window))
	})()
	if poller != nil {
		defer background(poller.Run)()
	}
	if watcher != nil {
		defer background(watcher.Run)()
	}
	if keyNode != nil {
		defer background(keyNode.Run)()
	}

	errc := make(chan error, 3)
	dnsCtx, cancelDNS := context.WithCancel(context.Background())
	defer cancelDNS()
	dnsDone := make(chan struct{})
	go func() {
		defer close(dnsDone)
		// Metrics outside the rate limiter: they count what was really sent.
		if err := dnsSrv.Serve(dnsCtx, ins.dns(dnsServed)); err != nil {
			errc <- fmt.Errorf("dns: %w", err)
		}
	}()
	// The API's certificate is kept once DNS is served (an ACME CA looks
	// the challenges up there); until there is one, HTTPS handshakes fail.
	defer background(apiCert.run)()
	go func() {
		var err error
		if apiCert != nil {
			err = httpSrv.ServeTLS(limitedLn, "", "")
		} else {
			err = httpSrv.Serve(api.JSONErrors(limitedLn))
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("api: %w", err)
		}
	}()

	ins.health(nodeHealth(apiCert))
	ins.serve(errc)
	stopNotify := startNotify()
	defer stopNotify()

	scheme := "http"
	if apiCert != nil {
		scheme = "https"
	}
	r := Ready{DNS: dnsSrv.Addrs(), API: scheme + "://" + apiLn.Addr().String() + cfg.API.BasePath, Accounts: idx.Len(), Startup: time.Since(start), Metrics: ins.url(),
		Reload: apiCert.reload}
	logger.Info("serving", "zone", cfg.DNS.Zone, "dns", r.DNS, "api", r.API, "metrics", r.Metrics, "startup", r.Startup.Round(time.Millisecond))
	if ready != nil {
		ready(r)
	}

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down: refusing new connections, finishing requests in flight", "deadline", shutdownTimeout)
	case runErr = <-errc:
	}
	stopping := time.Now()
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// The API first: updates in flight finish (a 200 means the value is
	// stored) while DNS still answers. Past the deadline the connections
	// left are closed; their clients get no answer and retry.
	if err := httpSrv.Shutdown(shutCtx); err != nil {
		logger.Warn("api shutdown: requests still running at the deadline, closing their connections", "err", err)
		_ = httpSrv.Close()
	}
	cancelDNS()
	select {
	case <-dnsDone:
	case <-shutCtx.Done():
		logger.Warn("dns shutdown: queries still running at the deadline")
	}
	ins.shutdown(shutCtx, logger)
	logger.Info("servers stopped; closing storage", "took", time.Since(stopping).Round(time.Millisecond))
	return runErr // deferred: the pruner stops, then storage closes
}

// shutdownTimeout bounds a graceful shutdown: API requests in flight, then
// DNS queries in flight, then the metrics listener (storage closes after).
const shutdownTimeout = 10 * time.Second

// background runs run in a goroutine until the returned stop is called;
// stop cancels run's context and waits for it to return.
func background(run func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	return func() { cancel(); <-done }
}

// pruneInterval: aged-out values are deleted, and the deletion sent to the
// secondaries, within half a window of leaving it and at most a minute
// (at least a second apart). A pass looks only at the few subdomains that
// hold more than the always-kept values.
func pruneInterval(window time.Duration) time.Duration {
	return min(max(window/2, time.Second), time.Minute)
}
