package cli

// Flag helpers shared by every command: flag sets whose help reads the same
// everywhere, repeatable flags, usage errors, and (for the client commands)
// every flag also from an environment variable ACMEBROKER_<FLAG>, lego's
// convention, so cron jobs and containers need no long command lines.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
)

// errUsage marks a bad command line: the command exits 2.
var errUsage = errors.New("usage")

// stringList is a repeatable flag (-d a -d b). From the environment it
// takes a comma-separated list.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// envNote ends the help of a command whose flags may come from the
// environment.
const envNote = "\nEvery flag can also be set in the environment as ACMEBROKER_<FLAG>, upper case with\n" +
	"dashes as underscores (--state-dir: ACMEBROKER_STATE_DIR, -d: ACMEBROKER_D); repeatable\n" +
	"flags take a comma-separated list. The command line wins.\n"

func newFlagSet(name, synopsis, example string, stderr io.Writer) *flag.FlagSet {
	return newFlagSetEnv(name, synopsis, example, false, stderr)
}

// newFlagSetEnv is newFlagSet; env says the help mentions ACMEBROKER_<FLAG>.
func newFlagSetEnv(name, synopsis, example string, env bool, stderr io.Writer) *flag.FlagSet {
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
			if env {
				fmt.Fprint(stderr, envNote)
			}
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

// parseEnv is parse, then every flag not on the command line from
// ACMEBROKER_<FLAG> when set.
func parseEnv(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	return applyEnv(fs, getenv)
}

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return "ACMEBROKER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag that the command line left alone (nor any
// other name of the same flag, such as -q for --quiet) from its
// environment variable, if that is set and not empty.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	// Two names of one flag share its variable: compare the pointers.
	var given []uintptr
	ptr := func(v flag.Value) uintptr {
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer {
			return rv.Pointer()
		}
		return 0
	}
	fs.Visit(func(f *flag.Flag) { given = append(given, ptr(f.Value)) })
	isGiven := func(v flag.Value) bool {
		p := ptr(v)
		return p != 0 && slices.Contains(given, p)
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		key := envName(f.Name)
		v := strings.TrimSpace(getenv(key))
		if v == "" || isGiven(f.Value) {
			return
		}
		given = append(given, ptr(f.Value)) // an alias's variable is not applied twice
		if l, ok := f.Value.(*stringList); ok {
			for _, part := range strings.Split(v, ",") {
				if part = strings.TrimSpace(part); part != "" {
					_ = l.Set(part)
				}
			}
			return
		}
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q (for --%s): %v", key, v, f.Name, err))
		}
	})
	if len(errs) > 0 {
		fmt.Fprintln(fs.Output(), errors.Join(errs...))
		return errUsage
	}
	return nil
}

func usageErr(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), format+"\n", args...)
	return errUsage
}
