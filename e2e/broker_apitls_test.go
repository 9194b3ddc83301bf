package e2e_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/acmetest"
	"github.com/acmebroker/acmebroker/internal/broker"
	"github.com/acmebroker/acmebroker/internal/broker/brokertest"
	"github.com/acmebroker/acmebroker/internal/config"
	"github.com/acmebroker/acmebroker/internal/pgtest"
)

// writePair writes a self-signed certificate with the given serial and its
// key; certOnly leaves the key file as it was (a renewal tool halfway).
func writePair(t *testing.T, certFile, keyFile string, serial int64, certOnly bool) {
	t.Helper()
	c, k := acmetest.SelfSigned(t, serial, []string{"api.example.test"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	// Written by rename, as renewal tools do, so a check never reads half a file.
	write := func(path string, b []byte) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(certFile, c)
	if !certOnly {
		write(keyFile, k)
	}
}

// servedCert is the certificate the API at addr serves for serverName,
// verified against roots (nil: not verified).
func servedCert(addr, serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	conf := &tls.Config{ServerName: serverName, RootCAs: roots, InsecureSkipVerify: roots == nil}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// waitCert polls until the API serves a certificate for serverName that
// roots verify and whose serial is not notSerial.
func waitCert(t *testing.T, addr, serverName string, roots *x509.CertPool, notSerial *big.Int, within time.Duration) *x509.Certificate {
	t.Helper()
	var last error
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) { // polling with a deadline
		c, err := servedCert(addr, serverName, roots)
		if err == nil && (notSerial == nil || c.SerialNumber.Cmp(notSerial) != 0) {
			return c
		}
		if err == nil {
			err = errors.New("still the old certificate, serial " + c.SerialNumber.Text(16))
		}
		last = err
	}
	t.Fatalf("no certificate for %s from %s within %s: %v", serverName, addr, within, last)
	return nil
}

// keptAlive is an HTTPS client whose one connection is reused: a request
// tells whether it went over the connection opened first and which
// certificate that connection saw.
type keptAlive struct {
	hc *http.Client
}

func newKeptAlive(serverName string, roots *x509.CertPool) *keptAlive {
	return &keptAlive{hc: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: serverName, RootCAs: roots, InsecureSkipVerify: roots == nil},
		MaxConnsPerHost: 1, IdleConnTimeout: time.Minute,
	}}}
}

func (k *keptAlive) get(t *testing.T, url string) (serial *big.Int, reused bool) {
	t.Helper()
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := k.hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusOK || res.TLS == nil {
		t.Fatalf("GET %s: %s (TLS %v)", url, res.Status, res.TLS != nil)
	}
	return res.TLS.PeerCertificates[0].SerialNumber, reused
}

// TestAPICertFilesReload: with tls = "cert" a renewed pair takes effect
// without a restart, by the periodic check and by SIGHUP (Ready.Reload),
// while a connection opened before keeps working; a pair caught halfway
// through its renewal (new certificate, old key) leaves the served one.
func TestAPICertFilesReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair(t, certFile, keyFile, 1, false)
	cfg := brokertest.Config(t, "", func(c *config.Config) {
		c.API.TLS, c.API.CertFile, c.API.KeyFile = "cert", certFile, keyFile
		c.API.CertCheckInterval = config.Duration{Duration: 100 * time.Millisecond}
	})
	r, _ := runBroker(t, cfg)
	if !strings.HasPrefix(r.API, "https://") {
		t.Fatalf("API %s is not HTTPS", r.API)
	}
	addr := strings.TrimPrefix(r.API, "https://")
	k := newKeptAlive("api.example.test", nil)
	if serial, _ := k.get(t, r.API+"/health"); serial.Int64() != 1 {
		t.Fatalf("served serial %d, want 1", serial)
	}

	// Renewed by another tool: the periodic check picks it up.
	writePair(t, certFile, keyFile, 2, false)
	waitCert(t, addr, "api.example.test", nil, big.NewInt(1), 10*time.Second)
	if serial, reused := k.get(t, r.API+"/health"); !reused || serial.Int64() != 1 {
		t.Fatalf("the connection opened before the reload: reused %v, serial %d; want it kept (serial 1)", reused, serial)
	}

	// Halfway through a renewal: SIGHUP keeps the served certificate.
	writePair(t, certFile, keyFile, 3, true)
	r.Reload()
	if c, err := servedCert(addr, "api.example.test", nil); err != nil || c.SerialNumber.Int64() != 2 {
		t.Fatalf("after reloading a mismatched pair: %v %v; want serial 2 still served", c, err)
	}
	// Finished: SIGHUP takes it at once.
	writePair(t, certFile, keyFile, 4, false)
	r.Reload()
	if c, err := servedCert(addr, "api.example.test", nil); err != nil || c.SerialNumber.Int64() != 4 {
		t.Fatalf("after SIGHUP: %v %v; want serial 4", c, err)
	}
}

