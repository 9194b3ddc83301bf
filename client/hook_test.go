package client

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const v1 = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0" // a dns-01 value (RFC 8555 example shape)
const v2 = "d4pl_-E7i4vbrMPw7rhmCH1SU3dqtx-2hnsm1IJ30j0"

func TestParseDehydrated(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		op      string
		chs     []Challenge
		wantErr string // substring; "" means success
	}{
		{"one triple", []string{"deploy_challenge", "example.test", "tok", v1}, "deploy_challenge", []Challenge{{"example.test", v1}}, ""},
		{"HOOK_CHAIN three triples", []string{"deploy_challenge", "example.test", "t1", v1, "example.test", "t2", v2, "www.example.test", "t3", v1},
			"deploy_challenge", []Challenge{{"example.test", v1}, {"example.test", v2}, {"www.example.test", v1}}, ""},
		{"clean", []string{"clean_challenge", "example.test", "tok", v1}, "clean_challenge", []Challenge{{"example.test", v1}}, ""},
		{"wildcard name", []string{"deploy_challenge", "*.example.test", "tok", v1}, "deploy_challenge", []Challenge{{"*.example.test", v1}}, ""},
		{"value starting with a dash", []string{"deploy_challenge", "example.test", "tok", "-" + v1[1:]}, "deploy_challenge", []Challenge{{"example.test", "-" + v1[1:]}}, ""},
		{"deploy_cert ignored", []string{"deploy_cert", "example.test", "/k", "/c", "/f", "/ch", "123"}, "deploy_cert", nil, ""},
		{"unknown op ignored", []string{"this_hookscript_is_broken__dehydrated_is_working_fine__please_ignore_unknown_hooks_in_your_script"}, "this_hookscript_is_broken__dehydrated_is_working_fine__please_ignore_unknown_hooks_in_your_script", nil, ""},
		{"exit_hook no args", []string{"exit_hook"}, "exit_hook", nil, ""},
		{"no op", nil, "", nil, "no operation"},
		{"empty op", []string{""}, "", nil, "no operation"},
		{"deploy without args", []string{"deploy_challenge"}, "", nil, "triples; got 0"},
		{"deploy with two args", []string{"deploy_challenge", "example.test", "tok"}, "", nil, "triples; got 2"},
		{"deploy with four args", []string{"deploy_challenge", "example.test", "tok", v1, "x"}, "", nil, "triples; got 4"},
		{"bad domain", []string{"deploy_challenge", "exa mple.test", "tok", v1}, "", nil, "domain #1"},
		{"empty domain", []string{"deploy_challenge", "", "tok", v1}, "", nil, "domain #1"},
		{"empty value", []string{"deploy_challenge", "example.test", "tok", ""}, "", nil, "token value #1 is empty"},
		{"non-base64url value", []string{"deploy_challenge", "example.test", "tok", "a b"}, "", nil, "not a dns-01 value"},
		{"second triple bad", []string{"clean_challenge", "example.test", "t", v1, "example.test", "t", "x=y"}, "", nil, "token value #2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			call, err := ParseDehydrated(tc.args)
			if tc.wantErr != "" {
				var he *HookInputError
				if err == nil || !errors.As(err, &he) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseDehydrated(%q) error = %v, want a HookInputError containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDehydrated(%q): %v", tc.args, err)
			}
			if call.Op != tc.op || !slices.Equal(call.Challenges, tc.chs) {
				t.Fatalf("ParseDehydrated(%q) = %+v, want op %s challenges %+v", tc.args, call, tc.op, tc.chs)
			}
		})
	}
}

func TestCertbotChallenge(t *testing.T) {
	for _, tc := range []struct {
		name          string
		domain, value string
		wantErr       string
	}{
		{"ok", "example.test", v1, ""},
		{"trailing dot", "example.test.", v1, ""},
		{"no domain", "", v1, "CERTBOT_DOMAIN is not set"},
		{"no value", "example.test", "", "CERTBOT_VALIDATION is not set"},
		{"bad domain", "example..test", v1, "CERTBOT_DOMAIN"},
		{"bad value", "example.test", "abc/def", "CERTBOT_VALIDATION"},
		{"long value", "example.test", strings.Repeat("a", 256), "CERTBOT_VALIDATION"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"CERTBOT_DOMAIN": tc.domain, "CERTBOT_VALIDATION": tc.value}
			c, err := CertbotChallenge(func(k string) string { return env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || c != (Challenge{tc.domain, tc.value}) {
				t.Fatalf("CertbotChallenge = %+v, %v", c, err)
			}
		})
	}
}

