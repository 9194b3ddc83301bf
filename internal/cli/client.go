package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/apitls"
)

const defaultCA = "https://acme-v02.api.letsencrypt.org/directory"

// Exit codes of an interrupted client command (128 + the signal).
const (
	exitInterrupted = 130 // SIGINT, Ctrl-C
	exitTerminated  = 143 // SIGTERM
)

const clientUsage = `acmebroker client: get and renew certificates (wildcards too) through an acmebroker
or acme-dns broker, from a host that accepts no inbound traffic.

Usage:
  acmebroker client register --api URL --domain NAME [--allow-from CIDR]
  acmebroker client check    [--domain NAME ...] [--cert-name NAME] [--challenge TYPE]
  acmebroker client obtain   -d NAME [-d NAME ...] --email ADDR [--ca URL] [--challenge TYPE] [--deploy-hook CMD]
  acmebroker client renew    [--all | -d CERTNAME] [--force] [--pre-hook CMD] [--post-hook CMD] [--deploy-hook CMD] [-q]
  acmebroker client list
  acmebroker client revoke   -d CERTNAME [--reason N]
  acmebroker client delete   --cert-name CERTNAME
  acmebroker client persist  list|remove ...   (dns-persist-01 records at the broker: see or end them)
  acmebroker client hook     certbot auth|cleanup | dehydrated OPERATION ...   (hooks for other ACME clients)

Challenge types (--challenge; stored with the certificate, used by renew):
  dns-01          the default; CNAME _acme-challenge.<name>
  dns-account-01  one value per ACME account; CNAME *._acme-challenge.<name>
  dns-persist-01  one standing record, set at obtain through the broker; renewals write
                  nothing to the broker; CNAME _validation-persist.<name>

Run "acmebroker client COMMAND -h" for the flags of each command. Every flag can also be
set in the environment as ACMEBROKER_<FLAG> (--state-dir: ACMEBROKER_STATE_DIR).
Runs sharing a state directory wait for each other (lock files in <state-dir>/locks).
Exit codes: 0 done, 1 failed, 2 bad command line, 130 interrupted (Ctrl-C).

Example (five commands to a wildcard certificate):
  acmebroker client register --api https://broker.example.org --domain example.org
  # add the CNAME it prints at your DNS provider, then:
  acmebroker client check --domain example.org
  acmebroker client obtain -d example.org -d '*.example.org' --email you@example.org
  acmebroker client renew --all -q --deploy-hook 'systemctl reload nginx'   # from cron/systemd timer
`

// commonFlags are shared by the client commands.
type commonFlags struct {
	stateDir    string
	resolvers   stringList
	nameservers stringList
	caRoot      string
	quiet       bool
	lockTimeout time.Duration
	defaultDir  string
}

func (c *commonFlags) add(fs *flag.FlagSet, getenv func(string) string) {
	c.defaultDir = defaultStateDir(getenv)
	fs.StringVar(&c.stateDir, "state-dir", c.defaultDir, "directory of credentials, keys and certificates")
	fs.Var(&c.resolvers, "resolver", "recursive DNS resolver host:port for CNAME and NS lookups (repeatable; default: /etc/resolv.conf)")
	fs.Var(&c.nameservers, "nameserver", "authoritative server host:port of the broker zone to wait for (repeatable; default: found through NS records)")
	fs.BoolVar(&c.quiet, "q", false, "quiet: print errors only (for cron)")
	fs.BoolVar(&c.quiet, "quiet", false, "quiet: print errors only (for cron)")
	fs.DurationVar(&c.lockTimeout, "lock-timeout", client.LockTimeout, "how long to wait for another run using the same state directory")
}

func (c *commonFlags) state() *client.State { return &client.State{Dir: c.stateDir} }

// out is where progress goes: nowhere with -q.
func (c *commonFlags) out(stdout io.Writer) io.Writer {
	if c.quiet {
		return io.Discard
	}
	return stdout
}

