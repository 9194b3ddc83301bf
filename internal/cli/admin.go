package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/acmebroker/acmebroker/api"
	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/secret"
	"github.com/acmebroker/acmebroker/internal/zone"
	"github.com/acmebroker/acmebroker/storage"
)

const tokenUsage = `acmebroker token: registration tokens, for [api] registration = "token".
Works on the database named in the config, also while the broker runs.

Usage:
  acmebroker token create [-config FILE] [--max-accounts N] [--expires DURATION] [--allow-from CIDR] [--comment TEXT]
  acmebroker token list   [-config FILE]
  acmebroker token revoke [-config FILE] ID

Example:
  acmebroker token create -config /etc/acmebroker/config.toml --max-accounts 50 --expires 720h --comment "web farm"
  curl -s -X POST https://broker.example.org/register -H "Authorization: Bearer <token>"
`

const accountUsage = `acmebroker account: manage accounts as the broker's admin.
Works on the database named in the config, offline or while the broker runs
(a running broker stops serving a deleted account within a second; disable
and enable apply to its next request).
NAME is an account's subdomain or its username.

Usage:
  acmebroker account create  [-config FILE] --subdomain NAME [--allow-from CIDR]
  acmebroker account list    [-config FILE] [--json]
  acmebroker account show    [-config FILE] NAME
  acmebroker account delete  [-config FILE] NAME
  acmebroker account disable [-config FILE] NAME
  acmebroker account enable  [-config FILE] NAME
  acmebroker account prune   [-config FILE] --unused-for DURATION [--dry-run]

Examples:
  # publish the CNAME before the host that will use it exists
  acmebroker account create -config /etc/acmebroker/config.toml --subdomain web1 --allow-from 203.0.113.7/32
  acmebroker account list -config /etc/acmebroker/config.toml
  acmebroker account list -config /etc/acmebroker/config.toml --json
  acmebroker account show -config /etc/acmebroker/config.toml web1
  acmebroker account disable -config /etc/acmebroker/config.toml web1
  acmebroker account enable -config /etc/acmebroker/config.toml web1
  acmebroker account delete -config /etc/acmebroker/config.toml 0d3f6c2e-5f2a-4a7e-9c1b-2b8e4f1a9d7c
  # accounts with no update for 90 days (never updated: counted from creation)
  acmebroker account prune -config /etc/acmebroker/config.toml --unused-for 2160h --dry-run
`

// subcommand is one command of a group (client, token, account).
type subcommand func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// runGroup dispatches args to the named command of a group and turns its
// error into an exit code and a message.
func runGroup(ctx context.Context, group, usage string, cmds map[string]subcommand, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	run, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "acmebroker %s: unknown command %q\n\n%s", group, args[0], usage)
		return exitUsage
	}
	err := run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		var bc badConfig
		if errors.As(err, &bc) { // a config file that does not load: say why
			fmt.Fprintf(stderr, "acmebroker %s %s: %v\n", group, args[0], err)
		}
		return exitUsage
	}
	fmt.Fprintf(stderr, "acmebroker %s %s: %v\n", group, args[0], err)
	return exitFailure
}

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runGroup(ctx, "token", tokenUsage, map[string]subcommand{
		"create": tokenCreate,
		"list":   tokenList,
		"revoke": tokenRevoke,
	}, args, stdout, stderr)
}

func runAccount(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runGroup(ctx, "account", accountUsage, map[string]subcommand{
		"create":  accountCreate,
		"list":    accountList,
		"show":    accountShow,
		"delete":  accountDelete,
		"disable": accountDisable,
		"enable":  accountEnable,
		"prune":   accountPrune,
	}, args, stdout, stderr)
}

// adminStore opens the database of the config at path (the embedded
// default when empty). mustExist refuses to create an empty SQLite file at
// a mistyped path.
type adminStore struct {
	storage.Store
	cfg  config.Config
	zone *zone.Writer // the account and zone changes, as the broker makes them
}

