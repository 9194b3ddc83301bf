// Package api is the broker's HTTP API, wire-compatible with acme-dns:
// POST /register, POST /update and GET /health, with the same paths, headers,
// JSON bodies, status codes and error strings, so existing ACME clients
// (lego, certbot's hook, acme.sh, cert-manager, Caddy, Traefik) work as they
// are; plus acmebroker's own POST /account/allowfrom, POST /account/rotate
// and DELETE /account (see docs/api.md). It knows nothing of SQL: it reads
// accounts from a read-only view and makes every change through the zone
// writer (internal/zone), which keeps storage and what DNS serves in step.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/acmebroker/acmebroker/internal/secret"
	"github.com/acmebroker/acmebroker/internal/zone"
	"github.com/acmebroker/acmebroker/storage"
)

// Accounts is the read-only view of accounts and tokens the API
// authenticates against (storage.Store).
type Accounts interface {
	Account(ctx context.Context, username string) (storage.Account, error)
	Token(ctx context.Context, id string) (storage.Token, error)
	Ping(ctx context.Context) error
	PersistRecords(ctx context.Context, subdomain string) ([]storage.PersistRecord, error)
}

// Zone makes every change the API asks for (internal/zone.Writer): durable
// first, then served. The API never writes storage or the DNS server's
// view itself.
type Zone interface {
	Register(ctx context.Context, req zone.NewAccount) (zone.Registration, error)
	SetTXT(ctx context.Context, subdomain, value string) ([]storage.TXTRecord, error)
	Delete(ctx context.Context, a storage.Account) error
	RotateKey(ctx context.Context, a storage.Account) (string, error)
	UpgradeKeyHash(ctx context.Context, a storage.Account, key string) error
	SetAllowFrom(ctx context.Context, a storage.Account, allow []netip.Prefix) error
	SetPersist(ctx context.Context, subdomain string, rec storage.PersistRecord) ([]storage.PersistRecord, error)
	DeletePersist(ctx context.Context, subdomain, issuer string) ([]storage.PersistRecord, bool, error)
}

// Registration modes (Config.Registration).
const (
	RegistrationOpen     = "open"     // anyone may register, as with acme-dns
	RegistrationToken    = "token"    // a bearer token is needed
	RegistrationDisabled = "disabled" // POST /register does not exist
)

// Config of the API.
type Config struct {
	Zone           string // the broker's zone, for "fulldomain"
	Registration   string // RegistrationOpen (default), RegistrationToken or RegistrationDisabled
	CORSOrigins    []string
	TrustedProxies []netip.Prefix
	BasePath       string // "" or "/prefix"
	TXTPolicy      storage.TXTPolicy
	MaxBodyBytes   int64 // default 16 KiB
	// MaxHeaderBytes caps the request line and headers (431 JSON above
	// it); default 16 KiB. NewHTTPServer lets net/http read up to
	// httpHeaderCeiling so that this check, not net/http's plain text,
	// answers.
	MaxHeaderBytes int64
	Limits         Limits
}

// SyncStatus reports whether this node hears of the changes other nodes
// make (several nodes on one database).
type SyncStatus interface {
	// SyncProblem is "" while changes arrive, else what is wrong.
	SyncProblem() string
}

// Deps are the injected collaborators.
type Deps struct {
	Accounts Accounts
	Zone     Zone
	Logger   *slog.Logger
	Now      func() time.Time
	Sync     SyncStatus // nil: one node, nothing to hear of
	// Keys checks API keys with bounded bcrypt work; nil: a verifier
	// allowing DefaultBcryptPerSecond.
	Keys *secret.Verifier
	// WriteProbe makes one small write to storage. /health calls it (at
	// most every few seconds) while writes are failing, so that a node
	// nobody writes through (a load balancer took it out on its 503) sees
	// storage recover. Nil: /health waits for a real write.
	WriteProbe func(ctx context.Context) error
}

// DefaultBcryptPerSecond bounds bcrypt compares (legacy hashes) when Deps
// has no Keys.
const DefaultBcryptPerSecond = 5

type server struct {
	cfg Config
	Deps
	regLimit, updLimit, updSrcLimit, authFail *limiter
	writes                                    writeState
}

