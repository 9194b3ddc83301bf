package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func noteKeys(c Config) []string {
	var keys []string
	for _, n := range c.Notes {
		keys = append(keys, n.Key)
	}
	slices.Sort(keys)
	return keys
}

// TestAcmeDNSExampleConfigs: acme-dns's own example config.cfg (v1.x and
// v2.x, verbatim in testdata) loads unchanged, every key it sets is mapped,
// and only the keys with no equivalent are noted.
func TestAcmeDNSExampleConfigs(t *testing.T) {
	tests := []struct {
		file      string
		dsn       string
		level     string
		format    string
		wantNotes []string
	}{
		{"acme-dns-v1.cfg", "/var/lib/acme-dns/acmebroker.db", "debug", "text",
			// tls = "letsencryptstaging" maps to tls = "acme"; its cache
			// directory and acme_dir (for "custom") are not used.
			[]string{"api.acme_cache_dir", "api.acme_dir", "database.connection"}},
		{"acme-dns-v2.cfg", "acmebroker.db", "info", "json", []string{"database.connection"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !IsAcmeDNS(b) {
				t.Fatal("not recognised as an acme-dns config")
			}
			c, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.DNS.Listen, []string{"127.0.0.1:53"}) || c.DNS.Zone != "auth.example.org" ||
				c.DNS.NSName != "auth.example.org" || c.DNS.NSAdmin != "admin.example.org" {
				t.Errorf("dns: %+v", c.DNS)
			}
			if !slices.Equal(c.DNS.Records, []string{"auth.example.org. A 198.51.100.1", "auth.example.org. NS auth.example.org."}) {
				t.Errorf("records: %q", c.DNS.Records)
			}
			if c.Storage.Engine != "sqlite" || c.Storage.DSN != tt.dsn {
				t.Errorf("storage: %+v, want sqlite %s", c.Storage, tt.dsn)
			}
			if c.API.Listen != "0.0.0.0:443" || c.API.Registration != "open" || !slices.Equal(c.API.CORSOrigins, []string{"*"}) {
				t.Errorf("api: %+v", c.API)
			}
			switch tt.file {
			case "acme-dns-v1.cfg": // tls = "letsencryptstaging"
				if a := c.API.ACME; c.API.TLS != "acme" || a.Directory != LetsEncryptStagingDirectory || !slices.Equal(a.Names, []string{"auth.example.org"}) {
					t.Errorf("api.tls %q, acme %+v; want Let's Encrypt staging for the apex", c.API.TLS, a)
				}
			default:
				if c.API.TLS != "none" {
					t.Errorf("api.tls %q, want none", c.API.TLS)
				}
			}
			if c.Log.Level != tt.level || c.Log.Format != tt.format {
				t.Errorf("log: %+v", c.Log)
			}
			if got := noteKeys(c); !slices.Equal(got, tt.wantNotes) {
				t.Errorf("notes for %v, want %v: %+v", got, tt.wantNotes, c.Notes)
			}
			for _, n := range c.Notes {
				if n.Text == "" {
					t.Errorf("note for %s says nothing", n.Key)
				}
			}
		})
	}
}

