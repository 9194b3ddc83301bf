// Package docs holds no code: its tests keep the documentation true to the
// program. They fail when a configuration key is missing from
// configuration.md (or documented but gone), when a command or flag the
// docs show does not exist, when a TOML example uses a key that does not,
// when a relative link or anchor leads nowhere, and when the systemd units
// share a state directory.
package docs

import (
	"bytes"
	"context"
	"encoding"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/acmebroker/acmebroker/internal/cli"
	"github.com/acmebroker/acmebroker/internal/config"
)

// pages are the documentation files checked: the README and docs/*.md.
func pages(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join("..", "README.md"))
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = string(b)
	}
	if len(out) < 10 {
		t.Fatalf("found only %d pages: %v", len(out), files)
	}
	return out
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// configKeys lists every key config.Config accepts, as the TOML decoder
// names them (dns.rrl.slip; dns.transfer.keys.name for the fields of an
// array of tables), from the struct's toml tags: the program's own list.
func configKeys(typ reflect.Type, prefix string) []string {
	var keys []string
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		ft := typ.Field(i).Type
		key := prefix + name
		switch {
		case ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(textUnmarshaler):
			keys = append(keys, configKeys(ft, key+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, key)
			keys = append(keys, configKeys(ft.Elem(), key+".")...)
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

// documentedKey is a row of configuration.md's key table: | `dns.zone` | ...
var documentedKey = regexp.MustCompile("(?m)^\\| `([a-z0-9_.]+)` \\|")

// TestConfigKeysDocumented: every key the program accepts, and so every key
// config.toml sets or shows commented out, has a row in configuration.md,
// and every row is a key the program accepts.
func TestConfigKeysDocumented(t *testing.T) {
	b, err := os.ReadFile("configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range documentedKey.FindAllStringSubmatch(string(b), -1) {
		if documented[m[1]] {
			t.Errorf("configuration.md documents %s twice", m[1])
		}
		documented[m[1]] = true
	}
	keys := configKeys(reflect.TypeFor[config.Config](), "")
	if len(keys) < 50 {
		t.Fatalf("found only %d config keys: %v", len(keys), keys)
	}
	for _, k := range keys {
		if !documented[k] {
			t.Errorf("config key %s has no row in docs/configuration.md (| `%s` | default | meaning |)", k, k)
		}
	}
	for k := range documented {
		if !slices.Contains(keys, k) {
			t.Errorf("docs/configuration.md documents %s, which the program does not accept", k)
		}
	}

	// config.toml: every key it sets is one of those (it loads as is).
	example, err := os.ReadFile(filepath.Join("..", "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var any map[string]any
	md, err := toml.NewDecoder(bytes.NewReader(example)).Decode(&any)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range md.Keys() {
		if md.Type(k...) == "Hash" {
			continue // a table header such as [dns.rrl]
		}
		if key := k.String(); !documented[key] {
			t.Errorf("config.toml sets %s, which docs/configuration.md does not document", key)
		}
	}
	if _, err := config.Load(filepath.Join("..", "config.toml")); err != nil {
		t.Errorf("config.toml does not load: %v", err)
	}
}

// fence finds fenced code blocks; span finds inline code.
var (
	fence = regexp.MustCompile("(?ms)^\\s*```[^\\n]*\\n(.*?)^\\s*```")
	span  = regexp.MustCompile("`([^`\\n]+)`")
	word  = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`) // mod_md has an underscore
	// invocation is "acmebroker" where a command starts: at the start of a
	// line (or of a comment), after a shell operator or quote, after exec or
	// sudo, or as a path's last part; not in prose or as an argument. Group
	// 1 is the quote it starts after, if any; group 2 the rest of the line.
	invocation = regexp.MustCompile(`(?:^[\s#]*|[;|&(=]\s*|(['"])\s*|\bexec\s+|\bsudo\s+|/)acmebroker( .*)?$`)
)

// command is one command line the docs show: the words after "acmebroker"
// up to the first flag or argument, and the flags given to it.
type command struct {
	words, flags []string
}

// commands lists the command lines a page shows in code blocks and inline
// code. Lines continued with a backslash are joined first.
func commands(text string) []command {
	var code []string
	for _, m := range fence.FindAllStringSubmatch(text, -1) {
		code = append(code, strings.Split(strings.ReplaceAll(m[1], "\\\n", " "), "\n")...)
	}
	prose := fence.ReplaceAllString(text, "")
	for _, m := range span.FindAllStringSubmatch(prose, -1) {
		code = append(code, m[1])
	}
	var out []command
	for _, line := range code {
		m := invocation.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		rest := m[2]
		if q := m[1]; q != "" { // the command ends where its quotes do
			rest, _, _ = strings.Cut(rest, q)
		}
		var c command
		args := true
		for _, tok := range strings.Fields(rest) {
			if strings.ContainsAny(tok[:1], "|>;&#<") {
				break // another command, a redirection or a comment
			}
			switch {
			case strings.HasPrefix(tok, "-") && len(tok) > 1:
				args = false
				name, _, _ := strings.Cut(strings.TrimLeft(tok, "-"), "=")
				c.flags = append(c.flags, name)
			case args && word.MatchString(tok):
				c.words = append(c.words, tok)
			default:
				args = false
			}
		}
		if len(c.words) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// subcommands asks the CLI which words may follow prefix: the literal
// words its help for prefix shows after it ("acmebroker client hook
// certbot auth|cleanup [flags]" gives certbot, then auth and cleanup).
// Placeholders (COMMAND, FILE, [flags]) and arguments are no subcommands.
func subcommands(t *testing.T, prefix []string) []string {
	t.Helper()
	args := append(slices.Clone(prefix), "-h")
	if len(prefix) == 0 {
		args = []string{"help"}
	}
	var stdout, stderr bytes.Buffer
	cli.Run(context.Background(), args, &stdout, &stderr)
	usage := regexp.MustCompile(`(?m)^\s*acmebroker` + regexp.QuoteMeta(strings.Join(append([]string{""}, prefix...), " ")) + ` +(\S+)`)
	var next []string
	for _, m := range usage.FindAllStringSubmatch(stdout.String()+stderr.String(), -1) {
		for _, w := range strings.Split(m[1], "|") {
			if word.MatchString(w) && !slices.Contains(next, w) {
				next = append(next, w)
			}
		}
	}
	sort.Strings(next)
	return next
}

// help is what the CLI prints for args (stdout and stderr together).
func help(args ...string) string {
	var out bytes.Buffer
	cli.Run(context.Background(), args, &out, &out)
	return out.String()
}

// TestCommandsInDocsExist: every "acmebroker X Y ..." the docs show in code
// names commands the CLI has, level by level, as its own help lists them,
// and every flag given to it is one its -h lists.
func TestCommandsInDocsExist(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // the client's default state directory, never the real one
	t.Setenv("XDG_CONFIG_HOME", "")
	known := map[string][]string{}
	next := func(prefix []string) []string {
		k := strings.Join(prefix, " ")
		if _, ok := known[k]; !ok {
			known[k] = subcommands(t, prefix)
		}
		return known[k]
	}
	if top := next(nil); !slices.Contains(top, "serve") || !slices.Contains(top, "client") {
		t.Fatalf("the CLI's help lists %v; the test cannot read it", top)
	}
	helps := map[string]string{}
	checked, flags := 0, 0
	for page, text := range pages(t) {
	commands:
		for _, c := range commands(text) {
			shown := "acmebroker " + strings.Join(c.words, " ")
			path := c.words
			for i := range c.words {
				offered := next(c.words[:i])
				if len(offered) == 0 {
					path = c.words[:i] // the rest are arguments
					break
				}
				if !slices.Contains(offered, c.words[i]) {
					t.Errorf("%s shows `%s`, but the CLI has no %q after `acmebroker %s` (it has %v)",
						page, shown, c.words[i], strings.Join(c.words[:i], " "), offered)
					continue commands
				}
			}
			checked++
			k := strings.Join(path, " ")
			if _, ok := helps[k]; !ok {
				helps[k] = help(append(slices.Clone(path), "-h")...)
			}
			for _, f := range c.flags {
				if f == "h" || f == "help" {
					continue
				}
				flags++
				if !regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(f) + `(\s|$)`).MatchString(helps[k]) {
					t.Errorf("%s shows `%s ... -%s`, but `acmebroker %s -h` lists no such flag", page, shown, f, k)
				}
			}
		}
	}
	if checked < 30 || flags < 30 {
		t.Errorf("checked only %d command lines and %d flags; is the extraction broken?", checked, flags)
	}
}

// TestLinks: every relative link in the pages leads to a file, and every
// #anchor to a heading of that page (GitHub's rule: lower case, spaces to
// hyphens, punctuation dropped).
func TestLinks(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading := regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`)
	anchors := func(text string) map[string]bool {
		out := map[string]bool{}
		for _, m := range heading.FindAllStringSubmatch(fence.ReplaceAllString(text, ""), -1) {
			a := strings.ToLower(m[1])
			a = regexp.MustCompile(`[^\p{L}\p{N}_\- ]`).ReplaceAllString(a, "")
			out[strings.ReplaceAll(a, " ", "-")] = true
		}
		return out
	}
	all := pages(t)
	for page, text := range all {
		for _, m := range link.FindAllStringSubmatch(fence.ReplaceAllString(text, ""), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, frag, _ := strings.Cut(target, "#")
			file := page
			if path != "" {
				file = filepath.Join(filepath.Dir(page), path)
				if _, err := os.Stat(file); err != nil {
					t.Errorf("%s links to %s, which does not exist", page, target)
					continue
				}
			}
			if frag == "" || !strings.HasSuffix(file, ".md") {
				continue
			}
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !anchors(string(b))[frag] {
				t.Errorf("%s links to %s, but %s has no heading for #%s", page, target, file, frag)
			}
		}
	}
}

// TestUnitsHaveTheirOwnStateDirectories: the broker's unit (a dynamic user)
// and the client's renewal unit (root) never share a state directory, and
// the renewal unit's is the one the docs name.
func TestUnitsHaveTheirOwnStateDirectories(t *testing.T) {
	stateDir := func(unit string) string {
		b, err := os.ReadFile(filepath.Join("..", "deploy", unit))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^StateDirectory=(\S+)$`).FindStringSubmatch(string(b))
		if m == nil {
			t.Fatalf("%s has no StateDirectory", unit)
		}
		return m[1]
	}
	broker, renew := stateDir("acmebroker.service"), stateDir("acmebroker-renew.service")
	if broker == renew {
		t.Fatalf("acmebroker.service and acmebroker-renew.service share StateDirectory=%s", broker)
	}
	ops, err := os.ReadFile("operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{broker, renew} {
		if !strings.Contains(string(ops), "/var/lib/"+dir+"`") {
			t.Errorf("operations.md does not name /var/lib/%s", dir)
		}
	}
}

// tomlBlock finds the TOML examples.
var tomlBlock = regexp.MustCompile("(?ms)^\\s*```toml\\n(.*?)^\\s*```")

// TestTOMLExamplesUseRealKeys: every TOML example in the docs uses keys
// the program accepts, with values of the right type. (Placeholders such
// as a secret to be made with openssl may fail the value checks.)
func TestTOMLExamplesUseRealKeys(t *testing.T) {
	n := 0
	for page, text := range pages(t) {
		for _, m := range tomlBlock.FindAllStringSubmatch(text, -1) {
			n++
			_, err := config.Parse([]byte(m[1]))
			if err == nil {
				continue
			}
			errs := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			}
			for _, e := range errs {
				var ke *config.KeyError
				if !errors.As(e, &ke) || ke.Unknown || ke.Line > 0 { // unknown key, syntax or type error
					t.Errorf("%s: a TOML example does not load: %v\n%s", page, e, m[1])
				}
			}
		}
	}
	if n < 2 {
		t.Errorf("found only %d TOML examples", n)
	}
}
