package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/acmedns/acmednstest"
	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/syncbuf"
)

func writeBrokerConfig(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "config.toml")
	conf := `[dns]
listen = ["127.0.0.1:0"]
zone = "auth.example.test"
nsname = "ns1.auth.example.test"
nsadmin = "hostmaster.example.test"
records = ["auth.example.test. NS ns1.auth.example.test.", "ns1.auth.example.test. A 127.0.0.1"]
[api]
listen = "127.0.0.1:0"
[storage]
dsn = "` + filepath.Join(dir, "broker.db") + `"
`
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func lookupTXT(t *testing.T, server, name string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	c := &dns.Client{Timeout: 5 * time.Second}
	in, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("dig %s TXT: %v", name, err)
	}
	var out []string
	for _, rr := range in.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	slices.Sort(out)
	return out
}

// TestImportAcmeDNSEndToEnd: an acme-dns database imported with the CLI
// serves at once: the account logs in to /update with its ORIGINAL
// acme-dns username and key, and DNS answers both the imported value and
// the new one. A dry run before writes nothing; a second import changes
// nothing; a bad row makes the exit status 1 and is named.
func TestImportAcmeDNSEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cfgPath := writeBrokerConfig(t, dir)
	const old = "OLDOLDOLDOLDOLDOLDOLDOLDOLDOLDOLDOLDOLD0001"
	const fresh = "NEWNEWNEWNEWNEWNEWNEWNEWNEWNEWNEWNEWNEWN002"
	a := acmednstest.Good()
	a.Values = []acmednstest.Value{{Value: old, LastUpdate: time.Now().Add(-time.Minute).Unix()}, {Value: "", LastUpdate: 0}}
	bad := acmednstest.Good()
	bad.AllowFrom = acmednstest.Str(`["not-a-cidr"]`)
	src := filepath.Join(dir, "acme-dns.db")
	acmednstest.WriteSQLite(t, src, false, []acmednstest.Account{a, bad}, nil)

	// Dry run: says what it would do, creates no database.
	out, errs, code := run(t, "import", "acme-dns", "--from", src, "-config", cfgPath, "--dry-run")
	if code != 1 || !strings.Contains(out, "would import account username \""+a.Username) ||
		!strings.Contains(out, "dry run: nothing was written") || !strings.Contains(out, "would import 2, skipped 0, failed 1") {
		t.Fatalf("dry run: %d\n%s\n%s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "broker.db")); !os.IsNotExist(err) {
		t.Fatalf("the dry run created the broker's database (%v)", err)
	}

	out, errs, code = run(t, "import", "acme-dns", "--from", src, "-config", cfgPath)
	if code != 1 || !strings.Contains(out, "imported 2, skipped 0, failed 1") ||
		!strings.Contains(out, `FAILED   account username "`+bad.Username+`"`) || !strings.Contains(out, "not-a-cidr") ||
		!strings.Contains(errs, "1 row was not imported") {
		t.Fatalf("import: %d\n%s\n%s", code, out, errs)
	}
	if strings.Contains(out+errs, "$2a$") {
		t.Fatal("the import printed a key hash")
	}
	// Twice: nothing more. --quiet lists only what failed.
	out, errs, code = run(t, "import", "acme-dns", "--from", src, "-config", cfgPath, "--quiet")
	if code != 1 || !strings.Contains(out, "imported 0, skipped 2, failed 1") || strings.Contains(out, "skipped  account") ||
		!strings.Contains(out, `FAILED   account username "`+bad.Username+`"`) {
		t.Fatalf("second import: %d\n%s\n%s", code, out, errs)
	}

	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	rd := brokertest.Start(t, cfg)
	name := a.Subdomain + ".auth.example.test"
	if got := lookupTXT(t, rd.DNS[0], name); !slices.Equal(got, []string{old}) {
		t.Fatalf("after import, %s TXT = %v, want the imported value", name, got)
	}

	update := func(key string) (int, string) {
		body, _ := json.Marshal(map[string]string{"subdomain": a.Subdomain, "txt": fresh})
		req, _ := http.NewRequest("POST", rd.API+"/update", bytes.NewReader(body))
		req.Header.Set("X-Api-User", a.Username)
		req.Header.Set("X-Api-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, body := update(acmednstest.NewKey()); code != 401 {
		t.Fatalf("update with a wrong key: %d %s", code, body)
	}
	// The original acme-dns credentials: the bcrypt hash verifies (and is
	// upgraded); the second update proves the upgraded hash works too.
	for i := range 2 {
		if code, body := update(a.Password); code != 200 || !strings.Contains(body, fresh) {
			t.Fatalf("update %d with the acme-dns credentials: %d %s", i, code, body)
		}
	}
	want := []string{fresh, old}
	slices.Sort(want)
	if got := lookupTXT(t, rd.DNS[0], name); !slices.Equal(got, want) {
		t.Fatalf("after update, %s TXT = %v, want %v", name, got, want)
	}
}

func TestImportUsage(t *testing.T) {
	if _, errs, code := run(t, "import", "acme-dns"); code != exitUsage || !strings.Contains(errs, "--from is required") {
		t.Errorf("no --from: %d %s", code, errs)
	}
	if _, errs, code := run(t, "import", "acme-dns", "--from", filepath.Join(t.TempDir(), "nope.db")); code != exitFailure || !strings.Contains(errs, "config.cfg") {
		t.Errorf("missing file: %d %s", code, errs)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("[dns]\nzone = \"not a name\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, "import", "acme-dns", "--from", "x.db", "-config", bad); code != exitUsage || !strings.Contains(errs, "dns.zone") {
		t.Errorf("bad config: %d %s", code, errs)
	}
	if out, _, code := run(t, "import", "help"); code != exitOK || !strings.Contains(out, "acme-dns") {
		t.Errorf("import help: %d %s", code, out)
	}
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h/db":                "postgres://u:xxxxx@h/db",
		"host=h user=u password=secret dbname=db": "host=h user=u password=xxxxx dbname=db",
		"/var/lib/acme-dns/acme-dns.db":           "/var/lib/acme-dns/acme-dns.db",
	} {
		if got := redactDSN(in); got != want {
			t.Errorf("redactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}

var dnsLine = regexp.MustCompile(`(?m)^  DNS\s+(\S+) \(udp\+tcp\)$`)

// TestServeAcmeDNSConfig is the migration as docs/migrating.md tells it: acme-dns's
// config.cfg, unchanged, names the database to import from and is the
// config acmebroker serves with; each key it cannot map is warned about
// once at start-up, and the imported account answers in DNS.
func TestServeAcmeDNSConfig(t *testing.T) {
	dir := t.TempDir()
	acmeDB := filepath.Join(dir, "acme-dns.db")
	cfgPath := filepath.Join(dir, "config.cfg")
	conf := `[general]
listen = "127.0.0.1:0"
protocol = "both"
domain = "auth.example.test"
nsname = "auth.example.test"
nsadmin = "admin.example.test"
records = [
    "auth.example.test. A 127.0.0.1",
    "auth.example.test. NS auth.example.test.",
]
debug = false

[database]
engine = "sqlite3"
connection = "` + acmeDB + `"

[api]
ip = "127.0.0.1"
disable_registration = false
port = "0"
tls = "custom"
acme_dir = "https://127.0.0.1:1/directory"
acme_cache_dir = "api-certs"
notification_email = ""
corsorigins = ["*"]
use_header = false
header_name = "X-Forwarded-For"

[logconfig]
loglevel = "info"
logtype = "stdout"
logformat = "text"
`
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	const val = "IMPORTEDIMPORTEDIMPORTEDIMPORTEDIMPORTED123"
	a := acmednstest.Good()
	a.Values = []acmednstest.Value{{Value: val, LastUpdate: time.Now().Unix()}, {Value: "", LastUpdate: 0}}
	acmednstest.WriteSQLite(t, acmeDB, true, []acmednstest.Account{a}, nil)

	if out, errs, code := run(t, "import", "acme-dns", "--from", acmeDB, "-config", cfgPath); code != 0 ||
		!strings.Contains(out, "into sqlite "+filepath.Join(dir, "acmebroker.db")) {
		t.Fatalf("import: %d\n%s\n%s", code, out, errs)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() { done <- Run(ctx, []string{"serve", "-config", cfgPath}, &stdout, &stderr) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	deadline := time.Now().Add(30 * time.Second)
	var m []string
	for m == nil {
		select {
		case code := <-done:
			done <- code
			t.Fatalf("serve exited %d\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start within 30 s\n%s\n%s", stdout.String(), stderr.String())
		}
		m = dnsLine.FindStringSubmatch(stdout.String())
		if m == nil {
			time.Sleep(20 * time.Millisecond) // polling with a deadline
		}
	}
	if !strings.Contains(stdout.String(), "(1 accounts)") {
		t.Errorf("banner: %s", stdout.String())
	}
	if got := lookupTXT(t, m[1], a.Subdomain+".auth.example.test"); !slices.Equal(got, []string{val}) {
		t.Errorf("TXT of the imported account: %v", got)
	}
	logs := stderr.String()
	for key, n := range map[string]int{"key=api.tls": 0, "key=database.connection": 1, "key=api.acme_cache_dir": 1, "key=general": 0, "key=api.use_header": 0} {
		if got := strings.Count(logs, key+" "); got != n {
			t.Errorf("%d warnings with %s, want %d\n%s", got, key, n, logs)
		}
	}
	// tls = "custom" (like "letsencrypt") is the API's own certificate
	// by ACME: HTTPS once the CA (here unreachable) gives one.
	if out := stdout.String(); !strings.Contains(out, "API      https://") || !strings.Contains(out, "HTTPS once the certificate for auth.example.test is obtained from https://127.0.0.1:1/directory") {
		t.Errorf("banner does not say the API waits for its certificate:\n%s", out)
	}
}

// TestImportAcmeDNSConfig: the printed config.toml loads as the same
// configuration serve builds from the acme-dns file, and lists what was
// not mapped.
func TestImportAcmeDNSConfig(t *testing.T) {
	for _, name := range []string{"acme-dns-v1.cfg", "acme-dns-v2.cfg"} {
		src := filepath.Join("..", "config", "testdata", name)
		out, errs, code := run(t, "import", "acme-dns-config", src)
		if code != 0 {
			t.Fatalf("%s: %d %s", name, code, errs)
		}
		want, err := config.Load(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range want.Notes {
			if !strings.Contains(out, "# acme-dns "+n.Key+": ") {
				t.Errorf("%s: note for %s missing from the output", name, n.Key)
			}
		}
		got, err := config.Parse([]byte(out))
		if err != nil {
			t.Fatalf("%s: the printed config does not load: %v\n%s", name, err, out)
		}
		want.Notes = nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: printed config loads as\n%+v\nwant\n%+v", name, got, want)
		}
	}
	if _, errs, code := run(t, "import", "acme-dns-config", filepath.Join("..", "..", "config.toml")); code != exitFailure || !strings.Contains(errs, "not an acme-dns config.cfg") {
		t.Errorf("a broker config: %d %s", code, errs)
	}
}
