package client

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// State is the client's state directory:
//
//	accounts.json                 broker accounts by domain (lego's acme-dns format), 0600
//	acme/<directory>/account.key  ACME account key (PEM), 0600, one per CA directory URL
//	acme/<directory>/account.json ACME account URL, contact and directory URL
//	certificates/<name>           -> .versions/<name>/<stamp> (swapped atomically)
//	    cert.pem chain.pem fullchain.pem privkey.pem(0600) renewal.json
//	locks/                        lock files (see lock.go)
//
// Writers take the locks (LockAccounts, LockCertificate); readers need none,
// since every file is replaced by a rename.
type State struct {
	Dir string
}

// ErrNoAccount: no broker account covers a domain.
type ErrNoAccount struct {
	Domain string
	Dir    string // the state directory searched
}

func (e *ErrNoAccount) Error() string {
	where := ""
	if e.Dir != "" {
		where = " in " + filepath.Join(e.Dir, "accounts.json")
	}
	return fmt.Sprintf("no broker account covers %s%s: run `acmebroker client register --api <broker URL> --domain %s` first (or pass --state-dir if it was registered elsewhere)", e.Domain, where, baseDomain(e.Domain))
}

func (s *State) accountsPath() string { return filepath.Join(s.Dir, "accounts.json") }

// Accounts reads the broker accounts, keyed by registered domain.
func (s *State) Accounts() (map[string]BrokerAccount, error) {
	b, err := os.ReadFile(s.accountsPath())
	if errors.Is(err, os.ErrNotExist) {
		return map[string]BrokerAccount{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	m := map[string]BrokerAccount{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("state: %s is not valid JSON: %w", s.accountsPath(), err)
	}
	return m, nil
}

// SaveAccount stores acct as the account for domain. It reads, changes and
// writes accounts.json: hold LockAccounts around it (and around the check
// that led to it) when other runs may share the state directory.
func (s *State) SaveAccount(domain string, acct BrokerAccount) error {
	m, err := s.Accounts()
	if err != nil {
		return err
	}
	m[normDomain(domain)] = acct
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.accountsPath(), append(b, '\n'), 0o600)
}

// LockAccounts takes the lock of the ACME accounts and of accounts.json.
func (s *State) LockAccounts(ctx context.Context, o LockOptions) (*Lock, error) {
	return s.lock(ctx, "account.lock", "the ACME account and broker credentials", o)
}

// LockCertificate takes the lock of one certificate.
func (s *State) LockCertificate(ctx context.Context, name string, o LockOptions) (*Lock, error) {
	if err := ValidateCertName(name); err != nil {
		return nil, err
	}
	return s.lock(ctx, lockName("cert", name), "certificate "+name, o)
}

// lockBroker takes the lock of one broker account's TXT values.
func (s *State) lockBroker(ctx context.Context, a BrokerAccount, o LockOptions) (*Lock, error) {
	return s.lock(ctx, lockName("broker", a.SubDomain), "the values of broker account "+a.FullDomain, o)
}

// AccountFor finds the account that covers name: the one registered for
// name itself (without "*.") or for the closest parent domain.
func (s *State) AccountFor(name string) (domain string, acct BrokerAccount, err error) {
	m, err := s.Accounts()
	if err != nil {
		return "", BrokerAccount{}, err
	}
	d := baseDomain(name)
	for cur := d; cur != ""; {
		if a, ok := m[cur]; ok {
			return cur, a, nil
		}
		i := strings.IndexByte(cur, '.')
		if i < 0 {
			break
		}
		cur = cur[i+1:]
	}
	return "", BrokerAccount{}, &ErrNoAccount{Domain: d, Dir: s.Dir}
}

func normDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// baseDomain strips a wildcard label: both example.org and *.example.org
// validate at _acme-challenge.example.org.
func baseDomain(d string) string { return strings.TrimPrefix(normDomain(d), "*.") }

// ChallengeName is where the CA looks for the dns-01 value of domain.
func ChallengeName(domain string) string { return "_acme-challenge." + baseDomain(domain) }

// acmeDir is where the account for the CA directory caURL lives: one per
// directory URL, since one host may serve several CAs (staging and
// production, or one per customer) whose accounts differ.
func (s *State) acmeDir(caURL string) string {
	name := "ca"
	if u, err := url.Parse(caURL); err == nil && u.Host != "" {
		name = u.Host + strings.TrimRight(u.EscapedPath(), "/")
		if u.Scheme == "http" {
			name = "http_" + name
		}
		if u.RawQuery != "" {
			name += "?" + u.RawQuery
		}
	}
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, name)
	return filepath.Join(s.Dir, "acme", name)
}

