package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/acmebroker/acmebroker/client"
)

const hookUsage = `acmebroker client hook: answer the dns-01 challenges of certbot, dehydrated or Apache
mod_md through the broker accounts saved by "acmebroker client register".

Usage:
  acmebroker client hook certbot auth|cleanup [flags]
  acmebroker client hook dehydrated [flags] OPERATION ARGS...
  acmebroker client hook mod_md [flags] setup|teardown NAME [TOKEN]

The auth, deploy_challenge and setup steps set the values on the broker and return once
every authoritative name server of the broker zone serves them. Cleaning up does nothing:
old values age out of the broker's window by themselves.

Flags (all): --state-dir DIR, --resolver HOST:PORT, --nameserver HOST:PORT,
--propagation-timeout DURATION, --skip-cname-check. Run with -h after certbot, dehydrated
or mod_md for details.

Examples:
  certbot certonly --manual --preferred-challenges dns \
    --manual-auth-hook 'acmebroker client hook certbot auth' \
    --manual-cleanup-hook 'acmebroker client hook certbot cleanup' \
    -d example.org -d '*.example.org'

  # dehydrated calls HOOK without arguments of our own: use a two-line script.
  printf '#!/bin/sh\nexec acmebroker client hook dehydrated "$@"\n' > /etc/dehydrated/acmebroker-hook
  chmod +x /etc/dehydrated/acmebroker-hook
  # config: CHALLENGETYPE=dns-01 HOOK=/etc/dehydrated/acmebroker-hook HOOK_CHAIN=yes

  # Apache: mod_md appends "setup NAME TOKEN" / "teardown NAME" to the line as it is (no
  # quotes around it); the state directory must be readable by Apache's user.
  MDChallengeDns01 /usr/bin/acmebroker client hook mod_md --state-dir /etc/apache2/acmebroker
`

// hookFlags are the flags of both hooks.
type hookFlags struct {
	common    commonFlags
	timeout   time.Duration
	skipCNAME bool
}

func (h *hookFlags) add(fs *flag.FlagSet) {
	h.common.add(fs, os.Getenv)
	fs.DurationVar(&h.timeout, "propagation-timeout", 2*time.Minute, "how long to wait for the broker's name servers to serve the values")
	fs.BoolVar(&h.skipCNAME, "skip-cname-check", false, "do not check the _acme-challenge CNAMEs through recursive DNS first")
}

// hook makes the client.Hook; its progress lines go to out (stdout: certbot
// shows a hook's stderr as "error output").
func (h *hookFlags) hook(out io.Writer) *client.Hook {
	return &client.Hook{
		State:              &client.State{Dir: h.common.stateDir},
		Broker:             &client.BrokerClient{},
		Checker:            h.common.checker(h.common.out(out)),
		PropagationTimeout: h.timeout,
		CheckCNAME:         !h.skipCNAME,
		Log:                h.common.out(out),
	}
}

// subgroupHelp prints usage when a command with words of its own (client
// hook, client persist) is given none or asked for help; its error is what
// the command returns then (usage without words, flag.ErrHelp for help).
func subgroupHelp(args []string, usage string, stdout io.Writer) (bool, error) {
	if len(args) > 0 && args[0] != "-h" && args[0] != "--help" && args[0] != "help" {
		return false, nil
	}
	fmt.Fprint(stdout, usage)
	if len(args) == 0 {
		return true, errUsage
	}
	return true, flag.ErrHelp
}

