package cli

import (
	"bytes"
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestApplyEnv: every flag not on the command line comes from
// ACMEBROKER_<FLAG>; the command line wins, also over another name of the
// same flag; repeatable flags take commas; a bad value is a usage error
// naming the variable.
func TestApplyEnv(t *testing.T) {
	type flags struct {
		state   string
		quiet   bool
		timeout time.Duration
		list    stringList
		other   string
	}
	setup := func() (*flag.FlagSet, *flags, *bytes.Buffer) {
		var f flags
		var out bytes.Buffer
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(&out)
		fs.StringVar(&f.state, "state-dir", "default", "")
		fs.BoolVar(&f.quiet, "q", false, "")
		fs.BoolVar(&f.quiet, "quiet", false, "")
		fs.DurationVar(&f.timeout, "propagation-timeout", time.Minute, "")
		fs.Var(&f.list, "resolver", "")
		fs.StringVar(&f.other, "d", "", "")
		return fs, &f, &out
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	fs, f, _ := setup()
	err := parseEnv(fs, []string{"--quiet=false", "-d", "cli.test"}, env(map[string]string{
		"ACMEBROKER_STATE_DIR":           "/srv/acme",
		"ACMEBROKER_Q":                   "true", // --quiet was given: -q's variable does not apply
		"ACMEBROKER_PROPAGATION_TIMEOUT": "3m",
		"ACMEBROKER_RESOLVER":            "127.0.0.1:53, [::1]:53,",
		"ACMEBROKER_D":                   "env.test",
	}))
	if err != nil || f.state != "/srv/acme" || f.quiet || f.timeout != 3*time.Minute ||
		strings.Join(f.list, "|") != "127.0.0.1:53|[::1]:53" || f.other != "cli.test" {
		t.Fatalf("parseEnv: %v %+v", err, *f)
	}

	fs, f, _ = setup()
	if err := parseEnv(fs, nil, env(map[string]string{"ACMEBROKER_QUIET": "1"})); err != nil || !f.quiet {
		t.Fatalf("ACMEBROKER_QUIET=1: %v %+v", err, *f)
	}

	fs, _, out := setup()
	err = parseEnv(fs, nil, env(map[string]string{"ACMEBROKER_PROPAGATION_TIMEOUT": "soon"}))
	if err != errUsage || !strings.Contains(out.String(), `ACMEBROKER_PROPAGATION_TIMEOUT="soon" (for --propagation-timeout)`) {
		t.Fatalf("bad value: %v %q", err, out.String())
	}
}

// TestClientFlagsFromEnv: the client commands read ACMEBROKER_<FLAG>.
func TestClientFlagsFromEnv(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "from-env")
	t.Setenv("ACMEBROKER_STATE_DIR", dir)
	out, errs, code := run(t, "client", "list")
	if code != exitOK || !strings.Contains(out, "State directory: "+dir) {
		t.Fatalf("client list with ACMEBROKER_STATE_DIR: exit %d\n%s%s", code, out, errs)
	}
	if out, errs, _ := run(t, "client", "obtain", "-h"); !strings.Contains(out+errs, "ACMEBROKER_<FLAG>") {
		t.Fatal("obtain's help does not mention ACMEBROKER_<FLAG>")
	}
}

// TestObtainChecksBeforeTheCA: bad names and a bad --cert-name are usage
// errors found before anything goes to the broker or the CA (whose address
// here answers nothing: a contact would show as a connection error).
func TestObtainChecksBeforeTheCA(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	base := []string{"client", "obtain", "--state-dir", state, "--resolver", "127.0.0.1:9", "--ca", "https://127.0.0.1:9/dir"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-d", "exa mple.test"}, `"exa mple.test" is not a name a CA can issue for`},
		{[]string{"-d", "a.*.example.test"}, "a wildcard must be the whole first label"},
		{[]string{"-d", "example.test", "--cert-name", "../../etc"}, "--cert-name"},
		{[]string{"-d", "example.test", "--cert-name", ".hidden"}, "not starting with a dot"},
		{[]string{"-d", "example.test", "--key-type", "dsa"}, "--key-type"},
		{[]string{"-d", "example.test", "--challenge", "http-01"}, `challenge type "http-01" is not one of dns-01, dns-account-01, dns-persist-01`},
		{[]string{"-d", "example.test", "--persist-until", "90d"}, "--persist-until is for --challenge dns-persist-01 only"},
		{[]string{"-d", "example.test", "--challenge", "dns-persist-01", "--persist-until", "2001-01-01"}, "it is not in the future"},
		{[]string{"-d", "example.test", "--challenge", "dns-persist-01", "--persist-until", "soon"}, "give a duration such as 90d"},
	} {
		_, errs, code := run(t, append(base, tc.args...)...)
		if code != exitUsage || !strings.Contains(errs, tc.want) || strings.Contains(errs, "connect") {
			t.Errorf("obtain %v: exit %d, want 2 and %q\n%s", tc.args, code, tc.want, errs)
		}
	}
}

// TestDeleteUnknown: delete of a certificate that is not there says so.
func TestDeleteUnknown(t *testing.T) {
	state := t.TempDir()
	_, errs, code := run(t, "client", "delete", "--state-dir", state, "--cert-name", "nothing.test")
	if code != exitFailure || !strings.Contains(errs, `no certificate named "nothing.test"`) {
		t.Fatalf("exit %d %s", code, errs)
	}
	if _, errs, code := run(t, "client", "delete", "--state-dir", state); code != exitUsage || !strings.Contains(errs, "--cert-name NAME is required") {
		t.Fatalf("exit %d %s", code, errs)
	}
}

// TestPersistCommandLine: the persist group's usage errors, found before
// anything goes to the broker.
func TestPersistCommandLine(t *testing.T) {
	state := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"remove", "--state-dir", state, "--issuer", "letsencrypt.org"}, exitUsage, "--domain NAME is required"},
		{[]string{"remove", "--state-dir", state, "--domain", "example.test"}, exitUsage, "give --issuer ISSUER"},
		{[]string{"remove", "--state-dir", state, "--domain", "example.test", "--issuer", "x.test", "--all"}, exitUsage, "give --issuer ISSUER"},
		{[]string{"remove", "--state-dir", state, "--domain", "example.test", "--all"}, exitFailure, "no broker account covers example.test"},
		{[]string{"list", "--state-dir", state}, exitFailure, "no registered domain"},
	} {
		_, errs, code := run(t, append([]string{"client", "persist"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("client persist %v: exit %d, want %d and %q\n%s", tc.args, code, tc.code, tc.want, errs)
		}
	}
}
