package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/apitls"
)

const defaultCA = "https://acme-v02.api.letsencrypt.org/directory"

const clientUsage = `acmebroker client: get and renew certificates (wildcards too) through an acmebroker
or acme-dns broker, from a host that accepts no inbound traffic.

Usage:
  acmebroker client register --api URL --domain NAME [--allow-from CIDR]
  acmebroker client check    [--domain NAME]
  acmebroker client obtain   -d NAME [-d NAME ...] --email ADDR [--ca URL]
  acmebroker client renew    [--all | -d CERTNAME] [--force] [--deploy-hook CMD]
  acmebroker client list
  acmebroker client revoke   -d CERTNAME
  acmebroker client hook     certbot auth|cleanup | dehydrated OPERATION ...   (hooks for other ACME clients)

Run "acmebroker client COMMAND -h" for the flags of each command.

Example (five commands to a wildcard certificate):
  acmebroker client register --api https://broker.example.org --domain example.org
  # add the CNAME it prints at your DNS provider, then:
  acmebroker client check --domain example.org
  acmebroker client obtain -d example.org -d '*.example.org' --email you@example.org
  acmebroker client renew --all --deploy-hook 'systemctl reload nginx'   # from cron/systemd timer
`

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// commonFlags are shared by the client commands.
type commonFlags struct {
	stateDir    string
	resolvers   stringList
	nameservers stringList
	caRoot      string
}

func (c *commonFlags) add(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&c.stateDir, "state-dir", defaultStateDir(getenv), "directory of credentials, keys and certificates")
	fs.Var(&c.resolvers, "resolver", "recursive DNS resolver host:port for CNAME and NS lookups (repeatable; default: /etc/resolv.conf)")
	fs.Var(&c.nameservers, "nameserver", "authoritative server host:port of the broker zone to wait for (repeatable; default: found through NS records)")
}

func (c *commonFlags) checker() *client.Checker {
	return &client.Checker{Resolvers: c.resolvers, Nameservers: c.nameservers}
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

func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runGroup(ctx, "client", clientUsage, map[string]subcommand{
		"register": clientRegister,
		"check":    clientCheck,
		"obtain":   clientObtain,
		"renew":    clientRenew,
		"list":     clientList,
		"revoke":   clientRevoke,
		"hook":     clientHook,
	}, args, stdout, stderr)
}

var errUsage = errors.New("usage")

func newFlagSet(name, synopsis, example string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n", synopsis)
		if !strings.Contains(synopsis, "\nUsage:") { // the command and its flags, from the synopsis "acmebroker X Y: ..."
			cmd, _, _ := strings.Cut(synopsis, ":")
			fmt.Fprintf(stderr, "\nUsage:\n  %s [flags]\n", cmd)
		}
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprint(stderr, "\nFlags:\n")
			fs.PrintDefaults()
		}
		fmt.Fprintf(stderr, "\nExample:\n  %s\n", example)
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q (names go after -d or --domain)\n", fs.Arg(0))
		return errUsage
	}
	return nil
}

func usageErr(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), format+"\n", args...)
	return errUsage
}

func clientRegister(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common commonFlags
	var allow stringList
	fs := newFlagSet("register", "acmebroker client register: create an account on the broker for a domain, save it, and print the CNAME to add.",
		"acmebroker client register --api https://broker.example.org --domain example.org --allow-from 203.0.113.0/24", stderr)
	common.add(fs, os.Getenv)
	api := fs.String("api", "", "the broker's API URL (required), e.g. https://broker.example.org")
	domain := fs.String("domain", "", "the domain whose challenges this account answers (required); covers its wildcard and names below it")
	fs.Var(&allow, "allow-from", "CIDR allowed to update this account (repeatable; default: anywhere)")
	force := fs.Bool("force", false, "register a new account even if one is saved for the domain")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *api == "" || *domain == "" {
		return usageErr(fs, "--api and --domain are required, e.g. --api https://broker.example.org --domain example.org")
	}
	st := &client.State{Dir: common.stateDir}
	d := strings.TrimPrefix(strings.ToLower(strings.TrimSuffix(*domain, ".")), "*.")
	if accts, err := st.Accounts(); err != nil {
		return err
	} else if a, ok := accts[d]; ok && !*force {
		fmt.Fprintf(stdout, "An account for %s is already saved in %s (use --force to replace it).\n", d, common.stateDir)
		printCNAME(stdout, d, a)
		return nil
	}
	a, err := (&client.BrokerClient{}).Register(ctx, *api, allow)
	if err != nil {
		return err
	}
	if err := st.SaveAccount(d, a); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Registered with %s; credentials saved in %s.\n", *api, filepath.Join(common.stateDir, "accounts.json"))
	printCNAME(stdout, d, a)
	return nil
}

