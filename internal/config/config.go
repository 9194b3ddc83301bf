// Package config is the only reader of acmebroker's TOML configuration: the
// Config struct with every field documented, the defaults in one place
// (Default), loading (Load) and validation (Validate). Errors name the key.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/dnsserver/cookie"
	"github.com/acmebroker/acmebroker/internal/dnssec"
	"github.com/acmebroker/acmebroker/storage"
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
	Metrics Metrics `toml:"metrics"`
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
	// SOATTL is the TTL of the SOA when asked for directly, seconds (a
	// DNSSEC key rollover waits for the longest TTL of the zone).
	SOATTL uint32 `toml:"soa_ttl"`
	// TXTWindow: besides the 2 newest values, every value set within this window is served.
	TXTWindow Duration `toml:"txt_window"`
	// TXTMax caps the values served per subdomain.
	TXTMax int `toml:"txt_max"`
	// MaxUDPSize is the largest UDP answer sent to EDNS clients, bytes.
	MaxUDPSize uint16 `toml:"max_udp_size"`
	// Transfer lets secondaries copy the zone (AXFR/IXFR) and tells them of changes (NOTIFY).
	Transfer Transfer `toml:"transfer"`
	// TCP limits: connections open at once per source address and in all
	// (per listen address; 0: no limit), how long a connection may sit idle
	// after an answer, and how many queries one connection may carry.
	TCPPerSource      int      `toml:"tcp_per_source"`
	TCPMaxConnections int      `toml:"tcp_max_connections"`
	TCPIdleTimeout    Duration `toml:"tcp_idle_timeout"`
	TCPMaxQueries     int      `toml:"tcp_max_queries"`
	// TCPMaxLifetime closes a TCP connection this long after it was
	// opened (once its current answer is sent), however busy: a client
	// that trickles queries cannot hold a slot for long.
	TCPMaxLifetime Duration `toml:"tcp_max_lifetime"`
	// RRL is response rate limiting of UDP answers ([dns.rrl]).
	RRL RRL `toml:"rrl"`
	// Cookies are DNS Cookies (RFC 7873, RFC 9018) ([dns.cookies]).
	Cookies Cookies `toml:"cookies"`
	// FastPath answers ordinary queries in batches (UDP) or as they come
	// pipelined (TCP), from a cache of the answers the server built before
	// (exact: an answer is dropped the moment what it holds changes);
	// false: every query goes through the per-query server, as before.
	FastPath bool `toml:"fast_path"`
	// AnswerCacheMB bounds the memory of the fast path's answer cache, in
	// MiB; 0: no cache.
	AnswerCacheMB int `toml:"answer_cache_mb"`
	// UDPSockets is the number of UDP sockets per listen address, each
	// read by one goroutine (SO_REUSEPORT); 0: one per CPU core.
	UDPSockets int `toml:"udp_sockets"`
	// DNSSEC signs the zone online ([dns.dnssec]).
	DNSSEC DNSSEC `toml:"dnssec"`
}

// DNSSEC configures online signing of the zone (docs/dnssec.md). Keys are
// generated at the first start and kept in the database, shared by every
// node; these settings choose what is generated and how it is used.
type DNSSEC struct {
	// Enabled signs every answer to a query with the DO bit.
	Enabled bool `toml:"enabled"`
	// Algorithm of new keys: "ecdsap256sha256" (13) or "ed25519" (15).
	Algorithm string `toml:"algorithm"`
	// SplitKeys: a KSK signs the DNSKEY set and a ZSK the rest, rather
	// than one combined key (CSK). Applies when keys are first generated.
	SplitKeys bool `toml:"split_keys"`
	// KeyFile holds 32 random bytes (64 hex digits) that encrypt the
	// private keys in the database; "": stored unencrypted. Every node
	// needs the same file. Never logged.
	KeyFile string `toml:"key_file"`
	// DNSKEYTTL is the TTL of the DNSKEY, CDS and CDNSKEY RRsets, seconds.
	DNSKEYTTL uint32 `toml:"dnskey_ttl"`
	// SignatureValidity is how long a signature is valid (its inception
	// back-dated by an hour); re-made at half-life.
	SignatureValidity Duration `toml:"signature_validity"`
	// ParentDSTTL is the TTL of the zone's DS at the parent, seconds: a
	// rollover waits that long after the parent's DS changed.
	ParentDSTTL uint32 `toml:"parent_ds_ttl"`
	// KeyRefresh is how often each node reads the keys from the database
	// (and takes a rollover step that is due).
	KeyRefresh Duration `toml:"key_refresh"`
	// SafetyMargin is added to every wait of a rollover.
	SafetyMargin Duration `toml:"safety_margin"`
}

