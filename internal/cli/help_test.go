package cli

import (
	"regexp"
	"strings"
	"testing"
)

// commandLine finds the commands a group's usage lists: "  acmebroker client register ...".
var commandLine = regexp.MustCompile(`(?m)^  acmebroker (\w+) ([a-z][\w-]*)`)

// TestHelpTexts: "acmebroker --help", every group's help and every
// command's -h read well on their own: a first line "acmebroker X: what it
// is for", a Usage section, the flags when there are any, and an example.
// Commands are found in the groups' usage texts, so a new command is
// checked without changing this test.
func TestHelpTexts(t *testing.T) {
	type helpCase struct{ args []string }
	cases := []helpCase{{[]string{"--help"}}, {[]string{"help"}}, {[]string{"serve", "-h"}}, {[]string{"version", "-h"}}}
	top, _, _ := run(t, "help")
	groups := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  acmebroker (\w+)`).FindAllStringSubmatch(top, -1) {
		switch m[1] {
		case "client", "token", "account", "import", "dnssec":
			groups[m[1]] = true
		}
	}
	if len(groups) < 5 {
		t.Fatalf("the top help lists groups %v, want client, token, account, import and dnssec", groups)
	}
	for g := range groups {
		cases = append(cases, helpCase{[]string{g, "help"}}, helpCase{[]string{g, "-h"}})
		gh, _, _ := run(t, g, "help")
		n := 0
		seen := map[string]bool{}
		for _, m := range commandLine.FindAllStringSubmatch(gh, -1) {
			if m[1] != g || seen[m[2]] {
				continue
			}
			seen[m[2]] = true
			cases = append(cases, helpCase{[]string{g, m[2], "-h"}})
			n++
		}
		if n == 0 {
			t.Errorf("%s help lists no command", g)
		}
	}
	purpose := regexp.MustCompile(`^acmebroker( [\w-]+)*: \S+( \S+){2,}`)
	for _, c := range cases {
		name := strings.Join(c.args, " ")
		t.Run(name, func(t *testing.T) {
			out, errs, code := run(t, c.args...)
			text := out + errs
			if code != exitOK {
				t.Fatalf("exit %d, want 0\n%s", code, text)
			}
			first, _, _ := strings.Cut(text, "\n")
			if !purpose.MatchString(first) {
				t.Errorf("first line %q is not \"acmebroker CMD: what it is for\"", first)
			}
			if !strings.Contains(text, "\nUsage:\n  acmebroker") {
				t.Errorf("no Usage section:\n%s", text)
			}
			if !regexp.MustCompile(`\nExamples?( \([^)]*\))?:\n(  #[^\n]*\n)*  [a-z]\S* `).MatchString(text) {
				t.Errorf("no example:\n%s", text)
			}
			if strings.Contains(text, "\n  -") && !strings.Contains(text, "\nFlags:\n") {
				t.Errorf("flags without a Flags heading:\n%s", text)
			}
			for _, l := range strings.Split(text, "\n") {
				// flag.PrintDefaults turns `quoted` words into the
				// argument name; that garbles the flag line.
				if strings.HasPrefix(strings.TrimSpace(l), "-") && strings.Contains(l, " acmebroker") {
					t.Errorf("garbled flag line %q", l)
				}
			}
		})
	}
}