// legacyACMEDir is where versions before 2027 kept the account: one per
// host.
func (s *State) legacyACMEDir(caURL string) string {
	host := "ca"
	if u, err := url.Parse(caURL); err == nil && u.Host != "" {
		host = strings.NewReplacer(":", "_", "/", "_").Replace(u.Host)
	}
	return filepath.Join(s.Dir, "acme", host)
}

// migrateACMEAccount moves an account kept per host into the directory of
// its directory URL, if it was made for caURL. Called under LockAccounts.
func (s *State) migrateACMEAccount(caURL string) error {
	old, cur := s.legacyACMEDir(caURL), s.acmeDir(caURL)
	if old == cur {
		return nil
	}
	if _, err := os.Stat(filepath.Join(cur, "account.key")); err == nil {
		return nil
	}
	a, err := readACMEAccount(filepath.Join(old, "account.json"))
	if err != nil || a.Directory != caURL {
		return nil // nothing there, or another CA's account on the same host
	}
	if err := os.MkdirAll(cur, 0o700); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	for _, f := range []string{"account.key", "account.json"} {
		if err := os.Rename(filepath.Join(old, f), filepath.Join(cur, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("state: moving the ACME account of %s to %s: %w", caURL, cur, err)
		}
	}
	syncDir(cur)
	syncDir(old)
	return nil
}

// ACMEAccountKey loads the account key for the CA, creating an ECDSA P-256
// key on first use, so one ACME account is reused across runs. Call it
// under LockAccounts.
func (s *State) ACMEAccountKey(caURL string) (crypto.Signer, bool, error) {
	if err := s.migrateACMEAccount(caURL); err != nil {
		return nil, false, err
	}
	p := filepath.Join(s.acmeDir(caURL), "account.key")
	if b, err := os.ReadFile(p); err == nil {
		k, err := parsePrivateKey(b)
		if err != nil {
			return nil, false, fmt.Errorf("state: %s: %w (move the file away to make a new ACME account)", p, err)
		}
		return k, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("state: %w", err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, err
	}
	pemBytes, err := encodePrivateKey(k)
	if err != nil {
		return nil, false, err
	}
	if err := writeFileAtomic(p, pemBytes, 0o600); err != nil {
		return nil, false, err
	}
	// A new key has no account yet: drop a record that belonged to an
	// older key (its account could not be used with this one).
	if err := os.Remove(filepath.Join(s.acmeDir(caURL), "account.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("state: %w", err)
	}
	return k, true, nil
}

// ACMEAccount is the record of an ACME account in account.json.
type ACMEAccount struct {
	URL       string   `json:"url"`
	Contact   []string `json:"contact"`
	Directory string   `json:"directory"`
}

func readACMEAccount(path string) (ACMEAccount, error) {
	var a ACMEAccount
	b, err := os.ReadFile(path)
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("state: %s: %w", path, err)
	}
	return a, nil
}

// ACMEAccountRecord is the stored account for the CA (URL "" if none).
func (s *State) ACMEAccountRecord(caURL string) ACMEAccount {
	a, _ := readACMEAccount(filepath.Join(s.acmeDir(caURL), "account.json"))
	return a
}

// ACMEAccounts lists the ACME accounts of the state directory, one per CA
// directory, sorted by directory URL.
func (s *State) ACMEAccounts() ([]ACMEAccount, error) {
	files, err := filepath.Glob(filepath.Join(s.Dir, "acme", "*", "account.json"))
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var out []ACMEAccount
	for _, f := range files {
		a, err := readACMEAccount(f)
		if err != nil {
			return nil, err
		}
		if a.URL != "" {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Directory < out[j].Directory })
	return out, nil
}

// ACMEAccountURL is the stored account URL for the CA ("" if none).
func (s *State) ACMEAccountURL(caURL string) string { return s.ACMEAccountRecord(caURL).URL }

// SaveACMEAccount records the account URL and contact for the CA. Call it
// under LockAccounts.
func (s *State) SaveACMEAccount(caURL, accountURL string, contact []string) error {
	b, _ := json.MarshalIndent(ACMEAccount{URL: accountURL, Contact: contact, Directory: caURL}, "", "  ")
	return writeFileAtomic(filepath.Join(s.acmeDir(caURL), "account.json"), append(b, '\n'), 0o600)
}

// Renewal is what `renew` needs to repeat an issuance; kept in renewal.json.
type Renewal struct {
	Domains        []string `json:"domains"`
	CAURL          string   `json:"ca"`
	Email          string   `json:"email,omitempty"`
	KeyType        string   `json:"key_type"`
	Profile        string   `json:"profile,omitempty"`
	PreferredChain string   `json:"preferred_chain,omitempty"`
	CARoot         string   `json:"ca_root,omitempty"`
	Nameservers    []string `json:"nameservers,omitempty"`
	Resolvers      []string `json:"resolvers,omitempty"`
	DeployHook     string   `json:"deploy_hook,omitempty"`
	// Challenge is the challenge type the certificate was issued with and
	// is renewed with; "" (files from before the choice) is dns-01.
	Challenge string `json:"challenge,omitempty"`
	CertURL   string `json:"cert_url,omitempty"`
	// OrderURL is the order that issued the certificate, and AccountURL the
	// ACME account that placed it.
	OrderURL   string    `json:"order_url,omitempty"`
	AccountURL string    `json:"account_url,omitempty"`
	IssuedAt   time.Time `json:"issued_at"`
	// RevokedAt is set when `client revoke` revoked the certificate.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// RenewAt is the moment chosen in the CA's ARI window (kept so that hourly
	// runs agree on one random time).
	RenewAt     time.Time `json:"renew_at,omitzero"`
	ARIWindowAt time.Time `json:"ari_window_end,omitzero"`
}

// Certificate is one stored certificate.
type Certificate struct {
	Name    string
	Dir     string
	Leaf    *x509.Certificate
	Renewal Renewal
}

func (s *State) certsDir() string { return filepath.Join(s.Dir, "certificates") }

// CertName is the default directory name for a certificate: its first name,
// with a wildcard's "*" written as "_" (lego's convention).
func CertName(domains []string) string {
	if len(domains) == 0 {
		return ""
	}
	return strings.Replace(normDomain(domains[0]), "*", "_", 1)
}

// ValidateCertName checks a certificate name (--cert-name): one directory
// name under certificates/, so no separators, no leading dot, no control
// characters.
func ValidateCertName(name string) error {
	if name == "" || len(name) > 200 || strings.ContainsAny(name, "/\\") || strings.HasPrefix(name, ".") ||
		strings.HasSuffix(name, ".tmp-link") || strings.IndexFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
		return fmt.Errorf("%q is not a usable certificate name: use letters, digits, dots, dashes and underscores, not starting with a dot (e.g. --cert-name example.org)", name)
	}
	return nil
}

// DeleteCertificate removes certificates/<name> and its old versions. Call
// it under LockCertificate.
func (s *State) DeleteCertificate(name string) error {
	if err := ValidateCertName(name); err != nil {
		return err
	}
	link := filepath.Join(s.certsDir(), name)
	fi, err := os.Lstat(link)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no certificate named %q in %s (see `acmebroker client list`)", name, s.certsDir())
	}
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("state: %s is not a link made by acmebroker; remove it yourself", link)
	}
	if err := os.Remove(link); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	syncDir(s.certsDir())
	if err := os.RemoveAll(filepath.Join(s.certsDir(), ".versions", name)); err != nil {
		return fmt.Errorf("state: the certificate is gone, but its old versions were not all removed: %w", err)
	}
	return nil
}

