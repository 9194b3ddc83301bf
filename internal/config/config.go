// Package config is the only reader of acmebroker's TOML configuration: the
// Config struct with every field documented, the defaults in one place
// (Default), loading (Load) and validation (Validate). Errors name the key.
package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole configuration of `acmebroker serve`.
type Config struct {
	// Notes are warnings from loading an acme-dns config.cfg: keys with no
	// equivalent, or mapped with a change (see acmedns.go). Not a key.
	Notes []Note `toml:"-"`

	DNS     DNS     `toml:"dns"`
	API     API     `toml:"api"`
	Storage Storage `toml:"storage"`
	Log     Log     `toml:"log"`
}

// DNS configures the authoritative server.
type DNS struct {
	// Listen: each address is served on UDP and TCP. IPv6 as "[::1]:53".
	Listen []string `toml:"listen"`
	// Zone is the delegated zone the broker is authoritative for.
	Zone string `toml:"zone"`
	// NSName is the primary name server (SOA MNAME).
	NSName string `toml:"nsname"`
	// NSAdmin is the zone's contact as a name (SOA RNAME), e.g. hostmaster.example.org.
	NSAdmin string `toml:"nsadmin"`
	// Records are static records in zone-file syntax, all inside Zone.
	Records []string `toml:"records"`
	// TXTTTL is the TTL of challenge TXT answers, seconds.
	TXTTTL uint32 `toml:"txt_ttl"`
	// NegativeTTL is how long resolvers may cache "no such name/value" (SOA MINIMUM), seconds.
	NegativeTTL uint32 `toml:"negative_ttl"`
	// TXTWindow: besides the 2 newest values, every value set within this window is served.
	TXTWindow Duration `toml:"txt_window"`
	// TXTMax caps the values served per subdomain.
	TXTMax int `toml:"txt_max"`
	// MaxUDPSize is the largest UDP answer sent to EDNS clients, bytes.
	MaxUDPSize uint16 `toml:"max_udp_size"`
	// Transfer lets secondaries copy the zone (AXFR/IXFR) and tells them of changes (NOTIFY).
	Transfer Transfer `toml:"transfer"`
}

// Transfer configures zone transfers to secondary name servers.
type Transfer struct {
	// AllowFrom are the CIDRs of secondaries allowed to transfer the zone; empty: nobody.
	AllowFrom []string `toml:"allow_from"`
	// Keys are the TSIG keys transfers and NOTIFY are signed with.
	Keys []TSIGKey `toml:"keys"`
	// RequireTSIG refuses transfers not signed with one of Keys. Unset: true when Keys are given.
	RequireTSIG *bool `toml:"require_tsig"`
	// Notify are the secondaries (host:port) told of every serial change.
	Notify []string `toml:"notify"`
	// NotifyKey names the key of Keys that signs NOTIFY; empty: unsigned.
	NotifyKey string `toml:"notify_key"`
}

// TSIGKey is a shared secret for signing transfers (RFC 8945).
type TSIGKey struct {
	// Name is the key's name, the same on both sides, e.g. "xfr-key".
	Name string `toml:"name"`
	// Algorithm: hmac-sha256 (default), hmac-sha512, hmac-sha384, hmac-sha224, hmac-sha1.
	Algorithm string `toml:"algorithm"`
	// Secret is the base64 key (`openssl rand -base64 32`). Never logged.
	Secret string `toml:"secret"`
}

// String leaves the secret out, so a key printed by mistake shows none.
func (k TSIGKey) String() string { return k.Name + " (" + k.Algorithm + ")" }

// TSIGRequired says whether transfers must be signed.
func (t Transfer) TSIGRequired() bool {
	if t.RequireTSIG != nil {
		return *t.RequireTSIG
	}
	return len(t.Keys) > 0
}

// API configures the HTTP API.
type API struct {
	// Listen is the API's host:port.
	Listen string `toml:"listen"`
	// TLS: "none" (plain HTTP, e.g. behind a reverse proxy) or "cert" (CertFile + KeyFile).
	TLS      string `toml:"tls"`
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// Registration says who may call POST /register: "open" (anyone, as
	// acme-dns), "token" (an Authorization: Bearer token made with
	// `acmebroker token create`) or "disabled" (the route does not exist).
	Registration string `toml:"registration"`
	// DisableRegistration is the old spelling of registration = "disabled".
	DisableRegistration bool `toml:"disable_registration"`
	// CORSOrigins lists browser origins allowed to call the API ("*" for any).
	CORSOrigins []string `toml:"cors_origins"`
	// TrustedProxies are CIDRs whose X-Forwarded-For header is believed.
	TrustedProxies []string `toml:"trusted_proxies"`
	// Rate limits, per minute (0: no limit); see api.Limits.
	RegisterLimit     int `toml:"register_limit"`      // POST /register per source address
	UpdateLimit       int `toml:"update_limit"`        // POST /update per account
	UpdateSourceLimit int `toml:"update_source_limit"` // POST /update per source address
	AuthFailLimit     int `toml:"auth_fail_limit"`     // failed authentications per source address
	// BasePath serves the API under a path prefix, e.g. "/acme" (for a reverse proxy that does not strip it).
	BasePath string `toml:"base_path"`
}

