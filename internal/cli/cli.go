// Package cli implements acmebroker's command line: subcommands, flags,
// wiring of the packages, and signal handling. Run returns the process exit
// code so it can be tested without exiting.
package cli

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // something failed at run time
	exitUsage   = 2 // bad command line or configuration
)

const usage = `acmebroker: an ACME DNS-01 challenge broker (acme-dns compatible).

Usage:
  acmebroker serve [-config FILE]   run the DNS server and the HTTP API (config.toml, or acme-dns's config.cfg)
  acmebroker import acme-dns        copy accounts and TXT values from acme-dns (see "acmebroker import help")
  acmebroker client COMMAND         get and renew certificates through a broker (see "acmebroker client help")
  acmebroker token COMMAND          registration tokens: create, list, revoke (see "acmebroker token help")
  acmebroker account COMMAND        accounts: create, list, show, delete, disable, enable, prune (see "acmebroker account help")
  acmebroker dnssec COMMAND         DNSSEC keys: ds, status, rollover (see "acmebroker dnssec help")
  acmebroker version                print the version
  acmebroker help                   show this help

Run "acmebroker COMMAND -h" for the flags of a command and their defaults.

Examples:
  acmebroker serve -config /etc/acmebroker/config.toml
  acmebroker import acme-dns --from /var/lib/acme-dns/acme-dns.db -config /etc/acme-dns/config.cfg --dry-run
`

// Run runs the command line args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "client":
		return runClient(ctx, args[1:], stdout, stderr)
	case "token":
		return runToken(ctx, args[1:], stdout, stderr)
	case "account":
		return runAccount(ctx, args[1:], stdout, stderr)
	case "import":
		return runImport(ctx, args[1:], stdout, stderr)
	case "dnssec":
		return runDNSSEC(ctx, args[1:], stdout, stderr)
	case "version", "-version", "--version":
		return runVersion(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "acmebroker: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}

// Version is the module version, or the VCS revision for a build from a
// checkout.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if (v == "" || v == "(devel)") && rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		return "dev-" + rev + dirty
	}
	if v == "" {
		v = "(devel)"
	}
	return strings.TrimSpace(v)
}
