package api

import (
	"net/http"
	"sync"
	"time"
)

// writeState remembers whether the API's writes to storage work: the
// storage errors the handlers answer (storageError) mark it failing, the
// next change request that succeeds (a 2xx to POST or DELETE, seen by
// trackWrites) marks it working again. /health reports it, so that a full
// disk (every write failing while reads and pings still work) shows as
// degraded. It knows nothing of the handlers beyond those two points.
type writeState struct {
	mu           sync.Mutex
	lastOK       time.Time // last successful change
	failingSince time.Time // zero: not failing
	lastFailure  string    // "unavailable" or "error"
	lastProbe    time.Time // last write probe /health made
}

// probeEvery bounds /health's write probes while writes fail: a health
// check every second must not become a write every second.
const probeEvery = 5 * time.Second

// probeDue reports whether /health may probe now, and if so counts it.
func (ws *writeState) probeDue(now time.Time) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if !ws.lastProbe.IsZero() && now.Sub(ws.lastProbe) < probeEvery {
		return false
	}
	ws.lastProbe = now
	return true
}

// recentWrite: a change that succeeded this recently proves storage works,
// and /health need not ask it (a ping needs a database connection, which
// may be scarce under load).
const recentWrite = 30 * time.Second

func (ws *writeState) failed(now time.Time, unavailable bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.failingSince.IsZero() {
		ws.failingSince = now
	}
	ws.lastFailure = "error"
	if unavailable {
		ws.lastFailure = "unavailable"
	}
}

func (ws *writeState) succeeded(now time.Time) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.lastOK = now
	ws.failingSince = time.Time{}
}

// state is what /health reports: whether writes fail (since when, how),
// and whether one succeeded recently.
func (ws *writeState) state(now time.Time) (failingSince time.Time, failure string, recentOK bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.failingSince, ws.lastFailure, !ws.lastOK.IsZero() && now.Sub(ws.lastOK) < recentWrite
}

// trackWrites tells s.writes of change requests that succeeded.
func (s *server) trackWrites(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodDelete {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status >= 200 && sw.status < 300 {
			s.writes.succeeded(s.Now())
		}
	})
}

// statusWriter records the status a handler answers with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
