package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/config"
)

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

var tokenLine = regexp.MustCompile(`(?m)^  ([0-9a-f]{12}\.[A-Za-z0-9_-]{40})$`)

// TestAdminCommandsAgainstRunningBroker: tokens and chosen-subdomain
// accounts made with the CLI on the database of a running broker take
// effect at once, through the real HTTP API and DNS server.
func TestAdminCommandsAgainstRunningBroker(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.toml")
	conf := `[dns]
listen = ["127.0.0.1:0"]
zone = "auth.example.test"
nsname = "ns1.auth.example.test"
nsadmin = "hostmaster.example.test"
records = ["auth.example.test. NS ns1.auth.example.test.", "ns1.auth.example.test. A 127.0.0.1"]
[api]
listen = "127.0.0.1:0"
registration = "token"
[storage]
dsn = "` + filepath.Join(dir, "broker.db") + `"
`
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	// list on a database that does not exist yet says so.
	if _, errs, code := run(t, "token", "list", "-config", cfgPath); code != 1 || !strings.Contains(errs, "no database at") {
		t.Fatalf("token list before any database: %d %s", code, errs)
	}
	out, errs, code := run(t, "token", "create", "-config", cfgPath, "--max-accounts", "1", "--comment", "one host")
	m := tokenLine.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("token create: %d\n%s\n%s", code, out, errs)
	}
	one := m[1]

	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	rd := brokertest.Start(t, cfg)
	register := func(tok string) (int, string) {
		req, _ := http.NewRequest("POST", rd.API+"/register", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if st, body := register(""); st != 401 {
		t.Fatalf("register without a token: %d %s", st, body)
	}
	if st, body := register(one); st != 201 {
		t.Fatalf("register with the token: %d %s", st, body)
	}
	if st, body := register(one); st != 401 || !strings.Contains(body, "used up") {
		t.Fatalf("second register with a token for one account: %d %s", st, body)
	}

	out, _, _ = run(t, "token", "create", "-config", cfgPath)
	two := tokenLine.FindStringSubmatch(out)[1]
	id := strings.SplitN(two, ".", 2)[0]
	if out, errs, code := run(t, "token", "revoke", id, "-config", cfgPath); code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("token revoke: %d %s %s", code, out, errs)
	}
	if st, body := register(two); st != 401 || !strings.Contains(body, "revoked") {
		t.Fatalf("register with a revoked token: %d %s", st, body)
	}
	out, _, _ = run(t, "token", "list", "-config", cfgPath)
	if !strings.Contains(out, "used up") || !strings.Contains(out, "revoked") || !strings.Contains(out, "one host") || strings.Contains(out, strings.SplitN(one, ".", 2)[1]) {
		t.Fatalf("token list:\n%s", out)
	}
	if _, errs, code := run(t, "token", "revoke", "-config", cfgPath, "ffffffffffff"); code != 1 || !strings.Contains(errs, "no token ffffffffffff") {
		t.Fatalf("revoke of an unknown token: %d %s", code, errs)
	}

	// An admin-made account with a chosen subdomain works through the API
	// and DNS of the running broker.
	out, errs, code = run(t, "account", "create", "-config", cfgPath, "--subdomain", "Web1", "--allow-from", "127.0.0.0/8")
	var acct struct {
		Username, Password, Fulldomain, Subdomain string
		AllowFrom                                 []string
	}
	if code != 0 || json.Unmarshal([]byte(out), &acct) != nil || acct.Subdomain != "web1" || acct.Fulldomain != "web1.auth.example.test" ||
		!strings.Contains(errs, "CNAME web1.auth.example.test.") {
		t.Fatalf("account create: %d\n%s\n%s", code, out, errs)
	}
	const val = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"
	req, _ := http.NewRequest("POST", rd.API+"/update", strings.NewReader(`{"subdomain":"web1","txt":"`+val+`"}`))
	req.Header.Set("X-Api-User", acct.Username)
	req.Header.Set("X-Api-Key", acct.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("update with the admin-made account: %v %v", resp, err)
	}
	resp.Body.Close()
	q := new(dns.Msg)
	q.SetQuestion("web1.auth.example.test.", dns.TypeTXT)
	in, err := dns.Exchange(q, rd.DNS[0])
	if err != nil || len(in.Answer) != 1 || in.Answer[0].(*dns.TXT).Txt[0] != val {
		t.Fatalf("DNS after the update: %v %v", in, err)
	}

	if _, errs, code := run(t, "account", "create", "-config", cfgPath, "--subdomain", "web1"); code != 1 || !strings.Contains(errs, "taken") {
		t.Fatalf("second account on web1: %d %s", code, errs)
	}
	// disable and enable on the database apply to the running broker's
	// next request.
	updateWeb1 := func() (int, string) {
		req, _ := http.NewRequest("POST", rd.API+"/update", strings.NewReader(`{"subdomain":"web1","txt":"`+val+`"}`))
		req.Header.Set("X-Api-User", acct.Username)
		req.Header.Set("X-Api-Key", acct.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if out, errs, code := run(t, "account", "disable", "web1", "-config", cfgPath); code != 0 {
		t.Fatalf("account disable: %d %s %s", code, out, errs)
	}
	if st, body := updateWeb1(); st != 401 || !strings.Contains(body, "disabled by the broker's admin") {
		t.Fatalf("update of a disabled account on the running broker: %d %s", st, body)
	}
	if out, errs, code := run(t, "account", "enable", "web1", "-config", cfgPath); code != 0 {
		t.Fatalf("account enable: %d %s %s", code, out, errs)
	}
	if st, body := updateWeb1(); st != 200 {
		t.Fatalf("update after enable on the running broker: %d %s", st, body)
	}

	// delete on the database: the running broker stops answering for web1
	// (it polls the changes admin commands record, every second).
	if out, errs, code := run(t, "account", "delete", "web1", "-config", cfgPath); code != 0 || !strings.Contains(out, "within a second") {
		t.Fatalf("account delete: %d %s %s", code, out, errs)
	}
	q.SetQuestion("web1.auth.example.test.", dns.TypeTXT)
	deadline := time.Now().Add(15 * time.Second)
	for {
		in, err := dns.Exchange(q, rd.DNS[0])
		if err != nil {
			t.Fatal(err)
		}
		if in.Rcode == dns.RcodeNameError && len(in.Answer) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the running broker still answers for the deleted account after 15 s: %v", in)
		}
		time.Sleep(20 * time.Millisecond) // polling for the outcome, bounded by the deadline
	}

	for _, bad := range []string{"", "a.b", "-x", "under_score", strings.Repeat("a", 64)} {
		if _, errs, code := run(t, "account", "create", "-config", cfgPath, "--subdomain", bad); code != 2 || !strings.Contains(errs, "--subdomain") {
			t.Fatalf("--subdomain %q: %d %s", bad, code, errs)
		}
	}
}

// TestAccountCreateRefusesAPICertificateNames: with tls = "acme" the first
// label of a certificate name below the apex is no account's, in the admin
// commands as in the API.
func TestAccountCreateRefusesAPICertificateNames(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.toml")
	conf := `[dns]
listen = ["127.0.0.1:0"]
zone = "auth.example.test"
nsname = "ns1.auth.example.test"
nsadmin = "hostmaster.example.test"
[api]
listen = "127.0.0.1:0"
tls = "acme"
[api.acme]
directory = "https://127.0.0.1:1/directory"
names = ["auth.example.test", "api.auth.example.test"]
[storage]
dsn = "` + filepath.Join(dir, "broker.db") + `"
`
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, "account", "create", "-config", cfgPath, "--subdomain", "api"); code == 0 || !strings.Contains(errs, "api.auth.example.test") {
		t.Fatalf("account create --subdomain api: exit %d, %s; want a refusal naming the certificate's name", code, errs)
	}
	if out, errs, code := run(t, "account", "create", "-config", cfgPath, "--subdomain", "web"); code != 0 {
		t.Fatalf("account create --subdomain web: exit %d\n%s\n%s", code, out, errs)
	}
}