// CertFiles is one issued certificate, ready to store.
type CertFiles struct {
	Cert, Chain, KeyPEM []byte // PEM: leaf, intermediates, private key
}

// SaveCertificate writes the certificate files into a new version directory
// and then swaps certificates/<name> to point at it in one rename, so a
// reader never sees a half-written set and a failure leaves the old one.
func (s *State) SaveCertificate(name string, f CertFiles, r Renewal, now time.Time) (string, error) {
	if err := ValidateCertName(name); err != nil {
		return "", err
	}
	versions := filepath.Join(s.certsDir(), ".versions", name)
	if err := os.MkdirAll(versions, 0o700); err != nil {
		return "", fmt.Errorf("state: %w", err)
	}
	vdir, err := os.MkdirTemp(versions, now.UTC().Format("20060102T150405Z")+"-")
	if err != nil {
		return "", fmt.Errorf("state: %w", err)
	}
	rb, _ := json.MarshalIndent(r, "", "  ")
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"cert.pem", f.Cert, 0o644},
		{"chain.pem", f.Chain, 0o644},
		{"fullchain.pem", append(append([]byte{}, f.Cert...), f.Chain...), 0o644},
		{"privkey.pem", f.KeyPEM, 0o600},
		{"renewal.json", append(rb, '\n'), 0o600},
	}
	for _, fl := range files {
		if err := writeFileAtomic(filepath.Join(vdir, fl.name), fl.data, fl.mode); err != nil {
			os.RemoveAll(vdir)
			return "", err
		}
	}
	if err := os.Chmod(vdir, 0o755); err != nil {
		os.RemoveAll(vdir)
		return "", err
	}
	link := filepath.Join(s.certsDir(), name)
	rel, _ := filepath.Rel(s.certsDir(), vdir)
	tmp := link + ".tmp-link"
	os.Remove(tmp)
	if err := os.Symlink(rel, tmp); err != nil {
		os.RemoveAll(vdir)
		return "", fmt.Errorf("state: %w", err)
	}
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		os.Remove(tmp)
		os.RemoveAll(vdir)
		return "", fmt.Errorf("state: %s exists and is not a link made by acmebroker; move it away", link)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		os.RemoveAll(vdir)
		return "", fmt.Errorf("state: %w", err)
	}
	syncDir(s.certsDir())
	s.pruneVersions(versions, filepath.Base(vdir), 3)
	return link, nil
}

