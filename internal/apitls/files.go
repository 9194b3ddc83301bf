// Package apitls gives the broker's HTTPS API its certificate, through
// tls.Config.GetCertificate so that a new one takes effect on the next
// handshake, without a restart and without dropping a connection:
//
//   - Files (api.tls = "cert"): a certificate and key from files, re-read
//     when they change (renewed by another tool) or on SIGHUP;
//   - Manager (api.tls = "acme"): a certificate from an ACME CA for names
//     in the broker's own zone, whose dns-01 challenges the broker answers
//     itself, kept with its key and the ACME account in the database so
//     that a restart does not issue again and nodes on one database share
//     one certificate; renewed when the CA's renewal information (ARI) says.
package apitls

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Files serves the certificate in a pair of PEM files and follows them.
// A pair that does not load (a renewal tool halfway through writing them:
// the new certificate beside the old key) is logged and the certificate
// served stays; the next check tries again. Safe for concurrent use.
type Files struct {
	certFile, keyFile string
	log               *slog.Logger

	mu   sync.Mutex // serialises loads
	seen [2]stamp   // the files as last loaded (or found unchanged)
	cur  atomic.Pointer[tls.Certificate]
	sum  [sha256.Size]byte // of the certificate served, to log real changes only
}

// stamp is what a check compares: a renewal rewrites a file or points a
// symbolic link at another one, and either changes one of these.
type stamp struct {
	mod  time.Time
	size int64
	ok   bool
}

func stat(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{mod: fi.ModTime(), size: fi.Size(), ok: true}
}

// NewFiles loads the pair; it fails if it does not load (the broker must
// not start without a certificate).
func NewFiles(certFile, keyFile string, logger *slog.Logger) (*Files, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Files{certFile: certFile, keyFile: keyFile, log: logger}
	if _, err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

// GetCertificate implements tls.Config.GetCertificate.
func (f *Files) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.cur.Load(), nil
}

// Leaf is the certificate served.
func (f *Files) Leaf() *x509.Certificate { return f.cur.Load().Leaf }

// Reload re-reads the pair now (SIGHUP) and reports whether the
// certificate served changed. On error the old one stays.
func (f *Files) Reload() (bool, error) {
	changed, err := f.load()
	if err != nil {
		f.log.Error("api certificate not reloaded; serving the previous one", "cert_file", f.certFile, "key_file", f.keyFile, "err", err)
	}
	return changed, err
}

// Watch checks the files every interval until ctx ends and reloads them
// when they change.
func (f *Files) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		same := f.seen == [2]stamp{stat(f.certFile), stat(f.keyFile)}
		f.mu.Unlock()
		if !same {
			_, _ = f.Reload()
		}
	}
}

func (f *Files) load() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := [2]stamp{stat(f.certFile), stat(f.keyFile)}
	cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return false, fmt.Errorf("api.cert_file %s / api.key_file %s: %w", f.certFile, f.keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return false, fmt.Errorf("api.cert_file %s: %w", f.certFile, err)
		}
	}
	f.seen = st
	sum := sha256.Sum256(bytes.Join(cert.Certificate, nil))
	if f.cur.Load() != nil && sum == f.sum {
		return false, nil
	}
	f.sum = sum
	f.cur.Store(&cert)
	f.log.Info("api certificate loaded", "cert_file", f.certFile, "names", strings.Join(cert.Leaf.DNSNames, ","), "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return true, nil
}

// CAHTTPClient is an HTTP client for talking to an ACME CA that trusts the
// system roots plus the PEM certificates in caRoot ("" for the system roots
// only), for CAs whose TLS certificate a private root signs.
func CAHTTPClient(caRoot string) (*http.Client, error) {
	if caRoot == "" {
		return &http.Client{Timeout: 60 * time.Second}, nil
	}
	b, err := os.ReadFile(caRoot)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New(caRoot + " holds no PEM certificate")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyFromEnvironment
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Timeout: 60 * time.Second, Transport: tr}, nil
}