// FuzzParseDehydrated: arguments come from another program; whatever they
// are, parsing neither panics nor accepts a challenge it should not.
func FuzzParseDehydrated(f *testing.F) {
	f.Add("deploy_challenge\x00example.test\x00tok\x00" + v1)
	f.Add("deploy_challenge\x00example.test\x00t1\x00" + v1 + "\x00*.example.test\x00t2\x00" + v2)
	f.Add("clean_challenge\x00example.test\x00tok")
	f.Add("deploy_cert\x00example.test\x00/a\x00/b")
	f.Add("")
	f.Add("deploy_challenge\x00\x00\x00")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		call, err := ParseDehydrated(args)
		if err != nil {
			return
		}
		if call.Op != args[0] {
			t.Fatalf("op %q from %q", call.Op, args)
		}
		if call.Op != DehydratedDeploy && call.Op != DehydratedClean {
			if len(call.Challenges) != 0 {
				t.Fatalf("challenges for %q", call.Op)
			}
			return
		}
		if len(call.Challenges) == 0 || len(call.Challenges)*3 != len(args)-1 {
			t.Fatalf("%d challenges from %d args", len(call.Challenges), len(args))
		}
		for _, c := range call.Challenges {
			if c.Domain == "" || c.Value == "" || strings.ContainsAny(c.Domain+c.Value, " \n\t") || len(c.Value) > 255 {
				t.Fatalf("accepted %+v", c)
			}
		}
	})
}

func TestParseModMD(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    ModMDCall
		wantErr string // substring; "" means success
	}{
		{"setup", []string{"setup", "example.test", v1}, ModMDCall{ModMDSetup, Challenge{"example.test", v1}}, ""},
		{"setup of a wildcard's base", []string{"setup", "www.example.test", v2}, ModMDCall{ModMDSetup, Challenge{"www.example.test", v2}}, ""},
		{"teardown without the value", []string{"teardown", "example.test"}, ModMDCall{ModMDTeardown, Challenge{Domain: "example.test"}}, ""},
		{"teardown with the value (MDChallengeDns01Version 2)", []string{"teardown", "example.test", v1}, ModMDCall{ModMDTeardown, Challenge{"example.test", v1}}, ""},
		{"no op", nil, ModMDCall{}, "no operation"},
		{"unknown op", []string{"deploy", "example.test", v1}, ModMDCall{}, `unknown operation "deploy"`},
		{"setup without token", []string{"setup", "example.test"}, ModMDCall{}, "setup takes DOMAIN TOKEN; got 1"},
		{"setup with too much", []string{"setup", "example.test", v1, "x"}, ModMDCall{}, "got 3"},
		{"teardown bare", []string{"teardown"}, ModMDCall{}, "teardown takes DOMAIN [TOKEN]"},
		{"domain with a space (a split identifier)", []string{"setup", "example.test extra", v1}, ModMDCall{}, "not a domain name"},
		{"domain empty", []string{"setup", "", v1}, ModMDCall{}, "not a domain name"},
		{"value not base64url", []string{"setup", "example.test", "a;b"}, ModMDCall{}, "not a dns-01 value"},
		{"value empty", []string{"setup", "example.test", ""}, ModMDCall{}, "setup: token is empty"},
		{"teardown with a bad value", []string{"teardown", "example.test", "$(reboot)"}, ModMDCall{}, "not a dns-01 value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseModMD(tc.args)
			if tc.wantErr != "" {
				var hie *HookInputError
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &hie) {
					t.Fatalf("err %v, want a HookInputError containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseModMD(%q) = %+v, %v; want %+v", tc.args, got, err, tc.want)
			}
		})
	}
}

// FuzzParseModMD: the arguments come from mod_md, the domain from the CA;
// whatever they are, parsing neither panics nor accepts what it should not.
func FuzzParseModMD(f *testing.F) {
	f.Add("setup\x00example.test\x00" + v1)
	f.Add("teardown\x00example.test")
	f.Add("teardown\x00example.test\x00" + v2)
	f.Add("setup\x00example.test extra\x00" + v1)
	f.Add("")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		call, err := ParseModMD(args)
		if err != nil {
			if call != (ModMDCall{}) {
				t.Fatalf("a call %+v with the error %v", call, err)
			}
			return
		}
		c := call.Challenge
		switch {
		case call.Op == ModMDSetup && (len(args) != 3 || c.Value == ""):
			t.Fatalf("setup %+v from %q", c, args)
		case call.Op != ModMDSetup && call.Op != ModMDTeardown:
			t.Fatalf("op %q accepted", call.Op)
		case c.Domain == "" || strings.ContainsAny(c.Domain+c.Value, " \n\t\\;$`'\"") || len(c.Value) > 255:
			t.Fatalf("accepted %+v", c)
		}
	})
}