// Cookies configures DNS Cookies: answers to EDNS queries that carry a
// client cookie carry a server cookie back; a resolver that returns it has
// proven its address, so its UDP answers are not rate limited and may use
// the full max_udp_size.
type Cookies struct {
	// Enabled turns DNS Cookies on.
	Enabled bool `toml:"enabled"`
	// Secret is the 128-bit server secret as 32 hex digits (`openssl rand
	// -hex 16`); "" makes a random one at every start. Nodes answering for
	// one zone should share it. Never logged.
	Secret string `toml:"secret"`
	// PreviousSecrets are still accepted (not handed out) while a new
	// Secret reaches every node.
	PreviousSecrets []string `toml:"previous_secrets"`
	// CookielessUDPSize caps UDP answers to queries without a valid server
	// cookie (their source may be forged), bytes; at most max_udp_size.
	CookielessUDPSize uint16 `toml:"cookieless_udp_size"`
}

// String leaves the secrets out, so a config printed by mistake shows none.
func (c Cookies) String() string {
	return fmt.Sprintf("{enabled %v, secret set %v, previous %d, cookieless_udp_size %d}",
		c.Enabled, c.Secret != "", len(c.PreviousSecrets), c.CookielessUDPSize)
}

// Transfer configures zone transfers to secondary name servers.
type Transfer struct {
	// AllowFrom are the CIDRs of secondaries allowed to transfer the zone; empty: nobody.
	AllowFrom []string `toml:"allow_from"`
	// Keys are the TSIG keys transfers and NOTIFY are signed with.
	Keys []TSIGKey `toml:"keys"`
	// RequireTSIG refuses transfers not signed with one of Keys. Unset: true when Keys are given.
	RequireTSIG *bool `toml:"require_tsig"`
	// Notify are the secondaries told of every serial change: "host:port",
	// or "host:port key NAME" to sign that one's NOTIFY with the key NAME
	// of Keys instead of NotifyKey.
	Notify []string `toml:"notify"`
	// NotifyKey names the key of Keys that signs NOTIFY; empty: unsigned.
	NotifyKey string `toml:"notify_key"`
	// Journal is how many recent changes are kept for incremental
	// transfers (IXFR); a secondary further behind gets the whole zone.
	// 0: DefaultJournal.
	Journal int `toml:"journal"`
}

// DefaultJournal and MaxJournal: Transfer.Journal's default and bound
// (each change kept costs about a hundred bytes).
const (
	DefaultJournal = 16384
	MaxJournal     = 1 << 20
)

// JournalSize is Journal with its default.
func (t Transfer) JournalSize() int {
	if t.Journal == 0 {
		return DefaultJournal
	}
	return t.Journal
}

// NotifyTarget is one entry of Transfer.Notify, parsed.
type NotifyTarget struct {
	Addr string // host:port
	Key  string // name of the key that signs its NOTIFY; "" unsigned
}

// NotifyTargets returns Notify parsed, each with its key (its own, else
// NotifyKey). Call it on a validated config.
func (t Transfer) NotifyTargets() []NotifyTarget {
	out := make([]NotifyTarget, 0, len(t.Notify))
	for _, a := range t.Notify {
		nt, _ := parseNotify(a)
		if nt.Key == "" {
			nt.Key = t.NotifyKey
		}
		out = append(out, nt)
	}
	return out
}