func clientHook(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if done, err := subgroupHelp(args, hookUsage, stdout); done {
		return err
	}
	switch args[0] {
	case "certbot":
		return hookCertbot(ctx, args[1:], os.Getenv, stdout, stderr)
	case "dehydrated":
		return hookDehydrated(ctx, args[1:], stdout, stderr)
	case "mod_md", "modmd", "apache":
		return hookModMD(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "unknown ACME client %q: the hooks are for certbot, dehydrated and mod_md (lego, acme.sh and CertMagic speak the broker's API themselves)\n\n%s", args[0], hookUsage)
	return errUsage
}

// hookCertbot: `hook certbot auth|cleanup [flags]` (flags before the
// operation work too).
func hookCertbot(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var hf hookFlags
	fs := newFlagSet("hook certbot", "acmebroker client hook certbot auth|cleanup: certbot's --manual-auth-hook and --manual-cleanup-hook for dns-01.",
		"certbot certonly --manual --preferred-challenges dns --manual-auth-hook 'acmebroker client hook certbot auth' --manual-cleanup-hook 'acmebroker client hook certbot cleanup' -d example.org -d '*.example.org'", stderr)
	hf.add(fs)
	op := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		op, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if err := applyEnv(fs, getenv); err != nil {
		return err
	}
	rest := fs.Args()
	if op == "" && len(rest) > 0 {
		op, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return usageErr(fs, "unexpected argument %q: certbot passes the challenge in CERTBOT_DOMAIN and CERTBOT_VALIDATION", rest[0])
	}
	switch op {
	case "auth":
	case "cleanup":
		// Nothing to remove: the broker keeps a short window of values per
		// account, and old ones age out.
		return nil
	case "":
		return usageErr(fs, "which hook? use `acmebroker client hook certbot auth` as --manual-auth-hook and `... cleanup` as --manual-cleanup-hook")
	default:
		return usageErr(fs, "unknown certbot hook %q: use auth (--manual-auth-hook) or cleanup (--manual-cleanup-hook)", op)
	}
	c, err := client.CertbotChallenge(getenv)
	if err != nil {
		return usageErr(fs, "%v", err)
	}
	return hf.hook(stdout).Deploy(ctx, []client.Challenge{c})
}

// hookDehydrated: `hook dehydrated [flags] OPERATION ARGS...`. Everything from
// the operation on is dehydrated's; flags go before it.
func hookDehydrated(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var hf hookFlags
	fs := newFlagSet("hook dehydrated", "acmebroker client hook dehydrated: dehydrated's HOOK for CHALLENGETYPE=dns-01 (HOOK_CHAIN=yes or no). Flags go before the operation.",
		"acmebroker client hook dehydrated deploy_challenge example.org TOKEN_FILENAME TOKEN_VALUE", stderr)
	hf.add(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if err := applyEnv(fs, os.Getenv); err != nil {
		return err
	}
	call, err := client.ParseDehydrated(fs.Args())
	if err != nil {
		return usageErr(fs, "%v", err)
	}
	if call.Op != client.DehydratedDeploy {
		// clean_challenge: values age out of the broker's window. Every
		// other operation (deploy_cert, startup_hook, ones added later) is
		// not ours: dehydrated wants unknown operations ignored, silently.
		return nil
	}
	return hf.hook(stdout).Deploy(ctx, call.Challenges)
}

// hookModMD: `hook mod_md [flags] setup|teardown NAME [TOKEN]`, the program
// of Apache mod_md's MDChallengeDns01. mod_md appends the operation and its
// arguments to the configured command line, so flags go before them. It
// runs no shell: the name and token stay arguments.
func hookModMD(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var hf hookFlags
	fs := newFlagSet("hook mod_md", "acmebroker client hook mod_md: the program of Apache mod_md's MDChallengeDns01. Flags go before the operation.",
		"MDChallengeDns01 /usr/bin/acmebroker client hook mod_md --state-dir /etc/apache2/acmebroker   (no quotes: mod_md appends setup NAME TOKEN)", stderr)
	hf.add(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	call, err := client.ParseModMD(fs.Args())
	if err != nil {
		return usageErr(fs, "%v", err)
	}
	if call.Op == client.ModMDTeardown {
		// Values age out of the broker's window by themselves.
		return nil
	}
	return hf.hook(stdout).Deploy(ctx, []client.Challenge{call.Challenge})
}
