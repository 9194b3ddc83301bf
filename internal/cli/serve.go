package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/config"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path of the config file: acmebroker's TOML, or acme-dns's config.cfg unchanged (default: the embedded default: DNS 127.0.0.1:5353, API 127.0.0.1:8080, SQLite ./acmebroker.db)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `acmebroker serve: run the authoritative DNS server and the HTTP API.

Usage:
  acmebroker serve [-config FILE]

Flags:
`)
		fs.PrintDefaults()
		fmt.Fprint(stderr, `
Examples:
  acmebroker serve                                    # try it out on loopback with the embedded default
  acmebroker serve -config /etc/acmebroker/config.toml
  acmebroker serve -config /etc/acme-dns/config.cfg   # acme-dns's file, unchanged; unmapped keys are warned about
`)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "acmebroker serve: unexpected argument %q (the config file goes after -config)\n", fs.Arg(0))
		return exitUsage
	}

	cfg := config.Default()
	if *configPath != "" {
		var err error
		if cfg, err = config.Load(*configPath); err != nil {
			fmt.Fprintf(stderr, "acmebroker: %v\n", err)
			return exitUsage
		}
	} else if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "acmebroker: embedded default config: %v\n", err)
		return exitFailure
	}
	logger := newLogger(cfg.Log, stderr)
	for _, n := range cfg.Notes { // an acme-dns config.cfg: what was not mapped
		logger.Warn("acme-dns config", "key", n.Key, "detail", n.Text)
	}

	sigCtx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal a second one stops the process at once
	// instead of waiting for the graceful shutdown: the broker is told to
	// stop only once the default action of the signals is back, so that no
	// second signal can arrive in between and be swallowed.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	go func() { <-sigCtx.Done(); stop(); cancelRun() }()

	// SIGHUP re-reads the API's certificate files (tls = "cert") or
	// re-checks its ACME certificate (tls = "acme"), once serving.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	err := broker.Run(runCtx, cfg, logger, func(r broker.Ready) {
		printBanner(stdout, cfg, r, *configPath == "")
		go func() {
			for {
				select {
				case <-runCtx.Done():
					return
				case <-hup:
					logger.Info("SIGHUP: reloading the API's certificate")
					r.Reload()
				}
			}
		}()
	})
	if err != nil {
		fmt.Fprintf(stderr, "acmebroker: %v\n", err)
		var ce *broker.ConfigError
		if errors.As(err, &ce) {
			return exitUsage
		}
		return exitFailure
	}
	return exitOK
}

func printBanner(w io.Writer, cfg config.Config, r broker.Ready, embedded bool) {
	fmt.Fprintf(w, "acmebroker %s: authoritative for %s\n", Version(), cfg.DNS.Zone)
	for _, a := range r.DNS {
		fmt.Fprintf(w, "  DNS      %s (udp+tcp)\n", a)
	}
	if r.Metrics != "" {
		fmt.Fprintf(w, "  metrics  %s\n", r.Metrics)
	}
	fmt.Fprintf(w, "  API      %s\n", r.API)
	if cfg.API.TLS == "acme" {
		fmt.Fprintf(w, "           (HTTPS once the certificate for %s is obtained from %s; the log says when)\n", strings.Join(cfg.API.ACME.Names, ", "), cfg.API.ACME.Directory)
	}
	fmt.Fprintf(w, "  storage  %s %s (%d accounts)\n", cfg.Storage.Engine, cfg.Storage.RedactedDSN(), r.Accounts)
	if embedded {
		fmt.Fprintln(w, "  config   embedded default (run with -config config.toml for your own)")
	}
	host, port, _ := net.SplitHostPort(r.DNS[0])
	fmt.Fprintf(w, `
Try it:
  curl -s -X POST %[1]s/register
  curl -s -X POST %[1]s/update -H "X-Api-User: <username>" -H "X-Api-Key: <password>" \
       -d '{"subdomain": "<subdomain>", "txt": "___validation_token_received_from_the_ca___"}'
  dig @%[2]s -p %[3]s <subdomain>.%[4]s TXT
Then point your domain at it: _acme-challenge.example.com. CNAME <subdomain>.%[4]s.
`, r.API, host, port, cfg.DNS.Zone)
}
