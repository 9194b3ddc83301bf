// Package api is the broker's HTTP API, wire-compatible with acme-dns:
// POST /register, POST /update and GET /health, with the same paths, headers,
// JSON bodies, status codes and error strings, so existing ACME clients
// (lego, certbot's hook, acme.sh, cert-manager, Caddy, Traefik) work as they
// are. It knows nothing of SQL: it talks to a Store and keeps the DNS
// server's in-memory Index current after every durable write.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/acmebroker/acmebroker/storage"
)

// Store is the part of storage.Store the API uses.
type Store interface {
	CreateAccount(ctx context.Context, a storage.Account) (uint32, error)
	Account(ctx context.Context, username string) (storage.Account, error)
	UpdateKeyHash(ctx context.Context, username, keyHash string) error
	SetTXT(ctx context.Context, subdomain, value string, at time.Time, p storage.TXTPolicy) ([]storage.TXTRecord, uint32, error)
	UpdateAllowFrom(ctx context.Context, username string, allow []netip.Prefix) error
	DeleteAccount(ctx context.Context, username string) (uint32, error)
	CreateAccountWithToken(ctx context.Context, a storage.Account, tokenID string) (uint32, error)
	Token(ctx context.Context, id string) (storage.Token, error)
	Ping(ctx context.Context) error
}

// Registration modes (Config.Registration).
const (
	RegistrationOpen     = "open"     // anyone may register, as with acme-dns
	RegistrationToken    = "token"    // a bearer token is needed
	RegistrationDisabled = "disabled" // POST /register does not exist
)

// Index is the DNS server's in-memory view, updated after each write.
type Index interface {
	Add(subdomain string, serial uint32)
	Set(subdomain string, recs []storage.TXTRecord, serial uint32)
	Remove(subdomain string, serial uint32)
}

// Config of the API.
type Config struct {
	Zone           string // the broker's zone, for "fulldomain"
	Registration   string // RegistrationOpen (default), RegistrationToken or RegistrationDisabled
	CORSOrigins    []string
	TrustedProxies []netip.Prefix
	BasePath       string // "" or "/prefix"
	TXTPolicy      storage.TXTPolicy
	MaxBodyBytes   int64 // default 16 KiB
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
	Store  Store
	Index  Index
	Logger *slog.Logger
	Now    func() time.Time
	Sync   SyncStatus // nil: one node, nothing to hear of
}

type server struct {
	cfg Config
	Deps
	regLimit, updLimit, updSrcLimit, authFail *limiter
}

// New returns the API's http.Handler.
func New(cfg Config, d Deps) http.Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 16 << 10
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	s := &server{cfg: cfg, Deps: d,
		regLimit:    newLimiter(cfg.Limits.RegisterPerSource),
		updLimit:    newLimiter(cfg.Limits.UpdatePerAccount),
		updSrcLimit: newLimiter(cfg.Limits.UpdatePerSource),
		authFail:    newLimiter(cfg.Limits.AuthFailPerSource),
	}

	r := chi.NewRouter()
	r.Use(s.recoverer, s.cors)
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: the API has POST /register, POST /update, POST /account/allowfrom, POST /account/rotate, DELETE /account and GET /health")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "wrong HTTP method: /register, /update, /account/allowfrom and /account/rotate take POST, /account takes DELETE, /health takes GET")
	})
	routes := func(r chi.Router) {
		if cfg.Registration != RegistrationDisabled {
			r.Post("/register", s.register)
		}
		r.Post("/update", s.update)
		r.Post("/account/allowfrom", s.setAllowFrom)
		r.Post("/account/rotate", s.rotateKey)
		r.Delete("/account", s.deleteAccount)
		r.Get("/account", s.account) // account.go
		r.Get("/health", s.health)
	}
	if cfg.BasePath != "" {
		r.Route(cfg.BasePath, routes)
	} else {
		routes(r)
	}
	return r
}

// NewHTTPServer wraps h with the timeouts and limits an internet-facing
// server needs (slowloris, huge headers).
func NewHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
}

func (s *server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Store.Ping(ctx); err != nil {
		// DNS keeps answering what it had loaded (the index is in memory);
		// the API cannot write until storage is back.
		s.Logger.Warn("health: storage unreachable", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "degraded", "dns": "serving from memory", "storage": "unreachable"})
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
	if errors.Is(err, storage.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "db_error", "the database is unavailable (locked by another process, full, or gone; the broker's log says which); nothing was changed, retry after Retry-After seconds")
		return
	}
	writeError(w, http.StatusInternalServerError, "db_error", "the database failed; nothing was changed")
}
