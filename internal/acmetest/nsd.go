package acmetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/testenv"
)

// NSDOptions describe an NSD secondary of one zone.
type NSDOptions struct {
	Zone    string // e.g. "auth.example.org"
	Primary string // host:port the zone is transferred from and NOTIFY comes from
	// MorePrimaries are further primaries (other broker nodes on one
	// database), tried after Primary and allowed to NOTIFY too.
	MorePrimaries []string
	// Port is NSD's port on 127.0.0.1 (UDP and TCP); 0 picks one. Pick
	// it with FreePort when the primary must know it before NSD starts.
	Port int
	// Key signs transfers and NOTIFY when Name is set.
	KeyName, KeyAlgorithm, KeySecret string
	// ServerExtra are more lines for the server: clause, e.g.
	// "xfrd-reload-timeout: 0".
	ServerExtra []string
}

// NSD is a real NSD (from the Debian package) running as a secondary in
// the foreground, stopped when the test ends.
type NSD struct {
	Addr string // 127.0.0.1:port
	proc *process
	log  string
}

// NSDPath returns the nsd binary, or "" if it is not installed.
func NSDPath() string { return findProgram("nsd", "/usr/sbin", "/usr/local/sbin") }

// FreePort returns a port of 127.0.0.1 that was free for both UDP and TCP
// a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	port, err := freeDualPort()
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

// NSDConfig is the nsd.conf of a secondary for o, keeping every file in dir.
func NSDConfig(dir string, port int, o NSDOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, `server:
	ip-address: 127.0.0.1@%d
	do-ip6: no
	username: ""
	chroot: ""
	zonesdir: %q
	pidfile: %q
	xfrdfile: %q
	zonelistfile: %q
	xfrdir: %q
	database: ""
	logfile: %q
	verbosity: 2
	server-count: 1
	reuseport: no
	hide-version: yes
`, port, dir, filepath.Join(dir, "nsd.pid"), filepath.Join(dir, "xfrd.state"), filepath.Join(dir, "zone.list"),
		dir, filepath.Join(dir, "nsd.log"))
	for _, l := range o.ServerExtra {
		fmt.Fprintf(&b, "\t%s\n", l)
	}
	b.WriteString("remote-control:\n\tcontrol-enable: no\n")
	key := "NOKEY"
	if o.KeyName != "" {
		key = o.KeyName
		fmt.Fprintf(&b, "key:\n\tname: %q\n\talgorithm: %s\n\tsecret: %q\n", o.KeyName, o.KeyAlgorithm, o.KeySecret)
	}
	fmt.Fprintf(&b, "zone:\n\tname: %q\n", o.Zone)
	for _, p := range append([]string{o.Primary}, o.MorePrimaries...) {
		host, pport, _ := net.SplitHostPort(p)
		fmt.Fprintf(&b, "\trequest-xfr: %s@%s %s\n\tallow-notify: %s %s\n", host, pport, key, host, key)
	}
	return b.String()
}

// StartNSD checks the configuration with nsd-checkconf, runs nsd -d and
// waits until it answers queries (the zone itself may not be transferred
// yet). The test is skipped if nsd is not installed.
func StartNSD(tb testing.TB, o NSDOptions) *NSD {
	tb.Helper()
	bin := NSDPath()
	if bin == "" {
		testenv.Skip(tb, "nsd is not installed (apt-get install nsd; .ci/run does it)")
	}
	port := o.Port
	if port == 0 {
		port = FreePort(tb)
	}
	dir := tb.TempDir()
	conf := filepath.Join(dir, "nsd.conf")
	if err := os.WriteFile(conf, []byte(NSDConfig(dir, port, o)), 0o600); err != nil {
		tb.Fatal(err)
	}
	if check := findProgram("nsd-checkconf", filepath.Dir(bin), "/usr/sbin"); check != "" {
		if out, err := runCommand(tb.Context(), 20*time.Second, os.Environ(), dir, check, conf); err != nil {
			tb.Fatalf("nsd-checkconf %s: %v\n%s", conf, err, out)
		}
	}
	p, err := startProcess("nsd", dir, filepath.Join(dir, "nsd.out"), os.Environ(), bin, "-d", "-c", conf)
	if err != nil {
		tb.Fatal(err)
	}
	n := &NSD{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), proc: p, log: filepath.Join(dir, "nsd.log")}
	tb.Cleanup(func() {
		if err := p.stop(10 * time.Second); err != nil {
			tb.Logf("acmetest: %v", err)
		}
		if tb.Failed() {
			tb.Logf("nsd output:\n%s\nnsd.log:\n%s", p.tail(), tailFile(n.log, 80))
		}
	})
	err = poll(tb.Context(), 15*time.Second, 50*time.Millisecond, func() (bool, string, error) {
		if done, werr := p.exited(); done {
			return false, "", fmt.Errorf("nsd exited during start-up (%v)\n%s\n%s", werr, p.tail(), tailFile(n.log, 40))
		}
		if _, err := query(tb.Context(), "udp", n.Addr, o.Zone, dns.TypeSOA, time.Second); err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	})
	if err != nil {
		tb.Fatalf("nsd on %s: %v", n.Addr, err)
	}
	return n
}

// TXT returns the TXT values NSD serves for name (no error for NXDOMAIN:
// no values).
func (n *NSD) TXT(ctx context.Context, name string) ([]string, error) {
	r, err := query(ctx, "udp", n.Addr, name, dns.TypeTXT, time.Second)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("%s TXT: %s", name, dns.RcodeToString[r.Rcode])
	}
	var out []string
	for _, rr := range r.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out, nil
}

// Serial returns the zone serial NSD serves (0 before the first transfer).
func (n *NSD) Serial(ctx context.Context, zone string) (uint32, error) {
	r, err := query(ctx, "udp", n.Addr, zone, dns.TypeSOA, time.Second)
	if err != nil {
		return 0, err
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial, nil
		}
	}
	return 0, nil
}

// Log returns the end of NSD's log, for a failure message.
func (n *NSD) Log() string { return tailFile(n.log, 60) }

// LogContains reports whether NSD's log so far contains s.
func (n *NSD) LogContains(s string) bool {
	b, err := os.ReadFile(n.log)
	return err == nil && strings.Contains(string(b), s)
}
