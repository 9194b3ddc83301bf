package e2e_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/acmebroker/acmebroker/internal/testenv"
)

// bindConfig is docs/secondaries.md's named.conf (serial-query-rate, key, secondary
// zone with the key in primaries) for a secondary on 127.0.0.1:port, plus options that keep
// every file named writes in dir, and no rndc control channel (by default
// named opens one on 127.0.0.1#953) and no NOTIFY of its own (it would
// notify the zone's NS, 127.0.0.1#53 in the broker's default records).
func bindConfig(dir string, port int, primary, zone, secret string) string {
	host, pport, _ := net.SplitHostPort(primary)
	p := func(name string) string { return fmt.Sprintf("%q", filepath.Join(dir, name)) }
	return fmt.Sprintf(`options {
    directory %s;
    pid-file %s;
    lock-file %s;
    session-keyfile %s;
    managed-keys-directory %s;
    listen-on port %d { 127.0.0.1; };
    listen-on-v6 { none; };
    recursion no;
    dnssec-validation no;
    notify no;
    serial-query-rate 1000;
};
controls { };
key "%s" { algorithm hmac-sha256; secret "%s"; };
zone "%s" {
    type secondary;
    primaries { %s port %s key "%s"; };
    file "secondary/%s.db";
};
`, p(""), p("named.pid"), p("named.lock"), p("session.key"), p(""), port,
		xfrKeyName, secret, zone, host, pport, xfrKeyName, zone)
}

// bindSpec runs named in the foreground with bindConfig and the given TSIG
// secret.
func bindSpec(t *testing.T, secret string) daemonSpec {
	bin, err := exec.LookPath("named")
	if err != nil {
		bin = "/usr/sbin/named"
		if !fileExists(bin) {
			testenv.Skip(t, "named not installed: apt-get install bind9 (.ci/run does it)")
		}
	}
	return daemonSpec{
		name: "named",
		bin:  bin,
		configure: func(dir string, port int, primary, zone string) ([]string, []string, error) {
			if err := os.MkdirAll(filepath.Join(dir, "secondary"), 0o700); err != nil {
				return nil, nil, err
			}
			conf := filepath.Join(dir, "named.conf")
			if err := os.WriteFile(conf, []byte(bindConfig(dir, port, primary, zone, secret)), 0o600); err != nil {
				return nil, nil, err
			}
			var check []string
			if c, err := exec.LookPath("named-checkconf"); err == nil {
				check = []string{c, conf}
			}
			// -g: foreground, log to stderr; -n 1: one worker thread.
			return []string{"-g", "-n", "1", "-c", conf}, check, nil
		},
		portTaken: "unable to listen on any configured interfaces",
	}
}

// TestBINDSecondary: a real BIND 9, configured as docs/secondaries.md says,
// secondary of the broker with a TSIG key, passes checkSecondary and
// applies each change as an IXFR. The transfers were signed: the broker
// refuses unsigned ones (checkSecondary), named logs the key, and a named
// with another secret gets nothing. BIND 9.18 takes the docs' snippet as
// it is.
func TestBINDSecondary(t *testing.T) {
	spec := bindSpec(t, xfrKeySecret)
	db := filepath.Join(t.TempDir(), "broker.db")
	const bulk = 600 // a first transfer of several signed messages
	seed(t, db, bulk)
	run := startPair(t, db, nil, func(port int, primary, zone string) (secondary, error) {
		return startDaemon(t, spec, port, primary, zone)
	})
	checkSecondary(t, run, "BIND", bulk, 50)
	// named names the key of every transfer it took, and of every NOTIFY:
	// the broker signs them with notify_key, and named accepts them from
	// the primaries' address without an allow-notify.
	out, err := os.ReadFile(run.sec.(*daemon).log)
	if err != nil {
		t.Fatal(err)
	}
	transfers := 0
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "transferred serial") {
			transfers++
			if !strings.HasSuffix(strings.TrimSpace(line), ": TSIG '"+xfrKeyName+"'") {
				t.Errorf("a transfer not signed with %s: %s", xfrKeyName, line)
			}
		}
	}
	if sec := run.sec; transfers == 0 || !sec.LogContains("received notify for zone '"+run.cfg.DNS.Zone+"': TSIG '"+xfrKeyName+"'") ||
		sec.LogContains("refused notify") {
		t.Fatalf("named did not take signed transfers (%d) and NOTIFYs:\n%s", transfers, sec.Log())
	}
	checkWrongSecret(t, run, bindSpec(t, wrongSecret), "failure trying primary")
}
