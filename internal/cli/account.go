package cli

// The admin's account commands: list, show, delete, disable, enable and
// prune. They work on the database named in the config, offline or beside
// a running broker (see docs/operations.md on what a running broker sees).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/acmebroker/acmebroker/storage"
)

const configFlagHelp = "the broker's config file (default: the embedded default, ./acmebroker.db)"

// findAccount returns the account whose subdomain or username is ref, with
// its use. Both are looked up through an index.
func findAccount(ctx context.Context, st *adminStore, ref string) (storage.AccountInfo, error) {
	ref = strings.TrimSpace(ref)
	if u, err := uuid.Parse(ref); err == nil {
		a, err := st.Account(ctx, u.String())
		switch {
		case err == nil:
			return st.AccountBySubdomain(ctx, a.Subdomain)
		case !errors.Is(err, storage.ErrNotFound):
			return storage.AccountInfo{}, err
		}
		// Not a username: registered subdomains are UUIDs too.
	}
	ai, err := st.AccountBySubdomain(ctx, strings.ToLower(ref))
	if !errors.Is(err, storage.ErrNotFound) {
		return ai, err
	}
	return storage.AccountInfo{}, fmt.Errorf("no account has the subdomain or username %q (see acmebroker account list): %w", ref, storage.ErrNotFound)
}