// TestAPICertACMEWaiting: until the CA gives a certificate the API's port
// answers no HTTPS (the handshake fails) and no API over plain HTTP, while
// /health on the metrics listener says what it waits for. The CA here
// cannot be reached.
func TestAPICertACMEWaiting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg := brokertest.Config(t, "", func(c *config.Config) {
		c.Metrics.Listen = "127.0.0.1:0"
		c.API.TLS = "acme"
		c.API.ACME.Directory = "https://" + dead + "/dir"
		c.API.ACME.CheckInterval = config.Duration{Duration: 100 * time.Millisecond}
	})
	r, _ := runBroker(t, cfg)
	health := strings.TrimSuffix(r.Metrics, "/metrics") + "/health"
	var body map[string]string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) { // polling with a deadline
		res, err := http.Get(health)
		if err != nil {
			t.Fatal(err)
		}
		body = map[string]string{}
		err = json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(body["api"], "waiting for a certificate") {
			t.Fatalf("/health: %d %v (%v); want 503 waiting for a certificate", res.StatusCode, body, err)
		}
		if strings.Contains(body["api"], dead) { // the first attempt has failed, and says why
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health never named the failure: %v", body)
		}
	}
	addr := strings.TrimPrefix(r.API, "https://")
	if c, err := servedCert(addr, "auth.example.org", nil); err == nil {
		t.Fatalf("the API served a certificate (%v) before having one", c.Subject)
	}
	res, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode == http.StatusOK || strings.Contains(string(b), `"status"`) {
		t.Fatalf("plain HTTP on the HTTPS port got %s %q; want no API answer", res.Status, b)
	}
}

// TestAPICertACMEConfigConflicts: names whose challenge the broker cannot
// answer (static records there, a delegated zone) stop it at start-up.
func TestAPICertACMEConfigConflicts(t *testing.T) {
	for _, tc := range []struct{ records, names []string }{
		{[]string{`_acme-challenge.auth.example.org. TXT "static"`}, nil},
		{[]string{"sub.auth.example.org. NS ns.elsewhere.test."}, []string{"auth.example.org", "x.sub.auth.example.org"}},
	} {
		cfg := brokertest.Config(t, "", func(c *config.Config) {
			c.DNS.Records = append(c.DNS.Records, tc.records...)
			c.API.TLS, c.API.ACME.Names = "acme", tc.names
		})
		err := broker.Run(t.Context(), cfg, slog.New(slog.DiscardHandler), func(broker.Ready) { t.Error("started") })
		var ce *broker.ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "api.acme.names") {
			t.Errorf("records %q: %v; want a config error naming api.acme.names", tc.records, err)
		}
	}
}

const apiZone = "auth.example.test"

// acmeNode is the config of a broker whose API certificate comes from the
// Pebble of env, for names, checking the database every 100 ms; it waits
// for the name server the CA asks (unbound's stub for the zone, given in
// asked) to serve each challenge value before telling the CA.
func acmeNode(t *testing.T, env *acmetest.Env, dnsListen, asked string, names ...string) config.Config {
	t.Helper()
	return brokertest.Config(t, apiZone, func(c *config.Config) {
		c.DNS.Listen = []string{dnsListen}
		c.DNS.RRL.Enabled = false
		c.Metrics.Listen = "127.0.0.1:0"
		if env != nil {
			c.API.TLS = "acme"
			c.API.ACME.Directory = env.CAURL
			c.API.ACME.CARoot = env.CARootPEM
			c.API.ACME.Names = names
			c.API.ACME.Email = "ops@example.test"
			c.API.ACME.CheckInterval = config.Duration{Duration: 100 * time.Millisecond}
			c.API.ACME.Nameservers = []string{asked}
		}
	})
}