// parseNotify reads "host:port" or "host:port key NAME" (the key's name
// normalised). The address is not checked.
func parseNotify(s string) (NotifyTarget, bool) {
	f := strings.Fields(s)
	switch {
	case len(f) == 1:
		return NotifyTarget{Addr: f[0]}, true
	case len(f) == 3 && strings.EqualFold(f[1], "key"):
		return NotifyTarget{Addr: f[0], Key: normName(f[2])}, true
	}
	return NotifyTarget{}, false
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

// RRL configures response rate limiting of UDP answers per source prefix:
// a spoofed source cannot use the server as an amplifier. Over a limit,
// answers are dropped except every slip-th, which goes out as a bare
// truncated answer so a real resolver retries over TCP (never limited).
type RRL struct {
	// Enabled turns RRL on.
	Enabled bool `toml:"enabled"`
	// Limits per second per source prefix, by kind of answer (0: no limit):
	// ordinary answers (challenge TXT, SOA...), NXDOMAIN and NODATA, errors
	// (REFUSED, FORMERR, SERVFAIL...), and answers over LargeSize bytes or
	// truncated.
	ResponsesPerSecond int `toml:"responses_per_second"`
	NXDomainPerSecond  int `toml:"nxdomain_per_second"`
	ErrorsPerSecond    int `toml:"errors_per_second"`
	LargeSize          int `toml:"large_size"`
	LargePerSecond     int `toml:"large_per_second"`
	// Slip: every slip-th limited answer is sent truncated (TC, no records); 0: drop all.
	Slip int `toml:"slip"`
	// Window: a source that floods stays limited until this long after it stops.
	Window Duration `toml:"window"`
	// IPv4Prefix and IPv6Prefix: sources are counted per prefix of this length.
	IPv4Prefix int `toml:"ipv4_prefix"`
	IPv6Prefix int `toml:"ipv6_prefix"`
	// TableSize bounds the (prefix, kind) buckets held in memory (LRU).
	TableSize int `toml:"table_size"`
	// Exempt lists CIDRs never limited (your own monitoring or resolvers).
	Exempt []string `toml:"exempt"`
}

// API configures the HTTP API.
type API struct {
	// Listen is the API's host:port.
	Listen string `toml:"listen"`
	// TLS: "none" (plain HTTP, e.g. behind a reverse proxy), "cert"
	// (CertFile + KeyFile, re-read when they change and on SIGHUP) or
	// "acme" (a certificate from an ACME CA for names in the zone, whose
	// dns-01 challenges the broker answers itself: [api.acme]).
	TLS      string `toml:"tls"`
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// CertCheckInterval (tls = "cert"): how often the files are checked
	// for a change. Default 30s.
	CertCheckInterval Duration `toml:"cert_check_interval"`
	// ACME configures tls = "acme".
	ACME ACME `toml:"acme"`
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
	// BcryptPerSecond bounds bcrypt compares a second (legacy keys
	// imported from acme-dns, and the equal-cost work of failures while
	// such keys exist); past it the API answers 503 with Retry-After.
	BcryptPerSecond int `toml:"bcrypt_per_second"`
	// Connections: at most MaxConnections open at once (lowered at start
	// if the open-files limit cannot hold them besides what DNS over TCP
	// and the database need), ConnectionsPerSource from one source prefix
	// (IPv4 /24, IPv6 /56; 0: no limit; trusted_proxies are not counted per
	// prefix), and a keep-alive connection idle for IdleTimeout is closed.
	MaxConnections       int      `toml:"max_connections"`
	ConnectionsPerSource int      `toml:"connections_per_source"`
	IdleTimeout          Duration `toml:"idle_timeout"`
	// BasePath serves the API under a path prefix, e.g. "/acme" (for a reverse proxy that does not strip it).
	BasePath string `toml:"base_path"`
}

// ACME configures the API's own certificate from an ACME CA (api.tls =
// "acme"). The certificate, its key and the ACME account are kept in the
// database: a restart does not issue again, and nodes sharing one
// PostgreSQL database share one certificate.
type ACME struct {
	// Directory is the CA's ACME directory URL. Default Let's Encrypt's
	// production directory (LetsEncryptDirectory).
	Directory string `toml:"directory"`
	// Email is the ACME account's contact (expiry and incident notices); "" none.
	Email string `toml:"email"`
	// Names are the certificate's names, all inside dns.zone ("*.<name>"
	// for a wildcard); the first is its subject. Default: the zone's apex.
	Names []string `toml:"names"`
	// CARoot is a PEM file of a root to trust for the CA's own TLS
	// certificate (a private CA), besides the system roots.
	CARoot string `toml:"ca_root"`
	// EABKID and EABHMAC are the external account binding (key ID and
	// base64url HMAC key) of CAs that require one.
	EABKID  string `toml:"eab_kid"`
	EABHMAC string `toml:"eab_hmac"`
	// Profile asks the CA for a certificate profile it offers (e.g.
	// "shortlived"); "" the CA's default.
	Profile string `toml:"profile"`
	// KeyType is the certificate's key: ec256 (default), ec384, rsa2048,
	// rsa3072 or rsa4096.
	KeyType string `toml:"key_type"`
	// CheckInterval is how often each node looks at the database for a
	// certificate another node obtained and for renewal coming due.
	// Default 1m.
	CheckInterval Duration `toml:"check_interval"`
	// Nameservers (ip:port) are asked, before the CA is, until each serves
	// the challenge value. Empty: the zone's name servers from the NS
	// records in dns.records (or dns.nsname), on port 53.
	Nameservers []string `toml:"nameservers"`
	// PropagationTimeout bounds that wait; "0s" asks the CA at once.
	// Default 2m.
	PropagationTimeout Duration `toml:"propagation_timeout"`
}

// ACME directories acme-dns configs name with tls = "letsencrypt" and
// "letsencryptstaging".
const (
	LetsEncryptDirectory        = "https://acme-v02.api.letsencrypt.org/directory"
	LetsEncryptStagingDirectory = "https://acme-staging-v02.api.letsencrypt.org/directory"
)

// Storage selects the database.
type Storage struct {
	// Engine: "sqlite" (one node) or "postgres" (one or several nodes
	// sharing one database).
	Engine string `toml:"engine"`
	// DSN: for sqlite, the database file path; for postgres, a URL such as
	// "postgres://acmebroker:secret@db.example.org:5432/acmebroker?sslmode=verify-full"
	// (or a libpq key=value string). The PostgreSQL database must exist; the
	// broker creates its tables in the first schema of the search_path.
	DSN string `toml:"dsn"`
	// BusyTimeout (sqlite only): how long a write waits for a lock another process holds
	// on the database (a backup, the sqlite3 shell) before the API answers
	// 503 with Retry-After. Default 5s.
	BusyTimeout Duration `toml:"busy_timeout"`
	// ResyncInterval (postgres only): how often a node reloads the whole
	// zone from the database, in case it missed a change notification from
	// another node (or the database has no LISTEN/NOTIFY). Default 1m.
	ResyncInterval Duration `toml:"resync_interval"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is the host:port of a separate HTTP listener serving GET
	// /metrics, e.g. "127.0.0.1:9153"; "" (the default) turns metrics off.
	Listen string `toml:"listen"`
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
			TXTTTL:       1,
			NegativeTTL:  1,
			SOATTL:       3600,
			TXTWindow:    Duration{10 * time.Minute},
			TXTMax:       16,
			MaxUDPSize:   1232,
			TCPPerSource: 16, TCPMaxConnections: 512, TCPIdleTimeout: Duration{8 * time.Second}, TCPMaxQueries: 256,
			TCPMaxLifetime: Duration{30 * time.Second},
			FastPath:       true, AnswerCacheMB: 64, UDPSockets: 0,
			RRL: RRL{
				Enabled:            true,
				ResponsesPerSecond: 100, NXDomainPerSecond: 10, ErrorsPerSecond: 10,
				LargeSize: 512, LargePerSecond: 20,
				Slip: 2, Window: Duration{5 * time.Second},
				IPv4Prefix: 24, IPv6Prefix: 56, TableSize: 65536,
				Exempt: []string{},
			},
			Cookies: Cookies{Enabled: true, PreviousSecrets: []string{}, CookielessUDPSize: 512},
			DNSSEC: DNSSEC{
				Algorithm: "ecdsap256sha256", DNSKEYTTL: 3600, SignatureValidity: Duration{dnssec.DefaultValidity},
				ParentDSTTL: 86400, KeyRefresh: Duration{dnssec.DefaultRefresh}, SafetyMargin: Duration{10 * time.Minute},
			},
		},
		API: API{
			Listen:            "127.0.0.1:8080",
			TLS:               "none",
			CertCheckInterval: Duration{30 * time.Second},
			ACME: ACME{
				Directory:          LetsEncryptDirectory,
				KeyType:            "ec256",
				CheckInterval:      Duration{time.Minute},
				Names:              []string{},
				Nameservers:        []string{},
				PropagationTimeout: Duration{2 * time.Minute},
			},
			Registration:  "open",
			RegisterLimit: 60, UpdateLimit: 120, UpdateSourceLimit: 1200, AuthFailLimit: 30,
			BcryptPerSecond: 5,
			MaxConnections:  4096, ConnectionsPerSource: 64, IdleTimeout: Duration{10 * time.Second},
			CORSOrigins:    []string{},
			TrustedProxies: []string{},
		},
		Storage: Storage{Engine: "sqlite", DSN: "acmebroker.db", BusyTimeout: Duration{5 * time.Second}, ResyncInterval: Duration{time.Minute}},
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
	// Every refused or unknown key is reported, and with them every value
	// Validate refuses among the keys that did decode.
	errs, failed := decode(b, &c)
	if err := c.Validate(); err != nil {
		for _, e := range unjoin(err) {
			if ke := (*KeyError)(nil); errors.As(e, &ke) && slices.ContainsFunc(failed, func(k string) bool { return under(ke.Key, k) }) {
				continue // its value was refused already; this is the default's consequence
			}
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// unjoin lists the errors errors.Join put together (or err alone).
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Validate checks every field and normalises names. Errors name the key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)})
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
	if c.DNS.SOATTL < 1 || c.DNS.SOATTL > 604800 {
		bad("dns.soa_ttl", "%d is out of range: 1 to 604800 seconds", c.DNS.SOATTL)
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

	badFields(bad, "dns", c.DNS.TCPLimits().Check())
	if m := c.DNS.AnswerCacheMB; m < 0 || m > 1<<16 {
		bad("dns.answer_cache_mb", "%d is out of range: 0 (no cache) to 65536 MiB", m)
	}
	if n := c.DNS.UDPSockets; n < 0 || n > 1024 {
		bad("dns.udp_sockets", "%d is out of range: 0 (one per CPU core) to 1024", n)
	}
	if ck := c.DNS.Cookies; ck.Enabled {
		if ck.Secret != "" {
			if _, err := cookie.ParseSecret(ck.Secret); err != nil {
				bad("dns.cookies.secret", "%v", err) // the value itself is never quoted
			}
		}
		for i, p := range ck.PreviousSecrets {
			if _, err := cookie.ParseSecret(p); err != nil {
				bad(fmt.Sprintf("dns.cookies.previous_secrets[%d]", i), "%v", err)
			}
		}
		if ck.CookielessUDPSize < 512 {
			bad("dns.cookies.cookieless_udp_size", "%d is below the DNS minimum of 512", ck.CookielessUDPSize)
		}
	}
	c.DNS.DNSSEC.validate(bad)
	if r := c.DNS.RRL; r.Enabled {
		badFields(bad, "dns.rrl", r.Limiter().Check())
		for i, p := range r.Exempt {
			if _, err := storage.ParsePrefix(p); err != nil {
				bad(fmt.Sprintf("dns.rrl.exempt[%d]", i), "%v", err)
			}
		}
	}

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
		if d := c.API.CertCheckInterval.Duration; d < 100*time.Millisecond || d > 24*time.Hour {
			bad("api.cert_check_interval", "%s is out of range: 100ms to 24h (e.g. \"30s\")", d)
		}
	case "acme":
		c.API.ACME.validate(c.DNS.Zone, bad)
	default:
		bad("api.tls", "%q is not one of \"none\", \"cert\", \"acme\"", c.API.TLS)
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
	if n := c.API.MaxConnections; n < 1 || n > 1<<20 {
		bad("api.max_connections", "%d is out of range: 1 to 1048576", n)
	}
	if n := c.API.ConnectionsPerSource; n < 0 {
		bad("api.connections_per_source", "must be 0 (no limit) or a number of connections")
	}
	if d := c.API.IdleTimeout.Duration; d < time.Second || d > 10*time.Minute {
		bad("api.idle_timeout", "%s is out of range: 1s to 10m", d)
	}
	if b := c.API.BcryptPerSecond; b < 1 || b > 1000 {
		bad("api.bcrypt_per_second", "%d is out of range: 1 to 1000 bcrypt checks a second", b)
	}
	for i, p := range c.API.TrustedProxies {
		if _, err := storage.ParsePrefix(p); err != nil {
			bad(fmt.Sprintf("api.trusted_proxies[%d]", i), "%v", err)
		}
	}
	if bp := c.API.BasePath; bp != "" {
		if !strings.HasPrefix(bp, "/") || strings.ContainsAny(bp, "?#* ") {
			bad("api.base_path", "%q must be a path starting with / such as \"/acme\"", bp)
		}
		c.API.BasePath = strings.TrimRight(bp, "/")
	}

	if c.Storage.BusyTimeout.Duration < 0 {
		bad("storage.busy_timeout", "must not be negative (e.g. \"5s\")")
	}
	switch c.Storage.Engine {
	case "sqlite":
		if c.Storage.DSN == "" {
			bad("storage.dsn", "the SQLite database file is required, e.g. \"/var/lib/acmebroker/acmebroker.db\"")
		}
	case "postgres":
		if err := checkPostgresDSN(c.Storage.DSN); err != nil {
			bad("storage.dsn", "%v", err)
		}
	default:
		bad("storage.engine", "%q is not supported (use \"sqlite\" or \"postgres\")", c.Storage.Engine)
	}
	if ri := c.Storage.ResyncInterval.Duration; ri < time.Second || ri > 24*time.Hour {
		bad("storage.resync_interval", "%s is out of range: 1s to 24h (e.g. \"1m\")", ri)
	}

	if c.Metrics.Listen != "" {
		if err := checkHostPort(c.Metrics.Listen); err != nil {
			bad("metrics.listen", "%v (or \"\" to turn metrics off)", err)
		}
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

// checkPostgresDSN checks the shape of a PostgreSQL DSN; the driver checks
// the rest when connecting. The DSN is never quoted back: it may hold a
// password.
func checkPostgresDSN(dsn string) error {
	switch {
	case dsn == "":
		return errors.New("required with engine = \"postgres\", e.g. \"postgres://acmebroker@db.example.org:5432/acmebroker\"")
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		if _, err := url.Parse(dsn); err != nil {
			return errors.New("is not a valid URL (percent-encode special characters in the password)")
		}
		return nil
	case strings.Contains(dsn, "="):
		return nil // key=value form
	}
	return errors.New("must be a postgres:// URL (e.g. \"postgres://acmebroker@db.example.org:5432/acmebroker\") or a key=value string (\"host=db.example.org dbname=acmebroker\")")
}

// RedactedDSN is the DSN fit to print or log: a PostgreSQL password is
// replaced by "xxxxx".
func (s Storage) RedactedDSN() string {
	if s.Engine != "postgres" {
		return s.DSN
	}
	if u, err := url.Parse(s.DSN); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	fields := strings.Fields(s.DSN)
	for i, f := range fields {
		if k, _, ok := strings.Cut(f, "="); ok && strings.TrimSpace(k) == "password" {
			fields[i] = "password=xxxxx"
		}
	}
	return strings.Join(fields, " ")
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
		if _, err := storage.ParsePrefix(p); err != nil {
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
		// The DNS server owns what a key may be; this adds the key names.
		if err := dnsserver.CheckTSIGAlgorithm(k.Algorithm); err != nil {
			bad(key+".algorithm", "%v", err)
		}
		if err := dnsserver.CheckTSIGSecret(k.Secret); err != nil { // never shows the secret
			bad(key+".secret", "%v", err)
		}
	}
	if t.RequireTSIG != nil && *t.RequireTSIG && len(t.Keys) == 0 {
		bad("dns.transfer.require_tsig", "true but no key: add a [[dns.transfer.keys]] entry or set it to false")
	}
	for i, s := range t.Notify {
		key := fmt.Sprintf("dns.transfer.notify[%d]", i)
		nt, ok := parseNotify(s)
		if !ok {
			bad(key, "%q: write the secondary's \"host:port\", or \"host:port key NAME\" to sign its NOTIFY with another key, e.g. \"192.0.2.53:53 key ns2-key\"", s)
			continue
		}
		switch err := checkHostPort(nt.Addr); {
		case err != nil:
			bad(key, "%v", err)
		case strings.HasSuffix(nt.Addr, ":0"):
			bad(key, "%q has no port; write the secondary's host:port, e.g. \"192.0.2.53:53\"", nt.Addr)
		case nt.Key != "" && !names[nt.Key]:
			bad(key, "key %q is not the name of a key in [[dns.transfer.keys]]", nt.Key)
		}
	}
	if t.Journal < 0 || t.Journal > MaxJournal {
		bad("dns.transfer.journal", "%d: keep between 1 and %d changes for IXFR (0: the default, %d)", t.Journal, MaxJournal, DefaultJournal)
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

// TXTPolicy is the policy of which TXT values are kept and served: the 2
// newest always (as acme-dns), any other while younger than txt_window, at
// most txt_max.
func (d DNS) TXTPolicy() storage.TXTPolicy {
	return storage.TXTPolicy{Always: 2, Window: d.TXTWindow.Duration, Max: d.TXTMax}
}

// validate checks [dns.dnssec]; the key file is read when the broker
// starts.
func (d *DNSSEC) validate(bad func(key, format string, args ...any)) {
	alg, err := dnssec.ParseAlgorithm(d.Algorithm)
	if err != nil {
		bad("dns.dnssec.algorithm", "%v", err)
	} else {
		d.Algorithm = strings.ToLower(dnssec.AlgorithmName(alg))
	}
	if d.DNSKEYTTL < 1 || d.DNSKEYTTL > 604800 {
		bad("dns.dnssec.dnskey_ttl", "%d is out of range: 1 to 604800 seconds", d.DNSKEYTTL)
	}
	if d.ParentDSTTL < 1 || d.ParentDSTTL > 604800 {
		bad("dns.dnssec.parent_ds_ttl", "%d is out of range: 1 to 604800 seconds (ask the parent's operator, or look at the TTL of its DS records)", d.ParentDSTTL)
	}
	if v := d.SignatureValidity.Duration; v < dnssec.MinValidity || v > 90*24*time.Hour {
		bad("dns.dnssec.signature_validity", "%s is out of range: %s to 2160h (90 days); a few days (\"96h\") is usual", v, dnssec.MinValidity)
	}
	if r := d.KeyRefresh.Duration; r < 100*time.Millisecond || r > time.Hour {
		bad("dns.dnssec.key_refresh", "%s is out of range: 100ms to 1h", r)
	}
	if m := d.SafetyMargin.Duration; m < 0 || m > 7*24*time.Hour {
		bad("dns.dnssec.safety_margin", "%s is out of range: 0s to 168h", m)
	}
	if d.KeyFile != "" && strings.TrimSpace(d.KeyFile) != d.KeyFile {
		bad("dns.dnssec.key_file", "the path has spaces at its ends")
	}
}
