package apitls

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeStored writes the certificate and key of a stored pair as files.
func writeStored(t *testing.T, dir string, serial int64) (string, string) {
	t.Helper()
	var sc storedCert
	if err := json.Unmarshal(storedPair(t, serial, []string{"api.example.test"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour)), &sc); err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, []byte(sc.Chain), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, []byte(sc.Key), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeStored(t, dir, 1)
	f, err := NewFiles(cert, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := f.GetCertificate(nil); c.Leaf.SerialNumber.Int64() != 1 {
		t.Fatalf("serial %d", c.Leaf.SerialNumber)
	}
	if changed, err := f.Reload(); changed || err != nil {
		t.Fatalf("reloading unchanged files: changed %v, %v", changed, err)
	}
	// A key that does not match: refused, the old pair stays.
	other := t.TempDir()
	_, otherKey := writeStored(t, other, 2)
	if b, err := os.ReadFile(otherKey); err != nil || os.WriteFile(key, b, 0o600) != nil {
		t.Fatal(err)
	}
	if changed, err := f.Reload(); changed || err == nil || !strings.Contains(err.Error(), "api.cert_file") {
		t.Fatalf("mismatched pair: changed %v, %v", changed, err)
	}
	if f.Leaf().SerialNumber.Int64() != 1 {
		t.Fatal("the served certificate changed to a broken pair")
	}
	if _, err := NewFiles(cert, key, nil); err == nil {
		t.Fatal("NewFiles took a mismatched pair")
	}
	if _, err := NewFiles(filepath.Join(dir, "missing.pem"), key, nil); err == nil {
		t.Fatal("NewFiles took a missing file")
	}
}

func TestCAHTTPClient(t *testing.T) {
	if _, err := CAHTTPClient(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Error("a missing ca_root was taken")
	}
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := CAHTTPClient(junk); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a ca_root without certificates: %v", err)
	}
	dir := t.TempDir()
	cert, _ := writeStored(t, dir, 3)
	if hc, err := CAHTTPClient(cert); err != nil || hc == nil {
		t.Errorf("a good ca_root: %v", err)
	}
}