func mustValidate(t *testing.T, cfg config.Config) config.Config {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestAPICertACME: one broker gets its API certificate (apex and wildcard)
// from Pebble by answering dns-01 itself, with external account binding
// and a profile; renews it when the CA's renewal information says, without
// a restart and without dropping a connection; and after a restart serves
// the stored certificate instead of issuing again.
func TestAPICertACME(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dnsAddr := net.JoinHostPort("127.0.0.1", itoa(acmetest.FreePort(t)))
	const kid, hmac = "kid-1", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	env := acmetest.Start(t, acmetest.Options{BrokerDNS: dnsAddr, BrokerZone: apiZone, CustomerZone: "example.test", EAB: map[string]string{kid: hmac}})
	// A name below the apex too: its challenge, _acme-challenge.api.<zone>,
	// is two labels deep (api.<zone> answering NODATA, not NXDOMAIN, is
	// checked in dnsserver's TestAnswers: this unbound does not ask for it).
	cfg := acmeNode(t, env, dnsAddr, dnsAddr, apiZone, "*."+apiZone, "api."+apiZone)
	cfg.API.ACME.EABKID, cfg.API.ACME.EABHMAC, cfg.API.ACME.Profile = kid, hmac, "default"
	cfg = mustValidate(t, cfg)
	root := env.IssuerRoot(t)

	start := time.Now()
	r, stop := brokertest.RunNamed(t, "first", cfg)
	addr := strings.TrimPrefix(r.API, "https://")
	leaf := waitCert(t, addr, apiZone, root, nil, time.Minute)
	t.Logf("first certificate served %s after the broker started (%s from start-up to ready)", time.Since(start).Round(time.Millisecond), r.Startup.Round(time.Millisecond))
	if !slices.Equal(slices.Sorted(slices.Values(leaf.DNSNames)), []string{"*." + apiZone, "api." + apiZone, apiZone}) {
		t.Fatalf("certificate for %v", leaf.DNSNames)
	}
	if _, err := servedCert(addr, "www."+apiZone, root); err != nil {
		t.Fatalf("the wildcard does not verify for www.%s: %v", apiZone, err)
	}
	if code, body := getJSON(t, strings.TrimSuffix(r.Metrics, "/metrics")+"/health"); code != http.StatusOK || body["api"] != "serving" {
		t.Fatalf("/health on the metrics listener: %d %v", code, body)
	}
	k := newKeptAlive(apiZone, root)
	if serial, _ := k.get(t, r.API+"/health"); serial.Cmp(leaf.SerialNumber) != 0 {
		t.Fatalf("API answered with serial %s", serial.Text(16))
	}

	// The CA wants it renewed now (ARI); SIGHUP makes the broker ask.
	env.SetRenewalInfo(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	renewStart := time.Now()
	r.Reload()
	renewed := waitCert(t, addr, apiZone, root, leaf.SerialNumber, time.Minute)
	t.Logf("renewal by ARI served %s after the renewal information changed", time.Since(renewStart).Round(time.Millisecond))
	if serial, reused := k.get(t, r.API+"/health"); !reused || serial.Cmp(leaf.SerialNumber) != 0 {
		t.Fatalf("the connection opened before the renewal: reused %v, serial %s; want it kept", reused, serial.Text(16))
	}

	// A restart serves the stored certificate: no new one.
	stop()
	r2, _ := brokertest.RunNamed(t, "restarted", cfg)
	again := waitCert(t, strings.TrimPrefix(r2.API, "https://"), apiZone, root, nil, 30*time.Second)
	if again.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Fatalf("after a restart the broker serves serial %s, not the stored %s: it issued again", again.SerialNumber.Text(16), renewed.SerialNumber.Text(16))
	}
}

// TestAPICertACMENodes: nodes on one PostgreSQL database share one
// certificate. Node B serves DNS only, and it is the one the CA asks: the
// challenge node A publishes reaches it through the database. Node C,
// started later, loads A's certificate instead of issuing; when the CA
// wants a renewal, one node renews and both serve the new certificate.
func TestAPICertACMENodes(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dsn := pgtest.Schema(t)
	onPG := func(cfg config.Config) config.Config {
		cfg.Storage.Engine, cfg.Storage.DSN = "postgres", dsn
		return mustValidate(t, cfg)
	}
	rB, _ := brokertest.RunNamed(t, "node B", onPG(acmeNode(t, nil, "127.0.0.1:0", "")))
	env := acmetest.Start(t, acmetest.Options{BrokerDNS: rB.DNS[0], BrokerZone: apiZone, CustomerZone: "example.test"})
	root := env.IssuerRoot(t)
	// A waits until B serves its challenge: B hears of it through the
	// database a moment after A stored it, and the CA asks B.
	cfg := acmeNode(t, env, "127.0.0.1:0", rB.DNS[0], apiZone)
	cfg.API.ACME.KeyType = "ec384"
	cfg = onPG(cfg)

	start := time.Now()
	rA, _ := brokertest.RunNamed(t, "node A", cfg)
	addrA := strings.TrimPrefix(rA.API, "https://")
	leaf := waitCert(t, addrA, apiZone, root, nil, time.Minute)
	t.Logf("node A: certificate served %s after start (challenge answered by node B)", time.Since(start).Round(time.Millisecond))
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P384() {
		t.Fatalf("key_type ec384: the certificate's key is %T", leaf.PublicKey)
	}

	rC, _ := brokertest.RunNamed(t, "node C", cfg)
	addrC := strings.TrimPrefix(rC.API, "https://")
	if c := waitCert(t, addrC, apiZone, root, nil, 30*time.Second); c.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatalf("node C serves serial %s, node A %s: it issued its own", c.SerialNumber.Text(16), leaf.SerialNumber.Text(16))
	}

	env.SetRenewalInfo(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	rA.Reload()
	rC.Reload()
	renewStart := time.Now()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) { // polling with a deadline
		a, errA := servedCert(addrA, apiZone, root)
		c, errC := servedCert(addrC, apiZone, root)
		if errA == nil && errC == nil && a.SerialNumber.Cmp(leaf.SerialNumber) != 0 && a.SerialNumber.Cmp(c.SerialNumber) == 0 {
			t.Logf("both nodes serve the renewed certificate %s after the renewal information changed", time.Since(renewStart).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after the CA asked for a renewal: A serves %v (%v), C %v (%v); want one new certificate on both", serialOf(a), errA, serialOf(c), errC)
		}
	}
}

func serialOf(c *x509.Certificate) string {
	if c == nil {
		return "nothing"
	}
	return c.SerialNumber.Text(16)
}

func getJSON(t *testing.T, url string) (int, map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body := map[string]string{}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res.StatusCode, body
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }
