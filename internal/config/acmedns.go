package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Note is something an operator should know about the config that was
// loaded: a key of an acme-dns config.cfg that acmebroker does not map, or
// maps with a change. `acmebroker serve` logs each once as a warning.
type Note struct {
	Key  string // the acme-dns key, e.g. "api.tls"
	Text string // what happens and what to do
}

// acmeDNSConfig is acme-dns's config.cfg (v0.7 to v2.x). BurntSushi/toml
// matches keys case-insensitively, as acme-dns's own untagged fields do.
type acmeDNSConfig struct {
	General struct {
		Listen   string   `toml:"listen"`
		Protocol string   `toml:"protocol"`
		Domain   string   `toml:"domain"`
		NSName   string   `toml:"nsname"`
		NSAdmin  string   `toml:"nsadmin"`
		Debug    bool     `toml:"debug"`
		Records  []string `toml:"records"`
		TXTLimit int      `toml:"txt_limit"` // v2
	} `toml:"general"`
	Database struct {
		Engine     string `toml:"engine"`
		Connection string `toml:"connection"`
	} `toml:"database"`
	API struct {
		APIDomain           string   `toml:"api_domain"`
		IP                  string   `toml:"ip"`
		DisableRegistration bool     `toml:"disable_registration"`
		AutocertPort        any      `toml:"autocert_port"`
		Port                any      `toml:"port"` // a string in acme-dns; a number is taken too
		TLS                 string   `toml:"tls"`
		TLSCertPrivkey      string   `toml:"tls_cert_privkey"`
		TLSCertFullchain    string   `toml:"tls_cert_fullchain"`
		ACMECacheDir        string   `toml:"acme_cache_dir"`
		ACMEDir             string   `toml:"acme_dir"`
		NotificationEmail   string   `toml:"notification_email"`
		CORSOrigins         []string `toml:"corsorigins"`
		UseHeader           bool     `toml:"use_header"`
		HeaderName          string   `toml:"header_name"`
		HSTSEnabled         bool     `toml:"hsts_enabled"` // v2
		HSTSMaxAge          int      `toml:"hsts_max_age"`
		HSTSIncludeSubdoms  bool     `toml:"hsts_include_subdomains"`
		HSTSPreload         bool     `toml:"hsts_preload"`
	} `toml:"api"`
	Logconfig struct {
		Level   string `toml:"loglevel"`
		Type    string `toml:"logtype"`
		File    string `toml:"logfile"`
		Format  string `toml:"logformat"`
		Console any    `toml:"console"`
	} `toml:"logconfig"`
}

// IsAcmeDNS reports whether b is an acme-dns config.cfg rather than an
// acmebroker config: it has acme-dns's [general], [database] or
// [logconfig] table and none of acmebroker's [dns], [storage] or [log].
func IsAcmeDNS(b []byte) bool {
	var top map[string]any
	if _, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&top); err != nil {
		return false
	}
	has := func(k string) bool {
		for name, v := range top {
			if _, table := v.(map[string]any); table && strings.EqualFold(name, k) {
				return true
			}
		}
		return false
	}
	return (has("general") || has("database") || has("logconfig")) && !has("dns") && !has("storage") && !has("log")
}

// brokerKey names, for error messages, the acme-dns key each acmebroker
// key came from.
var brokerKey = map[string]string{
	"dns.listen":       "general.listen",
	"dns.zone":         "general.domain",
	"dns.nsname":       "general.nsname",
	"dns.nsadmin":      "general.nsadmin",
	"dns.txt_max":      "general.txt_limit",
	"api.listen":       "api.ip and api.port",
	"api.tls":          "api.tls",
	"api.cert_file":    "api.tls_cert_fullchain",
	"api.key_file":     "api.tls_cert_privkey",
	"api.cors_origins": "api.corsorigins",
	"storage.engine":   "database.engine",
	"storage.dsn":      "database.connection",
	"log.level":        "logconfig.loglevel",
	"log.format":       "logconfig.logformat",
	"api.registration": "api.disable_registration",
	"dns.records":      "general.records",

	"api.acme.directory": "api.acme_dir",
	"api.acme.email":     "api.notification_email",
	"api.acme.names[0]":  "api.api_domain",
}

// parseAcmeDNS maps an acme-dns config.cfg onto Config (over the defaults)
// and validates it. Keys with no equivalent become Notes.
func parseAcmeDNS(b []byte) (Config, error) {
	c, err := mapAcmeDNS(b)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("acme-dns config: %s", renameKeys(err))
	}
	return c, nil
}

