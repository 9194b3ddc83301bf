package acmetest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

type stub struct {
	zone string         // canonical
	addr netip.AddrPort // loopback
}

// validation makes the resolver a validating one.
type validation struct {
	// anchors are trust anchors in zone-file syntax (DS or DNSKEY
	// records); none: the resolver does not validate.
	anchors []string
	// cache keeps answers for their TTLs; otherwise nothing is cached.
	cache bool
}

// anchored reports whether zone is at or below a trust anchor.
func (v validation) anchored(zone string) bool {
	for _, a := range v.anchors {
		if f := strings.Fields(a); len(f) > 0 && dns.IsSubDomain(dns.CanonicalName(f[0]), zone) {
			return true
		}
	}
	return false
}

// unboundConfig renders a configuration for a resolver that knows only the
// stub zones: everything else is refused locally, and queries leave only
// from loopback, so it never sends a packet off this machine (no root
// priming, no trust anchor fetch). Unless v says otherwise nothing is
// cached, so a test sees a change to a zone at once, and nothing is
// validated. Several stubs of one zone are its several servers.
func unboundConfig(dir string, port int, stubs []stub, v validation) string {
	ip6 := false
	for _, s := range stubs {
		if s.addr.Addr().Is6() {
			ip6 = true
		}
	}
	yesNo := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("server:")
	w("\tverbosity: 1")
	w("\tinterface: 127.0.0.1@%d", port)
	w("\tport: %d", port)
	w("\tdo-ip4: yes")
	w("\tdo-ip6: %s", yesNo(ip6))
	w("\tdo-udp: yes")
	w("\tdo-tcp: yes")
	w("\toutgoing-interface: 127.0.0.1")
	if ip6 {
		w("\toutgoing-interface: ::1")
	}
	w("\toutgoing-range: 64")
	w("\tnum-threads: 1")
	w("\tso-reuseport: no")
	w("\tdo-daemonize: no")
	w("\tuse-systemd: no")
	w("\tuse-syslog: no")
	w("\tlogfile: %q", filepath.Join(dir, "unbound.log"))
	w("\tlog-queries: yes")
	w("\tlog-replies: yes")
	w("\tlog-servfail: yes")
	w("\tchroot: \"\"")
	w("\tusername: \"\"")
	w("\tdirectory: %q", dir)
	w("\tpidfile: %q", filepath.Join(dir, "unbound.pid"))
	w("\taccess-control: 127.0.0.0/8 allow")
	w("\taccess-control: ::1 allow")
	w("\tdo-not-query-localhost: no")
	if len(v.anchors) > 0 {
		// RFC 4035 validation with the given anchors only (no root key,
		// nothing fetched); why an answer failed goes to the log.
		w("\tmodule-config: \"validator iterator\"")
		w("\tval-log-level: 2")
		w("\tharden-dnssec-stripped: yes")
		for _, a := range v.anchors {
			w("\ttrust-anchor: \"%s\"", strings.Join(strings.Fields(a), " "))
		}
	} else {
		w("\tmodule-config: \"iterator\"")
	}
	if !v.cache {
		w("\tcache-max-ttl: 0")
		w("\tcache-max-negative-ttl: 0")
	}
	w("\tmsg-cache-size: 1m")
	w("\trrset-cache-size: 1m")
	w("\tkey-cache-size: 1m")
	w("\tneg-cache-size: 1m")
	// test. is one of unbound's default local zones (answered NXDOMAIN
	// locally); the root is refused so nothing outside the stubs is ever
	// resolved; the stub zones themselves are transparent so the iterator
	// (and thus the stubs) answers for them.
	w("\tlocal-zone: \"test.\" nodefault")
	w("\tlocal-zone: \".\" refuse")
	var zones []string
	servers := map[string][]netip.AddrPort{}
	for _, s := range stubs {
		if servers[s.zone] == nil {
			zones = append(zones, s.zone)
		}
		servers[s.zone] = append(servers[s.zone], s.addr)
	}
	for _, z := range zones {
		w("\tlocal-zone: %q transparent", z)
		if !v.anchored(z) {
			w("\tdomain-insecure: %q", z)
		}
	}
	for _, z := range zones {
		w("stub-zone:")
		w("\tname: %q", z)
		for _, a := range servers[z] {
			w("\tstub-addr: %s@%d", a.Addr(), a.Port())
		}
		if !v.cache {
			w("\tstub-no-cache: yes")
		}
	}
	w("remote-control:")
	w("\tcontrol-enable: no")
	return b.String()
}