// logger logs to stderr: hook output, re-registrations, refreshed values.
// With -q only errors.
func (c *commonFlags) logger(stderr io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if c.quiet {
		level = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

func (c *commonFlags) lockOptions(cmd string, out io.Writer) client.LockOptions {
	return client.LockOptions{
		Timeout: c.lockTimeout,
		Command: "acmebroker client " + cmd,
		Wait:    func(msg string) { fmt.Fprintln(out, msg) },
	}
}

func (c *commonFlags) checker(out io.Writer) *client.Checker {
	return &client.Checker{Resolvers: c.resolvers, Nameservers: c.nameservers,
		Progress: func(msg string) { fmt.Fprintln(out, msg) }}
}

// command is the exact client command args with this run's state
// directory, resolvers and name servers, for messages that say what to
// run next.
func (c *commonFlags) command(args ...string) string {
	if c.stateDir != c.defaultDir {
		args = append(args, "--state-dir", c.stateDir)
	}
	for _, r := range c.resolvers {
		args = append(args, "--resolver", r)
	}
	for _, n := range c.nameservers {
		args = append(args, "--nameserver", n)
	}
	return client.ClientCommand(args...)
}

// Root's state directories: the client's own, and the one it shared with
// the broker's systemd unit until they were split (the broker's unit runs as
// a dynamic user that would own, and chown, whatever is in its directory).
const (
	rootStateDir       = "/var/lib/acmebroker-client"
	legacyRootStateDir = "/var/lib/acmebroker"
)

// defaultStateDir: /var/lib/acmebroker-client for root (see rootState), else
// $XDG_CONFIG_HOME/acmebroker (~/.config/acmebroker).
func defaultStateDir(getenv func(string) string) string {
	if os.Geteuid() == 0 {
		return rootState(rootStateDir, legacyRootStateDir)
	}
	if x := getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "acmebroker")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "acmebroker")
	}
	return "acmebroker-state"
}

// rootState is dir, unless only legacy holds a client's accounts.json: a
// client set up before the split keeps its credentials and certificates
// (and its renewals keep working) until they are moved into dir.
func rootState(dir, legacy string) string {
	if _, err := os.Stat(filepath.Join(dir, "accounts.json")); err == nil {
		return dir
	}
	if _, err := os.Stat(filepath.Join(legacy, "accounts.json")); err == nil {
		return legacy
	}
	return dir
}

// runClient runs a client command. The first SIGINT or SIGTERM cancels it
// (hooks and waits stop, locks are released) and the exit code is 128 +
// the signal, as shells report; a second one kills the process at once.
func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	var mu sync.Mutex
	var got os.Signal
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigc:
			signal.Stop(sigc) // the next one takes the default action
			mu.Lock()
			got = s
			mu.Unlock()
			cancel()
		case <-done:
		}
	}()
	code := runGroup(ctx, "client", clientUsage, map[string]subcommand{
		"register": clientRegister,
		"check":    clientCheck,
		"obtain":   clientObtain,
		"renew":    clientRenew,
		"list":     clientList,
		"revoke":   clientRevoke,
		"delete":   clientDelete,
		"persist":  clientPersist,
		"hook":     clientHook,
	}, args, stdout, stderr)
	close(done)
	signal.Stop(sigc)
	mu.Lock()
	defer mu.Unlock()
	switch got {
	case nil:
		return code
	case syscall.SIGTERM:
		fmt.Fprintln(stderr, "acmebroker client: terminated; nothing half-written was kept")
		return exitTerminated
	}
	fmt.Fprintln(stderr, "acmebroker client: interrupted; nothing half-written was kept")
	return exitInterrupted
}

