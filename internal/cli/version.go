package cli

import (
	"fmt"
	"io"
)

const versionUsage = `acmebroker version: print the version of this binary (the VCS revision for a build from a checkout).

Usage:
  acmebroker version

Example:
  acmebroker version
`

func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			fmt.Fprint(stdout, versionUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "acmebroker version: unexpected argument %q\n\n%s", args[0], versionUsage)
		return exitUsage
	}
	fmt.Fprintln(stdout, "acmebroker", Version())
	return exitOK
}
