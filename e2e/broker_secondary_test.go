package e2e_test

// What the NSD, Knot and BIND tests share: a broker configured as hidden
// primary, real secondaries run as child processes on 127.0.0.1, and the
// checks every secondary has to pass.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

const (
	xfrKeyName   = "xfr-key"
	xfrKeySecret = "Zm9yLXRoZS10ZXN0LW9ubHktbm90LWEtcmVhbC1zZWNyZXQ="
)

// hiddenPrimary is a broker configured to be transferred from 127.0.0.1
// with a TSIG key and to NOTIFY the secondary at notify.
func hiddenPrimary(t *testing.T, db, notify string) config.Config {
	t.Helper()
	return brokertest.Config(t, "", func(c *config.Config) {
		c.Storage.DSN = db
		c.DNS.Transfer = config.Transfer{
			AllowFrom: []string{"127.0.0.1/32"},
			Keys:      []config.TSIGKey{{Name: xfrKeyName, Algorithm: "hmac-sha256", Secret: xfrKeySecret}},
			Notify:    []string{notify},
			NotifyKey: xfrKeyName,
		}
	})
}

// runBroker runs a broker until the returned stop is called (or the test
// ends); its log is shown if the test fails.
func runBroker(t *testing.T, cfg config.Config) (broker.Ready, func()) {
	t.Helper()
	return brokertest.Run(t, cfg)
}