type unbound struct {
	proc *process
	addr string
	log  string
}

// stopOnCleanup stops unbound when the test ends, and shows the end of its
// log and output if the test failed.
func (u *unbound) stopOnCleanup(tb testing.TB) {
	tb.Cleanup(func() {
		if err := u.proc.stop(5 * time.Second); err != nil {
			tb.Logf("acmetest: %v", err)
		}
		if tb.Failed() {
			tb.Logf("acmetest: unbound.log (tail):\n%s", tailFile(u.log, 80))
			if out := u.proc.tail(); out != noOutput {
				tb.Logf("acmetest: unbound output (tail):\n%s", out)
			}
		}
	})
}

// startUnbound validates the configuration with unbound-checkconf, runs
// unbound in the foreground and waits until it answers for the first stub
// zone over UDP and TCP. It retries with a new port if the one picked was
// taken in between.
func startUnbound(tb testing.TB, tools *tools, dir string, stubs []stub, v validation) (*unbound, error) {
	tb.Helper()
	const attempts = 3
	var lastErr error
	for attempt := 1; attempt <= attempts; attempt++ {
		port, err := freeDualPort()
		if err != nil {
			return nil, fmt.Errorf("unbound: %w", err)
		}
		u, retry, err := tryUnbound(tb, tools, dir, port, stubs, v, attempt)
		if err == nil {
			return u, nil
		}
		lastErr = err
		if !retry {
			break
		}
		tb.Logf("acmetest: unbound attempt %d on port %d: %v; retrying", attempt, port, err)
	}
	return nil, lastErr
}

func tryUnbound(tb testing.TB, tools *tools, dir string, port int, stubs []stub, v validation, attempt int) (u *unbound, retry bool, err error) {
	conf := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(conf, []byte(unboundConfig(dir, port, stubs, v)), 0o600); err != nil {
		return nil, false, fmt.Errorf("unbound: write config: %w", err)
	}
	out, err := runCommand(tb.Context(), 20*time.Second, os.Environ(), dir, tools.unboundCheckconf, conf)
	if err != nil {
		return nil, false, fmt.Errorf("unbound-checkconf %s: %v\n%s", conf, err, out)
	}

	logPath := filepath.Join(dir, "unbound.log")
	_ = os.Remove(logPath) // a previous attempt's log would confuse the diagnosis
	outPath := filepath.Join(dir, fmt.Sprintf("unbound-%d.out", attempt))
	p, err := startProcess("unbound", dir, outPath, os.Environ(), tools.unbound, "-d", "-c", conf)
	if err != nil {
		return nil, false, err
	}
	u = &unbound{proc: p, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), log: logPath}
	output := func() string {
		return fmt.Sprintf("unbound stdout/stderr:\n%s\nunbound.log:\n%s", p.tail(), tailFile(logPath, 60))
	}

	probe := stubs[0].zone
	err = poll(tb.Context(), 15*time.Second, 50*time.Millisecond, func() (bool, string, error) {
		if done, werr := p.exited(); done {
			return false, "", fmt.Errorf("unbound exited during start-up (%v)", werr)
		}
		// Both transports: Pebble's VA asks over TCP.
		for _, network := range []string{"udp", "tcp"} {
			r, err := query(tb.Context(), network, u.addr, probe, dns.TypeSOA, time.Second)
			if err != nil {
				return false, fmt.Sprintf("%s query for %s SOA: %v", network, probe, err), nil
			}
			if r.Rcode != dns.RcodeSuccess {
				return false, fmt.Sprintf("%s query for %s SOA: rcode %s", network, probe, dns.RcodeToString[r.Rcode]), nil
			}
		}
		return true, "", nil
	})
	if err == nil {
		return u, false, nil
	}
	text := output()
	if stopErr := p.stop(5 * time.Second); stopErr != nil {
		tb.Logf("acmetest: %v", stopErr)
	}
	bindFailed := strings.Contains(text, "address already in use") || strings.Contains(text, "could not open ports")
	return nil, bindFailed, fmt.Errorf("unbound on %s: %w\n%s", u.addr, err, text)
}

// query sends one question to server over network ("udp" or "tcp").
func query(ctx context.Context, network, server, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: timeout}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(dns.DefaultMsgSize, false)
	// A validating resolver answers even for a zone it finds bogus
	// (a test may want that): the probe is about running, not validating.
	m.CheckingDisabled = true
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, _, err := c.ExchangeContext(ctx, m, server)
	return r, err
}
