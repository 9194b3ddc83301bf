package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/cli"
	"github.com/acmebroker/acmebroker/internal/syncbuf"
)

// The test binary doubles as the acmebroker binary: with this variable set,
// TestMain runs the command line instead of the tests. That way the
// end-to-end tests run the real program in a child process (which they can
// SIGKILL) without a separate build.
const childEnv = "ACMEBROKER_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

type broker struct {
	cmd    *exec.Cmd
	dns    string // host:port
	api    string // base URL
	scrape string // metrics URL, when [metrics] listen is set
	stderr *syncbuf.Buffer
	done   chan struct{}
}

var (
	dnsLine = regexp.MustCompile(`^\s+DNS\s+(\S+) \(udp\+tcp\)`)
	apiLine = regexp.MustCompile(`^\s+API\s+(\S+)`)
	metLine = regexp.MustCompile(`^\s+metrics\s+(\S+)`)
)

func writeConfig(t *testing.T, dir, db string) string {
	t.Helper()
	p := filepath.Join(dir, "config.toml")
	cfg := fmt.Sprintf(`[dns]
listen = ["127.0.0.1:0"]
zone = "auth.example.test"
nsname = "ns1.auth.example.test"
nsadmin = "hostmaster.example.test"
records = ["auth.example.test. NS ns1.auth.example.test.", "ns1.auth.example.test. A 127.0.0.1"]
[api]
listen = "127.0.0.1:0"
register_limit = 0
[storage]
dsn = %q
[log]
level = "warn"
`, db)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startBroker runs `acmebroker serve -config cfg` and waits (bounded) for its
// banner, which carries the addresses it bound.
func startBroker(t *testing.T, cfg string) *broker {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "serve", "-config", cfg)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	b := &broker{cmd: cmd, stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = b.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(b.done) }()
	t.Cleanup(func() { b.kill() })

	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if m := dnsLine.FindStringSubmatch(line); m != nil && b.dns == "" {
				b.dns = m[1]
			}
			if m := metLine.FindStringSubmatch(line); m != nil {
				b.scrape = m[1]
			}
			if m := apiLine.FindStringSubmatch(line); m != nil {
				b.api = m[1]
				close(found)
				io.Copy(io.Discard, out)
				return
			}
		}
	}()
	select {
	case <-found:
	case <-b.done:
		t.Fatalf("broker exited before serving: %s", b.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("broker did not print its addresses within 30s: %s", b.stderr.String())
	}
	return b
}

func (b *broker) kill() {
	select {
	case <-b.done:
		return
	default:
	}
	b.cmd.Process.Signal(syscall.SIGKILL)
	<-b.done
}

type account struct {
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	Fulldomain string   `json:"fulldomain"`
	Subdomain  string   `json:"subdomain"`
	AllowFrom  []string `json:"allowfrom"`
}

func register(t *testing.T, base string) account {
	t.Helper()
	resp, err := http.Post(base+"/register", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a account
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return a
}

func update(client *http.Client, base string, a account, txt string) (int, error) {
	body := fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, a.Subdomain, txt)
	req, _ := http.NewRequest(http.MethodPost, base+"/update", strings.NewReader(body))
	req.Header.Set("X-Api-User", a.Username)
	req.Header.Set("X-Api-Key", a.Password)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func queryTXT(t *testing.T, server, name string) []string {
	t.Helper()
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	return out
}

func value(i int) string { return fmt.Sprintf("%043d", i) }

// TestKillMidStreamLosesNothing SIGKILLs the broker while updates stream in,
// restarts it on the same database, and checks that every update that was
// answered 200 is served by DNS afterwards. Repeated 20 times on one
// database, so later rounds also check that earlier rounds survived; at the
// end SQLite's integrity check must pass.
func TestKillMidStreamLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	cfg := writeConfig(t, dir, filepath.Join(dir, "broker.db"))

	b := startBroker(t, cfg)
	const nAccounts = 100
	accounts := make([]account, nAccounts)
	for i := range accounts {
		accounts[i] = register(t, b.api)
	}

	var mu sync.Mutex
	acked := make(map[string][]string) // subdomain -> values answered 200
	next := 0
	const rounds = 20
	for round := 0; round < rounds; round++ {
		// 60 updates a round: each account gets 12 values in all (under the
		// default cap of 16 and well inside the 10-minute window), so every
		// one must survive.
		client := &http.Client{Timeout: 5 * time.Second}
		var wg sync.WaitGroup
		stopAt := 30 + round // acks after which we pull the plug
		var count int
		killed := make(chan struct{})
		var once sync.Once
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 200; i++ {
					mu.Lock()
					if next >= nAccounts*3/5*(round+1) {
						mu.Unlock()
						return
					}
					n := next
					next++
					mu.Unlock()
					a := accounts[n%nAccounts]
					v := value(n)
					status, err := update(client, b.api, a, v)
					if err != nil {
						return // the broker is gone
					}
					if status != http.StatusOK {
						t.Errorf("update status %d", status)
						return
					}
					mu.Lock()
					acked[a.Subdomain] = append(acked[a.Subdomain], v)
					count++
					c := count
					mu.Unlock()
					if c == stopAt {
						once.Do(func() { b.kill(); close(killed) })
					}
				}
			}()
		}
		wg.Wait()
		once.Do(func() { b.kill(); close(killed) })
		<-killed

		b = startBroker(t, cfg)
		mu.Lock()
		for _, a := range accounts {
			got := queryTXT(t, b.dns, a.Fulldomain)
			for _, v := range acked[a.Subdomain] {
				if !slices.Contains(got, v) {
					t.Errorf("round %d: acknowledged value %s of %s lost after SIGKILL; served: %v", round, v, a.Subdomain, got)
				}
			}
		}
		total := 0
		for _, v := range acked {
			total += len(v)
		}
		mu.Unlock()
		t.Logf("round %d: %d acknowledged updates in all, all served after restart", round, total)
	}
	b.kill()
	db, err := sql.Open("sqlite3", filepath.Join(dir, "broker.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check after %d kills: %q %v", rounds, res, err)
	}
}

func TestConfigErrorExitsBeforeListening(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.toml")
	os.WriteFile(p, []byte("[api]\ntls = \"maybe\"\n"), 0o600)
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "serve", "-config", p)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("want exit code 2, got %v; output: %s", err, out)
	}
	if !strings.Contains(string(out), "api.tls") {
		t.Fatalf("the error does not name the key: %s", out)
	}
}

func TestBusyPortFailsFast(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dir := t.TempDir()
	p := filepath.Join(dir, "c.toml")
	os.WriteFile(p, []byte(fmt.Sprintf("[dns]\nlisten = [%q]\n[api]\nlisten = \"127.0.0.1:0\"\n[storage]\ndsn = %q\n",
		pc.LocalAddr().String(), filepath.Join(dir, "x.db"))), 0o600)
	exe, _ := os.Executable()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "serve", "-config", p)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatal("the broker hung on a busy port instead of failing")
	}
	if err == nil || !strings.Contains(string(out), pc.LocalAddr().String()) {
		t.Fatalf("want a failure naming %s, got %v: %s", pc.LocalAddr(), err, out)
	}
}
