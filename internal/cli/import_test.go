package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/acmedns/acmednstest"
	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/config"
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
	// Twice: nothing more.
	out, errs, code = run(t, "import", "acme-dns", "--from", src, "-config", cfgPath)
	if code != 1 || !strings.Contains(out, "imported 0, skipped 2, failed 1") {
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
