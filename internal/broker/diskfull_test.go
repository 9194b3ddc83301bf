package broker_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/testenv"
)

// tmpfs mounts a small tmpfs for the test, or skips when this is not
// possible (not root, no mount).
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		testenv.Skipf(t, "needs root to mount a small tmpfs (%v %s)", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestDiskFull: with the disk full, updates answer 503 (never 200 for a
// value not stored, never a crash); once space returns they succeed again
// without a restart, every acknowledged value is served and the database
// passes its integrity check.
func TestDiskFull(t *testing.T) {
	dir := tmpfs(t, "4m")
	cfg := brokertest.Config(t, "", func(c *config.Config) {
		c.Storage.DSN = filepath.Join(dir, "broker.db")
		c.Metrics.Listen = "127.0.0.1:0"
	})
	rd := brokertest.Start(t, cfg)
	client := &http.Client{Timeout: 10 * time.Second}

	resp, err := client.Post(rd.API+"/register", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var a struct{ Username, Password, Subdomain, Fulldomain string }
	json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	update := func(v string) (int, string) {
		body := fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, a.Subdomain, v)
		req, _ := http.NewRequest("POST", rd.API+"/update", strings.NewReader(body))
		req.Header.Set("X-Api-User", a.Username)
		req.Header.Set("X-Api-Key", a.Password)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	val := func(i int) string { return fmt.Sprintf("%043d", i) }
	var acked []string
	if st, body := update(val(0)); st != 200 {
		t.Fatalf("first update: %d %s", st, body)
	}
	acked = append(acked, val(0))

	// Fill the file system.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for i := 0; i < 1024; i++ {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling: %v", err)
			}
			break
		}
	}
	f.Close()

	refused := 0
	for i := 1; i <= 300 && refused < 5; i++ {
		st, body := update(val(i))
		switch st {
		case 200:
			acked = append(acked, val(i)) // fitted in space SQLite had already
		case 503:
			if !strings.Contains(body, `"db_error"`) {
				t.Fatalf("503 without db_error: %s", body)
			}
			refused++
		default:
			t.Fatalf("update %d with the disk full: %d %s", i, st, body)
		}
	}
	if refused == 0 {
		t.Fatal("300 updates on a full disk, none refused")
	}
	// Every refusal is counted as a storage error of set_txt.
	mfs, _ := scrape(t, rd.Metrics)
	if got, _ := value(mfs, "acmebroker_storage_errors_total", map[string]string{"op": "set_txt", "kind": "unavailable"}); got != float64(refused) {
		t.Errorf("storage_errors_total{op=set_txt,kind=unavailable} = %v after %d refusals", got, refused)
	}
	if got, _ := value(mfs, "acmebroker_api_requests_total", map[string]string{"route": "/update", "code": "503"}); got != float64(refused) {
		t.Errorf("api_requests_total{route=/update,code=503} = %v after %d refusals", got, refused)
	}

	// /health says so (issue 12: it answered ok while every write failed).
	health := func() (int, string) {
		resp, err := client.Get(rd.API + "/health")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if st, body := health(); st != 503 || !strings.Contains(body, `"writes":"failing`) {
		t.Fatalf("health with the disk full: %d %s", st, body)
	}

	// Space returns: the broker recovers by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	recovered := false
	for i := 1000; i < 1020; i++ {
		if st, _ := update(val(i)); st == 200 {
			acked = append(acked, val(i))
			recovered = true
			break
		}
	}
	if !recovered {
		t.Fatal("updates still fail after space returned")
	}
	if st, body := health(); st != 200 {
		t.Fatalf("health after a write succeeded again: %d %s", st, body)
	}

	// The newest acknowledged values are served (the policy keeps at most
	// 16, all of them set within the window).
	q := new(dns.Msg)
	q.SetQuestion(a.Fulldomain+".", dns.TypeTXT)
	in, _, err := (&dns.Client{Net: "tcp"}).Exchange(q, rd.DNS[0])
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, rr := range in.Answer {
		served = append(served, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	for _, v := range acked[max(0, len(acked)-16):] {
		if !slices.Contains(served, v) {
			t.Fatalf("acknowledged value %s not served; served %v", v, served)
		}
	}

	db, err := sql.Open("sqlite3", cfg.Storage.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check: %q %v", res, err)
	}
	t.Logf("%d updates refused with the disk full, %d acknowledged in all, all served", refused, len(acked))
}
