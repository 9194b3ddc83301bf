package metrics

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
)

type apiMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newAPIMetrics() *apiMetrics {
	return &apiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "api", Name: "requests_total",
			Help: "HTTP API requests, by route pattern (\"unmatched\" for none), method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "api", Name: "request_duration_seconds",
			Help:    "Time from reading an API request's headers to the handler's return, by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
	}
}

func (a *apiMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{a.requests, a.latency}
}

// API wraps a chi router (or any handler) so that each request is counted
// by route pattern, method and status, and timed by route. The route is
// chi's RoutePattern ("/update", "/acme/update" under a base path), never
// the request's path, so labels stay a fixed set.
func (m *Metrics) API(next http.Handler) http.Handler {
	a := m.api
	routes, _ := next.(chi.Routes)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// The routing context is ours, not chi's pooled one, so the
		// pattern can still be read after the router has returned.
		rctx := chi.NewRouteContext()
		rctx.Routes = routes
		r = r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, rctx))
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			// Also on a panic (http.ErrAbortHandler): code is then
			// what was written before, or "none".
			route := routeLabel(rctx.RoutePattern())
			code := "none"
			if sw.code != 0 {
				code = strconv.Itoa(sw.code)
			}
			a.requests.WithLabelValues(route, methodLabel(r.Method), code).Inc()
			a.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

func routeLabel(p string) string {
	// A pattern ending in a wildcard is a mount point that matched no
	// route below it (a 404 under the base path).
	if p == "" || strings.HasSuffix(p, "*") {
		return "unmatched"
	}
	return p
}

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// statusWriter notes the status code. Unwrap lets http.ResponseController
// reach the connection's flusher and deadlines.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
