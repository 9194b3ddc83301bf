package config

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/acmebroker/acmebroker/client"
)

// validate checks [api.acme] for a broker of zone and fills the default
// names (the apex).
func (a *ACME) validate(zone string, bad func(key, format string, args ...any)) {
	if u, err := url.Parse(a.Directory); err != nil || u.Host == "" || u.Scheme != "https" {
		bad("api.acme.directory", "%q is not an https:// ACME directory URL (default: Let's Encrypt's, %s)", a.Directory, LetsEncryptDirectory)
	}
	if a.Email != "" && (strings.ContainsAny(a.Email, " \t<>") || !strings.Contains(strings.Trim(a.Email, "@"), "@")) {
		bad("api.acme.email", "%q is not an e-mail address", a.Email)
	}
	if len(a.Names) == 0 && zone != "" {
		a.Names = []string{zone}
	}
	seen := map[string]bool{}
	for i, n := range a.Names {
		key := fmt.Sprintf("api.acme.names[%d]", i)
		n = normName(n)
		a.Names[i] = n
		base := strings.TrimPrefix(n, "*.")
		switch {
		case checkName(base) != nil || strings.Contains(base, "*") || strings.Contains(base, "_"):
			bad(key, "%q is not a host name (letters, digits, hyphens; \"*.\" in front for a wildcard)", n)
		case base != zone && !strings.HasSuffix(base, "."+zone):
			bad(key, "%s is not inside dns.zone %s: the broker answers the dns-01 challenges of its own zone only", n, zone)
		case seen[n]:
			bad(key, "%s is listed twice", n)
		}
		seen[n] = true
	}
	if (a.EABKID == "") != (a.EABHMAC == "") {
		bad("api.acme.eab_kid", "eab_kid and eab_hmac go together: set both (from your CA account) or neither")
	}
	if a.EABHMAC != "" {
		if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(a.EABHMAC, "=")); err != nil {
			bad("api.acme.eab_hmac", "is not base64url (the CA gives it in that form)")
		}
	}
	if strings.ContainsAny(a.Profile, " \t\"") {
		bad("api.acme.profile", "%q is not a profile name", a.Profile)
	}
	if !slices.Contains(client.KeyTypes, a.KeyType) {
		bad("api.acme.key_type", "%q is not one of %s", a.KeyType, strings.Join(client.KeyTypes, ", "))
	}
	if d := a.CheckInterval.Duration; d < 100*time.Millisecond || d > time.Hour {
		bad("api.acme.check_interval", "%s is out of range: 100ms to 1h (e.g. \"1m\")", d)
	}
	for i, ns := range a.Nameservers {
		if err := checkHostPort(ns); err != nil || strings.HasSuffix(ns, ":0") {
			bad(fmt.Sprintf("api.acme.nameservers[%d]", i), "%q is not ip:port of a name server of the zone, e.g. \"192.0.2.53:53\"", ns)
		}
	}
	if d := a.PropagationTimeout.Duration; d < 0 || d > 10*time.Minute {
		bad("api.acme.propagation_timeout", "%s is out of range: 0s (ask the CA at once) to 10m", d)
	}
}
