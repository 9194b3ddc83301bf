package broker

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/internal/apitls"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/zone"
)

// apiTLS is the certificate of the HTTPS API ([api] tls): files followed
// for changes ("cert") or a certificate by ACME ("acme"). A nil *apiTLS
// (tls = "none") does nothing, so Run has no branches for it.
type apiTLS struct {
	files    *apitls.Files
	acme     *apitls.Manager
	interval time.Duration
}

// newAPITLS loads the certificate files or prepares the ACME manager; a
// bad configuration is a *ConfigError.
func newAPITLS(cfg config.Config, static []dns.RR, st apitls.Store, ch apitls.Challenges, logger *slog.Logger) (*apiTLS, error) {
	c := cfg.API
	switch c.TLS {
	case "cert":
		f, err := apitls.NewFiles(c.CertFile, c.KeyFile, logger)
		if err != nil {
			return nil, &ConfigError{err}
		}
		return &apiTLS{files: f, interval: c.CertCheckInterval.Duration}, nil
	case "acme":
		a := c.ACME
		m, err := apitls.NewManager(apitls.ACMEConfig{
			Zone: cfg.DNS.Zone, Names: a.Names, Directory: a.Directory, Email: a.Email, CARoot: a.CARoot,
			EABKeyID: a.EABKID, EABHMAC: a.EABHMAC, Profile: a.Profile, KeyType: a.KeyType,
			CheckInterval: a.CheckInterval.Duration, Logger: logger,
			Nameservers: zoneNameservers(cfg, static), PropagationTimeout: a.PropagationTimeout.Duration,
		}, st, ch)
		if err != nil {
			return nil, &ConfigError{err}
		}
		return &apiTLS{acme: m}, nil
	}
	return nil, nil
}

// ownChallengeNames are the names at which the broker answers the dns-01
// challenges of its own certificate (FQDNs), checked against the static
// records: none may hold static records or sit in a delegated zone.
func ownChallengeNames(cfg config.Config, static []dns.RR) ([]string, error) {
	if cfg.API.TLS != "acme" {
		return nil, nil
	}
	var out []string
	for _, n := range cfg.API.ACME.Names {
		rel, err := zone.OwnChallengeName(cfg.DNS.Zone, n)
		if err != nil {
			return nil, &ConfigError{fmt.Errorf("api.acme.names: %w", err)}
		}
		fqdn := dns.Fqdn(rel + "." + cfg.DNS.Zone)
		if why := dnsserver.OwnNameProblem(cfg.DNS.Zone, static, fqdn); why != "" {
			return nil, &ConfigError{fmt.Errorf("api.acme.names: the broker cannot answer the dns-01 challenges of %s at %s: %s", n, fqdn, why)}
		}
		out = append(out, fqdn)
	}
	return out, nil
}

// zoneNameservers are the servers the ACME manager waits on before the CA
// is asked: [api.acme] nameservers, else the zone's name servers as its
// static records give them (the apex NS targets, by their glue inside the
// zone, by name outside it; dns.nsname without NS records), on port 53.
func zoneNameservers(cfg config.Config, static []dns.RR) []string {
	if ns := cfg.API.ACME.Nameservers; len(ns) > 0 {
		return ns
	}
	origin := dns.Fqdn(strings.ToLower(cfg.DNS.Zone))
	var targets []string
	for _, rr := range static {
		if ns, ok := rr.(*dns.NS); ok && strings.EqualFold(ns.Hdr.Name, origin) {
			targets = append(targets, strings.ToLower(dns.Fqdn(ns.Ns)))
		}
	}
	if len(targets) == 0 {
		targets = []string{dns.Fqdn(strings.ToLower(cfg.DNS.NSName))}
	}
	var out []string
	for _, t := range targets {
		found := false
		for _, rr := range static {
			if !strings.EqualFold(rr.Header().Name, t) {
				continue
			}
			switch a := rr.(type) {
			case *dns.A:
				out, found = append(out, net.JoinHostPort(a.A.String(), "53")), true
			case *dns.AAAA:
				out, found = append(out, net.JoinHostPort(a.AAAA.String(), "53")), true
			}
		}
		if !found { // outside the zone, or no glue: by name
			out = append(out, net.JoinHostPort(strings.TrimSuffix(t, "."), "53"))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// config is the API's tls.Config: certificates by GetCertificate, so a new
// one takes effect at the next handshake.
func (a *apiTLS) config() *tls.Config {
	if a == nil {
		return nil
	}
	get := a.acme.GetCertificate
	if a.files != nil {
		get = a.files.GetCertificate
	}
	return &tls.Config{GetCertificate: get, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
}

// run follows the files or keeps the ACME certificate until ctx ends.
// Called once DNS is served: the CA looks the challenges up there.
func (a *apiTLS) run(ctx context.Context) {
	switch {
	case a == nil:
	case a.files != nil:
		a.files.Watch(ctx, a.interval)
	default:
		a.acme.Run(ctx)
	}
}

// reload re-reads the files, or re-checks the ACME certificate's renewal
// information now (SIGHUP).
func (a *apiTLS) reload() {
	switch {
	case a == nil:
	case a.files != nil:
		_, _ = a.files.Reload()
	default:
		a.acme.Recheck()
	}
}

// status is "" while the API has a certificate (or needs none).
func (a *apiTLS) status() string {
	if a == nil || a.acme == nil {
		return ""
	}
	return a.acme.Status()
}

// nodeHealth answers GET /health on the metrics listener: 200 when the
// node serves everything, 503 while the API waits for its certificate.
func nodeHealth(a *apiTLS) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := map[string]string{"status": "ok", "dns": "serving", "api": "serving"}
		code := http.StatusOK
		if s := a.status(); s != "" {
			body["status"], body["api"] = "starting", s
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	})
}

// reservedWithACME adds to the zone's reserved names the first label of
// each name of the API's certificate below the apex: an account named
// like the broker's own host would only confuse.
func reservedWithACME(base func(string) string, cfg config.Config) func(string) string {
	if cfg.API.TLS != "acme" {
		return base
	}
	own := map[string]string{}
	for _, n := range cfg.API.ACME.Names {
		rel := strings.TrimSuffix(strings.TrimPrefix(n, "*."), cfg.DNS.Zone)
		if rel = strings.TrimSuffix(rel, "."); rel == "" {
			continue
		}
		labels := strings.Split(rel, ".")
		own[labels[len(labels)-1]] = "it is a name of the API's own certificate (" + n + ", [api.acme] names)"
	}
	return func(label string) string {
		if why := base(label); why != "" {
			return why
		}
		return own[strings.ToLower(label)]
	}
}
