package e2e_test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/acmebroker/acmebroker/internal/acmedns/acmednstest"
	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/config"
)

// TestImportedAccountIssues is the migration's last step for real: a
// certificate for example.test + *.example.test issued by a CA (Pebble)
// that validates through a recursive resolver (unbound) following the
// CNAME that pointed at acme-dns, with the client's acme-dns credentials
// file left exactly as it was (the original username and key).
func TestImportedAccountIssues(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	cfgPath := brokertest.ConfigFile(t, brokertest.Config(t, "auth.example.test", nil))
	a := acmednstest.Good()
	a.AllowFrom = acmednstest.Str(`["127.0.0.0/8"]`)
	src := filepath.Join(dir, "acme-dns.db")
	acmednstest.WriteSQLite(t, src, false, []acmednstest.Account{a}, nil)
	if out, errs, code := runCLI(t, "import", "acme-dns", "--from", src, "-config", cfgPath); code != 0 {
		t.Fatalf("import: %d\n%s\n%s", code, out, errs)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	rd := brokertest.Start(t, cfg)
	env := acmetest.Start(t, acmetest.Options{BrokerDNS: rd.DNS[0], BrokerZone: cfg.DNS.Zone, CustomerZone: "example.test"})
	// The CNAME that was published for acme-dns, unchanged.
	env.Customer.SetCNAME("_acme-challenge.example.test", a.Subdomain+"."+cfg.DNS.Zone)

	// The client's credentials file as lego (and acmebroker client) keep it
	// for acme-dns; only the server behind the URL changed.
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	creds, _ := json.Marshal(map[string]any{"example.test": map[string]string{
		"fulldomain": a.Subdomain + "." + cfg.DNS.Zone, "subdomain": a.Subdomain,
		"username": a.Username, "password": a.Password, "server_url": rd.API,
	}})
	if err := os.WriteFile(filepath.Join(state, "accounts.json"), creds, 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code := runCLI(t, "client", "obtain", "-d", "example.test", "-d", "*.example.test",
		"--ca", env.CAURL, "--ca-root", env.CARootPEM, "--email", "admin@example.test",
		"--state-dir", state, "--resolver", env.ResolverAddr, "--nameserver", rd.DNS[0])
	if code != 0 {
		t.Fatalf("obtain with the imported account: %d\n%s\n%s", code, out, errs)
	}
	b, err := os.ReadFile(filepath.Join(state, "certificates", "example.test", "fullchain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("fullchain.pem holds no certificate")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	names := slices.Sorted(slices.Values(leaf.DNSNames))
	if !slices.Equal(names, []string{"*.example.test", "example.test"}) {
		t.Fatalf("certificate names %v", names)
	}
}
