package acmetest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pebbleConfig is the part of Pebble v2.10.3's configuration file
// (cmd/pebble/main.go) that the environment sets.
type pebbleConfig struct {
	Pebble struct {
		ListenAddress                  string                   `json:"listenAddress"`
		ManagementListenAddress        string                   `json:"managementListenAddress"`
		HTTPPort                       int                      `json:"httpPort"`
		TLSPort                        int                      `json:"tlsPort"`
		Certificate                    string                   `json:"certificate"`
		PrivateKey                     string                   `json:"privateKey"`
		OCSPResponderURL               string                   `json:"ocspResponderURL"`
		ExternalAccountBindingRequired bool                     `json:"externalAccountBindingRequired"`
		ExternalAccountMACKeys         map[string]string        `json:"externalAccountMACKeys,omitempty"`
		KeyAlgorithm                   string                   `json:"keyAlgorithm"`
		RetryAfter                     pebbleRetryAfter         `json:"retryAfter"`
		Profiles                       map[string]pebbleProfile `json:"profiles"`
	} `json:"pebble"`
}

type pebbleRetryAfter struct {
	Authz int `json:"authz"`
	Order int `json:"order"`
}

type pebbleProfile struct {
	Description    string `json:"description"`
	ValidityPeriod uint64 `json:"validityPeriod"`
}

// pebbleEnv is the environment Pebble runs with: the caller's, minus any
// PEBBLE_* setting that would change its behaviour behind the test's back.
// Nonce rejection stays at Pebble's default (5%) so that clients' badNonce
// retry is exercised, unless o.NoBadNonce.
func pebbleEnv(o Options) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PEBBLE_") {
			env = append(env, kv)
		}
	}
	env = append(env, "PEBBLE_AUTHZREUSE=0") // every order gets fresh authorizations to validate
	if o.VASleep > 0 {
		env = append(env, fmt.Sprintf("PEBBLE_VA_SLEEPTIME=%d", o.VASleep))
	} else {
		env = append(env, "PEBBLE_VA_NOSLEEP=1") // no random 0-5 s sleep before each validation
	}
	if o.NoBadNonce {
		env = append(env, "PEBBLE_WFE_NONCEREJECT=0")
	}
	return env
}

type pebble struct {
	proc    *process
	dirURL  string
	mgmtURL string
}

// startPebble runs Pebble with its VA resolving through resolver and waits
// until both its ACME directory and its management interface answer. Free
// ports are picked by binding and closing, so another program can take one
// in between: then the whole start is retried.
func startPebble(tb testing.TB, tools *tools, dir, resolver string, roots *x509.CertPool, o Options) (*pebble, error) {
	tb.Helper()
	const attempts = 3
	var lastErr error
	for attempt := 1; attempt <= attempts; attempt++ {
		pb, retry, err := tryPebble(tb, tools, dir, resolver, roots, o, attempt)
		if err == nil {
			return pb, nil
		}
		lastErr = err
		if !retry {
			break
		}
		tb.Logf("acmetest: pebble attempt %d: %v; retrying", attempt, err)
	}
	return nil, lastErr
}

func tryPebble(tb testing.TB, tools *tools, dir, resolver string, roots *x509.CertPool, o Options, attempt int) (pb *pebble, retry bool, err error) {
	// listen, management, and the ports the VA would connect to for
	// http-01 and tls-alpn-01 (unused for dns-01, but must be set).
	ports, err := freeTCPPorts(4)
	if err != nil {
		return nil, false, fmt.Errorf("pebble: %w", err)
	}
	var c pebbleConfig
	c.Pebble.ListenAddress = fmt.Sprintf("127.0.0.1:%d", ports[0])
	c.Pebble.ManagementListenAddress = fmt.Sprintf("127.0.0.1:%d", ports[1])
	c.Pebble.HTTPPort = ports[2]
	c.Pebble.TLSPort = ports[3]
	c.Pebble.Certificate = filepath.Join(tools.pebbleCerts, "localhost", "cert.pem")
	c.Pebble.PrivateKey = filepath.Join(tools.pebbleCerts, "localhost", "key.pem")
	c.Pebble.ExternalAccountBindingRequired = len(o.EAB) > 0
	c.Pebble.ExternalAccountMACKeys = o.EAB
	c.Pebble.KeyAlgorithm = "ecdsa" // its CA keys are made at start-up: ECDSA is much quicker than RSA
	c.Pebble.RetryAfter = pebbleRetryAfter{Authz: 1, Order: 1}
	c.Pebble.Profiles = map[string]pebbleProfile{
		"default": {Description: "acmetest default profile", ValidityPeriod: 7776000},
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, false, fmt.Errorf("pebble: encode config: %w", err)
	}
	conf := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(conf, b, 0o600); err != nil {
		return nil, false, fmt.Errorf("pebble: write config: %w", err)
	}

	outPath := filepath.Join(dir, fmt.Sprintf("pebble-%d.out", attempt))
	p, err := startProcess("pebble", dir, outPath, pebbleEnv(o), tools.pebble,
		"-config", conf, "-dnsserver", resolver)
	if err != nil {
		return nil, false, err
	}
	pb = &pebble{
		proc:    p,
		dirURL:  "https://" + c.Pebble.ListenAddress + "/dir",
		mgmtURL: "https://" + c.Pebble.ManagementListenAddress,
	}

	client := newHTTPClient(roots, 2*time.Second)
	defer client.CloseIdleConnections()
	err = poll(tb.Context(), 20*time.Second, 50*time.Millisecond, func() (bool, string, error) {
		if done, werr := p.exited(); done {
			return false, "", fmt.Errorf("pebble exited during start-up (%v)", werr)
		}
		for _, u := range []string{pb.dirURL, pb.mgmtURL + "/roots/0"} {
			if err := getOK(client, u); err != nil {
				return false, err.Error(), nil
			}
		}
		return true, "", nil
	})
	if err == nil {
		return pb, false, nil
	}
	if stopErr := p.stop(5 * time.Second); stopErr != nil {
		tb.Logf("acmetest: %v", stopErr)
	}
	text := p.tail()
	return nil, strings.Contains(text, "address already in use"), fmt.Errorf("pebble: %w\npebble output:\n%s", err, text)
}

func newHTTPClient(roots *x509.CertPool, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		// A Transport of its own: no proxy from the environment, and TLS
		// that trusts exactly Pebble's test CA.
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: timeout,
			MaxIdleConnsPerHost: 4,
		},
	}
}

func getOK(client *http.Client, url string) error {
	res, err := client.Get(url)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return nil
}
