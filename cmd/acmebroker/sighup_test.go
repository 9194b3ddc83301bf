package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/acmetest"
)

// writeSelfSigned writes a certificate with the given serial and its key.
func writeSelfSigned(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	c, k := acmetest.SelfSigned(t, serial, []string{"auth.example.test"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err := os.WriteFile(certFile, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
}

func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestSIGHUPReloadsCertificate: the serve command, sent SIGHUP, re-reads
// the API's certificate files (tls = "cert") and keeps running; the
// periodic check is set to an hour, so only the signal can have done it.
func TestSIGHUPReloadsCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile, 1)
	cfgPath := filepath.Join(dir, "config.toml")
	cfg := fmt.Sprintf(`[dns]
listen = ["127.0.0.1:0"]
zone = "auth.example.test"
nsname = "ns1.auth.example.test"
nsadmin = "hostmaster.example.test"
records = ["auth.example.test. NS ns1.auth.example.test.", "ns1.auth.example.test. A 127.0.0.1"]
[api]
listen = "127.0.0.1:0"
tls = "cert"
cert_file = %q
key_file = %q
cert_check_interval = "1h"
[storage]
dsn = %q
`, certFile, keyFile, filepath.Join(dir, "broker.db"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, cfgPath)
	addr := strings.TrimPrefix(b.api, "https://")
	if s := servedSerial(t, addr); s != 1 {
		t.Fatalf("serial %d, want 1", s)
	}
	writeSelfSigned(t, certFile, keyFile, 2)
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); servedSerial(t, addr) != 2; time.Sleep(20 * time.Millisecond) { // polling with a deadline
		if time.Now().After(deadline) {
			t.Fatalf("still serial 1 ten seconds after SIGHUP\n%s", b.stderr.String())
		}
	}
	select {
	case <-b.done:
		t.Fatalf("the broker exited on SIGHUP\n%s", b.stderr.String())
	default:
	}
	if !strings.Contains(b.stderr.String(), "SIGHUP") {
		t.Errorf("the log does not say SIGHUP was received:\n%s", b.stderr.String())
	}
}