func printCNAME(w io.Writer, domain string, a client.BrokerAccount) {
	fmt.Fprintf(w, `
Add this record in the DNS zone of %[1]s (once; it covers %[1]s and *.%[1]s):

  %[2]s. CNAME %[3]s.

For other names under %[1]s that the certificate should cover, add the same target at
_acme-challenge.<name>. Then check it with: acmebroker client check --domain %[1]s
`, domain, client.ChallengeName(domain), strings.TrimSuffix(a.FullDomain, "."))
}

func clientCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common commonFlags
	fs := newFlagSet("check", "acmebroker client check: check that the CNAME of each registered domain points at its broker account.",
		"acmebroker client check --domain example.org", stderr)
	common.add(fs, os.Getenv)
	domain := fs.String("domain", "", "the domain to check (default: every registered domain)")
	if err := parse(fs, args); err != nil {
		return err
	}
	st := &client.State{Dir: common.stateDir}
	accts, err := st.Accounts()
	if err != nil {
		return err
	}
	var domains []string
	if *domain != "" {
		d, _, err := st.AccountFor(*domain)
		if err != nil {
			return err
		}
		domains = []string{d}
		if nd := strings.TrimPrefix(strings.ToLower(strings.TrimSuffix(*domain, ".")), "*."); nd != d {
			domains = []string{nd}
		}
	} else {
		for d := range accts {
			domains = append(domains, d)
		}
		if len(domains) == 0 {
			return fmt.Errorf("no registered domain in %s: run `acmebroker client register` first", common.stateDir)
		}
	}
	ck := common.checker()
	failed := 0
	for _, d := range domains {
		_, a, err := st.AccountFor(d)
		if err != nil {
			return err
		}
		if err := ck.CheckCNAME(ctx, d, a.FullDomain); err != nil {
			failed++
			fmt.Fprintf(stdout, "NOT OK  %s: %v\n", d, err)
			continue
		}
		fmt.Fprintf(stdout, "OK      %s CNAME %s\n", client.ChallengeName(d), a.FullDomain)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d domains are not delegated yet (DNS changes can take a while to be visible; run check again)", failed, len(domains))
	}
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
	var common commonFlags
	var domains stringList
	fs := newFlagSet("obtain", "acmebroker client obtain: get a certificate through dns-01 challenges answered by the broker.",
		"acmebroker client obtain -d example.org -d '*.example.org' --email you@example.org", stderr)
	common.add(fs, os.Getenv)
	fs.Var(&domains, "d", "a name for the certificate (repeatable; the first one names it)")
	var req client.ObtainRequest
	fs.StringVar(&req.CAURL, "ca", defaultCA, "ACME directory URL of the CA")
	fs.StringVar(&req.Email, "email", "", "contact address for the ACME account (expiry notices)")
	fs.StringVar(&req.KeyType, "key-type", "ec256", "certificate key: "+strings.Join(client.KeyTypes, " | "))
	fs.StringVar(&req.EABKeyID, "eab-kid", "", "external account binding key ID (CAs that require it)")
	fs.StringVar(&req.EABHMAC, "eab-hmac", "", "external account binding HMAC key, base64url")
	fs.StringVar(&req.Profile, "profile", "", "CA certificate profile (e.g. shortlived), if the CA offers profiles")
	fs.StringVar(&req.PreferredChain, "preferred-chain", "", "pick the alternate chain whose top certificate's issuer has this common name")
	fs.StringVar(&common.caRoot, "ca-root", "", "PEM file of a root to trust for the CA's TLS (private CAs)")
	fs.StringVar(&req.CertName, "cert-name", "", "directory name under <state-dir>/certificates (default: the first name, * as _)")
	fs.StringVar(&req.DeployHook, "deploy-hook", "", "shell command run after each renewal (stored with the certificate)")
	fs.DurationVar(&req.PropagationTimeout, "propagation-timeout", 2*time.Minute, "how long to wait for the broker's name servers to serve the values")
	fs.BoolVar(&req.SkipCNAMECheck, "skip-cname-check", false, "do not check the CNAMEs through recursive DNS first")
	if err := parse(fs, args); err != nil {
		return err
	}
	if len(domains) == 0 {
		return usageErr(fs, "at least one -d NAME is required, e.g. -d example.org -d '*.example.org'")
	}
	if _, err := client.NewCertKey(req.KeyType); err != nil {
		return usageErr(fs, "%v", err)
	}
	req.Domains = domains
	req.CARoot = common.caRoot
	is, _, err := newIssuer(common, stdout)
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := is.Obtain(ctx, req); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Done in %s.\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func newIssuer(common commonFlags, stdout io.Writer) (*client.Issuer, *http.Client, error) {
	hc, err := caHTTPClient(common.caRoot)
	if err != nil {
		return nil, nil, err
	}
	return &client.Issuer{
		State:   &client.State{Dir: common.stateDir},
		Broker:  &client.BrokerClient{},
		Checker: common.checker(),
		HTTP:    hc,
		Out:     stdout,
	}, hc, nil
}