// Storage selects the database.
type Storage struct {
	// Engine: "sqlite".
	Engine string `toml:"engine"`
	// DSN: for sqlite, the database file path.
	DSN string `toml:"dsn"`
}

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`  // debug | info | warn | error
	Format string `toml:"format"` // text | json
}

// Duration is a time.Duration written as "10m", "90s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (write e.g. \"10m\" or \"90s\")", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default is the embedded configuration `acmebroker serve` runs with when no
// file is given: a broker on loopback, good for trying it out.
func Default() Config {
	return Config{
		DNS: DNS{
			Listen:  []string{"127.0.0.1:5353"},
			Zone:    "auth.example.org",
			NSName:  "ns1.auth.example.org",
			NSAdmin: "hostmaster.example.org",
			Records: []string{
				"auth.example.org. NS ns1.auth.example.org.",
				"ns1.auth.example.org. A 127.0.0.1",
			},
			TXTTTL:      1,
			NegativeTTL: 1,
			TXTWindow:   Duration{10 * time.Minute},
			TXTMax:      16,
			MaxUDPSize:  1232,
		},
		API: API{
			Listen:        "127.0.0.1:8080",
			TLS:           "none",
			Registration:  "open",
			RegisterLimit: 60, UpdateLimit: 120, UpdateSourceLimit: 1200, AuthFailLimit: 30,
			CORSOrigins:    []string{},
			TrustedProxies: []string{},
		},
		Storage: Storage{Engine: "sqlite", DSN: "acmebroker.db"},
		Log:     Log{Level: "info", Format: "text"},
	}
}

// Load reads the TOML file at path over the defaults and validates it.
// Unknown keys are errors (a typo must not silently fall back to a default).
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes TOML text over the defaults and validates the result. An
// acme-dns config.cfg is recognised and mapped (see IsAcmeDNS).
func Parse(b []byte) (Config, error) {
	if IsAcmeDNS(b) {
		return parseAcmeDNS(b)
	}
	c := Default()
	// Lists given in the file replace the defaults rather than merge.
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			if perr.LastKey != "" {
				return Config{}, fmt.Errorf("line %d: %s: %s", perr.Position.Line, perr.LastKey, perr.Message)
			}
			return Config{}, fmt.Errorf("line %d: %s", perr.Position.Line, perr.Message)
		}
		return Config{}, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("unknown key %s (check the spelling against config.toml)", strings.Join(keys, ", "))
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks every field and normalises names. Errors name the key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}

	if len(c.DNS.Listen) == 0 {
		bad("dns.listen", "at least one address is needed, e.g. [\"0.0.0.0:53\"]")
	}
	for i, a := range c.DNS.Listen {
		if err := checkHostPort(a); err != nil {
			bad(fmt.Sprintf("dns.listen[%d]", i), "%v", err)
		}
	}
	c.DNS.Zone = normName(c.DNS.Zone)
	c.DNS.NSName = normName(c.DNS.NSName)
	c.DNS.NSAdmin = normName(c.DNS.NSAdmin)
	if err := checkName(c.DNS.Zone); err != nil {
		bad("dns.zone", "%v", err)
	}
	if err := checkName(c.DNS.NSName); err != nil {
		bad("dns.nsname", "%v", err)
	}
	if err := checkName(c.DNS.NSAdmin); err != nil {
		bad("dns.nsadmin", "%v (write the mailbox as a name: hostmaster.example.org)", err)
	}
	if c.DNS.TXTWindow.Duration < 0 {
		bad("dns.txt_window", "must not be negative")
	}
	if c.DNS.TXTMax < 2 || c.DNS.TXTMax > 100 {
		bad("dns.txt_max", "%d is out of range: 2 to 100 (the 2 newest values are always served)", c.DNS.TXTMax)
	}
	if c.DNS.MaxUDPSize != 0 && c.DNS.MaxUDPSize < 512 {
		bad("dns.max_udp_size", "%d is below the DNS minimum of 512", c.DNS.MaxUDPSize)
	}
	c.DNS.Transfer.validate(bad)

	if err := checkHostPort(c.API.Listen); err != nil {
		bad("api.listen", "%v", err)
	}
	switch c.API.TLS {
	case "none":
	case "cert":
		if c.API.CertFile == "" {
			bad("api.cert_file", "required when api.tls = \"cert\"")
		}
		if c.API.KeyFile == "" {
			bad("api.key_file", "required when api.tls = \"cert\"")
		}
	default:
		bad("api.tls", "%q is not one of \"none\", \"cert\"", c.API.TLS)
	}
	switch c.API.Registration {
	case "open", "disabled", "token":
	default:
		bad("api.registration", "%q is not one of \"open\", \"token\", \"disabled\"", c.API.Registration)
	}
	if c.API.DisableRegistration {
		if c.API.Registration == "token" {
			bad("api.disable_registration", "contradicts api.registration = \"token\"; remove disable_registration")
		}
		c.API.Registration = "disabled"
	}
	for key, v := range map[string]int{"api.register_limit": c.API.RegisterLimit, "api.update_limit": c.API.UpdateLimit,
		"api.update_source_limit": c.API.UpdateSourceLimit, "api.auth_fail_limit": c.API.AuthFailLimit} {
		if v < 0 {
			bad(key, "must be 0 (no limit) or a number per minute")
		}
	}
	for i, p := range c.API.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			bad(fmt.Sprintf("api.trusted_proxies[%d]", i), "%v", err)
		}
	}
	if bp := c.API.BasePath; bp != "" {
		if !strings.HasPrefix(bp, "/") || strings.ContainsAny(bp, "?#* ") {
			bad("api.base_path", "%q must be a path starting with / such as \"/acme\"", bp)
		}
		c.API.BasePath = strings.TrimRight(bp, "/")
	}

	switch c.Storage.Engine {
	case "sqlite":
		if c.Storage.DSN == "" {
			bad("storage.dsn", "the SQLite database file is required, e.g. \"/var/lib/acmebroker/acmebroker.db\"")
		}
	default:
		bad("storage.engine", "%q is not supported (use \"sqlite\")", c.Storage.Engine)
	}

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not one of text, json", c.Log.Format)
	}
	return errors.Join(errs...)
}

// ParsePrefix parses a CIDR such as "192.0.2.0/24" or "2001:db8::/32".
// Brackets around IPv6 ("[2001:db8::]/32") are tolerated, as acme-dns does;
// a bare address is refused: write it as /32 or /128.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(strings.NewReplacer("[", "", "]", "").Replace(s))
	if !strings.Contains(s, "/") {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (write a single address as %s/32 or /128)", s, s)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 192.0.2.0/24 or 2001:db8::/32", s)
	}
	return p, nil
}

func checkHostPort(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port (IPv6 as \"[::1]:53\")", a)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q has no valid port", a)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && host != "localhost" {
			return fmt.Errorf("%q: host must be an IP address", a)
		}
	}
	return nil
}

func normName(s string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
}

func checkName(s string) error {
	if s == "" {
		return errors.New("required")
	}
	if len(s) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", s)
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("%q is not a valid domain name", s)
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("%q is not a valid domain name (character %q)", s, r)
			}
		}
	}
	return nil
}

func (t *Transfer) validate(bad func(key, format string, args ...any)) {
	for i, p := range t.AllowFrom {
		if _, err := ParsePrefix(p); err != nil {
			bad(fmt.Sprintf("dns.transfer.allow_from[%d]", i), "%v", err)
		}
	}
	names := map[string]bool{}
	for i := range t.Keys {
		k := &t.Keys[i]
		key := fmt.Sprintf("dns.transfer.keys[%d]", i)
		k.Name = normName(k.Name)
		if err := checkName(k.Name); err != nil {
			bad(key+".name", "%v (write the key's name as the secondary knows it, e.g. \"xfr-key\")", err)
		} else if names[k.Name] {
			bad(key+".name", "%q is given twice; key names must differ", k.Name)
		}
		names[k.Name] = true
		if k.Algorithm == "" {
			k.Algorithm = "hmac-sha256"
		}
		k.Algorithm = strings.ToLower(strings.TrimSuffix(k.Algorithm, "."))
		switch k.Algorithm {
		case "hmac-sha256", "hmac-sha512", "hmac-sha384", "hmac-sha224", "hmac-sha1":
		default:
			bad(key+".algorithm", "%q is not supported (write \"hmac-sha256\")", k.Algorithm)
		}
		// The secret itself is never put in a message.
		if b, err := base64.StdEncoding.DecodeString(k.Secret); err != nil || len(b) < 16 {
			bad(key+".secret", "must be base64 of at least 16 bytes (make one with `openssl rand -base64 32`)")
		}
	}
	if t.RequireTSIG != nil && *t.RequireTSIG && len(t.Keys) == 0 {
		bad("dns.transfer.require_tsig", "true but no key: add a [[dns.transfer.keys]] entry or set it to false")
	}
	for i, a := range t.Notify {
		if err := checkHostPort(a); err != nil {
			bad(fmt.Sprintf("dns.transfer.notify[%d]", i), "%v", err)
		} else if strings.HasSuffix(a, ":0") {
			bad(fmt.Sprintf("dns.transfer.notify[%d]", i), "%q has no port; write the secondary's host:port, e.g. \"192.0.2.53:53\"", a)
		}
	}
	if len(t.Notify) > 0 && len(t.AllowFrom) == 0 {
		bad("dns.transfer.notify", "secondaries are notified but none may transfer the zone; add their addresses to dns.transfer.allow_from")
	}
	if t.NotifyKey != "" {
		t.NotifyKey = normName(t.NotifyKey)
		if !names[t.NotifyKey] {
			bad("dns.transfer.notify_key", "%q is not the name of a key in [[dns.transfer.keys]]", t.NotifyKey)
		}
	}
}