// New returns the API's http.Handler.
func New(cfg Config, d Deps) http.Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 16 << 10
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 16 << 10
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Keys == nil {
		d.Keys = secret.NewVerifier(DefaultBcryptPerSecond, d.Now)
	}
	s := &server{cfg: cfg, Deps: d,
		regLimit:    newLimiter(cfg.Limits.RegisterPerSource),
		updLimit:    newLimiter(cfg.Limits.UpdatePerAccount),
		updSrcLimit: newLimiter(cfg.Limits.UpdatePerSource),
		authFail:    newLimiter(cfg.Limits.AuthFailPerSource),
	}

	r := chi.NewRouter()
	r.Use(s.recoverer, s.headerLimit, s.cors, s.trackWrites)
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: the API has POST /register, POST /update, POST /account/allowfrom, POST /account/rotate, GET and DELETE /account, GET and POST /persist, DELETE /persist/{issuer} and GET /health")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "wrong HTTP method: /register, /update, /account/allowfrom and /account/rotate take POST, /account takes GET and DELETE, /persist takes GET and POST, /persist/{issuer} DELETE, /health takes GET")
	})
	routes := func(r chi.Router) {
		if cfg.Registration != RegistrationDisabled {
			r.Post("/register", s.register)
		}
		r.Post("/update", s.update)
		r.Post("/account/allowfrom", s.setAllowFrom)
		r.Post("/account/rotate", s.rotateKey)
		r.Delete("/account", s.deleteAccount)
		r.Get("/account", s.account)     // account.go
		r.Get("/persist", s.listPersist) // persist.go: dns-persist-01 records
		r.Post("/persist", s.setPersist)
		r.Delete("/persist/{issuer}", s.deletePersist)
		r.Get("/health", s.health)
	}
	if cfg.BasePath != "" {
		r.Route(cfg.BasePath, routes)
	} else {
		routes(r)
	}
	return r
}

// httpHeaderCeiling is how much request line and headers net/http reads
// before it answers 431 itself; the handler's own limit (MaxHeaderBytes,
// JSON) sits below it.
const httpHeaderCeiling = 64 << 10

// DefaultIdleTimeout closes a keep-alive connection idle this long: ACME
// clients send a register and an update in quick succession, then wait
// minutes for validation, so holding it longer only holds a descriptor.
const DefaultIdleTimeout = 10 * time.Second

// NewHTTPServer wraps h with the timeouts and limits an internet-facing
// server needs (slowloris, huge headers, idle keep-alive connections).
// Serve it on a listener wrapped with JSONErrors (and connection limits,
// internal/connlimit).
func NewHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    httpHeaderCeiling,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
}

func (s *server) health(w http.ResponseWriter, r *http.Request) {
	now := s.Now()
	failingSince, failure, recentOK := s.writes.state(now)
	// A change that succeeded a moment ago proves storage works; only
	// otherwise is it asked (under load a ping may wait for a database
	// connection that the writes themselves get).
	if !recentOK {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.Accounts.Ping(ctx); err != nil {
			// DNS keeps answering what it had loaded (the index is in memory);
			// the API cannot write until storage is back.
			s.Logger.Warn("health: storage unreachable", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "degraded", "dns": "serving from memory", "storage": "unreachable"})
			return
		}
	}
	if !failingSince.IsZero() && s.WriteProbe != nil && s.writes.probeDue(now) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		err := s.WriteProbe(ctx)
		cancel()
		if err == nil {
			s.Logger.Info("health: storage takes writes again")
			s.writes.succeeded(now)
			failingSince = time.Time{}
		}
	}
	if !failingSince.IsZero() {
		// Storage answers, yet the last writes failed (a full disk, a
		// read-only database, a lock held elsewhere): degraded until one
		// succeeds.
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "degraded", "dns": "serving from memory",
			"storage": "ok", "writes": "failing (" + failure + ") since " + failingSince.UTC().Format(time.RFC3339)})
		return
	}
	if s.Sync != nil {
		if p := s.Sync.SyncProblem(); p != "" {
			// Storage answers, so the API works; DNS may lag behind
			// other nodes until the node hears of their changes again.
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "degraded", "dns": "may miss other nodes' changes", "storage": "ok", "sync": p})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "storage": "ok"})
}

// storageError answers a failed storage call: 503 when the database is
// unavailable (the client should retry), 500 otherwise; "db_error" either way,
// as acme-dns says.
func (s *server) storageError(w http.ResponseWriter, r *http.Request, op string, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away; nobody to answer
	}
	s.Logger.Error(op+" failed", "err", err, "remote", r.RemoteAddr)
	unavailable := errors.Is(err, storage.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
	s.writes.failed(s.Now(), unavailable)
	if unavailable {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "db_error", "the database is unavailable (locked by another process, full, or gone; the broker's log says which); nothing was changed, retry after Retry-After seconds")
		return
	}
	writeError(w, http.StatusInternalServerError, "db_error", "the database failed; nothing was changed")
}
