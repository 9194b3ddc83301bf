package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigLoads(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "config.toml"))
	if err != nil {
		t.Fatalf("the annotated config.toml must load as is: %v", err)
	}
	if c.DNS.Zone != "auth.example.org" || len(c.DNS.Records) != 2 || c.DNS.TXTWindow.Duration != 10*time.Minute {
		t.Fatalf("unexpected values from config.toml: %+v", c.DNS)
	}
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.DNS.Listen[0] != "127.0.0.1:5353" || c.API.Listen != "127.0.0.1:8080" || c.Storage.DSN != "acmebroker.db" {
		t.Fatalf("embedded default changed: %+v", c)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		toml    string
		wantErr string // substring; "" means valid
		check   func(t *testing.T, c Config)
	}{
		{name: "empty file is the default", toml: ``},
		{name: "lists replace defaults", toml: `[dns]
listen = ["[::1]:15353", "127.0.0.1:15353"]`, check: func(t *testing.T, c Config) {
			if len(c.DNS.Listen) != 2 || c.DNS.Listen[0] != "[::1]:15353" {
				t.Errorf("listen = %v", c.DNS.Listen)
			}
		}},
		{name: "zone normalised", toml: `[dns]
zone = "Auth.Example.ORG."`, check: func(t *testing.T, c Config) {
			if c.DNS.Zone != "auth.example.org" {
				t.Errorf("zone = %q", c.DNS.Zone)
			}
		}},
		{name: "unknown key", toml: "[dns]\nlisen = [\"127.0.0.1:53\"]", wantErr: "unknown key dns.lisen"},
		{name: "unknown section", toml: "[dsn]\nx = 1", wantErr: "unknown key dsn"},
		{name: "syntax error has line", toml: "[dns]\nzone = \n", wantErr: "line 2"},
		{name: "wrong type", toml: "[dns]\nlisten = \"127.0.0.1:53\"", wantErr: "listen"},
		{name: "bad listen", toml: "[dns]\nlisten = [\"127.0.0.1\"]", wantErr: "dns.listen[0]"},
		{name: "listen host name", toml: "[api]\nlisten = \"example.com:80\"", wantErr: "api.listen"},
		{name: "bad zone", toml: "[dns]\nzone = \"a..b\"", wantErr: "dns.zone"},
		{name: "missing zone", toml: "[dns]\nzone = \"\"", wantErr: "dns.zone: required"},
		{name: "bad tls", toml: "[api]\ntls = \"yes\"", wantErr: "api.tls"},
		{name: "cert needs files", toml: "[api]\ntls = \"cert\"", wantErr: "api.cert_file"},
		{name: "cert check interval", toml: "[api]\ntls = \"cert\"\ncert_file = \"c\"\nkey_file = \"k\"\ncert_check_interval = \"1ms\"", wantErr: "api.cert_check_interval"},
		{name: "acme defaults", toml: "[api]\ntls = \"acme\"", check: func(t *testing.T, c Config) {
			a := c.API.ACME
			if a.Directory != LetsEncryptDirectory || len(a.Names) != 1 || a.Names[0] != "auth.example.org" || a.KeyType != "ec256" || a.CheckInterval.Duration != time.Minute {
				t.Errorf("api.acme = %+v, want Let's Encrypt, the apex, ec256, 1m", a)
			}
		}},
		{name: "acme names", toml: "[api]\ntls = \"acme\"\n[api.acme]\nnames = [\"API.auth.example.org.\", \"*.auth.example.org\"]\nkey_type = \"rsa2048\"\nprofile = \"shortlived\"\nemail = \"ops@example.org\"\neab_kid = \"kid-1\"\neab_hmac = \"c2VjcmV0LWtleS1ieXRlcw\"\nca_root = \"/etc/ca.pem\"\ncheck_interval = \"10s\"\ndirectory = \"https://ca.example.org/directory\"", check: func(t *testing.T, c Config) {
			a := c.API.ACME
			if strings.Join(a.Names, " ") != "api.auth.example.org *.auth.example.org" || a.KeyType != "rsa2048" || a.Profile != "shortlived" ||
				a.EABKID != "kid-1" || a.CARoot != "/etc/ca.pem" || a.CheckInterval.Duration != 10*time.Second || a.Directory != "https://ca.example.org/directory" {
				t.Errorf("api.acme = %+v", a)
			}
		}},
		{name: "acme name outside the zone", toml: "[api]\ntls = \"acme\"\n[api.acme]\nnames = [\"auth.example.org\", \"www.example.org\"]", wantErr: "api.acme.names[1]: www.example.org is not inside dns.zone"},
		{name: "acme lookalike name", toml: "[api]\ntls = \"acme\"\n[api.acme]\nnames = [\"xauth.example.org\"]", wantErr: "api.acme.names[0]"},
		{name: "acme bad name", toml: "[api]\ntls = \"acme\"\n[api.acme]\nnames = [\"a.*.auth.example.org\"]", wantErr: "api.acme.names[0]"},
		{name: "acme duplicate name", toml: "[api]\ntls = \"acme\"\n[api.acme]\nnames = [\"auth.example.org\", \"AUTH.example.org.\"]", wantErr: "api.acme.names[1]: auth.example.org is listed twice"},
		{name: "acme half an EAB", toml: "[api]\ntls = \"acme\"\n[api.acme]\neab_kid = \"k\"", wantErr: "api.acme.eab_kid"},
		{name: "acme EAB not base64url", toml: "[api]\ntls = \"acme\"\n[api.acme]\neab_kid = \"k\"\neab_hmac = \"a+b/\"", wantErr: "api.acme.eab_hmac"},
		{name: "acme plain http directory", toml: "[api]\ntls = \"acme\"\n[api.acme]\ndirectory = \"http://ca.example.org/dir\"", wantErr: "api.acme.directory"},
		{name: "acme key type", toml: "[api]\ntls = \"acme\"\n[api.acme]\nkey_type = \"dsa\"", wantErr: "api.acme.key_type"},
		{name: "acme check interval", toml: "[api]\ntls = \"acme\"\n[api.acme]\ncheck_interval = \"2h\"", wantErr: "api.acme.check_interval"},
		{name: "acme nameservers", toml: "[api]\ntls = \"acme\"\n[api.acme]\nnameservers = [\"192.0.2.53:53\", \"[2001:db8::53]:5353\"]\npropagation_timeout = \"0s\"", check: func(t *testing.T, c Config) {
			if len(c.API.ACME.Nameservers) != 2 || c.API.ACME.PropagationTimeout.Duration != 0 {
				t.Errorf("api.acme = %+v", c.API.ACME)
			}
		}},
		{name: "acme nameserver by name", toml: "[api]\ntls = \"acme\"\n[api.acme]\nnameservers = [\"ns1.example.org:53\"]", wantErr: "api.acme.nameservers[0]"},
		{name: "acme nameserver without port", toml: "[api]\ntls = \"acme\"\n[api.acme]\nnameservers = [\"192.0.2.53\"]", wantErr: "api.acme.nameservers[0]"},
		{name: "acme propagation timeout", toml: "[api]\ntls = \"acme\"\n[api.acme]\npropagation_timeout = \"1h\"", wantErr: "api.acme.propagation_timeout"},
		{name: "acme bad email", toml: "[api]\ntls = \"acme\"\n[api.acme]\nemail = \"ops\"", wantErr: "api.acme.email"},
		{name: "acme table ignored without tls acme", toml: "[api.acme]\nnames = [\"www.example.org\"]"},
		{name: "bad proxy", toml: "[api]\ntrusted_proxies = [\"10.0.0.1\"]", wantErr: "api.trusted_proxies[0]"},
		{name: "bad engine", toml: "[storage]\nengine = \"mysql\"", wantErr: "storage.engine"},
		{name: "postgres needs dsn", toml: "[storage]\nengine = \"postgres\"\ndsn = \"\"", wantErr: "storage.dsn: required with engine = \"postgres\""},
		{name: "postgres dsn shape", toml: "[storage]\nengine = \"postgres\"\ndsn = \"acmebroker.db\"", wantErr: "storage.dsn: must be a postgres:// URL"},
		{name: "postgres bad url hides password", toml: "[storage]\nengine = \"postgres\"\ndsn = \"postgres://u:pa%zzword@h/db\"", wantErr: "storage.dsn: is not a valid URL"},
		{name: "postgres", toml: "[storage]\nengine = \"postgres\"\ndsn = \"postgres://acmebroker@127.0.0.1/acmebroker\"\nresync_interval = \"30s\"", check: func(t *testing.T, c Config) {
			if c.Storage.Engine != "postgres" || c.Storage.ResyncInterval.Duration != 30*time.Second {
				t.Errorf("storage = %+v", c.Storage)
			}
		}},
		{name: "postgres key=value dsn", toml: "[storage]\nengine = \"postgres\"\ndsn = \"host=127.0.0.1 dbname=acmebroker\""},
		{name: "resync range", toml: "[storage]\nresync_interval = \"10ms\"", wantErr: "storage.resync_interval"},
		{name: "bad window", toml: "[dns]\ntxt_window = \"ten minutes\"", wantErr: "txt_window"},
		{name: "txt_max range", toml: "[dns]\ntxt_max = 1", wantErr: "dns.txt_max"},
		{name: "bad level", toml: "[log]\nlevel = \"loud\"", wantErr: "log.level"},
		{name: "base path", toml: "[api]\nbase_path = \"/acme/\"", check: func(t *testing.T, c Config) {
			if c.API.BasePath != "/acme" {
				t.Errorf("base_path = %q", c.API.BasePath)
			}
		}},
		{name: "metrics off by default", toml: ``, check: func(t *testing.T, c Config) {
			if c.Metrics.Listen != "" {
				t.Errorf("metrics.listen = %q, want off", c.Metrics.Listen)
			}
		}},
		{name: "metrics listen", toml: "[metrics]\nlisten = \"127.0.0.1:9153\"", check: func(t *testing.T, c Config) {
			if c.Metrics.Listen != "127.0.0.1:9153" {
				t.Errorf("metrics.listen = %q", c.Metrics.Listen)
			}
		}},
		{name: "bad metrics listen", toml: "[metrics]\nlisten = \"9153\"", wantErr: "metrics.listen"},
		{name: "dnssec off by default, P-256", toml: ``, check: func(t *testing.T, c Config) {
			if d := c.DNS.DNSSEC; d.Enabled || d.Algorithm != "ecdsap256sha256" || d.SplitKeys || d.KeyFile != "" {
				t.Errorf("dns.dnssec = %+v", d)
			}
		}},
		{name: "dnssec ed25519 by number", toml: "[dns.dnssec]\nenabled = true\nalgorithm = \"15\"\nsplit_keys = true", check: func(t *testing.T, c Config) {
			if d := c.DNS.DNSSEC; !d.Enabled || d.Algorithm != "ed25519" || !d.SplitKeys {
				t.Errorf("dns.dnssec = %+v", d)
			}
		}},
		{name: "dnssec rsa refused", toml: "[dns.dnssec]\nalgorithm = \"rsasha256\"", wantErr: "dns.dnssec.algorithm"},
		{name: "dnssec validity too short", toml: "[dns.dnssec]\nsignature_validity = \"10m\"", wantErr: "dns.dnssec.signature_validity"},
		{name: "dnssec key_refresh range", toml: "[dns.dnssec]\nkey_refresh = \"2h\"", wantErr: "dns.dnssec.key_refresh"},
		{name: "dnssec dnskey_ttl range", toml: "[dns.dnssec]\ndnskey_ttl = 0", wantErr: "dns.dnssec.dnskey_ttl"},
		{name: "dnssec parent_ds_ttl range", toml: "[dns.dnssec]\nparent_ds_ttl = 9999999", wantErr: "dns.dnssec.parent_ds_ttl"},
		{name: "dnssec safety_margin range", toml: "[dns.dnssec]\nsafety_margin = \"-1s\"", wantErr: "dns.dnssec.safety_margin"},
		{name: "several errors at once", toml: "[api]\ntls = \"x\"\n[log]\nformat = \"xml\"", wantErr: "log.format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.toml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if err == nil || !os.IsNotExist(errorsUnwrapAll(err)) && !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("err = %v", err)
	}
}

func errorsUnwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func FuzzParse(f *testing.F) {
	b, _ := os.ReadFile(filepath.Join("..", "..", "config.toml"))
	f.Add(b)
	f.Add([]byte("[dns]\nlisten = [\"127.0.0.1:53\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err == nil {
			if err := c.Validate(); err != nil {
				t.Fatalf("Parse accepted a config that Validate refuses: %v", err)
			}
		}
	})
}

func TestRegistrationMode(t *testing.T) {
	tests := []struct {
		toml, want, errKey string
	}{
		{"", "open", ""},
		{"[api]\nregistration = \"token\"", "token", ""},
		{"[api]\nregistration = \"disabled\"", "disabled", ""},
		{"[api]\ndisable_registration = true", "disabled", ""},
		{"[api]\nregistration = \"open\"\ndisable_registration = true", "disabled", ""},
		{"[api]\nregistration = \"token\"\ndisable_registration = true", "", "api.disable_registration"},
		{"[api]\nregistration = \"invite\"", "", "api.registration"},
	}
	for _, tc := range tests {
		c, err := Parse([]byte(tc.toml))
		if tc.errKey != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errKey) {
				t.Errorf("%q: error %v, want one naming %s", tc.toml, err, tc.errKey)
			}
			continue
		}
		if err != nil || c.API.Registration != tc.want {
			t.Errorf("%q: registration %q (%v), want %q", tc.toml, c.API.Registration, err, tc.want)
		}
	}
}

