package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestDNSAbuseLimits(t *testing.T) {
	c, err := Parse([]byte(`[dns]
tcp_per_source = 4
tcp_idle_timeout = "3s"
[dns.rrl]
nxdomain_per_second = 7
slip = 0
exempt = ["192.0.2.0/24", "2001:db8::/32"]`))
	if err != nil {
		t.Fatal(err)
	}
	r := c.DNS.RRL
	if c.DNS.TCPPerSource != 4 || c.DNS.TCPIdleTimeout.Duration != 3*time.Second || c.DNS.TCPMaxConnections != 512 ||
		!r.Enabled || r.NXDomainPerSecond != 7 || r.Slip != 0 || r.ResponsesPerSecond != 100 || len(r.Exempt) != 2 {
		t.Fatalf("parsed %+v", c.DNS)
	}
	if c.DNS.TCPMaxLifetime.Duration != 30*time.Second || !c.DNS.Cookies.Enabled || c.DNS.Cookies.CookielessUDPSize != 512 || c.DNS.Cookies.Secret != "" {
		t.Fatalf("defaults: lifetime %s, cookies %v", c.DNS.TCPMaxLifetime, c.DNS.Cookies)
	}
	const sec = "e5e973e5a6b2a43f48e7dc849e37bfcf"
	c, err = Parse([]byte("[dns.cookies]\nsecret = \"" + sec + "\"\nprevious_secrets = [\"445536bcd2513298075a5d379663c962\"]"))
	if err != nil || c.DNS.Cookies.Secret != sec || len(c.DNS.Cookies.PreviousSecrets) != 1 {
		t.Fatalf("cookie secrets: %v %v", c.DNS.Cookies, err)
	}
	if strings.Contains(fmt.Sprint(c.DNS.Cookies), sec) {
		t.Fatal("the cookie secret shows when the config is printed")
	}
	if _, err := Parse([]byte("[dns.cookies]\nsecret = \"" + sec[:30] + "\"")); err == nil || strings.Contains(err.Error(), sec[:30]) {
		t.Fatalf("a bad secret is quoted back or accepted: %v", err)
	}
	// 0 asks for the server's default (TCPLimits), which is what the
	// table's defaults are.
	if c, err := Parse([]byte("[dns]\ntcp_idle_timeout = \"0s\"\ntcp_max_queries = 0\ntcp_max_lifetime = \"0s\"")); err != nil || c.DNS.TCPLimits().Check() != nil {
		t.Fatalf("0 for the TCP timeouts and query cap (the defaults): %v", err)
	}
	// All the invalid fields of one table are named, not only the first.
	if _, err := Parse([]byte("[dns.rrl]\nslip = 11\nwindow = \"10ms\"\ntable_size = 1")); err == nil ||
		!strings.Contains(err.Error(), "dns.rrl.slip") || !strings.Contains(err.Error(), "dns.rrl.window") || !strings.Contains(err.Error(), "dns.rrl.table_size") {
		t.Fatalf("three bad [dns.rrl] values: %v", err)
	}
	if c, err := Parse([]byte("[dns.rrl]\nenabled = false\nslip = 99")); err != nil || c.DNS.RRL.Enabled {
		t.Fatalf("disabled RRL with an unused bad value: %v", err)
	}
	for _, tc := range []struct{ toml, want string }{
		{"[dns]\ntcp_per_source = -1", "dns.tcp_per_source"},
		{"[dns]\ntcp_max_connections = -1", "dns.tcp_max_connections"},
		{"[dns]\ntcp_idle_timeout = \"50ms\"", "dns.tcp_idle_timeout"},
		{"[dns]\ntcp_max_queries = 70000", "dns.tcp_max_queries"},
		{"[dns]\ntcp_max_lifetime = \"500ms\"", "dns.tcp_max_lifetime"},
		{"[dns.cookies]\nsecret = \"abc\"", "dns.cookies.secret"},
		{"[dns.cookies]\nprevious_secrets = [\"e5e973e5a6b2a43f48e7dc849e37bfcf\", \"zz\"]", "dns.cookies.previous_secrets[1]"},
		{"[dns.cookies]\ncookieless_udp_size = 100", "dns.cookies.cookieless_udp_size"},
		{"[dns.rrl]\nresponses_per_second = -5", "dns.rrl.responses_per_second"},
		{"[dns.rrl]\nnxdomain_per_second = -1", "dns.rrl.nxdomain_per_second"},
		{"[dns.rrl]\nlarge_size = 0", "dns.rrl.large_size"},
		{"[dns.rrl]\nslip = 11", "dns.rrl.slip"},
		{"[dns.rrl]\nwindow = \"10ms\"", "dns.rrl.window"},
		{"[dns.rrl]\nipv4_prefix = 33", "dns.rrl.ipv4_prefix"},
		{"[dns.rrl]\nipv6_prefix = 0", "dns.rrl.ipv6_prefix"},
		{"[dns.rrl]\ntable_size = 1", "dns.rrl.table_size"},
		{"[dns.rrl]\nexempt = [\"127.0.0.1\"]", "dns.rrl.exempt[0]"},
		{"[dns.rrl]\nslipp = 1", "unknown key dns.rrl.slipp"},
		{"[dns]\nanswer_cache_mb = -1", "dns.answer_cache_mb"},
		{"[dns]\nudp_sockets = 5000", "dns.udp_sockets"},
	} {
		if _, err := Parse([]byte(tc.toml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want it to name %s", tc.toml, err, tc.want)
		}
	}
}

func TestAPIAbuseLimits(t *testing.T) {
	c, err := Parse([]byte("[api]\nmax_connections = 100\nconnections_per_source = 0\nidle_timeout = \"30s\"\nbcrypt_per_second = 2"))
	if err != nil {
		t.Fatal(err)
	}
	if c.API.MaxConnections != 100 || c.API.ConnectionsPerSource != 0 || c.API.IdleTimeout.Duration != 30*time.Second || c.API.BcryptPerSecond != 2 {
		t.Fatalf("parsed %+v", c.API)
	}
	d := Default()
	if d.API.MaxConnections != 4096 || d.API.ConnectionsPerSource != 64 || d.API.IdleTimeout.Duration != 10*time.Second || d.API.BcryptPerSecond != 5 {
		t.Fatalf("defaults %+v", d.API)
	}
	for _, tc := range []struct{ toml, want string }{
		{"[api]\nmax_connections = 0", "api.max_connections"},
		{"[api]\nconnections_per_source = -1", "api.connections_per_source"},
		{"[api]\nidle_timeout = \"0s\"", "api.idle_timeout"},
		{"[api]\nidle_timeout = \"1h\"", "api.idle_timeout"},
		{"[api]\nbcrypt_per_second = 0", "api.bcrypt_per_second"},
	} {
		if _, err := Parse([]byte(tc.toml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want it to name %s", tc.toml, err, tc.want)
		}
	}
}
