// Command multinode measures how long a change takes to cross from one
// broker node to another through a shared PostgreSQL database: it runs two
// brokers (A and B) in this process, each with its own connection pool,
// LISTEN connection and in-memory index, on a fresh schema of the database
// given by -dsn. It registers one account on A, then N times posts /update
// to A and, from the moment A answers 200, queries B's DNS in a tight loop
// until B serves the new value. It prints p50/p90/p99/max of that delay.
//
// Everything binds 127.0.0.1 on ports picked by the system; the schema is
// dropped at the end. Each wait is bounded (-timeout).
//
//	go run ./bench/multinode -dsn postgres://postgres@127.0.0.1:5432/test?sslmode=disable -n 500
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "multinode:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("multinode", flag.ContinueOnError)
	dsn := fs.String("dsn", os.Getenv("ACMEBROKER_TEST_POSTGRES"), "PostgreSQL database to create a throw-away schema in (default $ACMEBROKER_TEST_POSTGRES)")
	n := fs.Int("n", 200, "updates to measure (at least 200 for a meaningful p99)")
	timeout := fs.Duration("timeout", 5*time.Second, "longest wait for one value to show on B")
	conc := fs.Int("c", 1, "concurrent clients (each with its own account); the floor is for 1")
	floor := fs.Duration("floor", 100*time.Millisecond, "p99 floor to report against")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dsn == "" {
		return errors.New("no database: pass -dsn postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	}
	if *n < 1 || *conc < 1 {
		return errors.New("-n and -c must be positive")
	}

	schemaDSN, drop, err := freshSchema(ctx, *dsn)
	if err != nil {
		return err
	}
	defer drop()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a, errA := startNode(ctx, schemaDSN)
	b, errB := startNode(ctx, schemaDSN)
	var ra, rb broker.Ready
	for _, wait := range []struct {
		r   *broker.Ready
		got chan broker.Ready
		err chan error
	}{{&ra, a, errA}, {&rb, b, errB}} {
		select {
		case *wait.r = <-wait.got:
		case err := <-wait.err:
			return fmt.Errorf("start node: %w", err)
		case <-time.After(30 * time.Second):
			return errors.New("a node did not start within 30s")
		}
	}
	defer func() { cancel(); <-errA; <-errB }()

	client := &http.Client{Timeout: 10 * time.Second}
	var (
		mu            sync.Mutex
		delays, posts []time.Duration
		next          int
		lost          atomic.Int64 // DNS polls unanswered within 100 ms
	)
	// Each worker has its own account, so its values are its own; the
	// updates are shared out until n are done.
	worker := func(w int) error {
		acct, err := register(ctx, client, ra.API)
		if err != nil {
			return err
		}
		name := acct.Fulldomain
		if _, err := waitFor(ctx, rb.DNS[0], name, "", *timeout, &lost); err != nil {
			return fmt.Errorf("node B never saw the account registered on node A: %w", err)
		}
		for {
			mu.Lock()
			i := next
			next++
			mu.Unlock()
			if i >= *n || ctx.Err() != nil {
				return ctx.Err()
			}
			value := fmt.Sprintf("multinode-%02d-%06d-%s", w, i, strings.Repeat("x", 23))
			start := time.Now()
			if err := update(ctx, client, ra.API, acct, value); err != nil {
				return fmt.Errorf("update %d on A: %w", i, err)
			}
			acked := time.Now()
			d, err := waitFor(ctx, rb.DNS[0], name, value, *timeout, &lost)
			if err != nil {
				return fmt.Errorf("update %d: %w", i, err)
			}
			mu.Lock()
			posts = append(posts, acked.Sub(start))
			delays = append(delays, d)
			mu.Unlock()
		}
	}
	errs := make(chan error, *conc)
	for w := range *conc {
		go func() { errs <- worker(w) }()
	}
	for range *conc {
		if err := <-errs; err != nil {
			return err
		}
	}

	how := "one after another"
	if *conc > 1 {
		how = fmt.Sprintf("by %d clients at once, each waiting for B before its next", *conc)
	}
	fmt.Fprintf(out, "two nodes, one PostgreSQL (%s), %d updates posted to A %s\n\n", redact(*dsn), *n, how)
	fmt.Fprintf(out, "| measure | p50 | p90 | p99 | max |\n|---|---|---|---|---|\n")
	row := func(what string, ds []time.Duration) {
		slices.Sort(ds)
		fmt.Fprintf(out, "| %s | %s | %s | %s | %s |\n", what, pct(ds, 50), pct(ds, 90), pct(ds, 99), ds[len(ds)-1].Round(10*time.Microsecond))
	}
	row("A: POST /update until 200", posts)
	row("A's 200 until B's DNS answers the value", delays)
	fmt.Fprintf(out, "\nDNS polls of B unanswered within 100 ms (asked again): %d\n", lost.Load())
	verdict := "ok"
	if p99 := pctDur(delays, 99); p99 >= *floor {
		verdict = "BELOW FLOOR"
	}
	fmt.Fprintf(out, "\nfloor: cross-node p99 < %s: %s\n", *floor, verdict)
	return nil
}

// startNode runs a broker on dsn; its Ready arrives on the first channel,
// its end (error or nil) on the second.
func startNode(ctx context.Context, dsn string) (chan broker.Ready, chan error) {
	cfg := config.Default()
	cfg.DNS.Listen = []string{"127.0.0.1:0"}
	cfg.DNS.Zone = "auth.example.test"
	cfg.DNS.NSName = "ns1.auth.example.test"
	cfg.DNS.NSAdmin = "hostmaster.example.test"
	cfg.DNS.Records = []string{"auth.example.test. NS ns1.auth.example.test."}
	cfg.API.Listen = "127.0.0.1:0"
	cfg.API.RegisterLimit, cfg.API.UpdateLimit, cfg.API.UpdateSourceLimit = 0, 0, 0
	// The poller asks B thousands of times a second from one address:
	// response rate limiting would drop most of those answers.
	cfg.DNS.RRL.Enabled = false
	cfg.Storage.Engine, cfg.Storage.DSN = "postgres", dsn
	ready := make(chan broker.Ready, 1)
	done := make(chan error, 1)
	if err := cfg.Validate(); err != nil {
		done <- err
		return ready, done
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() {
		done <- broker.Run(ctx, cfg, logger, func(r broker.Ready) { ready <- r })
	}()
	return ready, done
}

// waitFor queries server until it serves value at name (value "": until
// the name exists) and returns how long that took.
//
// Polls are 0.25 ms apart. A query unanswered within 100 ms is asked again (as a resolver would) and
// counted in lost, so a lost datagram shows as such rather than as a
// second of delay.
func waitFor(ctx context.Context, server, name, value string, timeout time.Duration, lost *atomic.Int64) (time.Duration, error) {
	start := time.Now()
	c := &dns.Client{Net: "udp", Timeout: 100 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	for {
		// A deadline of its own: without one, a lost answer would block
		// the read for good (the client's Timeout does not bound a read
		// under a context without a deadline).
		qctx, cancel := context.WithTimeout(ctx, c.Timeout)
		r, _, err := c.ExchangeContext(qctx, m, server)
		cancel()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			lost.Add(1)
		}
		if err == nil && r.Rcode == dns.RcodeSuccess {
			if value == "" {
				return time.Since(start), nil
			}
			for _, rr := range r.Answer {
				if t, ok := rr.(*dns.TXT); ok && strings.Join(t.Txt, "") == value {
					return time.Since(start), nil
				}
			}
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("%s not served by B within %s (last error %v)", name, timeout, err)
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		// A short pause between polls: a busy loop would take a core from
		// the nodes and the database it is timing (the machine has two),
		// for a resolution gain of a quarter millisecond.
		time.Sleep(250 * time.Microsecond)
	}
}

type account struct {
	Username   string `json:"username"`
	Password   string `json:"password"`
	Subdomain  string `json:"subdomain"`
	Fulldomain string `json:"fulldomain"`
}

func register(ctx context.Context, c *http.Client, api string) (account, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, api+"/register", nil)
	resp, err := c.Do(req)
	if err != nil {
		return account{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		return account{}, fmt.Errorf("register: %d %s", resp.StatusCode, b)
	}
	var a account
	return a, json.NewDecoder(resp.Body).Decode(&a)
}

func update(ctx context.Context, c *http.Client, api string, a account, value string) error {
	body := fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, a.Subdomain, value)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, api+"/update", strings.NewReader(body))
	req.Header.Set("X-Api-User", a.Username)
	req.Header.Set("X-Api-Key", a.Password)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return nil
}

// freshSchema creates a schema for the run and returns a DSN using it and
// the function that drops it.
func freshSchema(ctx context.Context, dsn string) (string, func(), error) {
	b := make([]byte, 6)
	rand.Read(b)
	schema := "acmebroker_bench_" + hex.EncodeToString(b)
	exec := func(ctx context.Context, sql string) error {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", redact(dsn), err)
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, sql)
		return err
	}
	if err := exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, err
	}
	drop := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(dctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			fmt.Fprintln(os.Stderr, "multinode: drop schema:", err)
		}
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return dsn + " search_path=" + schema, drop, nil
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), drop, nil
}

func redact(dsn string) string {
	return config.Storage{Engine: "postgres", DSN: dsn}.RedactedDSN()
}

func pctDur(sorted []time.Duration, p int) time.Duration {
	s := slices.Clone(sorted)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

func pct(sorted []time.Duration, p int) string {
	return pctDur(sorted, p).Round(10 * time.Microsecond).String()
}
