package cli

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

// adminFixture writes a config naming a new SQLite database holding three
// accounts: "stale" (created 100 days ago, never updated), "idle" (created
// 100 days ago, last updated 10 days ago, disabled) and "busy" (updated now,
// with an allowfrom).
func adminFixture(t *testing.T) (cfgPath string, users map[string]string) {
	t.Helper()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "broker.db")
	cfgPath = filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte("[dns]\nzone = \"auth.example.test\"\n[storage]\ndsn = \""+dbPath+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, dbPath, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	day := 24 * time.Hour
	users = map[string]string{
		"stale": "11111111-1111-4111-8111-111111111111",
		"idle":  "22222222-2222-4222-8222-222222222222",
		"busy":  "33333333-3333-4333-8333-333333333333",
	}
	for sub, created := range map[string]time.Time{"stale": now.Add(-100 * day), "idle": now.Add(-100 * day), "busy": now.Add(-time.Hour)} {
		a := storage.Account{Username: users[sub], KeyHash: "$b2$x$y", Subdomain: sub, CreatedAt: created}
		if sub == "busy" {
			a.AllowFrom = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
		}
		if _, err := st.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	p := storage.DefaultTXTPolicy
	for _, v := range []struct {
		sub, val string
		at       time.Time
	}{
		{"idle", "idle-1", now.Add(-11 * day)}, {"idle", "idle-2", now.Add(-10 * day)},
		{"busy", "busy-1", now},
	} {
		if _, _, err := st.SetTXT(ctx, v.sub, v.val, v.at, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetDisabled(ctx, users["idle"], true); err != nil {
		t.Fatal(err)
	}
	return cfgPath, users
}

func subdomains(t *testing.T, cfgPath string) []string {
	t.Helper()
	out, errs, code := run(t, "account", "list", "-config", cfgPath, "--json")
	if code != 0 {
		t.Fatalf("account list --json: %d %s", code, errs)
	}
	var list []accountJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("account list --json is not a JSON array: %v\n%s", err, out)
	}
	var names []string
	for _, a := range list {
		names = append(names, a.Subdomain)
	}
	return names
}

// TestAccountAdminCommands drives list, show, disable, enable, prune and
// delete against a real SQLite database, offline, checking output, exit
// codes and what the database holds afterwards.
func TestAccountAdminCommands(t *testing.T) {
	cfgPath, users := adminFixture(t)

	out, errs, code := run(t, "account", "list", "-config", cfgPath)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "SUBDOMAIN") ||
		!strings.HasPrefix(lines[1], "busy") || !strings.HasPrefix(lines[2], "idle") || !strings.HasPrefix(lines[3], "stale") {
		t.Fatalf("account list: %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(lines[1], "192.0.2.0/24") || !strings.Contains(lines[2], " yes ") || !strings.Contains(lines[3], "never") ||
		strings.Contains(out, "$b2$") {
		t.Fatalf("account list rows:\n%s", out)
	}

	out, errs, code = run(t, "account", "list", "-config", cfgPath, "--json")
	var list []accountJSON
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 3 {
		t.Fatalf("account list --json: %d %s\n%s", code, errs, out)
	}
	if b := list[0]; b.Subdomain != "busy" || b.Values != 1 || b.LastUpdate == nil || b.Disabled || len(b.AllowFrom) != 1 {
		t.Errorf("busy: %+v", b)
	}
	if i := list[1]; i.Values != 2 || !i.Disabled || i.LastUpdate == nil || time.Since(*i.LastUpdate).Round(time.Hour) != 240*time.Hour {
		t.Errorf("idle: %+v", i)
	}
	if s := list[2]; s.Values != 0 || s.LastUpdate != nil || s.Username != users["stale"] || s.AllowFrom == nil {
		t.Errorf("stale: %+v", s)
	}

	// show, by subdomain (any case) and by username.
	for _, ref := range []string{"IDLE", users["idle"]} {
		out, errs, code = run(t, "account", "show", ref, "-config", cfgPath)
		if code != 0 || !strings.Contains(out, "username:     "+users["idle"]) || !strings.Contains(out, "disabled:     yes") ||
			!strings.Contains(out, "values:       2") || !strings.Contains(out, "idle-2") || !strings.Contains(out, "fulldomain:   idle.auth.example.test") {
			t.Fatalf("account show %s: %d\n%s\n%s", ref, code, out, errs)
		}
	}

	// enable and disable change the stored flag.
	if out, errs, code = run(t, "account", "enable", "-config", cfgPath, "idle"); code != 0 || !strings.Contains(out, "idle (username "+users["idle"]+") enabled") {
		t.Fatalf("account enable: %d %s %s", code, out, errs)
	}
	if out, _, _ = run(t, "account", "show", "idle", "-config", cfgPath); !strings.Contains(out, "disabled:     no") {
		t.Fatalf("after enable:\n%s", out)
	}
	if out, errs, code = run(t, "account", "disable", "-config", cfgPath, users["busy"]); code != 0 || !strings.Contains(out, "busy (username") {
		t.Fatalf("account disable: %d %s %s", code, out, errs)
	}
	if out, _, _ = run(t, "account", "show", "busy", "-config", cfgPath); !strings.Contains(out, "disabled:     yes") {
		t.Fatalf("after disable:\n%s", out)
	}

	// prune: a dry run deletes nothing; 30 days takes stale only (never
	// updated, counted from creation); 7 days takes idle too, not busy.
	out, errs, code = run(t, "account", "prune", "-config", cfgPath, "--unused-for", "720h", "--dry-run")
	if code != 0 || !strings.Contains(out, "would delete stale") || strings.Contains(out, "idle") || !strings.Contains(out, "1 of 3 accounts") {
		t.Fatalf("prune --dry-run: %d\n%s\n%s", code, out, errs)
	}
	if got := subdomains(t, cfgPath); len(got) != 3 {
		t.Fatalf("a dry run deleted: %v", got)
	}
	out, errs, code = run(t, "account", "prune", "-config", cfgPath, "--unused-for", "720h")
	if code != 0 || !strings.Contains(out, "deleted stale (username "+users["stale"]) || !strings.Contains(out, "1 of 3 accounts not updated for 720h0m0s deleted") {
		t.Fatalf("prune 720h: %d\n%s\n%s", code, out, errs)
	}
	out, errs, code = run(t, "account", "prune", "-config", cfgPath, "--unused-for", "168h")
	if code != 0 || !strings.Contains(out, "deleted idle") || !strings.Contains(out, "2 value(s)") || strings.Contains(out, "busy") {
		t.Fatalf("prune 168h: %d\n%s\n%s", code, out, errs)
	}
	if got := subdomains(t, cfgPath); len(got) != 1 || got[0] != "busy" {
		t.Fatalf("after pruning: %v, want [busy]", got)
	}

	// delete by username, then it is gone and a second delete fails.
	out, errs, code = run(t, "account", "delete", users["busy"], "-config", cfgPath)
	if code != 0 || !strings.Contains(out, "Deleted account busy (username "+users["busy"]+") and its 1 TXT value(s)") {
		t.Fatalf("account delete: %d\n%s\n%s", code, out, errs)
	}
	if got := subdomains(t, cfgPath); len(got) != 0 {
		t.Fatalf("after delete: %v", got)
	}
	if out, _, code = run(t, "account", "list", "-config", cfgPath); code != 0 || !strings.Contains(out, "No accounts") {
		t.Fatalf("list of no accounts: %d %s", code, out)
	}
	if out, _, code = run(t, "account", "list", "-config", cfgPath, "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("list --json of no accounts: %d %q", code, out)
	}
	for _, cmd := range []string{"delete", "show", "disable", "enable"} {
		if _, errs, code := run(t, "account", cmd, "busy", "-config", cfgPath); code != 1 || !strings.Contains(errs, `no account has the subdomain or username "busy"`) {
			t.Errorf("account %s of a deleted account: %d %s", cmd, code, errs)
		}
	}
}

// TestAccountAdminUsage: wrong command lines exit 2 with a message saying
// what is missing; a missing database exits 1; help exits 0.
func TestAccountAdminUsage(t *testing.T) {
	cfgPath, _ := adminFixture(t)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"account", "show", "-config", cfgPath}, 2, "which account?"},
		{[]string{"account", "delete", "-config", cfgPath}, 2, "which account?"},
		{[]string{"account", "disable", "-config", cfgPath}, 2, "which account?"},
		{[]string{"account", "prune", "-config", cfgPath}, 2, "--unused-for is required"},
		{[]string{"account", "prune", "-config", cfgPath, "--unused-for", "-5m"}, 2, "--unused-for is required and must be positive"},
		{[]string{"account", "prune", "-config", cfgPath, "--unused-for", "ninety days"}, 2, "invalid value"},
		{[]string{"account", "list", "-config", cfgPath, "extra"}, 2, "unexpected argument"},
		{[]string{"account", "frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"account", "list", "-config", filepath.Join(t.TempDir(), "none.toml")}, 2, "none.toml"},
		{[]string{"account", "delete", "-h"}, 0, "Example:\n  acmebroker account delete"},
		{[]string{"account", "prune", "-h"}, 0, "--dry-run"},
	} {
		_, errs, code := run(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, want %d; stderr:\n%s", c.args[1:], code, c.code, errs)
		}
	}
	out, _, code := run(t, "account", "help")
	for _, cmd := range []string{"list", "show", "delete", "disable", "enable", "prune"} {
		if code != 0 || !strings.Contains(out, "  acmebroker account "+cmd+" -config") {
			t.Errorf("account help has no example for %s:\n%s", cmd, out)
		}
	}
	dir := t.TempDir()
	missing := filepath.Join(dir, "c.toml")
	os.WriteFile(missing, []byte("[storage]\ndsn = \""+filepath.Join(dir, "nope.db")+"\"\n"), 0o600)
	if _, errs, code := run(t, "account", "list", "-config", missing); code != 1 || !strings.Contains(errs, "no database at") {
		t.Fatalf("list without a database: %d %s", code, errs)
	}
}

// account create refuses the names the zone's own records use: a name with
// a static CNAME, a delegated name, the name server's own name (attack
// review, defect 10); another name works.
func TestAccountCreateReserved(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.toml")
	cfg := `[dns]
zone = "auth.example.test"
nsname = "ns1.auth.example.test"
records = ["www CNAME web.example.net.", "kids NS ns.kids.example.net.", "ns1 A 192.0.2.53"]
[storage]
dsn = "` + filepath.Join(dir, "b.db") + `"
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, why := range map[string]string{"www": "static CNAME", "kids": "delegated", "ns1": "static A"} {
		_, errs, code := run(t, "account", "create", "-config", cfgPath, "--subdomain", name)
		if code != 1 || !strings.Contains(errs, why) || !strings.Contains(errs, "choose another --subdomain") {
			t.Errorf("create %s: exit %d, stderr %q; want a refusal saying %q", name, code, errs, why)
		}
	}
	out, errs, code := run(t, "account", "create", "-config", cfgPath, "--subdomain", "web1")
	if code != 0 || !strings.Contains(out, `"fulldomain":"web1.auth.example.test"`) || !strings.Contains(errs, "CNAME web1.auth.example.test.") {
		t.Fatalf("create web1: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestPruneKeepsPersist: an account holding a dns-persist-01 record is in
// use however long ago it wrote (renewals need no write), so prune keeps
// it and says why; show lists its records; delete says they went.
func TestPruneKeepsPersist(t *testing.T) {
	cfgPath, users := adminFixture(t)
	st, err := sqlite.Open(context.Background(), filepath.Join(filepath.Dir(cfgPath), "broker.db"), sqlite.Options{}) // adminFixture's

	if err != nil {
		t.Fatal(err)
	}
	rec := storage.PersistRecord{Issuer: "letsencrypt.org", AccountURI: "https://acme.example/acct/9", SetAt: time.Now().Add(-90 * 24 * time.Hour)}
	if _, _, err := st.SetPersist(context.Background(), "stale", rec); err != nil {
		t.Fatal(err)
	}
	st.Close()

	out, errs, code := run(t, "account", "prune", "-config", cfgPath, "--unused-for", "720h")
	if code != 0 || strings.Contains(out, "deleted stale") || !strings.Contains(out, "1 account(s) holding dns-persist-01 records kept") {
		t.Fatalf("prune: %d\n%s\n%s", code, out, errs)
	}
	if got := subdomains(t, cfgPath); !strings.Contains(strings.Join(got, " "), "stale") {
		t.Fatalf("after pruning: %v", got)
	}
	if out, _, _ := run(t, "account", "show", "stale", "-config", cfgPath); !strings.Contains(out, "persist:      1") || !strings.Contains(out, rec.Value()) {
		t.Fatalf("account show:\n%s", out)
	}
	out, errs, code = run(t, "account", "delete", users["stale"], "-config", cfgPath)
	if code != 0 || !strings.Contains(out, "Its 1 dns-persist-01 record(s) went with it") {
		t.Fatalf("account delete: %d\n%s\n%s", code, out, errs)
	}
}
