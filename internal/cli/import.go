package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"time"

	"github.com/acmebroker/acmebroker/internal/acmedns"
	"github.com/acmebroker/acmebroker/internal/config"
)

const importUsage = `acmebroker import: copy accounts from another server into the broker's database.

Usage:
  acmebroker import acme-dns --from FILE|DSN [-config FILE] [--dry-run] [--quiet]
  acmebroker import acme-dns-config FILE

acme-dns copies every account (username, key hash, subdomain, allowfrom) and
the current TXT values: existing credentials and CNAMEs keep working. Running
it again skips what is already there. Stop acme-dns first.
acme-dns-config prints acme-dns's config.cfg as acmebroker's config.toml
(serve also reads config.cfg as it is; this is for editing it further).

Example:
  acmebroker import acme-dns --from /var/lib/acme-dns/acme-dns.db -config /etc/acme-dns/config.cfg --dry-run
  acmebroker import acme-dns-config /etc/acme-dns/config.cfg > /etc/acmebroker/config.toml
`

func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runGroup(ctx, "import", importUsage, map[string]subcommand{
		"acme-dns":        importAcmeDNS,
		"acme-dns-config": importAcmeDNSConfig,
	}, args, stdout, stderr)
}

func importAcmeDNS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("import acme-dns", `acmebroker import acme-dns: copy every account and current TXT value of an acme-dns database into the broker's.

Usage:
  acmebroker import acme-dns --from FILE|DSN [-config FILE] [--dry-run] [--quiet]

The old credentials keep working against /update and the old CNAMEs keep
resolving. Rows that cannot be imported are listed with the reason and make
the exit status 1; rows already in the broker are skipped, so it is safe to
run again after fixing them.`,
		`acmebroker import acme-dns --from /var/lib/acme-dns/acme-dns.db -config /etc/acmebroker/config.toml --dry-run
  acmebroker import acme-dns --from 'postgres://acmedns:secret@127.0.0.1/acmedns' -config config.cfg`, stderr)
	from := fs.String("from", "", "the acme-dns database (required): its SQLite file, or a PostgreSQL DSN such as postgres://user:pass@host/db")
	configPath := fs.String("config", "", "the broker's config file, TOML or acme-dns's config.cfg (default: the embedded default, ./acmebroker.db)")
	dryRun := fs.Bool("dry-run", false, "print what would be imported; write nothing")
	quiet := fs.Bool("quiet", false, "print only the rows that are not imported, and the summary")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *from == "" {
		return usageErr(fs, "--from is required: the acme-dns database file (connection in its config.cfg) or a postgres:// DSN")
	}

	if *configPath != "" {
		// A bad config is a usage error; say what is wrong before any work.
		if _, err := config.Load(*configPath); err != nil {
			fmt.Fprintf(stderr, "acmebroker import acme-dns: %v\n", err)
			return errUsage
		}
	}
	src, err := acmedns.Open(ctx, *from)
	if err != nil {
		return err
	}
	defer src.Close()

	var dst acmedns.Store
	var cfg config.Config
	if *dryRun {
		st, c, err := openForDryRun(ctx, *configPath, stderr)
		if err != nil {
			return err
		}
		cfg = c
		if st != nil {
			defer st.Close()
			dst = st
		}
	} else {
		st, err := openAdminStore(ctx, *configPath, false, stderr)
		if err != nil {
			return err
		}
		defer st.Close()
		dst, cfg = st, st.cfg
	}
	fmt.Fprintf(stdout, "from acme-dns database %s (schema version %s) into %s %s\n", redactDSN(*from), src.Version, cfg.Storage.Engine, redactDSN(cfg.Storage.DSN))

	verb := map[acmedns.Outcome]string{acmedns.Imported: "imported", acmedns.Skipped: "skipped ", acmedns.Failed: "FAILED  "}
	if *dryRun {
		verb[acmedns.Imported] = "would import"
	}
	sum, err := acmedns.Import(ctx, src, dst, acmedns.Options{
		DryRun: *dryRun,
		Policy: cfg.DNS.TXTPolicy(),
		Report: func(e acmedns.Event) {
			if !*quiet || e.Outcome == acmedns.Failed {
				printEvent(stdout, verb[e.Outcome], e)
			}
		},
	})
	if err != nil {
		return err
	}
	t := sum.Total()
	imported := "imported"
	if *dryRun {
		imported = "would import"
	}
	fmt.Fprintf(stdout, "%s %d, skipped %d, failed %d (accounts: %d/%d/%d, TXT values: %d/%d/%d)\n", imported, t.Imported, t.Skipped, t.Failed,
		sum.Accounts.Imported, sum.Accounts.Skipped, sum.Accounts.Failed, sum.Values.Imported, sum.Values.Skipped, sum.Values.Failed)
	if *dryRun {
		fmt.Fprintln(stdout, "dry run: nothing was written")
	} else if t.Imported > 0 {
		fmt.Fprintln(stdout, "start acmebroker serve with the same -config now (restart it if it runs: DNS loads the accounts at start-up)")
	}
	if t.Failed > 0 {
		rows := "rows were"
		if t.Failed == 1 {
			rows = "row was"
		}
		return fmt.Errorf("%d %s not imported (the FAILED lines say why); fix them in the acme-dns database and run the import again: what is imported already is skipped", t.Failed, rows)
	}
	return nil
}

