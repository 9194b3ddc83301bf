package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/acmebroker/acmebroker/client"
)

// `client persist` is a group of its own rather than flags on revoke or
// delete: a dns-persist-01 record belongs to a broker account (one per
// registered domain, shared by every certificate under it), not to one
// certificate, and ending it is a different act from revoking a
// certificate at the CA or deleting its files. The verbs mirror the API
// (GET and DELETE /persist); obtain sets records, since only an order
// tells the CA's issuer-domain-name.

const persistUsage = `acmebroker client persist: see and remove the dns-persist-01 records the broker serves
for your broker accounts. A record authorizes one ACME account at one CA for as long as it
stands: removing it ends that authorization.

Usage:
  acmebroker client persist list   [--domain NAME ...]
  acmebroker client persist remove --domain NAME --issuer ISSUER | --all

"acmebroker client obtain --challenge dns-persist-01" sets a record; renew never writes one, so
a record you removed stays removed (renewals that relied on it then fail, saying so, until an
obtain sets one again). Run with -h after list or remove for their flags.

Examples:
  acmebroker client persist list
  acmebroker client persist remove --domain example.org --issuer letsencrypt.org
`

func clientPersist(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if done, err := subgroupHelp(args, persistUsage, stdout); done {
		return err
	}
	switch args[0] {
	case "list":
		return persistList(ctx, args[1:], stdout, stderr)
	case "remove":
		return persistRemove(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "acmebroker client persist: unknown command %q\n\n%s", args[0], persistUsage)
	return errUsage
}

// persistTarget is one broker account and the domain it is saved under.
type persistTarget struct {
	domain string
	acct   client.BrokerAccount
}

// persistTargets are the broker accounts covering domains (all of them
// when none is given), each once.
func persistTargets(st *client.State, domains []string) ([]persistTarget, error) {
	if len(domains) == 0 {
		accts, err := st.Accounts()
		if err != nil {
			return nil, err
		}
		for d := range accts {
			domains = append(domains, d)
		}
		if len(domains) == 0 {
			return nil, fmt.Errorf("no registered domain in %s: run `acmebroker client register` first", st.Dir)
		}
		slices.Sort(domains)
	}
	var out []persistTarget
	seen := map[string]bool{}
	for _, d := range domains {
		d = strings.TrimPrefix(strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), ".")), "*.")
		if err := client.CheckDomainName(d); err != nil {
			return nil, err
		}
		reg, a, err := st.AccountFor(d)
		if err != nil {
			return nil, err
		}
		if k := a.ServerURL + "\x00" + a.Username; !seen[k] {
			seen[k] = true
			out = append(out, persistTarget{domain: reg, acct: a})
		}
	}
	return out, nil
}

func persistList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common commonFlags
	var domains stringList
	fs := newFlagSetEnv("persist list", "acmebroker client persist list: show the dns-persist-01 records the broker holds for each broker account, and which ACME account of this state directory each authorizes.",
		"acmebroker client persist list --domain example.org", true, stderr)
	common.add(fs, os.Getenv)
	fs.Var(&domains, "domain", "a name whose broker account to show (repeatable; default: every registered domain)")
	fs.Var(&domains, "d", "the same as --domain")
	if err := parseEnv(fs, args, os.Getenv); err != nil {
		return err
	}
	st := common.state()
	targets, err := persistTargets(st, domains)
	if err != nil {
		return err
	}
	mine, err := st.ACMEAccounts()
	if err != nil {
		return err
	}
	whose := func(uri string) string {
		for _, a := range mine {
			if a.URL == uri {
				return "this state directory's account at " + a.Directory
			}
		}
		return "not an account of this state directory"
	}
	bc := &client.BrokerClient{}
	var errs []error
	for i, t := range targets {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "%s: broker account %s (%s); the CA finds its records through\n  %s CNAME %s\n",
			t.domain, t.acct.FullDomain, t.acct.ServerURL, client.DNSPersist01{}.CNAMEName(t.domain), strings.TrimSuffix(t.acct.FullDomain, ".")+".")
		l, err := bc.Persist(ctx, t.acct)
		if err != nil {
			fmt.Fprintf(stdout, "  could not list them: %v\n", err)
			errs = append(errs, err)
			continue
		}
		if len(l.Records) == 0 {
			fmt.Fprintln(stdout, "  no dns-persist-01 records")
			continue
		}
		for _, r := range l.Records {
			until := "no end"
			if !r.Until.IsZero() {
				until = "until " + r.Until.UTC().Format(time.RFC3339)
				if !r.Until.After(time.Now()) {
					until += " (ran out: the CA ignores it)"
				}
			}
			policy := "these names only"
			if r.Wildcard {
				policy = "policy=wildcard (wildcards and names below too)"
			}
			fmt.Fprintf(stdout, "  %s\n    account  %s (%s)\n    scope    %s, %s\n    value    %s\n",
				r.Issuer, r.AccountURI, whose(r.AccountURI), policy, until, r.Value)
		}
		fmt.Fprintf(stdout, "  to end one: %s\n", common.command("persist", "remove", "--domain", t.domain, "--issuer", l.Records[0].Issuer))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d broker accounts could not be listed (see above)", len(errs), len(targets))
	}
	return nil
}

func persistRemove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common commonFlags
	fs := newFlagSetEnv("persist remove", "acmebroker client persist remove: remove dns-persist-01 records from a broker account, which ends the authorization each gave its ACME account.",
		"acmebroker client persist remove --domain example.org --issuer letsencrypt.org", true, stderr)
	common.add(fs, os.Getenv)
	domain := fs.String("domain", "", "a name whose broker account holds the record (required)")
	fs.StringVar(domain, "d", "", "the same as --domain")
	issuer := fs.String("issuer", "", "the CA's issuer-domain-name of the record to remove, as persist list shows it")
	all := fs.Bool("all", false, "remove every record of the account")
	if err := parseEnv(fs, args, os.Getenv); err != nil {
		return err
	}
	if *domain == "" {
		return usageErr(fs, "--domain NAME is required (see acmebroker client persist list)")
	}
	if (*issuer == "") == !*all {
		return usageErr(fs, "give --issuer ISSUER (one record, as persist list shows it) or --all, one of them")
	}
	targets, err := persistTargets(common.state(), []string{*domain})
	if err != nil {
		return err
	}
	t := targets[0]
	out := common.out(stdout)
	bc := &client.BrokerClient{}
	issuers := []string{strings.ToLower(strings.TrimSuffix(strings.TrimSpace(*issuer), "."))}
	if *all {
		l, err := bc.Persist(ctx, t.acct)
		if err != nil {
			return err
		}
		issuers = issuers[:0]
		for _, r := range l.Records {
			issuers = append(issuers, r.Issuer)
		}
		if len(issuers) == 0 {
			fmt.Fprintf(out, "The broker account %s of %s holds no dns-persist-01 records: nothing to remove.\n", t.acct.FullDomain, t.domain)
			return nil
		}
	}
	var errs []error
	for _, iss := range issuers {
		l, err := bc.DeletePersist(ctx, t.acct, iss)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(out, "Removed the dns-persist-01 record of %s from %s (%d left).\n", iss, t.acct.FullDomain, len(l.Records))
	}
	if len(issuers) > len(errs) {
		fmt.Fprintln(out, "The CA refuses new validations from it once the broker's name servers stop serving it (with the next zone change, seconds).\n"+
			"A CA may still reuse an authorization it validated before, for that authorization's lifetime.")
	}
	return errors.Join(errs...)
}
