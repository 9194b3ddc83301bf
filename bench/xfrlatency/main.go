// Command xfrlatency measures how long a value set through the broker's
// API takes to be served by a real NSD secondary: it runs a broker (in this
// process, SQLite in a temporary directory) configured as hidden primary
// with a TSIG key and NOTIFY, and NSD (/usr/sbin/nsd, in the foreground) as
// its secondary, both on 127.0.0.1 with ports picked at run time. Then it
// posts -n updates one after the other and, for each, times from the
// update's 200 until NSD answers the new value, polling NSD every
// 2 ms. It prints p50/p99/max and exits non-zero only if something
// failed to run; a p99 above the floor (2 s) is printed as BELOW FLOOR.
//
//	go run ./bench/xfrlatency                 # 50 updates, NSD's default reload throttle
//	go run ./bench/xfrlatency -n 200 -reload-timeout 0
//	go run ./bench/xfrlatency -accounts 20000 -reload-timeout 0   # a larger zone
package main

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

const floor = 2 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "xfrlatency:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("xfrlatency", flag.ContinueOnError)
	n := fs.Int("n", 50, "updates to time")
	reload := fs.Int("reload-timeout", -1, "NSD xfrd-reload-timeout in seconds (-1: NSD's default, 1 s)")
	nsdBin := fs.String("nsd", "/usr/sbin/nsd", "the nsd binary")
	perUpdate := fs.Duration("timeout", 30*time.Second, "give up on one update after this long")
	verbose := fs.Bool("v", false, "log the broker to stderr")
	accounts := fs.Int("accounts", 0, "other accounts (two values each) stored before the broker starts: the zone's size")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > 10000 {
		return fmt.Errorf("-n %d: give 1 to 10000", *n)
	}
	dir, err := os.MkdirTemp("", "xfrlatency-")
	if err != nil {
		return err
	}
	keep := false // the directory stays when something failed, for its logs
	defer func() {
		if !keep {
			os.RemoveAll(dir)
		}
	}()

	secretBytes := make([]byte, 32)
	for i := range secretBytes {
		secretBytes[i] = byte(rand.IntN(256))
	}
	secret := base64.StdEncoding.EncodeToString(secretBytes)
	if *accounts > 0 {
		t0 := time.Now()
		if err := seed(ctx, filepath.Join(dir, "broker.db"), *accounts); err != nil {
			return err
		}
		fmt.Fprintf(out, "seeded %d accounts in %s\n", *accounts, time.Since(t0).Round(time.Millisecond))
	}
	nsdPort, err := freePort() // after the seeding, so it is still free when NSD starts
	if err != nil {
		return err
	}
	nsdAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(nsdPort))

	cfg := config.Default()
	cfg.DNS.Listen = []string{"127.0.0.1:0"}
	cfg.API.Listen = "127.0.0.1:0"
	cfg.API.UpdateLimit = 0
	cfg.Storage.DSN = filepath.Join(dir, "broker.db")
	cfg.DNS.Transfer = config.Transfer{
		AllowFrom: []string{"127.0.0.1/32"},
		Keys:      []config.TSIGKey{{Name: "xfr-key", Algorithm: "hmac-sha256", Secret: secret}},
		Notify:    []string{nsdAddr}, NotifyKey: "xfr-key",
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	bctx, stopBroker := context.WithCancel(ctx)
	readyc := make(chan broker.Ready, 1)
	brokerDone := make(chan error, 1)
	go func() {
		logger := slog.New(slog.DiscardHandler)
		if *verbose {
			logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		brokerDone <- broker.Run(bctx, cfg, logger, func(r broker.Ready) { readyc <- r })
	}()
	defer func() { stopBroker(); <-brokerDone }()
	var rd broker.Ready
	select {
	case rd = <-readyc:
	case err := <-brokerDone:
		brokerDone <- err
		return fmt.Errorf("broker: %w", err)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("broker did not start within 30 s")
	}

	// NSD's response rate limiting would throttle the polling below.
	extra := []string{"rrl-ratelimit: 0"}
	if *reload >= 0 {
		extra = append(extra, fmt.Sprintf("xfrd-reload-timeout: %d", *reload))
	}
	conf := filepath.Join(dir, "nsd.conf")
	if err := os.WriteFile(conf, []byte(acmetest.NSDConfig(dir, nsdPort, acmetest.NSDOptions{
		Zone: cfg.DNS.Zone, Primary: rd.DNS[0], KeyName: "xfr-key", KeyAlgorithm: "hmac-sha256", KeySecret: secret, ServerExtra: extra,
	})), 0o600); err != nil {
		return err
	}
	nsd := exec.Command(*nsdBin, "-d", "-c", conf)
	nsd.Stdout, nsd.Stderr = io.Discard, io.Discard
	nsd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := nsd.Start(); err != nil {
		return fmt.Errorf("start nsd: %w", err)
	}
	nsdDone := make(chan struct{})
	go func() { _ = nsd.Wait(); close(nsdDone) }()
	defer func() {
		_ = syscall.Kill(-nsd.Process.Pid, syscall.SIGTERM)
		select {
		case <-nsdDone:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-nsd.Process.Pid, syscall.SIGKILL)
			<-nsdDone
		}
	}()

	api := &client.BrokerClient{}
	acct, err := api.Register(ctx, rd.API, nil)
	if err != nil {
		return err
	}
	// The first value also waits for NSD's start and first transfer: not timed.
	if err := api.Update(ctx, acct, value(0)); err != nil {
		return err
	}
	t0 := time.Now()
	nsdCtx, nsdGone := context.WithCancel(ctx)
	defer nsdGone()
	go func() {
		select {
		case <-nsdDone:
			nsdGone()
		case <-nsdCtx.Done():
		}
	}()
	if _, err := waitServed(nsdCtx, nsdAddr, acct.FullDomain, value(0), time.Now(), 5*time.Minute); err != nil {
		keep = true
		return fmt.Errorf("NSD never served the first value (NSD's log: %s): %w", filepath.Join(dir, "nsd.log"), err)
	}

	if *accounts > 0 {
		fmt.Fprintf(out, "NSD's first full transfer (from its start): %s\n", time.Since(t0).Round(time.Millisecond))
	}
	lat := make([]time.Duration, 0, *n)
	for i := 1; i <= *n; i++ {
		v := value(i)
		if err := api.Update(ctx, acct, v); err != nil {
			return err
		}
		d, err := waitServed(ctx, nsdAddr, acct.FullDomain, v, time.Now(), *perUpdate)
		if err != nil {
			keep = true
			return fmt.Errorf("update %d: %w (NSD's log: %s)", i, err, filepath.Join(dir, "nsd.log"))
		}
		lat = append(lat, d)
	}
	slices.Sort(lat)
	pct := func(p int) time.Duration { return lat[max(0, (len(lat)*p+99)/100-1)] }
	reloadText := "default (1 s)"
	if *reload >= 0 {
		reloadText = fmt.Sprintf("%d s", *reload)
	}
	fmt.Fprintf(out, "| zone (accounts) | updates | NSD xfrd-reload-timeout | p50 | p99 | max | floor p99 |\n|---|---|---|---|---|---|---|\n")
	verdict := "ok"
	if pct(99) >= floor {
		verdict = "BELOW FLOOR"
	}
	fmt.Fprintf(out, "| %d | %d | %s | %s | %s | %s | < %s: %s |\n", *accounts+1, len(lat), reloadText,
		pct(50).Round(time.Millisecond), pct(99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), floor, verdict)
	return nil
}