func TestPostgresDSNNotEchoed(t *testing.T) {
	for _, dsn := range []string{"postgres://u:s3cr3t%zz@h/db", "s3cr3t"} {
		_, err := Parse([]byte("[storage]\nengine = \"postgres\"\ndsn = \"" + dsn + "\""))
		if err == nil || strings.Contains(err.Error(), "s3cr3t") {
			t.Fatalf("dsn %q: err = %v, want an error that does not show the DSN", dsn, err)
		}
	}
}

func TestRedactedDSN(t *testing.T) {
	for _, tc := range []struct{ engine, dsn, want string }{
		{"sqlite", "/var/lib/acmebroker/db", "/var/lib/acmebroker/db"},
		{"postgres", "postgres://u:s3cr3t@db:5432/acme", "postgres://u:xxxxx@db:5432/acme"},
		{"postgres", "postgres://u@db/acme", "postgres://u@db/acme"},
		{"postgres", "host=db password=s3cr3t dbname=acme", "host=db password=xxxxx dbname=acme"},
	} {
		if got := (Storage{Engine: tc.engine, DSN: tc.dsn}).RedactedDSN(); got != tc.want {
			t.Errorf("RedactedDSN(%q) = %q, want %q", tc.dsn, got, tc.want)
		}
	}
}