func clientRegister(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common commonFlags
	var allow stringList
	fs := newFlagSetEnv("register", "acmebroker client register: create an account on the broker for a domain, save it, and print the CNAME to add.",
		"acmebroker client register --api https://broker.example.org --domain example.org --allow-from 203.0.113.0/24", true, stderr)
	common.add(fs, os.Getenv)
	api := fs.String("api", "", "the broker's API URL (required), e.g. https://broker.example.org")
	domain := fs.String("domain", "", "the domain whose challenges this account answers (required); covers its wildcard and names below it")
	fs.Var(&allow, "allow-from", "CIDR allowed to update this account (repeatable; default: anywhere)")
	force := fs.Bool("force", false, "register a new account even if one is saved for the domain")
	if err := parseEnv(fs, args, os.Getenv); err != nil {
		return err
	}
	if *api == "" || *domain == "" {
		return usageErr(fs, "--api and --domain are required, e.g. --api https://broker.example.org --domain example.org")
	}
	d := strings.TrimPrefix(strings.ToLower(strings.TrimSuffix(strings.TrimSpace(*domain), ".")), "*.")
	if err := client.CheckDomainName(d); err != nil {
		return usageErr(fs, "--domain: %v", err)
	}
	out := common.out(stdout)
	st := common.state()
	// Read, register and write under the lock: parallel registers for
	// several domains each keep their account.
	lk, err := st.LockAccounts(ctx, common.lockOptions("register", out))
	if err != nil {
		return err
	}
	defer lk.Unlock()
	if accts, err := st.Accounts(); err != nil {
		return err
	} else if a, ok := accts[d]; ok && !*force {
		fmt.Fprintf(out, "An account for %s is already saved in %s (use --force to replace it).\n", d, common.stateDir)
		printCNAME(out, d, a)
		return nil
	}
	a, err := (&client.BrokerClient{}).Register(ctx, *api, allow)
	if err != nil {
		return err
	}
	if err := st.SaveAccount(d, a); err != nil {
		return err
	}
	fmt.Fprintf(out, "Registered with %s; credentials saved in %s.\n", *api, filepath.Join(common.stateDir, "accounts.json"))
	printCNAME(out, d, a)
	return nil
}

func printCNAME(w io.Writer, domain string, a client.BrokerAccount) {
	target := strings.TrimSuffix(a.FullDomain, ".")
	fmt.Fprintf(w, `
Add this record in the DNS zone of %[1]s (once; it covers %[1]s and *.%[1]s):

  %[2]s CNAME %[3]s.

For other names under %[1]s that the certificate should cover, add the same target at
_acme-challenge.<name>. Then check it with: acmebroker client check --domain %[1]s

For the other challenge types (obtain --challenge), the record each needs instead or as well:
  dns-account-01: %[4]s CNAME %[3]s.
  dns-persist-01: %[5]s CNAME %[3]s.
`, domain, client.DNS01{}.CNAMEName(domain), target, client.DNSAccount01{}.CNAMEName(domain), client.DNSPersist01{}.CNAMEName(domain))
}

func clientCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common commonFlags
	var domains stringList
	fs := newFlagSetEnv("check", "acmebroker client check: print the CNAMEs a challenge type needs and check the whole path the CA takes to each name's record: the CNAME, the broker zone's delegation, and the values as a resolver sees them.",
		"acmebroker client check --domain example.org --domain www.example.org --challenge dns-account-01", true, stderr)
	common.add(fs, os.Getenv)
	fs.Var(&domains, "domain", "a name to check (repeatable; default: every registered domain)")
	fs.Var(&domains, "d", "the same as --domain")
	certName := fs.String("cert-name", "", "check every name of this stored certificate (with its challenge type)")
	chFlag := fs.String("challenge", "", "challenge type whose CNAMEs to check: "+strings.Join(client.ChallengeTypes, " | ")+" (default: the certificate's with --cert-name, else dns-01)")
	if err := parseEnv(fs, args, os.Getenv); err != nil {
		return err
	}
	st := common.state()
	var names []string
	chType := *chFlag
	if *certName != "" {
		c, err := st.LoadCertificate(*certName)
		if err != nil {
			return err
		}
		names = append(names, c.Renewal.Domains...)
		if chType == "" {
			chType = c.Renewal.Challenge
		}
	}
	ch, err := client.ChallengeByType(chType)
	if err != nil {
		return usageErr(fs, "--challenge: %v", err)
	}
	for _, d := range domains {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if err := client.CheckDomainName(d); err != nil {
			return usageErr(fs, "--domain: %v", err)
		}
		names = append(names, d)
	}
	if len(names) == 0 {
		accts, err := st.Accounts()
		if err != nil {
			return err
		}
		for d := range accts {
			names = append(names, d)
		}
		if len(names) == 0 {
			return fmt.Errorf("no registered domain in %s: run `acmebroker client register` first", common.stateDir)
		}
		slices.Sort(names)
	}
	var items []client.PathItem
	seen := map[string]bool{}
	for _, n := range names {
		rn := ch.CNAMEName(n)
		if seen[rn] { // example.org and *.example.org share one record
			continue
		}
		seen[rn] = true
		_, a, err := st.AccountFor(n)
		if err != nil {
			return err
		}
		items = append(items, client.PathItem{Domain: n, RecordName: rn, Account: a})
	}
	out := common.out(stdout)
	fmt.Fprintf(out, "%s needs these CNAMEs, each once in the zone of its name:\n", ch.Type())
	for _, it := range items {
		fmt.Fprintf(out, "  %s CNAME %s\n", it.RecordName, dns.Fqdn(it.Account.FullDomain))
	}
	fmt.Fprintln(out)
	failed := 0
	for _, r := range common.checker(out).CheckPaths(ctx, items) {
		if !r.OK() {
			failed++
		}
		fmt.Fprintf(stdout, "%s\n", r.Domain)
		for _, l := range r.Links {
			mark := "OK    "
			if !l.OK {
				mark = "BROKEN"
			} else if common.quiet {
				continue
			}
			fmt.Fprintf(stdout, "  %s  %s: %s\n", mark, l.What, strings.ReplaceAll(l.Detail, "\n", "\n            "))
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d names have a broken link (above, with the fix; DNS changes can take a while to be visible, run check again)", failed, len(items))
	}
	fmt.Fprintf(out, "Every link holds for %d name(s): the CA will find the values the broker serves.\n", len(items))
	return nil
}

// caHTTPClient trusts the system roots plus the PEM file at caRoot.
func caHTTPClient(caRoot string) (*http.Client, error) {
	hc, err := apitls.CAHTTPClient(caRoot)
	if err != nil {
		return nil, fmt.Errorf("--ca-root: %w", err)
	}
	return hc, nil
}