// accountRef parses the flags of a command that names one account.
func accountRef(name, synopsis, example string, args []string, stderr io.Writer) (ref, configPath string, err error) {
	fs := newFlagSet("account "+name, synopsis, example, stderr)
	cfg := fs.String("config", "", configFlagHelp)
	ref, rest := leadingArg(args)
	if err := parse(fs, rest); err != nil {
		return "", "", err
	}
	if ref == "" {
		return "", "", usageErr(fs, "which account? give its subdomain or username (see acmebroker account list)")
	}
	return ref, *cfg, nil
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format(time.DateTime)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// accountJSON is one account in `account list --json` (never the key hash).
type accountJSON struct {
	Subdomain  string     `json:"subdomain"`
	Username   string     `json:"username"`
	Created    time.Time  `json:"created"`
	LastUpdate *time.Time `json:"last_update"` // null: never updated
	Values     int        `json:"values"`
	Persist    int        `json:"persist"` // dns-persist-01 records
	AllowFrom  []string   `json:"allowfrom"`
	Disabled   bool       `json:"disabled"`
}

func toJSON(ai storage.AccountInfo) accountJSON {
	j := accountJSON{Subdomain: ai.Subdomain, Username: ai.Username, Created: ai.CreatedAt.UTC(),
		Values: ai.Values, Persist: ai.Persist, AllowFrom: make([]string, len(ai.AllowFrom)), Disabled: ai.Disabled}
	for i, p := range ai.AllowFrom {
		j.AllowFrom[i] = p.String()
	}
	if !ai.LastUpdate.IsZero() {
		t := ai.LastUpdate.UTC()
		j.LastUpdate = &t
	}
	return j
}

// listRow has fixed column widths: a tabwriter would hold the whole list in
// memory to align it, and the list may have a million rows.
const listRow = "%-36s  %-36s  %-19s  %-19s  %6v  %-8s  %s\n"

func accountList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("account list", "acmebroker account list: every account with its use (in subdomain order; never a key).",
		"acmebroker account list -config /etc/acmebroker/config.toml --json | jq '.[] | select(.values == 0)'", stderr)
	configPath := fs.String("config", "", configFlagHelp)
	asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	st, err := openAdminStore(ctx, *configPath, true, stderr)
	if err != nil {
		return err
	}
	defer st.Close()

	w := bufio.NewWriter(stdout)
	n := 0
	var walkErr error
	if *asJSON {
		enc := json.NewEncoder(w)
		fmt.Fprint(w, "[")
		walkErr = st.Accounts(ctx, func(ai storage.AccountInfo) error {
			if n > 0 {
				fmt.Fprint(w, ",")
			}
			n++
			return enc.Encode(toJSON(ai))
		})
		fmt.Fprintln(w, "]")
	} else {
		walkErr = st.Accounts(ctx, func(ai storage.AccountInfo) error {
			if n == 0 {
				fmt.Fprintf(w, listRow, "SUBDOMAIN", "USERNAME", "CREATED", "LAST UPDATE", "VALUES", "DISABLED", "ALLOWFROM")
			}
			n++
			_, err := fmt.Fprintf(w, listRow, ai.Subdomain, ai.Username, timeText(ai.CreatedAt), timeText(ai.LastUpdate),
				ai.Values, yesNo(ai.Disabled), fromText(ai.AllowFrom))
			return err
		})
		if walkErr == nil && n == 0 {
			fmt.Fprintln(w, "No accounts. Make one with: acmebroker account create --subdomain NAME (or POST /register)")
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return walkErr
}

// onAccount parses the command line of a command that names one account,
// opens the store, finds the account and calls fn with them.
func onAccount(ctx context.Context, name, synopsis, example string, args []string, stderr io.Writer,
	fn func(st *adminStore, ai storage.AccountInfo) error) error {
	ref, cfgPath, err := accountRef(name, synopsis, example, args, stderr)
	if err != nil {
		return err
	}
	st, err := openAdminStore(ctx, cfgPath, true, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	ai, err := findAccount(ctx, st, ref)
	if err != nil {
		return err
	}
	return fn(st, ai)
}

func accountShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return onAccount(ctx, "show", "acmebroker account show: one account, its use and the TXT values it has (never its key).",
		"acmebroker account show -config /etc/acmebroker/config.toml web1", args, stderr,
		func(st *adminStore, ai storage.AccountInfo) error {
			sub, _, err := st.Subdomain(ctx, ai.Subdomain)
			if err != nil {
				return err
			}
			w := bufio.NewWriter(stdout)
			fmt.Fprintf(w, "subdomain:    %s\n", ai.Subdomain)
			fmt.Fprintf(w, "fulldomain:   %s.%s\n", ai.Subdomain, st.cfg.DNS.Zone)
			fmt.Fprintf(w, "username:     %s\n", ai.Username)
			fmt.Fprintf(w, "created:      %s\n", timeText(ai.CreatedAt))
			fmt.Fprintf(w, "last update:  %s\n", timeText(ai.LastUpdate))
			fmt.Fprintf(w, "allowfrom:    %s\n", fromText(ai.AllowFrom))
			fmt.Fprintf(w, "disabled:     %s\n", yesNo(ai.Disabled))
			fmt.Fprintf(w, "values:       %d\n", len(sub.Records))
			for _, r := range sub.Records {
				fmt.Fprintf(w, "  %s  %s\n", r.Value, timeText(r.UpdatedAt))
			}
			fmt.Fprintf(w, "persist:      %d\n", len(sub.Persist))
			for _, p := range sub.Persist {
				fmt.Fprintf(w, "  %s  set %s\n", p.Value(), timeText(p.SetAt))
			}
			return w.Flush()
		})
}

func accountDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return onAccount(ctx, "delete", "acmebroker account delete: remove an account and its TXT values, without asking.",
		"acmebroker account delete -config /etc/acmebroker/config.toml web1", args, stderr,
		func(st *adminStore, ai storage.AccountInfo) error {
			if err := st.zone.Delete(ctx, ai.Account); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Deleted account %s (username %s) and its %d TXT value(s).\n", ai.Subdomain, ai.Username, ai.Values)
			if ai.Persist > 0 {
				fmt.Fprintf(stdout, "Its %d dns-persist-01 record(s) went with it: CAs no longer find them.\n", ai.Persist)
			}
			fmt.Fprintf(stdout, "A running broker stops answering for %s.%s within a second.\n", ai.Subdomain, st.cfg.DNS.Zone)
			return nil
		})
}

func accountDisable(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return setDisabled(ctx, args, stdout, stderr, true)
}

func accountEnable(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return setDisabled(ctx, args, stdout, stderr, false)
}

func setDisabled(ctx context.Context, args []string, stdout, stderr io.Writer, disable bool) error {
	name, synopsis := "enable", "acmebroker account enable: let a disabled account use the API again."
	if disable {
		name, synopsis = "disable", "acmebroker account disable: refuse an account's credentials (401) until it is enabled; its values stay served until they age out."
	}
	return onAccount(ctx, name, synopsis, "acmebroker account "+name+" -config /etc/acmebroker/config.toml web1", args, stderr,
		func(st *adminStore, ai storage.AccountInfo) error {
			if err := st.SetDisabled(ctx, ai.Username, disable); err != nil {
				return err
			}
			was := ""
			if ai.Disabled == disable {
				was = " (it already was)"
			}
			fmt.Fprintf(stdout, "Account %s (username %s) %sd%s; a running broker applies it to the next request.\n", ai.Subdomain, ai.Username, name, was)
			return nil
		})
}

func accountPrune(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("account prune", "acmebroker account prune: delete the accounts (and their values) not updated for a while; an account never updated counts from its creation.",
		"acmebroker account prune -config /etc/acmebroker/config.toml --unused-for 2160h --dry-run", stderr)
	configPath := fs.String("config", "", configFlagHelp)
	unused := fs.Duration("unused-for", 0, "delete accounts with no update for this long, e.g. 2160h (90 days); required")
	dryRun := fs.Bool("dry-run", false, "only print what would be deleted")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *unused <= 0 {
		return usageErr(fs, "--unused-for is required and must be positive, e.g. --unused-for 2160h (90 days)")
	}
	st, err := openAdminStore(ctx, *configPath, true, stderr)
	if err != nil {
		return err
	}
	defer st.Close()

	// Accounts' callback must not write, so collect first. Only the names
	// are held: a few dozen bytes per stale account.
	type stale struct {
		username, subdomain string
		last                time.Time
		values              int
	}
	now := time.Now()
	cutoff := now.Add(-*unused)
	var list []stale
	total, persist := 0, 0
	if err := st.Accounts(ctx, func(ai storage.AccountInfo) error {
		total++
		if ai.Persist > 0 {
			// Its dns-persist-01 records authorize issuance with no
			// update at all: in use however long ago it wrote.
			persist++
			return nil
		}
		last := ai.LastUpdate
		if last.IsZero() {
			last = ai.CreatedAt
		}
		if !last.After(cutoff) {
			list = append(list, stale{ai.Username, ai.Subdomain, last, ai.Values})
		}
		return nil
	}); err != nil {
		return err
	}
	verb := "deleted"
	if *dryRun {
		verb = "would delete"
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	deleted := 0
	for _, s := range list {
		if !*dryRun {
			// Checked again with the delete: an account updated since it
			// was listed stays.
			if err := st.zone.DeleteUnused(ctx, storage.Account{Username: s.username, Subdomain: s.subdomain}, cutoff); err != nil {
				if errors.Is(err, storage.ErrNotFound) {
					continue // gone meanwhile (DELETE /account)
				}
				if errors.Is(err, storage.ErrInUse) {
					fmt.Fprintf(w, "kept %s (username %s): updated (or given a persist record) while prune ran\n", s.subdomain, s.username)
					continue
				}
				fmt.Fprintf(w, "%d of %d stale accounts deleted before the error.\n", deleted, len(list))
				return err
			}
		}
		deleted++
		fmt.Fprintf(w, "%s %s (username %s, last used %s, %d value(s))\n", verb, s.subdomain, s.username, timeText(s.last), s.values)
	}
	if persist > 0 {
		fmt.Fprintf(w, "%d account(s) holding dns-persist-01 records kept whatever their last update (remove the records to let them age).\n", persist)
	}
	if *dryRun {
		fmt.Fprintf(w, "%d of %d accounts not updated for %s would be deleted (dry run: nothing changed).\n", deleted, total, *unused)
	} else {
		fmt.Fprintf(w, "%d of %d accounts not updated for %s deleted.\n", deleted, total, *unused)
	}
	return w.Flush()
}