func openAdminStore(ctx context.Context, path string, mustExist bool, stderr io.Writer) (*adminStore, error) {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return nil, badConfig{err}
		}
	} else if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if mustExist && cfg.Storage.Engine == "sqlite" {
		if _, err := os.Stat(cfg.Storage.DSN); err != nil {
			return nil, fmt.Errorf("no database at %s (storage.dsn): run this where the broker runs, or pass -config with the broker's config file", cfg.Storage.DSN)
		}
	}
	logger := newLogger(config.Log{Level: "warn", Format: cfg.Log.Format}, stderr)
	st, err := broker.OpenAdminStore(ctx, cfg.Storage, logger)
	if err != nil {
		return nil, err
	}
	// Records that do not parse (serve refuses such a config) reserve
	// nothing here: the admin commands still work on the database.
	static, _ := dnsserver.ParseRecords(cfg.DNS.Zone, cfg.DNS.Records)
	// No view: a running broker learns of these changes from storage.
	w := zone.New(zone.Config{
		Zone: cfg.DNS.Zone, Policy: cfg.DNS.TXTPolicy(), Reserved: broker.Reserved(cfg, static), Logger: logger,
	}, st, nil)
	return &adminStore{Store: st, cfg: cfg, zone: w}, nil
}

// badConfig is a config file that does not load: a usage error whose
// message must be shown.
type badConfig struct{ err error }

func (b badConfig) Error() string        { return b.err.Error() }
func (b badConfig) Is(target error) bool { return target == errUsage }

// parsePrefixes checks --allow-from values.
func parsePrefixes(fs *flag.FlagSet, list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, err := storage.ParsePrefix(s)
		if err != nil {
			return nil, usageErr(fs, "--allow-from %q: %v", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func tokenCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var allow stringList
	fs := newFlagSet("token create", "acmebroker token create: make a registration token (shown once; only its hash is stored).",
		`acmebroker token create --max-accounts 50 --expires 720h --allow-from 10.0.0.0/8 --comment "build farm"`, stderr)
	configPath := fs.String("config", "", "the broker's config file (default: the embedded default, ./acmebroker.db)")
	maxAccounts := fs.Int("max-accounts", 0, "accounts it may register (0: no limit)")
	expires := fs.Duration("expires", 0, "valid for this long, e.g. 720h (0: never expires)")
	comment := fs.String("comment", "", "what the token is for, shown by list")
	fs.Var(&allow, "allow-from", "CIDR the token may be used from (repeatable; default anywhere)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *maxAccounts < 0 {
		return usageErr(fs, "--max-accounts must be 0 (no limit) or more")
	}
	if *expires < 0 {
		return usageErr(fs, "--expires must be a positive duration such as 720h")
	}
	prefixes, err := parsePrefixes(fs, allow)
	if err != nil {
		return err
	}
	st, err := openAdminStore(ctx, *configPath, false, stderr)
	if err != nil {
		return err
	}
	defer st.Close()

	tok, id, hash, err := secret.NewToken()
	if err != nil {
		return err
	}
	now := time.Now()
	t := storage.Token{ID: id, Hash: hash, Comment: *comment, MaxAccounts: *maxAccounts, AllowFrom: prefixes, CreatedAt: now}
	if *expires > 0 {
		t.ExpiresAt = now.Add(*expires)
	}
	if err := st.CreateToken(ctx, t); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Token %s created; it is shown once, keep it secret:\n\n  %s\n\n", id, tok)
	fmt.Fprintf(stdout, "  accounts: %s   expires: %s   from: %s\n\n", limitText(t), expiryText(t), fromText(t.AllowFrom))
	if st.cfg.API.Registration != "token" {
		fmt.Fprintf(stdout, "Note: the config has api.registration = %q; set it to \"token\" for tokens to be required.\n\n", st.cfg.API.Registration)
	}
	fmt.Fprintf(stdout, "Register with it:\n  curl -s -X POST %s/register -H \"Authorization: Bearer %s\"\n", apiURL(st.cfg), tok)
	return nil
}

func tokenList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token list", "acmebroker token list: show every registration token (never the secret).",
		"acmebroker token list -config /etc/acmebroker/config.toml", stderr)
	configPath := fs.String("config", "", "the broker's config file (default: the embedded default, ./acmebroker.db)")
	if err := parse(fs, args); err != nil {
		return err
	}
	st, err := openAdminStore(ctx, *configPath, true, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	list, err := st.Tokens(ctx)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "No tokens. Make one with: acmebroker token create")
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tACCOUNTS\tEXPIRES\tFROM\tCREATED\tCOMMENT")
	for _, t := range list {
		state := t.Usable(now)
		if state == "" {
			state = "valid"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%s\t%s\t%s\t%s\t%s\n", t.ID, state, t.Accounts, limitText(t), expiryText(t),
			fromText(t.AllowFrom), t.CreatedAt.Local().Format(time.DateTime), t.Comment)
	}
	return tw.Flush()
}

func tokenRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token revoke", "acmebroker token revoke: stop a token from registering more accounts (accounts it made stay).\n\nUsage:\n  acmebroker token revoke [-config FILE] ID",
		"acmebroker token revoke -config /etc/acmebroker/config.toml 3f9c0a1b2c4d", stderr)
	configPath := fs.String("config", "", "the broker's config file (default: the embedded default, ./acmebroker.db)")
	id, rest := leadingArg(args)
	if err := parse(fs, rest); err != nil {
		return err
	}
	if id == "" {
		return usageErr(fs, "which token? give its ID (see acmebroker token list)")
	}
	id, _, _ = strings.Cut(id, ".") // a whole token works too
	st, err := openAdminStore(ctx, *configPath, true, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.RevokeToken(ctx, id, time.Now()); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("no token %s (see acmebroker token list)", id)
		}
		return err
	}
	fmt.Fprintf(stdout, "Token %s revoked.\n", id)
	return nil
}

func accountCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var allow stringList
	fs := newFlagSet("account create", "acmebroker account create: make an account with a chosen subdomain and print its credentials (JSON, as /register).",
		"acmebroker account create --subdomain web1 --allow-from 203.0.113.7/32", stderr)
	configPath := fs.String("config", "", "the broker's config file (default: the embedded default, ./acmebroker.db)")
	sub := fs.String("subdomain", "", "the subdomain (one DNS label: letters, digits, hyphens), required")
	fs.Var(&allow, "allow-from", "CIDR the account may update from (repeatable; default anywhere)")
	if err := parse(fs, args); err != nil {
		return err
	}
	name := strings.ToLower(strings.TrimSpace(*sub))
	if name == "" {
		return usageErr(fs, "--subdomain is required, e.g. --subdomain web1")
	}
	if !storage.IsLabel(name) {
		return usageErr(fs, "--subdomain %q is not one DNS label (1-63 letters, digits and hyphens, not starting or ending with a hyphen)", *sub)
	}
	prefixes, err := parsePrefixes(fs, allow)
	if err != nil {
		return err
	}
	st, err := openAdminStore(ctx, *configPath, false, stderr)
	if err != nil {
		return err
	}
	defer st.Close()

	reg, err := st.zone.Register(ctx, zone.NewAccount{Subdomain: name, AllowFrom: prefixes})
	switch {
	case errors.Is(err, zone.ErrReserved):
		return fmt.Errorf("%v; choose another --subdomain", err)
	case errors.Is(err, storage.ErrConflict):
		return fmt.Errorf("the subdomain %s is taken; choose another --subdomain", name)
	case err != nil:
		return err
	}
	out, err := json.Marshal(api.NewRegisterResponse(reg))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", out)
	fmt.Fprintf(stderr, "Publish for each domain this account serves:\n  _acme-challenge.<domain>. CNAME %s.\nThe password is shown once.\n", reg.Fulldomain)
	return nil
}

// leadingArg splits off a positional argument given before the flags.
func leadingArg(args []string) (string, []string) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0], args[1:]
	}
	if n := len(args); n > 0 && !strings.HasPrefix(args[n-1], "-") && (n < 2 || !strings.HasPrefix(args[n-2], "-")) {
		return args[n-1], args[:n-1]
	}
	return "", args
}

func limitText(t storage.Token) string {
	if t.MaxAccounts == 0 {
		return "unlimited"
	}
	return fmt.Sprint(t.MaxAccounts)
}

func expiryText(t storage.Token) string {
	if t.ExpiresAt.IsZero() {
		return "never"
	}
	return t.ExpiresAt.Local().Format(time.DateTime)
}

func fromText(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "anywhere"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func apiURL(cfg config.Config) string {
	scheme := "http"
	if cfg.API.TLS == "cert" {
		scheme = "https"
	}
	return scheme + "://" + cfg.API.Listen + cfg.API.BasePath
}