// seed stores n accounts bulk-0... with two values each, from several
// goroutines (the store batches concurrent writes into one commit).
func seed(t *testing.T, db string, n int) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	inParallel(t, 16, func(w int) error {
		for i := w; i < n; i += 16 {
			sub := fmt.Sprintf("bulk-%d", i)
			if _, err := st.CreateAccount(t.Context(), storage.Account{Username: sub + "-user", KeyHash: "h", Subdomain: sub, CreatedAt: now}); err != nil {
				return err
			}
			for _, v := range []string{fmt.Sprintf("%043d", i+1), fmt.Sprintf("%043d", i)} {
				if _, _, err := st.SetTXT(t.Context(), sub, v, now, storage.DefaultTXTPolicy); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// txtValues returns the TXT values in r's answer section, sorted.
func txtValues(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	slices.Sort(out)
	return out
}

// brokerTXT returns the TXT values the broker serves for name, sorted.
func brokerTXT(t *testing.T, addr, name string) []string {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	q.SetEdns0(dns.DefaultMsgSize, false)
	r, err := dns.Exchange(q, addr)
	if err == nil && r.Truncated {
		// A large answer to a cookieless UDP query is held to 512 bytes
		// (DNS Cookies): ask again over TCP, as a resolver does.
		r, _, err = (&dns.Client{Net: "tcp"}).Exchange(q, addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	return txtValues(r)
}

func soaSerial(t *testing.T, addr, zone string) uint32 {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
	r, err := dns.Exchange(q, addr)
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("SOA from %s: %v %v", addr, r, err)
	}
	return r.Answer[0].(*dns.SOA).Serial
}

// secondary is what the tests ask of a secondary name server:
// *acmetest.NSD, or a *daemon (Knot, BIND).
type secondary interface {
	TXT(ctx context.Context, name string) ([]string, error)
	Serial(ctx context.Context, zone string) (uint32, error)
	Log() string
	LogContains(s string) bool
}

// waitServed polls the secondary until it serves want for name, and returns
// how long that took.
func waitServed(t *testing.T, sec secondary, name, want string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	var last []string
	var err error
	for time.Now().Before(deadline) {
		last, err = sec.TXT(t.Context(), name)
		if err == nil && slices.Contains(last, want) {
			return time.Since(start)
		}
		time.Sleep(2 * time.Millisecond) // polling with a deadline
	}
	t.Fatalf("the secondary does not serve %q at %s after 20 s: %v %v\nits log:\n%s", want, name, last, err, sec.Log())
	return 0
}

// waitExactly polls the secondary until it serves exactly want (sorted)
// for name, failing after 20 s with why (what should have happened).
func waitExactly(t *testing.T, sec secondary, name string, want []string, why string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := sec.TXT(t.Context(), name)
		slices.Sort(got)
		if err == nil && slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s the secondary serves %v (%v) at %s; want %v: %s\n%s", got, err, name, want, why, sec.Log())
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// waitSerial polls the secondary until it serves want as zone's serial:
// while a secondary reloads, a query may still reach the process serving
// the previous version for a moment.
func waitSerial(t *testing.T, sec secondary, zone string, want uint32) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := sec.Serial(t.Context(), zone)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s the secondary serves serial %d (%v), the broker %d\n%s", got, err, want, sec.Log())
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// signedTransfer runs the zone transfer q (AXFR or IXFR), signed with the
// transfer key, from primary and returns its records.
func signedTransfer(t *testing.T, primary string, q *dns.Msg) []dns.RR {
	t.Helper()
	q.SetTsig(xfrKeyName+".", dns.HmacSHA256, 300, time.Now().Unix())
	tr := &dns.Transfer{TsigSecret: map[string]string{xfrKeyName + ".": xfrKeySecret}}
	ch, err := tr.In(q, primary)
	if err != nil {
		t.Fatal(err)
	}
	var rrs []dns.RR
	for env := range ch {
		if env.Error != nil {
			t.Fatal(env.Error)
		}
		rrs = append(rrs, env.RR...)
	}
	return rrs
}

// inParallel runs fn(0..n-1) at once and fails the test with the errors.
func inParallel(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := fn(i); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// daemonSpec says how to run one secondary name server in the foreground.
type daemonSpec struct {
	name string // for messages and the log file's name
	bin  string
	// configure writes into dir the configuration of a secondary of zone,
	// transferred from primary, listening on 127.0.0.1:port, keeping every
	// file it writes in dir. It returns the daemon's arguments and, if the
	// configuration can be checked, a checking command line.
	configure func(dir string, port int, primary, zone string) (args, check []string, err error)
	// portTaken is in the daemon's output when it could not bind its port.
	portTaken string
}

// daemon is a secondary name server run by startDaemon, stopped when the
// test ends.
type daemon struct {
	addr string
	log  string
	done chan struct{} // closed when the process has been waited for
}

var errPortTaken = errors.New("port taken")

// startDaemon runs spec as a secondary on 127.0.0.1:port and waits until it
// answers queries (the zone need not be transferred yet). It returns an
// error wrapping errPortTaken if someone else had the port.
func startDaemon(t *testing.T, spec daemonSpec, port int, primary, zone string) (*daemon, error) {
	t.Helper()
	dir := t.TempDir()
	args, check, err := spec.configure(dir, port, primary, zone)
	if err != nil {
		return nil, err
	}
	if len(check) > 0 {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		out, err := exec.CommandContext(ctx, check[0], check[1:]...).CombinedOutput()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: %v\n%s", strings.Join(check, " "), err, out)
		}
	}
	d := &daemon{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), log: filepath.Join(dir, spec.name+".log"), done: make(chan struct{})}
	out, err := os.Create(d.log)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	// The whole process group gets SIGTERM when the test ends, SIGKILL
	// (from WaitDelay) if it is still there 10 s later.
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, spec.bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(d.done) }()
	stop := func() { cancel(); <-d.done }
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", spec.name, d.Log())
		}
	})

	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-d.done:
			if d.LogContains(spec.portTaken) {
				return nil, fmt.Errorf("%s: %w: %d", spec.name, errPortTaken, port)
			}
			return nil, fmt.Errorf("%s exited during start-up (%v):\n%s", spec.name, waitErr, d.Log())
		default:
		}
		if d.LogContains(spec.portTaken) {
			stop()
			return nil, fmt.Errorf("%s: %w: %d", spec.name, errPortTaken, port)
		}
		if _, err := d.query(t.Context(), zone, dns.TypeSOA); err == nil {
			return d, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("%s does not answer on %s after 20 s:\n%s", spec.name, d.addr, d.Log())
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
}

func (d *daemon) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.SetEdns0(dns.DefaultMsgSize, false) // a name may hold many values
	c := &dns.Client{Timeout: time.Second}
	r, _, err := c.ExchangeContext(ctx, q, d.addr)
	return r, err
}

// TXT returns the TXT values the daemon serves for name (none, no error,
// for NXDOMAIN).
func (d *daemon) TXT(ctx context.Context, name string) ([]string, error) {
	r, err := d.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("%s TXT: %s", name, dns.RcodeToString[r.Rcode])
	}
	return txtValues(r), nil
}

