// Command apiload drives acmebroker's HTTP API the way ACME clients do and
// measures it: it registers accounts, sets one TXT value on each, then posts
// /update for random accounts for a fixed time. It leaves behind the files the
// DNS benchmark needs (names.txt, dnsperf-queries.txt) so that the broker and
// the reference servers answer the same names.
//
// It talks only to the -api address it is given; bench/run.sh points it at a
// broker on 127.0.0.1. Every phase is bounded in requests and in time.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "apiload:", err)
		os.Exit(1)
	}
}

type options struct {
	api         string
	accounts    int
	concurrency int
	duration    time.Duration
	out         string
	dnsAddr     string
	maxUpdates  int
	timeout     time.Duration
	phaseLimit  time.Duration
	showBodies  int
	accountsIn  string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("apiload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.api, "api", "http://127.0.0.1:18080", "base URL of the broker API")
	fs.IntVar(&o.accounts, "accounts", 500, "accounts to register")
	fs.IntVar(&o.concurrency, "concurrency", 8, "concurrent HTTP workers")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of the timed /update phase")
	fs.StringVar(&o.out, "out", "bench/out", "directory for accounts.json, names.txt, dnsperf-queries.txt, result.json")
	fs.StringVar(&o.dnsAddr, "dns", "", "if set (host:port), query every name there after the updates, check the last value is served and write names-served.txt")
	fs.IntVar(&o.maxUpdates, "max-updates", 5_000_000, "upper bound on requests in the timed phase")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "timeout of one HTTP request")
	fs.DurationVar(&o.phaseLimit, "phase-limit", 2*time.Minute, "upper bound on the time of the register and seed phases")
	fs.IntVar(&o.showBodies, "show-bodies", 5, "print the body of this many failed responses")
	fs.StringVar(&o.accountsIn, "accounts-file", "", "use the accounts in this JSON file (as bench/bulkload writes) instead of registering")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.accounts < 1 || o.concurrency < 1 || o.duration <= 0 {
		return errors.New("-accounts and -concurrency must be at least 1 and -duration positive")
	}
	o.api = strings.TrimRight(o.api, "/")
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}

	l := &loader{
		opt:    o,
		client: newClient(o),
		fails:  &failureLog{w: stderr, left: o.showBodies},
	}
	defer l.client.CloseIdleConnections()

	// The API must answer before anything is timed: a refused connection here
	// is a broken setup, not a measurement.
	if err := l.health(ctx); err != nil {
		return err
	}

	res := result{Accounts: o.accounts, Concurrency: o.concurrency}
	var accts []account
	if o.accountsIn != "" {
		b, err := os.ReadFile(o.accountsIn)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &accts); err != nil || len(accts) == 0 {
			return fmt.Errorf("%s: no accounts (%v)", o.accountsIn, err)
		}
		res.Accounts = len(accts)
	} else {
		res.Register, accts = l.register(ctx)
		if len(accts) == 0 {
			return fmt.Errorf("register: no account was created (%s); see the bodies above", res.Register.failureSummary())
		}
		if err := writeJSON(filepath.Join(o.out, "accounts.json"), accts); err != nil {
			return err
		}
	}

	var seeded []*target
	res.Seed, seeded = l.seed(ctx, accts)
	if len(seeded) == 0 {
		return fmt.Errorf("seed update: no account took a value (%s); see the bodies above", res.Seed.failureSummary())
	}

	res.Update = l.update(ctx, seeded)
	if res.Update.OK == 0 {
		return fmt.Errorf("update: no update succeeded (%s); see the bodies above", res.Update.failureSummary())
	}

	if err := writeNames(o.out, seeded); err != nil {
		return err
	}
	if o.dnsAddr != "" {
		chk, err := checkDNS(ctx, o, seeded, stderr)
		if err != nil {
			return err
		}
		res.DNSCheck = chk
	}

	printTable(stdout, res)
	line, err := json.Marshal(res)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "result.json"), append(line, '\n'), 0o644); err != nil {
		return fmt.Errorf("write result.json: %w", err)
	}
	// Last line of stdout, for scripts.
	fmt.Fprintf(stdout, "%s\n", line)
	return nil
}

func newClient(o options) *http.Client {
	tr := &http.Transport{
		Proxy:               nil, // a proxy from the environment must not see benchmark traffic
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2 * o.concurrency,
		MaxIdleConnsPerHost: 2 * o.concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, Timeout: o.timeout}
}

// account is what POST /register returns, kept as the broker sent it.
type account struct {
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	Fulldomain string   `json:"fulldomain"`
	Subdomain  string   `json:"subdomain"`
	Allowfrom  []string `json:"allowfrom"`
}