func printEvent(w io.Writer, verb string, e acmedns.Event) {
	if e.IsTXT() {
		fmt.Fprintf(w, "%s txt     subdomain %q value %s set %s", verb, e.Subdomain, e.Value, e.At.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(w, "%s account username %q subdomain %q", verb, e.Username, e.Subdomain)
		if e.Outcome == acmedns.Imported {
			fmt.Fprintf(w, " allowfrom %s", fromText(e.AllowFrom))
		}
	}
	if e.Detail != "" {
		fmt.Fprintf(w, ": %s", e.Detail)
	}
	fmt.Fprintln(w)
}

// openForDryRun opens the broker's store only if it exists, so that a dry
// run creates no database. A nil store means an empty broker.
func openForDryRun(ctx context.Context, path string, stderr io.Writer) (*adminStore, config.Config, error) {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return nil, cfg, err
		}
	}
	if cfg.Storage.Engine == "sqlite" {
		if _, err := os.Stat(cfg.Storage.DSN); errors.Is(err, os.ErrNotExist) {
			return nil, cfg, nil
		}
	}
	st, err := openAdminStore(ctx, path, true, stderr)
	if err != nil {
		return nil, cfg, err
	}
	return st, st.cfg, nil
}

var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('[^']*'|\S+)`)

// redactDSN hides the password of a PostgreSQL DSN before it is printed.
func redactDSN(dsn string) string {
	if !acmedns.IsPostgres(dsn) {
		return dsn
	}
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return dsnPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

func importAcmeDNSConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("import acme-dns-config", `acmebroker import acme-dns-config: print acme-dns's config.cfg as acmebroker's config.toml.

Usage:
  acmebroker import acme-dns-config FILE

Every key acme-dns has is mapped where acmebroker has an equivalent; those it
has not are listed as comments at the top, with what to do.`,
		"acmebroker import acme-dns-config /etc/acme-dns/config.cfg > /etc/acmebroker/config.toml", stderr)
	path, rest := leadingArg(args)
	if err := parse(fs, rest); err != nil {
		return err
	}
	if path == "" {
		return usageErr(fs, "which file? give acme-dns's config.cfg")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !config.IsAcmeDNS(b) {
		return fmt.Errorf("%s is not an acme-dns config.cfg (it has no [general], [database] or [logconfig] table)", path)
	}
	cfg, err := config.Parse(b)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# acmebroker config, mapped from acme-dns's %s by acmebroker import acme-dns-config.\n", path)
	for _, n := range cfg.Notes {
		fmt.Fprintf(stdout, "#\n# acme-dns %s: %s\n", n.Key, n.Text)
	}
	fmt.Fprintln(stdout)
	return config.Encode(stdout, cfg)
}