func clientObtain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	start := time.Now()
	var common commonFlags
	var domains stringList
	fs := newFlagSetEnv("obtain", "acmebroker client obtain: get a certificate through DNS challenges (dns-01, dns-account-01 or dns-persist-01) answered by the broker.",
		"acmebroker client obtain -d example.org -d '*.example.org' --email you@example.org --deploy-hook 'systemctl reload nginx'", true, stderr)
	common.add(fs, os.Getenv)
	fs.Var(&domains, "d", "a name for the certificate (repeatable; the first one names it)")
	var req client.ObtainRequest
	fs.StringVar(&req.CAURL, "ca", defaultCA, "ACME directory URL of the CA")
	fs.StringVar(&req.Email, "email", "", "contact address for the ACME account (expiry notices); a changed one updates the account")
	fs.StringVar(&req.KeyType, "key-type", "ec256", "certificate key: "+strings.Join(client.KeyTypes, " | "))
	fs.StringVar(&req.EABKeyID, "eab-kid", "", "external account binding key ID (CAs that require it)")
	fs.StringVar(&req.EABHMAC, "eab-hmac", "", "external account binding HMAC key, base64url")
	fs.StringVar(&req.Profile, "profile", "", "CA certificate profile (e.g. shortlived), if the CA offers profiles")
	fs.StringVar(&req.PreferredChain, "preferred-chain", "", "pick the alternate chain whose top certificate's issuer has this common name")
	fs.StringVar(&common.caRoot, "ca-root", "", "PEM file of a root to trust for the CA's TLS (private CAs)")
	fs.StringVar(&req.CertName, "cert-name", "", "directory name under <state-dir>/certificates (default: the first name, * as _)")
	fs.StringVar(&req.DeployHook, "deploy-hook", "", "shell command run after this issuance and each renewal (stored with the certificate); it gets RENEWED_LINEAGE and RENEWED_DOMAINS")
	fs.DurationVar(&req.PropagationTimeout, "propagation-timeout", 2*time.Minute, "how long to wait for the broker's name servers to serve the values")
	fs.DurationVar(&req.RateLimitWait, "rate-limit-wait", client.RateLimitWait, "wait at most this long when the CA rate-limits (429 with Retry-After); beyond it fail at once")
	fs.BoolVar(&req.SkipCNAMECheck, "skip-cname-check", false, "do not check the CNAMEs through recursive DNS first")
	fs.StringVar(&req.Challenge, "challenge", client.TypeDNS01, "challenge type: "+strings.Join(client.ChallengeTypes, " | ")+" (stored with the certificate; renew uses it)")
	persistUntil := fs.String("persist-until", "", "dns-persist-01: the end of the record obtain sets, a duration (90d, 2160h), a date (2027-06-30) or an RFC 3339 time (default: no end)")
	if err := parseEnv(fs, args, os.Getenv); err != nil {
		return err
	}
	if len(domains) == 0 {
		return usageErr(fs, "at least one -d NAME is required, e.g. -d example.org -d '*.example.org'")
	}
	req.Domains = domains
	req.CARoot = common.caRoot
	req.NotIfIssuedSince = start
	req.SetPersist = true
	if *persistUntil != "" {
		t, err := client.ParsePersistUntil(*persistUntil, start)
		if err != nil {
			return usageErr(fs, "%v", err)
		}
		req.PersistUntil = t
	}
	if err := req.Check(); err != nil {
		return usageErr(fs, "%v", err)
	}
	out := common.out(stdout)
	is, _, err := newIssuer(common, "obtain", out, stderr)
	if err != nil {
		return err
	}
	iss, err := is.Obtain(ctx, req)
	if err != nil {
		return err
	}
	if !iss.Meanwhile && req.DeployHook != "" {
		if err := client.RunHook(ctx, "deploy", req.DeployHook, &iss, is.Logger); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "Done in %s.\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func newIssuer(common commonFlags, cmd string, out, stderr io.Writer) (*client.Issuer, *http.Client, error) {
	hc, err := caHTTPClient(common.caRoot)
	if err != nil {
		return nil, nil, err
	}
	return &client.Issuer{
		State: common.state(),
		Broker: &client.BrokerClient{Wait: func(msg string) {
			fmt.Fprintln(out, msg)
		}},
		Checker: common.checker(out),
		HTTP:    hc,
		Logger:  common.logger(stderr),
		Out:     out,
		Lock:    common.lockOptions(cmd, out),
		Command: common.command,
	}, hc, nil
}