// target is an account that holds at least one value, with every value
// posted to it in order. Each target is updated by one worker at a time, so
// the last element is the last value the broker accepted for it.
type target struct {
	acct   account
	values []string
}

type loader struct {
	opt    options
	client *http.Client
	fails  *failureLog
}

func (l *loader) health(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.opt.api+"/health", nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return fmt.Errorf("health: the API at %s does not answer: %w", l.opt.api, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: GET %s/health: status %d, body %q", l.opt.api, resp.StatusCode, body)
	}
	return nil
}

// post sends one request and returns the status and body. A transport error
// is returned as err; the status of an answered request is never an error here.
func (l *loader) post(ctx context.Context, path string, hdr http.Header, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.opt.api+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	// Read to the end so the connection goes back to the pool.
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return resp.StatusCode, b, err
	}
	return resp.StatusCode, b, nil
}

func (l *loader) register(ctx context.Context) (phaseResult, []account) {
	accts := make([]account, l.opt.accounts)
	got := make([]bool, l.opt.accounts)
	deadline := time.Now().Add(l.opt.phaseLimit)
	pr := runPhase(ctx, "register", l.opt.concurrency, l.opt.accounts, deadline, func(_ int, i int) outcome {
		status, body, err := l.post(ctx, "/register", nil, nil)
		if err != nil {
			return l.fails.note("register", "net", 0, []byte(err.Error()))
		}
		if status != http.StatusCreated {
			return l.fails.note("register", strconv.Itoa(status), status, body)
		}
		var a account
		if err := json.Unmarshal(body, &a); err != nil || a.Username == "" || a.Password == "" || a.Subdomain == "" || a.Fulldomain == "" {
			return l.fails.note("register", "201-bad-body", status, body)
		}
		accts[i], got[i] = a, true
		return outcome{ok: true}
	})
	var ok []account
	for i, a := range accts {
		if got[i] {
			ok = append(ok, a)
		}
	}
	return pr, ok
}

// seed posts one value to every account, so every name answers before the
// timed phase picks accounts at random.
func (l *loader) seed(ctx context.Context, accts []account) (phaseResult, []*target) {
	targets := make([]*target, len(accts))
	for i, a := range accts {
		targets[i] = &target{acct: a}
	}
	rngs := workerRands(l.opt.concurrency)
	deadline := time.Now().Add(l.opt.phaseLimit)
	pr := runPhase(ctx, "seed", l.opt.concurrency, len(targets), deadline, func(w int, i int) outcome {
		return l.updateOne(ctx, "seed", targets[i], randomTXT(rngs[w]))
	})
	var seeded []*target
	for _, t := range targets {
		if len(t.values) > 0 {
			seeded = append(seeded, t)
		}
	}
	return pr, seeded
}

// update posts random values to random accounts for the configured duration.
// Worker w only picks accounts whose index is w modulo the worker count, so no
// account sees two concurrent updates and its last value is well defined.
func (l *loader) update(ctx context.Context, targets []*target) phaseResult {
	workers := min(l.opt.concurrency, len(targets))
	if workers < l.opt.concurrency {
		fmt.Fprintf(l.fails.w, "apiload: only %d accounts hold a value: the update phase runs %d workers\n", len(targets), workers)
	}
	shares := make([][]*target, workers)
	for i, t := range targets {
		shares[i%workers] = append(shares[i%workers], t)
	}
	rngs := workerRands(workers)
	deadline := time.Now().Add(l.opt.duration)
	return runPhase(ctx, "update", workers, l.opt.maxUpdates, deadline, func(w int, _ int) outcome {
		r := rngs[w]
		t := shares[w][r.IntN(len(shares[w]))]
		return l.updateOne(ctx, "update", t, randomTXT(r))
	})
}

func (l *loader) updateOne(ctx context.Context, phase string, t *target, value string) outcome {
	body, err := json.Marshal(map[string]string{"subdomain": t.acct.Subdomain, "txt": value})
	if err != nil {
		return l.fails.note(phase, "marshal", 0, []byte(err.Error()))
	}
	hdr := http.Header{
		"X-Api-User":   {t.acct.Username},
		"X-Api-Key":    {t.acct.Password},
		"Content-Type": {"application/json"},
	}
	status, resp, err := l.post(ctx, "/update", hdr, body)
	if err != nil {
		return l.fails.note(phase, "net", 0, []byte(err.Error()))
	}
	if status != http.StatusOK {
		return l.fails.note(phase, strconv.Itoa(status), status, resp)
	}
	if !bytes.Contains(resp, []byte(value)) {
		return l.fails.note(phase, "200-bad-body", status, resp)
	}
	t.values = append(t.values, value)
	return outcome{ok: true}
}

