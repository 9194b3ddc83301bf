package client

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAccountsAndLookup(t *testing.T) {
	st := &State{Dir: filepath.Join(t.TempDir(), "state")}
	a := BrokerAccount{FullDomain: "u1.auth.example.test", SubDomain: "u1", Username: "x", Password: "p", ServerURL: "http://b"}
	if err := st.SaveAccount("Example.TEST.", a); err != nil {
		t.Fatal(err)
	}
	b := a
	b.FullDomain = "u2.auth.example.test"
	if err := st.SaveAccount("shop.example.test", b); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(st.Dir, "accounts.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("accounts.json mode %v %v, want 0600", fi.Mode(), err)
	}
	for name, want := range map[string]string{
		"example.test":          "u1.auth.example.test",
		"*.example.test":        "u1.auth.example.test",
		"www.example.test":      "u1.auth.example.test",
		"shop.example.test":     "u2.auth.example.test",
		"*.shop.example.test":   "u2.auth.example.test",
		"a.b.shop.example.test": "u2.auth.example.test",
	} {
		_, got, err := st.AccountFor(name)
		if err != nil || got.FullDomain != want {
			t.Errorf("AccountFor(%s) = %s, %v; want %s", name, got.FullDomain, err, want)
		}
	}
	_, _, err = st.AccountFor("other.test")
	var na *ErrNoAccount
	if !errors.As(err, &na) || !strings.Contains(err.Error(), "acmebroker client register") {
		t.Fatalf("want ErrNoAccount with advice, got %v", err)
	}
	// The file is what lego's acme-dns provider stores.
	raw, _ := os.ReadFile(filepath.Join(st.Dir, "accounts.json"))
	for _, k := range []string{`"example.test"`, `"fulldomain"`, `"subdomain"`, `"username"`, `"password"`, `"server_url"`} {
		if !strings.Contains(string(raw), k) {
			t.Errorf("accounts.json lacks %s: %s", k, raw)
		}
	}
}

func TestACMEAccountKeyReused(t *testing.T) {
	st := &State{Dir: t.TempDir()}
	k1, created, err := st.ACMEAccountKey("https://ca.test:14000/dir")
	if err != nil || !created {
		t.Fatal(err, created)
	}
	k2, created, err := st.ACMEAccountKey("https://ca.test:14000/dir")
	if err != nil || created {
		t.Fatal(err, created)
	}
	if !k1.Public().(*ecdsa.PublicKey).Equal(k2.Public()) {
		t.Fatal("account key not reused")
	}
	if _, ok := k1.Public().(*ecdsa.PublicKey); !ok || k1.Public().(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Fatal("account key is not ECDSA P-256")
	}
}

func selfSigned(t *testing.T, names []string, notAfter time.Time) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x80ff), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: notAfter.Add(-90 * 24 * time.Hour), NotAfter: notAfter, AuthorityKeyId: []byte{1, 2, 3}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return der, k
}

func TestSaveCertificateAtomicSwap(t *testing.T) {
	st := &State{Dir: t.TempDir()}
	now := time.Now()
	save := func(cn string) string {
		der, k := selfSigned(t, []string{cn}, now.Add(time.Hour))
		f, _, err := encodeChain([][]byte{der}, k)
		if err != nil {
			t.Fatal(err)
		}
		dir, err := st.SaveCertificate("example.test", f, Renewal{Domains: []string{cn}, CAURL: "https://ca"}, now)
		if err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dir := save("one.example.test")
	c, err := st.LoadCertificate("example.test")
	if err != nil || c.Leaf.Subject.CommonName != "one.example.test" {
		t.Fatalf("%v %v", c, err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "privkey.pem"))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("privkey.pem mode %v", fi.Mode())
	}
	for _, f := range []string{"cert.pem", "chain.pem", "fullchain.pem", "privkey.pem", "renewal.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	for i := 0; i < 5; i++ {
		save("two.example.test")
	}
	c, _ = st.LoadCertificate("example.test")
	if c.Leaf.Subject.CommonName != "two.example.test" {
		t.Fatal("not swapped to the new certificate")
	}
	vers, _ := os.ReadDir(filepath.Join(st.Dir, "certificates", ".versions", "example.test"))
	if len(vers) > 3 {
		t.Fatalf("%d versions kept, want at most 3", len(vers))
	}
	names, _ := st.CertificateNames()
	if len(names) != 1 || names[0] != "example.test" {
		t.Fatalf("names %v", names)
	}
	if _, err := st.SaveCertificate("../evil", CertFiles{}, Renewal{}, now); err == nil {
		t.Fatal("path traversal in the name accepted")
	}
}

func TestARICertID(t *testing.T) {
	der, _ := selfSigned(t, []string{"a.test"}, time.Now().Add(time.Hour))
	leaf, _ := x509.ParseCertificate(der)
	id, err := ARICertID(leaf)
	// AKI 010203 -> AQID; serial 0x80ff has its high bit set -> 00 80 ff -> AIDw... base64url
	if err != nil || id != "AQID.AID_" {
		t.Fatalf("ARICertID = %q, %v", id, err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		"Thu, 01 Jan 2026 00:00:10 GMT": 10 * time.Second,
		"garbage":                       0,
		"-5":                            0,
		" 7 ":                           7 * time.Second,
		"99999999999999":                30 * 24 * time.Hour, // capped, no overflow
		"Wed, 31 Dec 2025 23:59:00 GMT": 0,                   // in the past
	} {
		if got := ParseRetryAfter(v, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestCertName(t *testing.T) {
	if n := CertName([]string{"*.Example.test", "example.test"}); n != "_.example.test" {
		t.Fatal(n)
	}
}

func TestNewCertKey(t *testing.T) {
	for _, kt := range []string{"ec256", "ec384", "rsa2048"} {
		if _, err := NewCertKey(kt); err != nil {
			t.Error(kt, err)
		}
	}
	if _, err := NewCertKey("dsa"); err == nil || !strings.Contains(err.Error(), "ec256") {
		t.Fatal(err)
	}
}
