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
	tests := []struct {
		name   string
		broker string
		want   []string
	}{
		{"ipv4", "127.0.0.1:5300", []string{"do-ip6: no", "stub-addr: 127.0.0.1@5300"}},
		{"ipv6 broker", "[::1]:5300", []string{"do-ip6: yes", "outgoing-interface: ::1", "stub-addr: ::1@5300"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := unboundConfig(dir, 5301, []stub{
				{zone: "example.test.", addr: netip.MustParseAddrPort("127.0.0.1:5302")},
				{zone: "auth.example.test.", addr: netip.MustParseAddrPort(tc.broker)},
			}, validation{})
			for _, w := range tc.want {
				if !strings.Contains(conf, w) {
					t.Errorf("config lacks %q:\n%s", w, conf)
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