// Serial returns the serial the daemon serves for zone.
func (d *daemon) Serial(ctx context.Context, zone string) (uint32, error) {
	r, err := d.query(ctx, zone, dns.TypeSOA)
	if err != nil {
		return 0, err
	}
	if len(r.Answer) != 1 {
		return 0, fmt.Errorf("%s SOA: %s, %d answers", zone, dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	soa, ok := r.Answer[0].(*dns.SOA)
	if !ok {
		return 0, fmt.Errorf("%s SOA: answered %v", zone, r.Answer[0])
	}
	return soa.Serial, nil
}

// Log returns the end of the daemon's output.
func (d *daemon) Log() string {
	b, _ := os.ReadFile(d.log)
	const keep = 12 << 10
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return string(b)
}

// LogContains reports whether the daemon's output so far contains s.
func (d *daemon) LogContains(s string) bool {
	b, err := os.ReadFile(d.log)
	return err == nil && strings.Contains(string(b), s)
}

// secondaryRun is a broker and its secondary.
type secondaryRun struct {
	cfg  config.Config
	rd   broker.Ready
	stop func() // stops the broker
	sec  secondary
}

// startPair runs a broker on db as hidden primary of a secondary started by
// start on a free port. Another program may take the port between
// FreePort and the secondary's start: then both are started again, a few
// times at most.
func startPair(t *testing.T, db string, tweak func(*config.Config), start func(port int, primary, zone string) (secondary, error)) secondaryRun {
	t.Helper()
	const attempts = 5
	for attempt := 1; ; attempt++ {
		port := acmetest.FreePort(t)
		cfg := hiddenPrimary(t, db, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if tweak != nil {
			tweak(&cfg)
		}
		rd, stop := runBroker(t, cfg)
		sec, err := start(port, rd.DNS[0], cfg.DNS.Zone)
		if err == nil {
			return secondaryRun{cfg: cfg, rd: rd, stop: stop, sec: sec}
		}
		stop()
		if !errors.Is(err, errPortTaken) || attempt == attempts {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
		t.Logf("attempt %d: %v; trying another port", attempt, err)
	}
}

// wrongSecret is another secret for xfrKeyName.
const wrongSecret = "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZy0="

// checkWrongSecret starts spec, configured with wrongSecret, as another
// secondary of run's broker: the broker must turn it down (spec's log then
// says failed) and it must serve nothing. With checkSecondary's refusal of
// an unsigned AXFR, this shows the first secondary's transfers were signed
// with the key.
func checkWrongSecret(t *testing.T, run secondaryRun, spec daemonSpec, failed string) {
	t.Run("wrong secret gets nothing", func(t *testing.T) {
		zone := run.cfg.DNS.Zone
		var d *daemon
		for attempt := 1; ; attempt++ {
			var err error
			if d, err = startDaemon(t, spec, acmetest.FreePort(t), run.rd.DNS[0], zone); err == nil {
				break
			} else if !errors.Is(err, errPortTaken) || attempt == 5 {
				t.Fatal(err)
			}
		}
		// The secondary refreshes at start and gives up until its retry
		// timer.
		deadline := time.Now().Add(20 * time.Second)
		for !d.LogContains(failed) {
			if time.Now().After(deadline) {
				t.Fatalf("%s with a wrong secret did not log %q in 20 s:\n%s", spec.name, failed, d.Log())
			}
			time.Sleep(20 * time.Millisecond) // polling with a deadline
		}
		if serial, err := d.Serial(t.Context(), zone); err == nil {
			t.Fatalf("%s with a wrong secret serves serial %d\n%s", spec.name, serial, d.Log())
		}
	})
}

// measurePropagation sets n values in a row through the API and, for each,
// times from the 200 until the secondary serves it; it logs p50, p99 and
// the maximum.
func measurePropagation(t *testing.T, api *client.BrokerClient, acct client.BrokerAccount, sec secondary, name string, n int) {
	t.Helper()
	lat := make([]time.Duration, 0, n)
	for i := range n {
		v := fmt.Sprintf("latency-%035d", i)
		if err := api.Update(t.Context(), acct, v); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, waitServed(t, sec, acct.FullDomain, v))
	}
	slices.Sort(lat)
	pct := func(p int) time.Duration { return lat[max(0, (len(lat)*p+99)/100-1)] }
	t.Logf("%s: from the API's 200 to %s serving the value, %d updates: p50 %s, p99 %s, max %s", name, name, n,
		pct(50).Round(100*time.Microsecond), pct(99).Round(100*time.Microsecond), lat[n-1].Round(100*time.Microsecond))
}

// checkSecondary is what every secondary must do with the broker: take the
// seeded zone (a transfer of several signed messages), serve each new value
// soon after the API's 200, end at the broker's serial, and end up with
// exactly what the broker serves after concurrent updates. It also checks
// the broker refuses strangers and answers a current IXFR with one SOA. It
// returns the account it updated.
func checkSecondary(t *testing.T, run secondaryRun, name string, bulk, timed int) (*client.BrokerClient, client.BrokerAccount) {
	t.Helper()
	zone, primary, sec := run.cfg.DNS.Zone, run.rd.DNS[0], run.sec
	waitServed(t, sec, fmt.Sprintf("bulk-%d.%s", bulk-1, zone), fmt.Sprintf("%043d", bulk-1))

	api := &client.BrokerClient{}
	acct, err := api.Register(t.Context(), run.rd.API, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"first-value-0000000000000000000000000000000", "second-value-000000000000000000000000000000"} {
		if err := api.Update(t.Context(), acct, v); err != nil {
			t.Fatal(err)
		}
		waitServed(t, sec, acct.FullDomain, v)
	}
	if timed > 0 {
		measurePropagation(t, api, acct, sec, name, timed)
	}

	t.Run("same serial as the broker", func(t *testing.T) {
		waitSerial(t, sec, zone, soaSerial(t, primary, zone))
	})

	t.Run("strangers refused", func(t *testing.T) {
		axfr := func() *dns.Msg { q := new(dns.Msg); q.SetAxfr(dns.Fqdn(zone)); return q }
		// No TSIG, from an allowed source.
		c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
		if r, _, err := c.Exchange(axfr(), primary); err != nil || r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
			t.Fatalf("unsigned AXFR: %v %v", r, err)
		}
		// Right key, source not allowed (127.0.0.2 is loopback too).
		c = &dns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigSecret: map[string]string{xfrKeyName + ".": xfrKeySecret},
			Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}}
		q := axfr()
		q.SetTsig(xfrKeyName+".", dns.HmacSHA256, 300, time.Now().Unix())
		if r, _, err := c.Exchange(q, primary); err != nil || r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
			t.Fatalf("AXFR from 127.0.0.2: %v %v", r, err)
		}
	})

	t.Run("IXFR at the current serial is one SOA", func(t *testing.T) {
		serial, err := sec.Serial(t.Context(), zone)
		if err != nil || serial != soaSerial(t, primary, zone) {
			t.Fatalf("%s serial %d (%v) is not the broker's", name, serial, err)
		}
		q := new(dns.Msg)
		q.SetIxfr(dns.Fqdn(zone), serial, "ns1.", "h.")
		rrs := signedTransfer(t, primary, q)
		if len(rrs) != 1 || rrs[0].(*dns.SOA).Serial != serial {
			t.Fatalf("IXFR from the current serial: %v", rrs)
		}
	})

	t.Run("concurrent updates all reach "+name, func(t *testing.T) {
		const workers, each = 6, 8
		accts := make([]client.BrokerAccount, workers)
		for i := range accts {
			if accts[i], err = api.Register(t.Context(), run.rd.API, nil); err != nil {
				t.Fatal(err)
			}
		}
		inParallel(t, workers, func(w int) error {
			for k := range each {
				if err := api.Update(t.Context(), accts[w], fmt.Sprintf("w%d-%040d", w, k)); err != nil {
					return err
				}
			}
			return nil
		})
		// The secondary ends up with exactly what the broker serves, name
		// by name.
		for _, a := range accts {
			want := brokerTXT(t, primary, a.FullDomain)
			if len(want) != each {
				t.Fatalf("broker serves %d values at %s, want %d", len(want), a.FullDomain, each)
			}
			waitExactly(t, sec, a.FullDomain, want, name+" must serve what the broker serves")
		}
	})
	return api, acct
}