// pruneVersions keeps the newest keep versions (and the current one).
func (s *State) pruneVersions(dir, current string, keep int) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && e.Name() != current {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for len(names) > keep-1 {
		os.RemoveAll(filepath.Join(dir, names[0]))
		names = names[1:]
	}
}

// LoadCertificate reads certificates/<name>.
func (s *State) LoadCertificate(name string) (*Certificate, error) {
	dir := filepath.Join(s.certsDir(), name)
	b, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no certificate named %q in %s (see `acmebroker client list`)", name, s.certsDir())
		}
		return nil, fmt.Errorf("state: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("state: %s/cert.pem holds no PEM certificate", dir)
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("state: %s/cert.pem: %w", dir, err)
	}
	c := &Certificate{Name: name, Dir: dir, Leaf: leaf}
	rb, err := os.ReadFile(filepath.Join(dir, "renewal.json"))
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if err := json.Unmarshal(rb, &c.Renewal); err != nil {
		return nil, fmt.Errorf("state: %s/renewal.json: %w", dir, err)
	}
	return c, nil
}

// UpdateRenewal rewrites renewal.json of the current version (e.g. the chosen
// ARI renewal time).
func (s *State) UpdateRenewal(name string, r Renewal) error {
	dir, err := filepath.EvalSymlinks(filepath.Join(s.certsDir(), name))
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	return writeFileAtomic(filepath.Join(dir, "renewal.json"), append(b, '\n'), 0o600)
}

// CertificateNames lists the stored certificates.
func (s *State) CertificateNames() ([]string, error) {
	ents, err := os.ReadDir(s.certsDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || strings.HasSuffix(e.Name(), ".tmp-link") {
			continue
		}
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out, nil
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it over path, so readers see the old or the new content, never a
// part.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("state: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("state: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("state: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	ok = true
	syncDir(dir)
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

func encodePrivateKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parsePrivateKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM key")
	}
	var k any
	var err error
	switch blk.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("unsupported key type")
	}
	return s, nil
}