// value is the i-th update's value: 43 characters, like a DNS-01 digest.
func value(i int) string { return fmt.Sprintf("xfrlatency-%032d", i) }

// waitServed polls NSD until it serves want at name and returns the time
// since start.
func waitServed(ctx context.Context, nsd, name, want string, start time.Time, timeout time.Duration) (time.Duration, error) {
	deadline := start.Add(timeout)
	c := &dns.Client{Timeout: time.Second}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	q.SetEdns0(dns.DefaultMsgSize, false) // the name holds many values: more than 512 bytes
	for {
		r, _, err := c.ExchangeContext(ctx, q, nsd)
		if err == nil {
			for _, rr := range r.Answer {
				if t, ok := rr.(*dns.TXT); ok && strings.Join(t.Txt, "") == want {
					return time.Since(start), nil
				}
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("NSD does not serve %q at %s after %s (last: %v)", want, name, timeout, err)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// seed stores n accounts with two values each, from 64 goroutines (the
// store commits concurrent writes together).
func seed(ctx context.Context, dsn string, n int) error {
	st, err := sqlite.Open(ctx, dsn, sqlite.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now()
	errc := make(chan error, 64)
	for w := range 64 {
		go func() {
			for i := w; i < n; i += 64 {
				sub := fmt.Sprintf("seed-%d", i)
				if _, err := st.CreateAccount(ctx, storage.Account{Username: sub, KeyHash: "x", Subdomain: sub, CreatedAt: now}); err != nil {
					errc <- err
					return
				}
				for _, v := range []string{fmt.Sprintf("%043d", i), fmt.Sprintf("%043d", i+1)} {
					if _, _, err := st.SetTXT(ctx, sub, v, now, storage.DefaultTXTPolicy); err != nil {
						errc <- err
						return
					}
				}
			}
			errc <- nil
		}()
	}
	var first error
	for range 64 {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// freePort returns a port of 127.0.0.1 free for UDP and TCP a moment ago.
func freePort() (int, error) {
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		pc.Close()
		if err == nil {
			ln.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port free for both UDP and TCP")
}
