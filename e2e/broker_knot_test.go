package e2e_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/acmebroker/acmebroker/internal/testenv"
)

// knotConfig is docs/secondaries.md's knot.conf (key, remote, acl, zone) for a
// secondary on 127.0.0.1:port, plus a server and database section that keep
// every file Knot writes in dir. database: storage is only where the
// databases go by default; zone files go to the template's storage, which is
// /var/lib/knot unless set (a zone file left there by another run, with a
// higher serial, would make Knot ignore the broker's zone). policy is
// another section put before the zone (docs/dnssec.md's signing
// secondary: a DNSSEC policy), or "".
func knotConfig(dir string, port int, primary, zone, secret, policy string) string {
	host, pport, _ := net.SplitHostPort(primary)
	p := func(name string) string { return fmt.Sprintf("%q", filepath.Join(dir, name)) }
	return fmt.Sprintf(`server:
  rundir: %s
  pidfile: %s
  listen: 127.0.0.1@%d
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
control:
  listen: %s
database:
  storage: %s
  journal-db: %s
  timer-db: %s
  kasp-db: %s
  catalog-db: %s
log:
  - target: stderr
    any: info
key:
  - id: %s
    algorithm: hmac-sha256
    secret: %s
remote:
  - id: broker
    address: %s@%s
    key: %s
acl:
  - id: broker-notify
    address: %s
    key: %s
    action: notify
template:
  - id: default
    storage: %s
%s
zone:
  - domain: %s
    master: broker
    acl: broker-notify
`, p("run"), p("run/knot.pid"), port, p("run/knot.sock"), p("storage"), p("journal"), p("timers"), p("keys"), p("catalog"),
		xfrKeyName, secret, host, pport, xfrKeyName, host, xfrKeyName, p("zones"), policy, zone)
}

// knotSpec runs knotd with knotConfig and the given TSIG secret.
func knotSpec(t *testing.T, secret string) daemonSpec { return knotSigningSpec(t, secret, "", "") }

// knotSigningSpec runs knotd with knotConfig: policy is a policy section
// (with its heading), zoneLines end the zone's entry.
func knotSigningSpec(t *testing.T, secret, policy, zoneLines string) daemonSpec {
	bin, err := exec.LookPath("knotd")
	if err != nil {
		bin = "/usr/sbin/knotd"
		if _, err := os.Stat(bin); err != nil {
			testenv.Skip(t, "knotd not installed: apt-get install knot (.ci/run does it)")
		}
	}
	return daemonSpec{
		name: "knotd",
		bin:  bin,
		configure: func(dir string, port int, primary, zone string) ([]string, []string, error) {
			for _, sub := range []string{"run", "storage", "zones"} {
				if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
					return nil, nil, err
				}
			}
			conf := filepath.Join(dir, "knot.conf")
			if err := os.WriteFile(conf, []byte(knotConfig(dir, port, primary, zone, secret, policy)+zoneLines), 0o600); err != nil {
				return nil, nil, err
			}
			var check []string
			if knotc := filepath.Join(filepath.Dir(bin), "knotc"); fileExists(knotc) {
				check = []string{knotc, "-c", conf, "conf-check"}
			}
			return []string{"-c", conf}, check, nil
		},
		portTaken: "address already in use",
	}
}

func fileExists(path string) bool { _, err := os.Stat(path); return err == nil }

// TestKnotSecondary: a real Knot DNS, configured as docs/secondaries.md says,
// secondary of the broker with a TSIG key, passes checkSecondary and
// applies each change as an IXFR. The transfers were signed: the broker
// refuses unsigned ones (checkSecondary), and a Knot with another secret
// gets nothing.
func TestKnotSecondary(t *testing.T) {
	spec := knotSpec(t, xfrKeySecret)
	db := filepath.Join(t.TempDir(), "broker.db")
	const bulk = 600 // a first transfer of several signed messages
	seed(t, db, bulk)
	run := startPair(t, db, nil, func(port int, primary, zone string) (secondary, error) {
		return startDaemon(t, spec, port, primary, zone)
	})
	checkSecondary(t, run, "Knot", bulk, 50)
	host, port, _ := net.SplitHostPort(run.rd.DNS[0])
	from := "incoming, remote " + host + "@" + port + ", finished"
	if sec := run.sec; !sec.LogContains("AXFR, "+from) || !sec.LogContains("IXFR, "+from) || sec.LogContains("fallback to AXFR") {
		t.Fatalf("Knot did not take one AXFR then IXFRs:\n%s", sec.Log())
	}

	// The broker answers a wrong MAC with NOTAUTH and TSIG error BADSIG
	// (RFC 8945), which Knot reports as such (a bare REFUSED read "not allowed").
	checkWrongSecret(t, run, knotSpec(t, wrongSecret), "failed (failed to verify TSIG)")
}
