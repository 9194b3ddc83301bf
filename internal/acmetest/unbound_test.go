package acmetest

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/testenv"
)

// TestUnboundConfigChecks runs the installed unbound-checkconf on the
// configurations the environment writes, IPv4 and IPv6 stubs alike.
func TestUnboundConfigChecks(t *testing.T) {
	checkconf := findProgram("unbound-checkconf", "/usr/sbin", "/usr/local/sbin")
	if checkconf == "" {
		testenv.Skip(t, "unbound-checkconf not installed; install with: "+InstallHint)
	}
	const anchor = "auth.example.test.\t3600\tIN\tDS\t4242 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"
	tests := []struct {
		name    string
		broker  string
		v       validation
		want    []string
		wantNot []string
	}{
		{"ipv4", "127.0.0.1:5300", validation{}, []string{"do-ip6: no", "stub-addr: 127.0.0.1@5300", `module-config: "iterator"`, "cache-max-ttl: 0"}, nil},
		{"ipv6 broker", "[::1]:5300", validation{}, []string{"do-ip6: yes", "outgoing-interface: ::1", "stub-addr: ::1@5300"}, nil},
		{"validating, caching", "127.0.0.1:5300", validation{anchors: []string{anchor}, cache: true},
			[]string{`module-config: "validator iterator"`, `trust-anchor: "auth.example.test. 3600 IN DS 4242 13 2`, `domain-insecure: "example.test."`},
			[]string{`domain-insecure: "auth.example.test."`, "cache-max-ttl: 0", "stub-no-cache"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := unboundConfig(dir, 5301, []stub{
				{zone: "example.test.", addr: netip.MustParseAddrPort("127.0.0.1:5302")},
				{zone: "auth.example.test.", addr: netip.MustParseAddrPort(tc.broker)},
			}, tc.v)
			for _, w := range tc.want {
				if !strings.Contains(conf, w) {
					t.Errorf("config lacks %q:\n%s", w, conf)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(conf, w) {
					t.Errorf("config has %q:\n%s", w, conf)
				}
			}
			path := filepath.Join(dir, "unbound.conf")
			if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := runCommand(t.Context(), 20*time.Second, os.Environ(), dir, checkconf, path)
			if err != nil {
				t.Fatalf("unbound-checkconf: %v\n%s\n%s", err, out, conf)
			}
		})
	}
}
