package broker

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/acmebroker/acmebroker/internal/metrics"
	"github.com/acmebroker/acmebroker/storage"
)

// instruments are the optional Prometheus metrics of a running broker
// ([metrics] listen). A nil *instruments (metrics off) passes everything
// through unchanged, so Run has no branches for it.
type instruments struct {
	m   *metrics.Metrics
	srv *metrics.Server
}

// newInstruments creates the metrics on a registry of their own and binds
// their listener; nil, nil when metrics are off.
func newInstruments(listen string, idx metrics.IndexStats, logger *slog.Logger) (*instruments, error) {
	if listen == "" {
		return nil, nil
	}
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	if err := m.WatchIndex(idx); err != nil {
		return nil, err
	}
	srv, err := m.Listen(listen, logger)
	if err != nil {
		return nil, err
	}
	return &instruments{m: m, srv: srv}, nil
}

func (in *instruments) store(st storage.Store) storage.Store {
	if in == nil {
		return st
	}
	return in.m.Store(st)
}

func (in *instruments) dns(h dns.Handler) dns.Handler {
	if in == nil {
		return h
	}
	return in.m.DNS(h)
}

func (in *instruments) api(h http.Handler) http.Handler {
	if in == nil {
		return h
	}
	return in.m.API(h)
}

// url is the scrape URL, "" when off.
func (in *instruments) url() string {
	if in == nil {
		return ""
	}
	return "http://" + in.srv.Addr() + "/metrics"
}

// health serves h at GET /health on the metrics listener.
func (in *instruments) health(h http.Handler) {
	if in == nil {
		return
	}
	in.srv.HandleHealth(h)
}

// serve runs the listener until shutdown, sending a failure to errc.
func (in *instruments) serve(errc chan<- error) {
	if in == nil {
		return
	}
	go func() {
		if err := in.srv.Serve(); err != nil {
			errc <- err
		}
	}()
}

// shutdown stops the listener (bounded by ctx). Safe to call more than once.
func (in *instruments) shutdown(ctx context.Context, logger *slog.Logger) {
	if in == nil {
		return
	}
	if err := in.srv.Shutdown(ctx); err != nil {
		logger.Warn("metrics shutdown", "err", err)
	}
}
