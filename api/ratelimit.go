package api

import (
	"errors"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/acmebroker/acmebroker/internal/secret"
)

// Limits are rates per minute; 0 turns a limit off. Each is a token bucket
// that holds half a minute's worth, so short bursts pass.
type Limits struct {
	RegisterPerSource int // POST /register per source address
	UpdatePerAccount  int // POST /update per account
	UpdatePerSource   int // POST /update per source address
	// AuthFailPerSource caps failed authentications per source address.
	// It is counted per source, not per account: an attacker flooding one
	// account with wrong keys is slowed down, its owner elsewhere is not.
	AuthFailPerSource int
}

// maxBuckets bounds a limiter's memory; beyond it idle buckets are swept,
// and if that is not enough (a flood from very many sources) the table
// starts over.
const maxBuckets = 100_000

type bucket struct {
	tokens float64
	last   time.Time
}

// limiter is a set of token buckets, one per key. Safe for concurrent use.
type limiter struct {
	rate  float64 // tokens per second
	burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
}

func newLimiter(perMinute int) *limiter {
	if perMinute <= 0 {
		return nil
	}
	return &limiter{
		rate:    float64(perMinute) / 60,
		burst:   math.Max(1, float64(perMinute)/2),
		buckets: make(map[string]*bucket),
	}
}

// take spends a token of key at now. When there is none it reports how
// long until there is. A nil limiter allows everything.
func (l *limiter) take(key string, now time.Time) (bool, time.Duration) {
	return l.use(key, now, 1)
}

// ready reports whether key has a token, without spending it.
func (l *limiter) ready(key string, now time.Time) (bool, time.Duration) {
	return l.use(key, now, 0)
}

func (l *limiter) use(key string, now time.Time, cost float64) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = math.Min(l.burst, b.tokens+dt*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens -= cost
	return true, 0
}

// sweep drops buckets that have refilled (idle keys); called with mu held.
func (l *limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxBuckets {
		clear(l.buckets)
	}
}

// sourceKey groups addresses the way one party holds them: an IPv4
// address, or an IPv6 /64.
func sourceKey(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// limited answers 429 with Retry-After when ok is false.
func limited(w http.ResponseWriter, ok bool, wait time.Duration, what string) bool {
	if ok {
		return false
	}
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(1, secs)))
	writeError(w, http.StatusTooManyRequests, "too_many_requests",
		"too many "+what+"; retry after "+strconv.Itoa(max(1, secs))+" s")
	return true
}

// busy answers a check that needed more bcrypt work than this second's
// budget (secret.BusyError): 503 with Retry-After, nothing decided.
func busy(w http.ResponseWriter, err error) {
	wait := time.Second
	var be *secret.BusyError
	if errors.As(err, &be) {
		wait = be.RetryAfter
	}
	secs := max(1, int(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusServiceUnavailable, "busy",
		"the broker is checking too many legacy (bcrypt) keys this second; nothing was changed, retry after "+strconv.Itoa(secs)+" s")
}
