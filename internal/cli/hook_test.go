package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
)

const (
	hv1 = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
	hv2 = "d4pl_-E7i4vbrMPw7rhmCH1SU3dqtx-2hnsm1IJ30j0"
	hv3 = "Xa0qH8n2aTQk5h7JX4v2b4x0n8Qe6sY3m1lO9p2r5tU"
)

func runHook(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := Run(context.Background(), append([]string{"client", "hook"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

// TestHookArguments: what the hooks do with their arguments before any
// broker is involved (none runs here: a call that tried to reach one would
// fail with exit 1, not 0 or 2).
func TestHookArguments(t *testing.T) {
	state := t.TempDir() // empty: no account
	t.Setenv("CERTBOT_DOMAIN", "")
	t.Setenv("CERTBOT_VALIDATION", "")
	for _, tc := range []struct {
		name   string
		args   []string
		env    map[string]string
		code   int
		stderr string // substring of stderr
	}{
		{"no client", nil, nil, exitUsage, ""},
		{"unknown client", []string{"acme.sh"}, nil, exitUsage, `unknown ACME client "acme.sh"`},
		{"certbot without op", []string{"certbot", "--state-dir", state}, nil, exitUsage, "which hook?"},
		{"certbot unknown op", []string{"certbot", "deploy", "--state-dir", state}, nil, exitUsage, `unknown certbot hook "deploy"`},
		{"certbot extra arg", []string{"certbot", "auth", "--state-dir", state, "example.test"}, nil, exitUsage, "unexpected argument"},
		{"certbot cleanup does nothing", []string{"certbot", "cleanup", "--state-dir", state}, map[string]string{"CERTBOT_DOMAIN": "example.test", "CERTBOT_VALIDATION": hv1}, exitOK, ""},
		{"certbot cleanup without env", []string{"certbot", "cleanup"}, nil, exitOK, ""},
		{"certbot flags before op", []string{"certbot", "--state-dir", state, "cleanup"}, nil, exitOK, ""},
		{"certbot auth outside certbot", []string{"certbot", "auth", "--state-dir", state}, nil, exitUsage, "CERTBOT_DOMAIN is not set"},
		{"certbot auth without value", []string{"certbot", "auth", "--state-dir", state}, map[string]string{"CERTBOT_DOMAIN": "example.test"}, exitUsage, "CERTBOT_VALIDATION is not set"},
		{"certbot auth no account", []string{"certbot", "auth", "--state-dir", state}, map[string]string{"CERTBOT_DOMAIN": "example.test", "CERTBOT_VALIDATION": hv1}, exitFailure,
			"run `acmebroker client register --api <broker URL> --domain example.test` first"},
		{"certbot auth wildcard sub-name no account", []string{"certbot", "auth", "--state-dir", state}, map[string]string{"CERTBOT_DOMAIN": "www.example.test", "CERTBOT_VALIDATION": hv1}, exitFailure,
			filepath.Join(state, "accounts.json")},
		{"certbot bad flag", []string{"certbot", "auth", "--nope"}, nil, exitUsage, "flag provided but not defined"},
		{"dehydrated without op", []string{"dehydrated", "--state-dir", state}, nil, exitUsage, "no operation"},
		{"dehydrated startup check", []string{"dehydrated", "--state-dir", state, "this_hookscript_is_broken__dehydrated_is_working_fine__please_ignore_unknown_hooks_in_your_script"}, nil, exitOK, ""},
		{"dehydrated deploy_cert", []string{"dehydrated", "deploy_cert", "example.test", "/k", "/c", "/f", "/ch", "1700000000"}, nil, exitOK, ""},
		{"dehydrated unchanged_cert", []string{"dehydrated", "unchanged_cert", "example.test", "/k", "/c", "/f", "/ch"}, nil, exitOK, ""},
		{"dehydrated invalid_challenge", []string{"dehydrated", "invalid_challenge", "example.test", "{}"}, nil, exitOK, ""},
		{"dehydrated request_failure", []string{"dehydrated", "request_failure", "500", "err", "https://ca/x", ""}, nil, exitOK, ""},
		{"dehydrated startup_hook", []string{"dehydrated", "startup_hook"}, nil, exitOK, ""},
		{"dehydrated exit_hook", []string{"dehydrated", "exit_hook", ""}, nil, exitOK, ""},
		{"dehydrated generate_csr", []string{"dehydrated", "generate_csr", "example.test", "/d", "example.test"}, nil, exitOK, ""},
		{"dehydrated sync_cert", []string{"dehydrated", "sync_cert", "/k", "/c", "/f", "/ch", "/r"}, nil, exitOK, ""},
		{"dehydrated deploy_ocsp", []string{"dehydrated", "deploy_ocsp", "example.test", "/o", "1"}, nil, exitOK, ""},
		{"dehydrated future op", []string{"dehydrated", "some_operation_added_in_2030", "x"}, nil, exitOK, ""},
		{"dehydrated clean_challenge does nothing", []string{"dehydrated", "--state-dir", state, "clean_challenge", "example.test", "tok", hv1}, nil, exitOK, ""},
		{"dehydrated deploy bad arity", []string{"dehydrated", "deploy_challenge", "example.test", "tok"}, nil, exitUsage, "triples; got 2"},
		{"dehydrated deploy bad value", []string{"dehydrated", "deploy_challenge", "example.test", "tok", "not base64!"}, nil, exitUsage, "not a dns-01 value"},
		{"dehydrated deploy no account", []string{"dehydrated", "--state-dir", state, "deploy_challenge", "example.test", "t1", hv1, "www.example.test", "t2", hv2}, nil, exitFailure,
			"--domain example.test` first"},
		{"mod_md without op", []string{"mod_md", "--state-dir", state}, nil, exitUsage, "no operation"},
		{"mod_md unknown op", []string{"mod_md", "--state-dir", state, "deploy", "example.test", hv1}, nil, exitUsage, `unknown operation "deploy"`},
		{"mod_md setup without token", []string{"mod_md", "setup", "example.test"}, nil, exitUsage, "setup takes DOMAIN TOKEN"},
		{"mod_md setup bad token", []string{"mod_md", "setup", "example.test", "$(id)"}, nil, exitUsage, "not a dns-01 value"},
		{"mod_md setup split domain", []string{"mod_md", "setup", "example.test", "extra", hv1}, nil, exitUsage, "got 3"},
		{"mod_md teardown does nothing", []string{"mod_md", "--state-dir", state, "teardown", "example.test"}, nil, exitOK, ""},
		{"mod_md teardown with token does nothing", []string{"mod_md", "--state-dir", state, "teardown", "example.test", hv1}, nil, exitOK, ""},
		{"mod_md setup no account", []string{"mod_md", "--state-dir", state, "setup", "example.test", hv1}, nil, exitFailure, "--domain example.test` first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			out, errs, code := runHook(tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.stderr) {
				t.Fatalf("hook %q: exit %d (want %d)\nstdout: %s\nstderr: %s\nwant in stderr: %q", tc.args, code, tc.code, out, errs, tc.stderr)
			}
			if tc.code == exitOK && (out != "" || errs != "") {
				t.Fatalf("hook %q printed %q %q, want silence", tc.args, out, errs)
			}
			if strings.Contains(errs, "goroutine") {
				t.Fatal(errs)
			}
		})
	}
}

func startHookBroker(t *testing.T) broker.Ready {
	t.Helper()
	return brokertest.Start(t, brokertest.Config(t, "auth.example.test", nil))
}

func servedTXT(t *testing.T, server, name string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, server)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	return out
}

// TestHooksSetValuesOnBroker: against a real broker (API and DNS), the
// certbot hook and a chained dehydrated call set the values on the account
// that covers the names, and return only once the broker's name server
// serves them (asserted right after return, with no waiting). Bad
// credentials give the broker's 401 with what to do.
func TestHooksSetValuesOnBroker(t *testing.T) {
	b := startHookBroker(t)
	state := t.TempDir()
	_, errs, code := runHookCmd("client", "register", "--state-dir", state, "--api", b.API, "--domain", "example.test")
	if code != 0 {
		t.Fatalf("register: %s", errs)
	}
	st := &client.State{Dir: state}
	_, acct, err := st.AccountFor("example.test")
	if err != nil {
		t.Fatal(err)
	}
	common := []string{"--state-dir", state, "--nameserver", b.DNS[0], "--skip-cname-check", "--propagation-timeout", "20s"}

	t.Setenv("CERTBOT_DOMAIN", "example.test")
	t.Setenv("CERTBOT_VALIDATION", hv1)
	out, errs, code := runHook(append([]string{"certbot", "auth"}, common...)...)
	if code != 0 || !strings.Contains(out, "served by every name server") {
		t.Fatalf("certbot auth: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if got := servedTXT(t, b.DNS[0], acct.FullDomain); !slices.Contains(got, hv1) {
		t.Fatalf("after certbot auth the broker serves %q, want %s among them", got, hv1)
	}

	// dehydrated, HOOK_CHAIN=yes: apex, wildcard and www in one call, all
	// under the one account.
	args := append(append([]string{"dehydrated"}, common...), "deploy_challenge",
		"example.test", "t1", hv2, "example.test", "t2", hv3, "www.example.test", "t3", hv1)
	if _, errs, code := runHook(args...); code != 0 {
		t.Fatalf("dehydrated deploy_challenge: exit %d: %s", code, errs)
	}
	got := servedTXT(t, b.DNS[0], acct.FullDomain)
	for _, v := range []string{hv1, hv2, hv3} {
		if !slices.Contains(got, v) {
			t.Fatalf("after the chained deploy the broker serves %q, want %s among them", got, v)
		}
	}

	// mod_md: setup NAME TOKEN, flags first (mod_md appends its arguments
	// to the configured command line).
	if out, errs, code := runHook(append(append([]string{"mod_md"}, common...), "setup", "example.test", hv3)...); code != 0 || !strings.Contains(out, "served by every name server") {
		t.Fatalf("mod_md setup: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if got := servedTXT(t, b.DNS[0], acct.FullDomain); !slices.Contains(got, hv3) {
		t.Fatalf("after mod_md setup the broker serves %q, want %s among them", got, hv3)
	}

	// Wrong password: the broker's 401, explained.
	acct.Password = strings.Repeat("x", len(acct.Password))
	raw, _ := json.Marshal(map[string]client.BrokerAccount{"example.test": acct})
	if err := os.WriteFile(filepath.Join(state, "accounts.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	_, errs, code = runHook(append([]string{"certbot", "auth"}, common...)...)
	if code != exitFailure || !strings.Contains(errs, "401") || !strings.Contains(errs, "register again") {
		t.Fatalf("certbot auth with a wrong password: exit %d, stderr %s", code, errs)
	}
}

func runHookCmd(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}
