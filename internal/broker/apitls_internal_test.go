package broker

import (
	"slices"
	"testing"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/internal/config"
)

// TestZoneNameservers: without [api.acme] nameservers the broker waits on
// the zone's name servers as its own NS records and glue give them.
func TestZoneNameservers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		records []string
		given   []string
		want    []string
	}{
		{"NS with glue, v4 and v6", []string{"auth.example.org. NS ns1.auth.example.org.", "ns1.auth.example.org. A 192.0.2.53", "ns1.auth.example.org. AAAA 2001:db8::53"},
			nil, []string{"192.0.2.53:53", "[2001:db8::53]:53"}},
		{"a secondary outside the zone, by name", []string{"auth.example.org. NS ns1.auth.example.org.", "auth.example.org. NS ns.provider.example.net.", "ns1.auth.example.org. A 192.0.2.53"},
			nil, []string{"192.0.2.53:53", "ns.provider.example.net:53"}},
		{"no NS records: nsname", []string{"ns1.auth.example.org. A 192.0.2.1"}, nil, []string{"192.0.2.1:53"}},
		{"configured", []string{"auth.example.org. NS ns1.auth.example.org."}, []string{"127.0.0.1:5353"}, []string{"127.0.0.1:5353"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.DNS.Records = tc.records
			cfg.API.ACME.Nameservers = tc.given
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			static, err := dnsserver.ParseRecords(cfg.DNS.Zone, cfg.DNS.Records)
			if err != nil {
				t.Fatal(err)
			}
			if got := zoneNameservers(cfg, static); !slices.Equal(got, tc.want) {
				t.Fatalf("zoneNameservers = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestReservedWithACME: the first label of each name of the API's
// certificate below the apex is no account's; other labels are as before.
func TestReservedWithACME(t *testing.T) {
	cfg := config.Default()
	cfg.API.TLS = "acme"
	cfg.API.ACME.Names = []string{"auth.example.org", "api.auth.example.org", "*.x.y.auth.example.org"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	base := func(label string) string {
		if label == "ns1" {
			return "static records"
		}
		return ""
	}
	r := reservedWithACME(base, cfg)
	for label, reserved := range map[string]bool{"api": true, "API": true, "y": true, "x": false, "ns1": true, "web": false, "auth": false} {
		if why := r(label); (why != "") != reserved {
			t.Errorf("reserved(%q) = %q, want reserved %v", label, why, reserved)
		}
	}
	cfg.API.TLS = "none"
	if r := reservedWithACME(base, cfg); r("api") != "" {
		t.Error("names of [api.acme] reserved without tls = \"acme\"")
	}
}
