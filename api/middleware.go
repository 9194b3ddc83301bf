package api

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // one line, as acme.sh expects
}

type errorBody struct {
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
}

// writeError answers {"error": code} with acme-dns's code string (clients
// match on it) and a human "detail" saying what to do.
func writeError(w http.ResponseWriter, status int, code, detail string) {
	writeJSON(w, status, errorBody{Error: code, Detail: detail})
}

func writeForbidden(w http.ResponseWriter) {
	writeError(w, http.StatusUnauthorized, "forbidden",
		"check X-Api-User and X-Api-Key, the subdomain, and that this source address is in the account's allowfrom")
}

func (s *server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Logger.Error("panic in API handler", "path", r.URL.Path, "panic", v)
				writeError(w, http.StatusInternalServerError, "internal_error", "the broker hit a bug; nothing was changed")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// headerLimit answers 431 in JSON for a request whose line and headers
// (counted as sent, less their separators) exceed MaxHeaderBytes.
func (s *server) headerLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int64(len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4)
		for k, vs := range r.Header {
			for _, v := range vs {
				n += int64(len(k) + len(v) + 4)
			}
		}
		if n > s.cfg.MaxHeaderBytes {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestHeaderFieldsTooLarge, "header_too_large",
				fmt.Sprintf("the request line and headers are over %d bytes; send only X-Api-User, X-Api-Key, Content-Type and the usual few", s.cfg.MaxHeaderBytes))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *server) cors(next http.Handler) http.Handler {
	if len(s.cfg.CORSOrigins) == 0 {
		return next
	}
	anyOrigin := slices.Contains(s.cfg.CORSOrigins, "*")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && (anyOrigin || slices.Contains(s.cfg.CORSOrigins, origin)) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Content-Type, X-Api-User, X-Api-Key")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// clientIP is the request's source address. X-Forwarded-For is believed only
// when the direct peer is a trusted proxy; then the rightmost address that is
// not itself a trusted proxy is the client (entries further left are set by
// the client and may be forged).
func (s *server) clientIP(r *http.Request) netip.Addr {
	ip := remoteAddr(r.RemoteAddr)
	if !s.trusted(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return ip // garbage in the chain: stop believing it
		}
		a = a.Unmap()
		if !s.trusted(a) {
			return a
		}
		ip = a
	}
	return ip
}

func (s *server) trusted(ip netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func remoteAddr(hostport string) netip.Addr {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}