// mapAcmeDNS is parseAcmeDNS without the validation.
func mapAcmeDNS(b []byte) (Config, error) {
	var a acmeDNSConfig
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&a)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return Config{}, fmt.Errorf("acme-dns config: line %d: %s", perr.Position.Line, perr.Message)
		}
		return Config{}, fmt.Errorf("acme-dns config: %w", err)
	}
	c := Default()
	note := func(key, format string, args ...any) {
		c.Notes = append(c.Notes, Note{Key: key, Text: fmt.Sprintf(format, args...)})
	}
	set := func(key string) bool { return md.IsDefined(strings.Split(key, ".")...) }

	// [general]
	g := a.General
	if set("general.listen") {
		c.DNS.Listen = []string{g.Listen}
	}
	switch p := strings.ToLower(g.Protocol); p {
	case "", "both", "both4", "both6":
	default:
		note("general.protocol", "protocol = %q is not mapped: acmebroker serves UDP and TCP on every dns.listen address (the address decides IPv4 or IPv6)", g.Protocol)
	}
	if set("general.domain") {
		c.DNS.Zone = g.Domain
	}
	if set("general.nsname") {
		c.DNS.NSName = g.NSName
	}
	if set("general.nsadmin") {
		// acme-dns: "admin email address, where @ is substituted with ."
		c.DNS.NSAdmin = strings.Replace(g.NSAdmin, "@", ".", 1)
	}
	if set("general.records") {
		c.DNS.Records = g.Records
	}
	if g.Debug {
		note("general.debug", "debug = true (acme-dns's CORS debugging) is not mapped; set logconfig.loglevel = \"debug\" for debug logs")
	}
	if g.TXTLimit > c.DNS.TXTMax {
		// acme-dns serves the txt_limit newest values; acmebroker serves the
		// 2 newest and every value of the last txt_window, at most txt_max.
		c.DNS.TXTMax = min(g.TXTLimit, 100)
	}

	// [database]
	switch e := strings.ToLower(a.Database.Engine); e {
	case "sqlite3", "sqlite", "":
		c.Storage.Engine = "sqlite"
		if a.Database.Connection != "" {
			// The broker keeps its own file beside acme-dns's, which stays
			// as it was (so going back to acme-dns remains possible).
			c.Storage.DSN = filepath.Join(filepath.Dir(a.Database.Connection), "acmebroker.db")
			note("database.connection", "acmebroker keeps its accounts in %s, beside acme-dns's %s, which it leaves untouched; copy acme-dns's accounts into it once with: acmebroker import acme-dns --from %s -config <this file>",
				c.Storage.DSN, a.Database.Connection, a.Database.Connection)
		}
	case "postgres":
		c.Storage.Engine = "postgres"
		c.Storage.DSN = a.Database.Connection
		note("database.connection", "acmebroker keeps its own tables in the same PostgreSQL database (acme-dns's tables stay as they are); copy acme-dns's accounts once with: acmebroker import acme-dns --from <connection> -config <this file>")
	default:
		c.Storage.Engine = a.Database.Engine // Validate names it
	}

	// [api]
	api := a.API
	if set("api.ip") || set("api.port") {
		port := fmt.Sprint(api.Port)
		if api.Port == nil {
			port = "443"
		}
		c.API.Listen = net.JoinHostPort(api.IP, port)
	}
	if api.DisableRegistration {
		c.API.Registration = "disabled"
	}
	var tlsOnly []string
	switch t := strings.ToLower(api.TLS); t {
	case "", "none":
		c.API.TLS = "none"
	case "cert":
		c.API.TLS, c.API.CertFile, c.API.KeyFile = "cert", api.TLSCertFullchain, api.TLSCertPrivkey
	case "letsencrypt", "letsencryptstaging", "custom":
		// acme-dns gets the API's certificate by answering dns-01 in its
		// own zone; so does acmebroker with tls = "acme".
		c.API.TLS = "acme"
		c.API.ACME.Email = api.NotificationEmail
		switch t {
		case "letsencrypt":
			c.API.ACME.Directory = LetsEncryptDirectory
		case "letsencryptstaging":
			c.API.ACME.Directory = LetsEncryptStagingDirectory
		default:
			c.API.ACME.Directory = api.ACMEDir // Validate names it if empty or wrong
		}
		if d := normName(api.APIDomain); d != "" {
			if zone := normName(c.DNS.Zone); d == zone || strings.HasSuffix(d, "."+zone) {
				c.API.ACME.Names = []string{d}
			} else {
				note("api.api_domain", "api_domain %s is outside the zone %s, whose dns-01 challenges are the only ones the broker answers; the API's certificate is for %s instead (set [api.acme] names in a TOML config to change it)", d, zone, zone)
			}
		}
		if api.ACMECacheDir != "" {
			note("api.acme_cache_dir", "acme_cache_dir is not used: the API's certificate, its key and the ACME account are kept in the database (storage), so every node on it shares them")
		}
		tlsOnly = []string{"api.autocert_port"}
		if t != "custom" {
			tlsOnly = append(tlsOnly, "api.acme_dir")
		}
	default:
		c.API.TLS = "none"
		note("api.tls", "tls = %q is not mapped: acmebroker serves the API over plain HTTP on %s. Set tls = \"cert\" with tls_cert_fullchain and tls_cert_privkey, \"letsencrypt\", or put the API behind a TLS reverse proxy",
			api.TLS, c.API.Listen)
		tlsOnly = []string{"api.api_domain", "api.autocert_port", "api.acme_cache_dir", "api.acme_dir", "api.notification_email"}
	}
	tlsValues := map[string]string{"api.api_domain": api.APIDomain, "api.acme_cache_dir": api.ACMECacheDir,
		"api.acme_dir": api.ACMEDir, "api.notification_email": api.NotificationEmail}
	if api.AutocertPort != nil {
		tlsValues["api.autocert_port"] = fmt.Sprint(api.AutocertPort)
	}
	for _, k := range tlsOnly {
		if tlsValues[k] != "" {
			note(k, "%s is not used with tls = %q; ignored", k[len("api."):], api.TLS)
		}
	}
	if set("api.corsorigins") {
		c.API.CORSOrigins = api.CORSOrigins
	}
	if api.UseHeader {
		note("api.use_header", "use_header = true cannot be mapped: acmebroker believes X-Forwarded-For only from the proxies you name. Write a TOML config with [api] trusted_proxies = [\"<your proxy's address>/32\"] (until then the proxy's address is taken as every client's, which breaks allowfrom)")
		if h := api.HeaderName; h != "" && !strings.EqualFold(h, "X-Forwarded-For") {
			note("api.header_name", "header_name = %q is not supported: acmebroker reads X-Forwarded-For; make your proxy set that header", h)
		}
	}
	if api.HSTSEnabled {
		note("api.hsts_enabled", "HSTS is not mapped: acmebroker sends no Strict-Transport-Security header; set it at your reverse proxy if you need it")
	}

	// [logconfig]
	lc := a.Logconfig
	switch l := strings.ToLower(lc.Level); l {
	case "":
	case "warning":
		c.Log.Level = "warn"
	default:
		c.Log.Level = l // Validate names a bad one
	}
	if lc.Format != "" {
		c.Log.Format = strings.ToLower(lc.Format)
	}
	if strings.EqualFold(lc.Type, "file") {
		note("logconfig.logtype", "logtype = \"file\" is not mapped: acmebroker logs to standard error; redirect it to %q or read it from the journal", lc.File)
	}

	// Keys acme-dns does not know either (it ignores them silently).
	var unknown []string
	for _, k := range md.Undecoded() {
		unknown = append(unknown, k.String())
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		note(k, "%s is not an acme-dns key (a typo?); ignored", k)
	}

	return c, nil
}

// renameKeys rewrites "dns.zone: ..." lines of a Validate error to name the
// acme-dns key the value came from.
func renameKeys(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		key, rest, ok := strings.Cut(l, ": ")
		if !ok {
			continue
		}
		base, _, _ := strings.Cut(key, "[")
		if from := brokerKey[base]; from != "" {
			lines[i] = from + " (" + key + "): " + rest
		}
	}
	return strings.Join(lines, "\n")
}

// Encode writes c as acmebroker's TOML config (Notes are not keys and are
// left out).
func Encode(w io.Writer, c Config) error {
	c.Notes = nil
	c.API.DisableRegistration = false // Registration says it
	enc := toml.NewEncoder(w)
	enc.Indent = ""
	if err := enc.Encode(c); err != nil {
		return fmt.Errorf("config: encode: %w", err)
	}
	return nil
}