func TestAcmeDNSMapping(t *testing.T) {
	base := `[general]
listen = "[::1]:5353"
domain = "Auth.Example.Test."
nsname = "ns1.auth.example.test"
nsadmin = "hostmaster@example.test"
records = ["auth.example.test. NS ns1.auth.example.test."]
[database]
engine = "sqlite3"
connection = "/srv/acme/acme-dns.db"
[api]
ip = "127.0.0.1"
port = "8443"
`
	tests := []struct {
		name      string
		extra     string
		check     func(Config) bool
		wantNotes []string
		wantErr   string
	}{
		{name: "minimal", check: func(c Config) bool {
			return c.DNS.Listen[0] == "[::1]:5353" && c.DNS.Zone == "auth.example.test" && c.DNS.NSAdmin == "hostmaster.example.test" &&
				c.API.Listen == "127.0.0.1:8443" && c.Storage.DSN == "/srv/acme/acmebroker.db" && c.Log == Default().Log
		}, wantNotes: []string{"database.connection"}},
		{name: "tls cert", extra: `tls = "cert"
tls_cert_fullchain = "/etc/tls/full.pem"
tls_cert_privkey = "/etc/tls/key.pem"
disable_registration = true
`, check: func(c Config) bool {
			return c.API.TLS == "cert" && c.API.CertFile == "/etc/tls/full.pem" && c.API.KeyFile == "/etc/tls/key.pem" && c.API.Registration == "disabled"
		}, wantNotes: []string{"database.connection"}},
		{name: "letsencrypt", extra: `tls = "letsencrypt"
notification_email = "me@example.test"
api_domain = "api.auth.example.test"
autocert_port = "80"
acme_cache_dir = "/var/lib/acme-dns/certs"
`, check: func(c Config) bool {
			a := c.API.ACME
			return c.API.TLS == "acme" && a.Directory == LetsEncryptDirectory && a.Email == "me@example.test" &&
				slices.Equal(a.Names, []string{"api.auth.example.test"})
		}, wantNotes: []string{"api.acme_cache_dir", "api.autocert_port", "database.connection"}},
		{name: "letsencryptstaging, api_domain outside the zone", extra: `tls = "letsencryptstaging"
api_domain = "api.example.test"
`, check: func(c Config) bool {
			a := c.API.ACME
			return c.API.TLS == "acme" && a.Directory == LetsEncryptStagingDirectory && slices.Equal(a.Names, []string{"auth.example.test"})
		}, wantNotes: []string{"api.api_domain", "database.connection"}},
		{name: "custom", extra: `tls = "custom"
acme_dir = "https://ca.example.test/acme/directory"
`, check: func(c Config) bool {
			return c.API.TLS == "acme" && c.API.ACME.Directory == "https://ca.example.test/acme/directory"
		}, wantNotes: []string{"database.connection"}},
		{name: "custom without acme_dir", extra: `tls = "custom"
`, wantErr: "api.acme_dir"},
		{name: "unknown tls", extra: `tls = "selfsigned"
api_domain = "api.auth.example.test"
`, check: func(c Config) bool { return c.API.TLS == "none" },
			wantNotes: []string{"api.api_domain", "api.tls", "database.connection"}},
		{name: "behind a proxy", extra: `use_header = true
header_name = "X-Real-IP"
hsts_enabled = true
`, check: func(c Config) bool { return len(c.API.TrustedProxies) == 0 },
			wantNotes: []string{"api.header_name", "api.hsts_enabled", "api.use_header", "database.connection"}},
		{name: "logs", extra: `[logconfig]
loglevel = "warning"
logtype = "file"
logfile = "/var/log/acme-dns.log"
logformat = "text"
`, check: func(c Config) bool { return c.Log.Level == "warn" && c.Log.Format == "text" },
			wantNotes: []string{"database.connection", "logconfig.logtype"}},
		{name: "unknown keys and protocol", extra: `frobnicate = 1
[logconfig]
colour = true
`, check: func(c Config) bool { return true },
			wantNotes: []string{"api.frobnicate", "database.connection", "logconfig.colour"}},
		{name: "bad domain names the acme-dns key", extra: "", wantErr: "general.domain"},
		{name: "bad loglevel", extra: "[logconfig]\nloglevel = \"loud\"\n", wantErr: "logconfig.loglevel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base + tt.extra
			if strings.HasPrefix(tt.name, "bad domain") {
				in = strings.Replace(in, "Auth.Example.Test.", "not a name!", 1)
			}
			if !IsAcmeDNS([]byte(in)) {
				t.Fatal("not recognised")
			}
			c, err := Parse([]byte(in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("mapped wrong: %+v", c)
			}
			if got := noteKeys(c); !slices.Equal(got, tt.wantNotes) {
				t.Errorf("notes for %v, want %v: %+v", got, tt.wantNotes, c.Notes)
			}
		})
	}
}

func TestAcmeDNSEnginesAndLimits(t *testing.T) {
	in := "[general]\ndomain = \"auth.example.test\"\nnsname = \"ns1.auth.example.test\"\nnsadmin = \"h.example.test\"\nprotocol = \"udp4\"\ntxt_limit = 40\n" +
		"[database]\nengine = \"postgres\"\nconnection = \"postgres://u:p@127.0.0.1/acmedns\"\n"
	c, err := mapAcmeDNS([]byte(in)) // postgres: Validate knows it once its engine is merged

	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.Engine != "postgres" || c.Storage.DSN != "postgres://u:p@127.0.0.1/acmedns" {
		t.Errorf("storage: %+v", c.Storage)
	}
	if c.DNS.TXTMax != 40 {
		t.Errorf("txt_limit 40 -> txt_max %d, want 40", c.DNS.TXTMax)
	}
	if got := noteKeys(c); !slices.Equal(got, []string{"database.connection", "general.protocol"}) {
		t.Errorf("notes: %v", got)
	}
}

func TestBrokerConfigIsNotAcmeDNS(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range [][]byte{b, []byte(""), []byte("[api]\nlisten = \"127.0.0.1:1\"\n"), []byte("not toml ["),
		[]byte("[general]\n[dns]\n")} {
		if IsAcmeDNS(in) {
			t.Errorf("%.40q taken for an acme-dns config", in)
		}
	}
}

func FuzzParseAcmeDNS(f *testing.F) {
	for _, name := range []string{"acme-dns-v1.cfg", "acme-dns-v2.cfg"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("[general]\nlisten = \"127.0.0.1:53\"\n[api]\nport = 443\ntls = \"letsencrypt\"\n"))
	f.Add([]byte("[database]\nengine = \"postgres\"\n[logconfig]\nloglevel = \"warning\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !IsAcmeDNS(data) {
			return
		}
		c, err := Parse(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("an acme-dns config was accepted that Validate refuses: %v", err)
		}
		for _, n := range c.Notes {
			if n.Key == "" || n.Text == "" {
				t.Fatalf("empty note %+v", n)
			}
		}
	})
}