func clientRenew(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common commonFlags
	fs := newFlagSet("renew", "acmebroker client renew: renew the certificates that are due (safe to run every hour from cron or a systemd timer).",
		"acmebroker client renew --all --deploy-hook 'systemctl reload nginx'", stderr)
	common.add(fs, os.Getenv)
	all := fs.Bool("all", false, "every stored certificate (the default when no -d is given)")
	var names stringList
	fs.Var(&names, "d", "certificate name to renew (repeatable)")
	force := fs.Bool("force", false, "renew even if not due")
	hook := fs.String("deploy-hook", "", "shell command run after each renewal (overrides the stored one)")
	fs.StringVar(&common.caRoot, "ca-root", "", "PEM file of a root to trust for the CA's TLS (default: the one used at obtain)")
	if err := parse(fs, args); err != nil {
		return err
	}
	st := &client.State{Dir: common.stateDir}
	if *all || len(names) == 0 {
		var err error
		if names, err = st.CertificateNames(); err != nil {
			return err
		}
		if len(names) == 0 {
			fmt.Fprintf(stdout, "No certificates in %s.\n", common.stateDir)
			return nil
		}
	}
	var errs []error
	for _, name := range names {
		cert, err := st.LoadCertificate(name)
		if err != nil {
			errs = append(errs, err)
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
		if *hook != "" {
			cert.Renewal.DeployHook = *hook
			if err := st.UpdateRenewal(name, cert.Renewal); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		is, hc, err := newIssuer(c, stdout)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := is.Renew(ctx, name, *force, hc, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func clientList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common commonFlags
	fs := newFlagSet("list", "acmebroker client list: show the registered domains and stored certificates.",
		"acmebroker client list", stderr)
	common.add(fs, os.Getenv)
	if err := parse(fs, args); err != nil {
		return err
	}
	st := &client.State{Dir: common.stateDir}
	accts, err := st.Accounts()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "State directory: %s\n\nBroker accounts:\n", common.stateDir)
	if len(accts) == 0 {
		fmt.Fprintln(stdout, "  (none)")
	}
	for d, a := range accts {
		fmt.Fprintf(stdout, "  %-30s %s CNAME %s (%s)\n", d, client.ChallengeName(d), a.FullDomain, a.ServerURL)
	}
	names, err := st.CertificateNames()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nCertificates:")
	if len(names) == 0 {
		fmt.Fprintln(stdout, "  (none)")
	}
	for _, n := range names {
		c, err := st.LoadCertificate(n)
		if err != nil {
			fmt.Fprintf(stdout, "  %-30s unreadable: %v\n", n, err)
			continue
		}
		fmt.Fprintf(stdout, "  %-30s %s  expires %s  %s\n", n, strings.Join(c.Leaf.DNSNames, ","), c.Leaf.NotAfter.UTC().Format(time.RFC3339), c.Dir)
	}
	return nil
}

func clientRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common commonFlags
	fs := newFlagSet("revoke", "acmebroker client revoke: revoke a stored certificate with the CA.",
		"acmebroker client revoke -d example.org --reason 4", stderr)
	common.add(fs, os.Getenv)
	name := fs.String("d", "", "certificate name, as acmebroker client list shows it (required)")
	reason := fs.Int("reason", 0, "RFC 5280 reason code: 0 unspecified, 1 keyCompromise, 4 superseded, 5 cessationOfOperation")
	fs.StringVar(&common.caRoot, "ca-root", "", "PEM file of a root to trust for the CA's TLS (default: the one used at obtain)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *name == "" {
		return usageErr(fs, "-d CERTNAME is required")
	}
	st := &client.State{Dir: common.stateDir}
	c, err := st.LoadCertificate(*name)
	if err != nil {
		return err
	}
	if common.caRoot == "" {
		common.caRoot = c.Renewal.CARoot
	}
	hc, err := caHTTPClient(common.caRoot)
	if err != nil {
		return err
	}
	key, _, err := st.ACMEAccountKey(c.Renewal.CAURL)
	if err != nil {
		return err
	}
	ac := &acme.Client{Key: key, DirectoryURL: c.Renewal.CAURL, HTTPClient: hc, UserAgent: "acmebroker"}
	if u := st.ACMEAccountURL(c.Renewal.CAURL); u != "" {
		ac.KID = acme.KeyID(u)
	}
	if err := ac.RevokeCert(ctx, nil, c.Leaf.Raw, acme.CRLReasonCode(*reason)); err != nil {
		return fmt.Errorf("revoking %s: %w", *name, err)
	}
	fmt.Fprintf(stdout, "Revoked %s (serial %x).\n", *name, c.Leaf.SerialNumber)
	return nil
}
