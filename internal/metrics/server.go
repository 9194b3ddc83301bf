package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves GET /metrics on its own listener, apart from the API, so
// that it can be bound to loopback or a management network.
type Server struct {
	ln  net.Listener
	srv *http.Server
	mux *http.ServeMux
}

// Listen binds addr; nothing is served until Serve.
func (m *Metrics) Listen(addr string, logger *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %s: %w (is another process using it? choose another address in [metrics] listen, or \"\" to turn metrics off)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ErrorHandling:     promhttp.ContinueOnError,
		Timeout:           10 * time.Second,
		EnableOpenMetrics: true,
	}))
	return &Server{ln: ln, mux: mux, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}}, nil
}

// HandleHealth serves h at GET /health beside the metrics (what a
// monitor of the node asks, when the API itself cannot answer yet). Call
// it before Serve.
func (s *Server) HandleHealth(h http.Handler) { s.mux.Handle("GET /health", h) }

// Addr is the bound host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown; it returns nil then.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Shutdown stops accepting scrapes and waits (until ctx ends) for those in
// flight; then it closes what is left. It also releases the listener of a
// server never served, and may be called more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	_ = s.ln.Close() // not yet tracked by srv if Serve never ran
	return err
}
