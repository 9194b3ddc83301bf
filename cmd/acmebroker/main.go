// Command acmebroker is an ACME DNS-01 challenge broker: an authoritative DNS
// server plus an acme-dns-compatible API. See `acmebroker help`.
package main

import (
	"context"
	"os"

	"github.com/acmebroker/acmebroker/internal/cli"
)

func main() {
	os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