// TestEveryInvalidValueReported: one run names every refused value, every
// unknown key and every value out of range, each once, not only the first
// the decoder meets.
func TestEveryInvalidValueReported(t *testing.T) {
	doc := `[dns]
txt_max = "many"
txt_window = "ten minutes"
tcp_max_queries = 70000
lisen = ["127.0.0.1:53"]

[[dns.transfer.keys]]
name = "k"
secrt = "x"

[dns.rrl]
slip = 11

[api]
tls = "cert"
cert_file = 5
key_file = "/k.pem"
update_limit = -1

[dsn]
x = 1

[log]
level = "loud"
`
	_, err := Parse([]byte(doc))
	if err == nil {
		t.Fatal("Parse accepted a config with nine faults")
	}
	msg := err.Error()
	for _, want := range []string{
		"line 2: dns.txt_max: incompatible types",                   // wrong type
		"line 3: dns.txt_window: \"ten minutes\" is not a duration", // wrong form
		"dns.tcp_max_queries: 70000 is out of range",                // range, after two decode errors
		"unknown key dns.lisen",                                     // unknown key in a known table
		"unknown key dns.transfer.keys.secrt",                       // unknown key in an array of tables
		"dns.transfer.keys[0].secret: must be base64",               // the missing secret
		"dns.rrl.slip: 11 is out of range",
		"line 16: api.cert_file: incompatible types",
		"api.update_limit: must be 0",
		"unknown key dsn",
		"log.level: \"loud\"",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error lacks %q:\n%s", want, msg)
		}
	}
	// A refused value is reported once: not again as "required" because
	// the default took its place.
	if strings.Contains(msg, "api.cert_file: required") {
		t.Errorf("api.cert_file reported twice:\n%s", msg)
	}
	if n := strings.Count(msg, "\n") + 1; n != 11 {
		t.Errorf("%d errors, want 11:\n%s", n, msg)
	}
}