// randomTXT returns a valid ACME DNS-01 value: the base64url (unpadded)
// encoding of 32 bytes, exactly 43 characters.
func randomTXT(r *rand.Rand) string {
	var b [32]byte
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func workerRands(n int) []*rand.Rand {
	rs := make([]*rand.Rand, n)
	for i := range rs {
		rs[i] = rand.New(rand.NewPCG(rand.Uint64(), uint64(i)))
	}
	return rs
}

// outcome of one request: ok, or the failure kind under which it is counted
// (the HTTP status, "net" for a transport error, "201-bad-body", ...).
type outcome struct {
	ok   bool
	kind string
}

// failureLog prints the first few failed responses, so a broken broker shows
// what it said rather than only a count.
type failureLog struct {
	mu   sync.Mutex
	w    io.Writer
	left int
}

func (f *failureLog) note(phase, kind string, status int, body []byte) outcome {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.left > 0 {
		f.left--
		b := string(body)
		if len(b) > 300 {
			b = b[:300] + "..."
		}
		if status != 0 {
			fmt.Fprintf(f.w, "apiload: %s: %s: status %d, body %q\n", phase, kind, status, b)
		} else {
			fmt.Fprintf(f.w, "apiload: %s: %s: %s\n", phase, kind, b)
		}
	}
	return outcome{kind: kind}
}

type phaseResult struct {
	Phase    string         `json:"phase"`
	Requests int            `json:"requests"`
	OK       int            `json:"ok"`
	Errors   int            `json:"errors"`
	ByKind   map[string]int `json:"errors_by_status,omitempty"`
	Seconds  float64        `json:"seconds"`
	RPS      float64        `json:"rps"` // successful requests per second
	P50ms    float64        `json:"p50_ms"`
	P99ms    float64        `json:"p99_ms"`
	MaxMs    float64        `json:"max_ms"`
}

func (p phaseResult) failureSummary() string {
	if len(p.ByKind) == 0 {
		return "no request completed"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(p.ByKind)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, p.ByKind[k]))
	}
	return strings.Join(parts, ", ")
}

