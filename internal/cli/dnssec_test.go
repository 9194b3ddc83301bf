package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func dnssecCLIConfig(t *testing.T, dnssec string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	conf := `[dns]
zone = "auth.example.test"
nsname = "ns1.auth.example.test"
nsadmin = "hostmaster.example.test"
[dns.dnssec]
` + dnssec + `
[storage]
dsn = "` + filepath.Join(dir, "broker.db") + `"
`
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDNSSECCommands: ds refuses a zone that is not signed (its DS would
// break it); otherwise it makes the keys and prints DS records that
// parse; status shows them; a rollover starts, says where it stands, is
// not started twice nor of another key, and refuses --ds-published before
// it waits for the parent; a bad key file is a usage error that says what
// to do and does not echo the file.
func TestDNSSECCommands(t *testing.T) {
	off := dnssecCLIConfig(t, "enabled = false")
	if _, errs, code := run(t, "dnssec", "ds", "-config", off); code != exitUsage || !strings.Contains(errs, "signing is off") {
		t.Fatalf("ds with signing off: %d %s", code, errs)
	}

	path := dnssecCLIConfig(t, "enabled = true\nsplit_keys = true\nalgorithm = \"ed25519\"")
	if out, _, code := run(t, "dnssec", "status", "-config", path); code != 0 || !strings.Contains(out, "No keys yet") {
		t.Fatalf("status before keys: %d %s", code, out)
	}
	out, errs, code := run(t, "dnssec", "ds", "-config", path)
	if code != 0 {
		t.Fatalf("ds: %d %s", code, errs)
	}
	var ds []*dns.DS
	for _, l := range strings.Split(out, "\n") {
		if l == "" || strings.HasPrefix(l, ";") {
			continue
		}
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("ds printed %q: %v", l, err)
		}
		ds = append(ds, rr.(*dns.DS))
	}
	// Split keys: the KSK's DS only, SHA-256, Ed25519.
	if len(ds) != 1 || ds[0].DigestType != dns.SHA256 || ds[0].Algorithm != dns.ED25519 || ds[0].Hdr.Ttl != 86400 {
		t.Fatalf("DS records %v", ds)
	}
	again, _, _ := run(t, "dnssec", "ds", "-config", path)
	if again != out {
		t.Fatal("a second ds printed other keys: keys are made once")
	}
	st, _, _ := run(t, "dnssec", "status", "-config", path)
	if !strings.Contains(st, "ksk") || !strings.Contains(st, "zsk") || strings.Count(st, "ED25519") != 2 {
		t.Fatalf("status:\n%s", st)
	}

	if _, errs, code := run(t, "dnssec", "rollover", "-config", path, "--ds-published"); code != exitFailure || !strings.Contains(errs, "no rollover is waiting") {
		t.Fatalf("--ds-published with no rollover: %d %s", code, errs)
	}
	if _, errs, code := run(t, "dnssec", "rollover", "-config", path, "--key", "csk", "--no-wait"); code != exitUsage || !strings.Contains(errs, "roll the ksk or the zsk") {
		t.Fatalf("csk rollover of a split zone: %d %s", code, errs)
	}
	out, errs, code = run(t, "dnssec", "rollover", "-config", path, "--no-wait")
	if code != 0 || !strings.Contains(out, "Rollover started. step 1/3: zsk") {
		t.Fatalf("rollover: %d %s %s", code, out, errs)
	}
	if out, _, code := run(t, "dnssec", "rollover", "-config", path, "--no-wait"); code != 0 || !strings.Contains(out, "A rollover is in progress") {
		t.Fatalf("rollover again: %d %s", code, out)
	}
	if _, errs, code := run(t, "dnssec", "rollover", "-config", path, "--key", "ksk", "--no-wait"); code != exitFailure || !strings.Contains(errs, "a zsk rollover is in progress") {
		t.Fatalf("ksk while a zsk rollover runs: %d %s", code, errs)
	}
	if st, _, _ := run(t, "dnssec", "status", "-config", path); strings.Count(st, "\nzsk ") != 2 || !strings.Contains(st, "Rollover in progress: step 1/3") {
		t.Fatalf("status during the rollover:\n%s", st)
	}

	bad := dnssecCLIConfig(t, "enabled = true\nkey_file = \""+filepath.Join(t.TempDir(), "missing.key")+"\"")
	if _, errs, code := run(t, "dnssec", "ds", "-config", bad); code != exitUsage || !strings.Contains(errs, "openssl rand -hex 32") {
		t.Fatalf("missing key file: %d %s", code, errs)
	}
	secretFile := filepath.Join(t.TempDir(), "short.key")
	os.WriteFile(secretFile, []byte("deadbeef-not-a-key"), 0o600)
	short := dnssecCLIConfig(t, "enabled = true\nkey_file = \""+secretFile+"\"")
	if _, errs, code := run(t, "dnssec", "ds", "-config", short); code != exitUsage || strings.Contains(errs, "deadbeef") || !strings.Contains(errs, "64 hex digits") {
		t.Fatalf("bad key file: %d %s", code, errs)
	}
}