func clientRenew(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	start := time.Now()
	var common commonFlags
	fs := newFlagSetEnv("renew", "acmebroker client renew: renew the certificates that are due (safe to run every hour from cron or a systemd timer).",
		"acmebroker client renew --all -q --deploy-hook 'systemctl reload nginx'", true, stderr)
	common.add(fs, os.Getenv)
	all := fs.Bool("all", false, "every stored certificate (the default when no -d is given)")
	var names stringList
	fs.Var(&names, "d", "certificate name to renew (repeatable)")
	force := fs.Bool("force", false, "renew even if not due")
	hook := fs.String("deploy-hook", "", "shell command run after each renewal (replaces the stored one); it gets RENEWED_LINEAGE and RENEWED_DOMAINS")
	preHook := fs.String("pre-hook", "", "shell command run once before the first renewal of this run (only if something is due)")
	postHook := fs.String("post-hook", "", "shell command run once after the renewals of this run (only if something was due)")
	fs.StringVar(&common.caRoot, "ca-root", "", "PEM file of a root to trust for the CA's TLS (default: the one used at obtain)")
	rlWait := fs.Duration("rate-limit-wait", client.RateLimitWait, "wait at most this long when the CA rate-limits (429 with Retry-After); beyond it that certificate fails at once and the others go on")
	propTimeout := fs.Duration("propagation-timeout", 2*time.Minute, "how long to wait for the broker's name servers to serve the values")
	if err := parseEnv(fs, args, os.Getenv); err != nil {
		return err
	}
	for _, n := range names {
		if err := client.ValidateCertName(n); err != nil {
			return usageErr(fs, "-d: %v", err)
		}
	}
	st := common.state()
	out := common.out(stdout)
	if *all || len(names) == 0 {
		var err error
		if names, err = st.CertificateNames(); err != nil {
			return err
		}
		if len(names) == 0 {
			fmt.Fprintf(out, "No certificates in %s.\n", common.stateDir)
			return nil
		}
	}
	logger := common.logger(stderr)
	due := false
	var preErr error
	before := func() error {
		if !due {
			due = true
			if *preHook != "" {
				preErr = client.RunHook(ctx, "pre", *preHook, nil, logger)
			}
		}
		return preErr
	}
	var errs []error
	failed := func(name string, err error) {
		fmt.Fprintf(stderr, "acmebroker client renew: %s: %v\n", name, err)
		errs = append(errs, err)
	}
	for _, name := range names {
		if ctx.Err() != nil {
			break
		}
		cert, err := st.LoadCertificate(name)
		if err != nil {
			failed(name, err)
			continue
		}
		c := common
		if c.caRoot == "" {
			c.caRoot = cert.Renewal.CARoot
		}
		if len(c.nameservers) == 0 {
			c.nameservers = cert.Renewal.Nameservers
		}
		if len(c.resolvers) == 0 {
			c.resolvers = cert.Renewal.Resolvers
		}
		is, hc, err := newIssuer(c, "renew", out, stderr)
		if err != nil {
			failed(name, err)
			continue
		}
		_, err = is.Renew(ctx, name, client.RenewOptions{
			Force: *force, HTTP: hc, Rand: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), Since: start,
			BeforeRenewal: before, DeployHook: *hook, RateLimitWait: *rlWait, PropagationTimeout: *propTimeout,
		})
		if err != nil && ctx.Err() == nil {
			failed(name, err)
		}
	}
	if due && *postHook != "" {
		// After every renewal, also failed ones: a pre-hook that stopped a
		// service is undone.
		if err := client.RunHook(context.WithoutCancel(ctx), "post", *postHook, nil, logger); err != nil {
			fmt.Fprintf(stderr, "acmebroker client renew: %v\n", err)
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d certificate(s) could not be renewed (see above)", len(errs), len(names))
	}
	return nil
}

func clientList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common commonFlags
	fs := newFlagSetEnv("list", "acmebroker client list: show the registered domains and the stored certificates with their state and next renewal.",
		"acmebroker client list", true, stderr)
	common.add(fs, os.Getenv)
	if err := parseEnv(fs, args, os.Getenv); err != nil {
		return err
	}
	st := common.state()
	accts, err := st.Accounts()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "State directory: %s\n\nBroker accounts:\n", common.stateDir)
	if len(accts) == 0 {
		fmt.Fprintln(stdout, "  (none)")
	}
	var doms []string
	for d := range accts {
		doms = append(doms, d)
	}
	slices.Sort(doms)
	for _, d := range doms {
		a := accts[d]
		fmt.Fprintf(stdout, "  %-30s %s CNAME %s (%s)\n", d, client.ChallengeName(d), a.FullDomain, a.ServerURL)
	}
	names, err := st.CertificateNames()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nCertificates:")
	if len(names) == 0 {
		fmt.Fprintln(stdout, "  (none)")
		return nil
	}
	const row = "  %-30s %-8s %-20s %-20s %-14s %s\n"
	fmt.Fprintf(stdout, row, "NAME", "STATE", "EXPIRES", "NEXT RENEWAL", "CHALLENGE", "NAMES")
	now := time.Now()
	for _, n := range names {
		c, err := st.LoadCertificate(n)
		if err != nil {
			fmt.Fprintf(stdout, "  %-30s unreadable: %v\n", n, err)
			continue
		}
		s := client.StateOf(c, now)
		next := s.RenewalAt.UTC().Format(time.RFC3339)
		if s.State != "valid" {
			next = "next run"
		}
		ch := c.Renewal.Challenge
		if ch == "" {
			ch = client.TypeDNS01
		}
		fmt.Fprintf(stdout, row, n, s.State, c.Leaf.NotAfter.UTC().Format(time.RFC3339), next, ch, strings.Join(c.Leaf.DNSNames, ","))
	}
	fmt.Fprintf(stdout, "\nFiles: %s/<NAME>/{cert,chain,fullchain,privkey}.pem\n", filepath.Join(common.stateDir, "certificates"))
	return nil
}

func clientRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common commonFlags
	fs := newFlagSetEnv("revoke", "acmebroker client revoke: revoke a stored certificate with the CA.",
		"acmebroker client revoke -d example.org --reason 4", true, stderr)
	common.add(fs, os.Getenv)
	name := certNameFlag(fs)
	reason := fs.Int("reason", 0, "RFC 5280 reason code: 0 unspecified, 1 keyCompromise, 4 superseded, 5 cessationOfOperation")
	fs.StringVar(&common.caRoot, "ca-root", "", "PEM file of a root to trust for the CA's TLS (default: the one used at obtain)")
	if err := parseCertName(fs, args, name); err != nil {
		return err
	}
	if *reason < 0 || *reason > 10 || *reason == 7 {
		return usageErr(fs, "--reason %d is not an RFC 5280 reason code (0-6, 8-10)", *reason)
	}
	c, err := common.state().LoadCertificate(*name)
	if err != nil {
		return err
	}
	if common.caRoot == "" {
		common.caRoot = c.Renewal.CARoot
	}
	is, _, err := newIssuer(common, "revoke", common.out(stdout), stderr)
	if err != nil {
		return err
	}
	return is.Revoke(ctx, *name, *reason)
}

func clientDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common commonFlags
	fs := newFlagSetEnv("delete", "acmebroker client delete: remove a stored certificate and its old versions, so renew leaves it alone (it is not revoked).",
		"acmebroker client delete --cert-name old.example.org", true, stderr)
	common.add(fs, os.Getenv)
	name := certNameFlag(fs)
	if err := parseCertName(fs, args, name); err != nil {
		return err
	}
	st := common.state()
	out := common.out(stdout)
	lk, err := st.LockCertificate(ctx, *name, common.lockOptions("delete", out))
	if err != nil {
		return err
	}
	defer lk.Unlock()
	c, _ := st.LoadCertificate(*name)
	if err := st.DeleteCertificate(*name); err != nil {
		return err
	}
	fmt.Fprintf(out, "Deleted certificate %s from %s. It was not revoked (acmebroker client revoke does that); a server still configured with its files now fails to start.\n",
		*name, filepath.Join(common.stateDir, "certificates"))
	if c != nil && c.Renewal.Challenge == client.TypeDNSPersist01 && len(c.Renewal.Domains) > 0 {
		fmt.Fprintf(out, "Its dns-persist-01 record still authorizes the ACME account at the broker; to end that, see %s\n",
			common.command("persist", "list", "--domain", strings.TrimPrefix(c.Renewal.Domains[0], "*.")))
	}
	return nil
}

// certNameFlag adds --cert-name and its short form -d: the name of one
// stored certificate.
func certNameFlag(fs *flag.FlagSet) *string {
	var name string
	fs.StringVar(&name, "cert-name", "", "certificate name, as acmebroker client list shows it (required)")
	fs.StringVar(&name, "d", "", "the same as --cert-name")
	return &name
}

// parseCertName parses the command line and checks the --cert-name.
func parseCertName(fs *flag.FlagSet, args []string, name *string) error {
	if err := parseEnv(fs, args, os.Getenv); err != nil {
		return err
	}
	if *name == "" {
		return usageErr(fs, "--cert-name NAME is required (see acmebroker client list)")
	}
	if err := client.ValidateCertName(*name); err != nil {
		return usageErr(fs, "--cert-name: %v", err)
	}
	return nil
}