// runPhase calls do from workers goroutines, handing out indices 0..limit-1,
// until they run out, the deadline passes or ctx ends. Latency percentiles are
// over successful requests only; failures are counted by kind.
func runPhase(ctx context.Context, name string, workers, limit int, deadline time.Time, do func(worker, i int) outcome) phaseResult {
	type tally struct {
		lat   []time.Duration
		fails map[string]int
	}
	tallies := make([]tally, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		tallies[w].fails = map[string]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := &tallies[w]
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if i >= limit {
					return
				}
				t0 := time.Now()
				o := do(w, i)
				if o.ok {
					t.lat = append(t.lat, time.Since(t0))
				} else {
					t.fails[o.kind]++
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	pr := phaseResult{Phase: name, ByKind: map[string]int{}, Seconds: elapsed.Seconds()}
	var lat []time.Duration
	for _, t := range tallies {
		lat = append(lat, t.lat...)
		for k, n := range t.fails {
			pr.ByKind[k] += n
			pr.Errors += n
		}
	}
	pr.OK = len(lat)
	pr.Requests = pr.OK + pr.Errors
	if elapsed > 0 {
		pr.RPS = float64(pr.OK) / elapsed.Seconds()
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		pr.P50ms = ms(percentile(lat, 0.50))
		pr.P99ms = ms(percentile(lat, 0.99))
		pr.MaxMs = ms(lat[len(lat)-1])
	}
	return pr
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type dnsCheck struct {
	Server      string  `json:"server"`
	Names       int     `json:"names"`
	LastServed  int     `json:"last_value_served"`
	Missing     int     `json:"last_value_missing"`
	Failed      int     `json:"query_failed"`
	AvgTXT      float64 `json:"avg_txt_per_answer"`
	MaxTXT      int     `json:"max_txt_per_answer"`
	ServedNames string  `json:"served_file"`
}

type result struct {
	Accounts    int         `json:"accounts"`
	Concurrency int         `json:"concurrency"`
	Register    phaseResult `json:"register"`
	Seed        phaseResult `json:"seed"`
	Update      phaseResult `json:"update"`
	DNSCheck    *dnsCheck   `json:"dns_check,omitempty"`
}

func fqdn(t *target) string { return dns.Fqdn(strings.ToLower(t.acct.Fulldomain)) }

// writeNames writes names.txt (each name with the last value posted to it)
// and dnsperf-queries.txt (every name once, shuffled, as dnsperf input).
func writeNames(dir string, targets []*target) error {
	var names, queries bytes.Buffer
	for _, t := range targets {
		fmt.Fprintf(&names, "%s %s\n", fqdn(t), t.values[len(t.values)-1])
	}
	order := rand.Perm(len(targets))
	for _, i := range order {
		fmt.Fprintf(&queries, "%s TXT\n", fqdn(targets[i]))
	}
	if err := os.WriteFile(filepath.Join(dir, "names.txt"), names.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write names.txt: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dnsperf-queries.txt"), queries.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write dnsperf-queries.txt: %w", err)
	}
	return nil
}

// checkDNS asks the broker's DNS server for every name once. It checks that
// the last value posted is served, and writes names-served.txt with every
// value the broker answers, so that the reference servers can be given
// answers of the same size as the broker's.
func checkDNS(ctx context.Context, o options, targets []*target, stderr io.Writer) (*dnsCheck, error) {
	udp := &dns.Client{Net: "udp", Timeout: 2 * time.Second, UDPSize: dns.DefaultMsgSize}
	tcp := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	chk := &dnsCheck{Server: o.dnsAddr, ServedNames: "names-served.txt"}
	var served bytes.Buffer
	total := 0
	shown := 0
	show := func(format string, args ...any) {
		if shown < o.showBodies {
			shown++
			fmt.Fprintf(stderr, "apiload: dns check: "+format+"\n", args...)
		}
	}
	deadline := time.Now().Add(o.phaseLimit)
	for _, t := range targets {
		if ctx.Err() != nil || time.Now().After(deadline) {
			break
		}
		chk.Names++
		m := new(dns.Msg)
		m.SetQuestion(fqdn(t), dns.TypeTXT)
		m.SetEdns0(dns.DefaultMsgSize, false)
		r, _, err := udp.ExchangeContext(ctx, m, o.dnsAddr)
		if err == nil && r.Truncated {
			r, _, err = tcp.ExchangeContext(ctx, m, o.dnsAddr)
		}
		if err != nil {
			chk.Failed++
			show("%s: %v", fqdn(t), err)
			continue
		}
		if r.Rcode != dns.RcodeSuccess {
			chk.Failed++
			show("%s: rcode %s", fqdn(t), dns.RcodeToString[r.Rcode])
			continue
		}
		var vals []string
		for _, rr := range r.Answer {
			if txt, ok := rr.(*dns.TXT); ok {
				vals = append(vals, strings.Join(txt.Txt, ""))
			}
		}
		last := t.values[len(t.values)-1]
		if slices.Contains(vals, last) {
			chk.LastServed++
		} else {
			chk.Missing++
			show("%s: last value %s not among the %d served", fqdn(t), last, len(vals))
		}
		total += len(vals)
		chk.MaxTXT = max(chk.MaxTXT, len(vals))
		for _, v := range vals {
			fmt.Fprintf(&served, "%s %s\n", fqdn(t), v)
		}
	}
	if answered := chk.Names - chk.Failed; answered > 0 {
		chk.AvgTXT = float64(total) / float64(answered)
	}
	if chk.Names > 0 && chk.Failed == chk.Names {
		return chk, fmt.Errorf("dns check: no name was answered by %s", o.dnsAddr)
	}
	if err := os.WriteFile(filepath.Join(o.out, chk.ServedNames), served.Bytes(), 0o644); err != nil {
		return chk, fmt.Errorf("write %s: %w", chk.ServedNames, err)
	}
	return chk, nil
}

func writeJSON(path string, v any) error {
	// The file holds API keys: readable by the owner only.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func printTable(w io.Writer, r result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "phase\trequests\tok\terrors\tseconds\treq/s\tp50 ms\tp99 ms\tmax ms\t\n")
	for _, p := range []phaseResult{r.Register, r.Seed, r.Update} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t\n",
			p.Phase, p.Requests, p.OK, p.Errors, p.Seconds, p.RPS, p.P50ms, p.P99ms, p.MaxMs)
	}
	tw.Flush()
	for _, p := range []phaseResult{r.Register, r.Seed, r.Update} {
		if p.Errors > 0 {
			fmt.Fprintf(w, "%s errors: %s\n", p.Phase, p.failureSummary())
		}
	}
	if c := r.DNSCheck; c != nil {
		fmt.Fprintf(w, "dns check at %s: %d names, last value served by %d, missing on %d, query failed on %d; %.1f TXT per answer (max %d)\n",
			c.Server, c.Names, c.LastServed, c.Missing, c.Failed, c.AvgTXT, c.MaxTXT)
	}
}
