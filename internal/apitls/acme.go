package apitls

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"

	"github.com/acmebroker/acmebroker/client"
	"github.com/acmebroker/acmebroker/storage"
)

// Store is the part of storage.Store the Manager keeps its state in:
// named values (the certificate with its key, the renewal information,
// the ACME account, the last failure) and a lease, so that of several
// nodes on one database one renews while the others wait for its result.
type Store interface {
	GetValue(ctx context.Context, name string) (storage.Value, error)
	PutValue(ctx context.Context, name string, data []byte, at time.Time) error
	DeleteValue(ctx context.Context, name string) error
	ListValues(ctx context.Context, prefix string) ([]storage.ValueInfo, error)
	TryLock(ctx context.Context, name, owner string, at time.Time, ttl time.Duration) (bool, error)
	Unlock(ctx context.Context, name, owner string) error
}

// Challenges publishes the values of the broker's own dns-01 challenges
// (internal/zone.Writer): stored, so that every node and secondary serves
// them, before the CA is asked to look.
type Challenges interface {
	SetOwnChallenge(ctx context.Context, domain, value string) error
	ClearOwnChallenge(ctx context.Context, domain, value string) error
}

// ACMEConfig configures a Manager ([api.acme]).
type ACMEConfig struct {
	Zone      string   // the broker's zone: every name is inside it
	Names     []string // the certificate's names, the first its subject; "*.<name>" for a wildcard
	Directory string   // ACME directory URL
	Email     string   // contact of the ACME account; "" none
	CARoot    string   // PEM file trusted for the CA's TLS besides the system roots
	EABKeyID  string   // external account binding, for CAs that require it
	EABHMAC   string   // base64url
	Profile   string   // certificate profile the CA offers; "" its default
	KeyType   string   // client.KeyTypes; "" ec256
	// CheckInterval is how often the database is looked at, for a
	// certificate another node obtained and for renewal coming due.
	// Default 1m.
	CheckInterval time.Duration
	// Nameservers (host:port) are asked, after a challenge value is
	// published and before the CA is told to look, until each serves it:
	// the zone's name servers, other nodes and secondaries. The value
	// reaches them through the database and zone transfers, which take a
	// moment; a CA asking one too early would fail the order.
	Nameservers []string
	// PropagationTimeout bounds that wait; 0 skips it.
	PropagationTimeout time.Duration
	// Owner names this node in the renewal lease; default: host name and
	// a random suffix.
	Owner  string
	Now    func() time.Time
	Logger *slog.Logger
	// HTTPClient talks to the CA; nil: CAHTTPClient(CARoot).
	HTTPClient *http.Client
}

const (
	defaultCheckInterval = time.Minute
	// leaseTTL bounds how long a node that died while renewing keeps the
	// others waiting; a live holder extends it every leaseTTL/3.
	leaseTTL = 5 * time.Minute
	// obtainTimeout bounds one attempt to get a certificate.
	obtainTimeout = 10 * time.Minute
	// ariDefaultRetry: when to ask for renewal information again if the
	// CA does not say (RFC 9773 suggests checking about twice a day), and
	// how often a CA without ARI is asked again whether it has it.
	ariDefaultRetry = 6 * time.Hour
	ariNoSupport    = 24 * time.Hour
	maxBackoff      = time.Hour
)

// Manager keeps the API's certificate from an ACME CA. Create it with
// NewManager, run Run in a goroutine, and give GetCertificate to the
// API's tls.Config. Safe for concurrent use.
type Manager struct {
	cfg   ACMEConfig
	store Store
	chal  Challenges
	log   *slog.Logger
	hc    *http.Client
	names []string // normalised, in the configured order

	// Storage names (values; the lease shares the certificate's name).
	acctName, certName, ariName, failName string

	cur     atomic.Pointer[tls.Certificate]
	ready   chan struct{}
	once    sync.Once
	recheck chan struct{}

	mu       sync.Mutex // guards what follows, for Status; Run alone writes
	certMod  time.Time  // Modified of the stored certificate loaded
	ari      *ariRecord
	ariMod   time.Time
	fail     *failure
	failMod  time.Time
	problem  string // why there is no certificate yet, for Status
	obtained atomic.Int64
}

// NewManager checks cfg and returns a Manager; nothing is fetched or
// issued before Run.
func NewManager(cfg ACMEConfig, st Store, ch Challenges) (*Manager, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = defaultCheckInterval
	}
	if cfg.KeyType == "" {
		cfg.KeyType = "ec256"
	}
	if !slices.Contains(client.KeyTypes, cfg.KeyType) {
		return nil, fmt.Errorf("api.acme.key_type %q is not one of %s", cfg.KeyType, strings.Join(client.KeyTypes, ", "))
	}
	u, err := url.Parse(cfg.Directory)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("api.acme.directory %q is not an ACME directory URL", cfg.Directory)
	}
	if len(cfg.Names) == 0 {
		return nil, errors.New("api.acme.names: no name for the certificate")
	}
	names := make([]string, len(cfg.Names))
	for i, n := range cfg.Names {
		names[i] = strings.ToLower(strings.TrimSuffix(n, "."))
	}
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		cfg.Owner = host + "-" + hex.EncodeToString(b)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		if hc, err = CAHTTPClient(cfg.CARoot); err != nil {
			return nil, fmt.Errorf("api.acme.ca_root: %w", err)
		}
	}
	prefix := "tls/acme/" + directoryKey(cfg.Directory) + "/"
	cert := prefix + certKey(names, cfg.KeyType, cfg.Profile)
	return &Manager{
		cfg: cfg, store: st, chal: ch, log: cfg.Logger, hc: hc, names: names,
		acctName: prefix + "account", certName: cert, ariName: cert + "/ari", failName: cert + "/failure",
		ready:   make(chan struct{}),
		recheck: make(chan struct{}, 1),
	}, nil
}

// directoryKey names a CA in storage: readable, bounded, and distinct
// for distinct directory URLs.
func directoryKey(dir string) string {
	s := dir
	if u, err := url.Parse(dir); err == nil && u.Host != "" {
		s = u.Host + u.Path
	}
	s = sanitize(s, 80)
	sum := sha256.Sum256([]byte(dir))
	return s + "-" + hex.EncodeToString(sum[:4])
}

// certKey names a certificate: its names (the first is its subject), key
// type and profile; a change of any of them is another certificate.
func certKey(names []string, keyType, profile string) string {
	sum := sha256.Sum256([]byte(strings.Join(names, ",") + "\n" + keyType + "\n" + profile))
	return sanitize(names[0], 80) + "-" + hex.EncodeToString(sum[:4])
}

func sanitize(s string, max int) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b[:min(len(b), max)])
}

// GetCertificate implements tls.Config.GetCertificate. Until the first
// certificate is there it fails every handshake: the API never answers
// in plain text on its HTTPS port.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.cur.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("acmebroker: waiting for a certificate from the ACME CA")
}

// Obtained is how many certificates this Manager got from the CA (not
// loaded from the database).
func (m *Manager) Obtained() int64 { return m.obtained.Load() }

// Ready is closed once a certificate is served.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Leaf is the certificate served, nil before the first.
func (m *Manager) Leaf() *x509.Certificate {
	if c := m.cur.Load(); c != nil {
		return c.Leaf
	}
	return nil
}

// Status is "" while a certificate is served, else what the API waits
// for (for /health).
func (m *Manager) Status() string {
	if m.cur.Load() != nil {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.problem != "" {
		return "waiting for a certificate: " + m.problem
	}
	return "waiting for a certificate"
}

// Recheck makes Run look at the certificate now, asking the CA for fresh
// renewal information and ignoring the back-off after a failure (SIGHUP).
func (m *Manager) Recheck() {
	select {
	case m.recheck <- struct{}{}:
	default:
	}
}

// Run keeps the certificate until ctx ends: it loads what the database
// has, obtains a certificate when there is none or renewal is due, and
// looks again every CheckInterval. The caller serves DNS before calling
// it, since the CA looks up the challenges there.
func (m *Manager) Run(ctx context.Context) {
	m.log.Info("api certificate by ACME", "names", strings.Join(m.names, ","), "directory", m.cfg.Directory, "node", m.cfg.Owner)
	forced := false
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.recheck:
			forced = true
		}
		m.tick(ctx, forced)
		forced = false
		t.Reset(m.cfg.CheckInterval)
	}
}

// what is due for the certificate.
type due struct {
	issue  string // why a certificate must be obtained; "" not due
	ari    bool   // renewal information to fetch
	leaf   *x509.Certificate
	useARI bool // the CA has ARI: a renewal names the certificate it replaces
}

func (m *Manager) tick(ctx context.Context, forced bool) {
	if err := m.refresh(ctx); err != nil {
		m.setProblem("reading the database: " + err.Error())
		m.log.Warn("api certificate: reading the database", "err", err)
		return
	}
	d := m.due(forced)
	if d.issue == "" && !d.ari {
		return
	}
	m.mu.Lock()
	f := m.fail
	m.mu.Unlock()
	if f != nil && d.issue != "" && !forced && m.cfg.Now().Before(f.Next) {
		return // backing off after a failure (any node's)
	}
	held, err := m.store.TryLock(ctx, m.certName, m.cfg.Owner, m.cfg.Now(), leaseTTL)
	if err != nil {
		m.log.Warn("api certificate: taking the renewal lease", "err", err)
		return
	}
	if !held {
		m.log.Debug("api certificate: another node holds the renewal lease; waiting for its result")
		return
	}
	lctx, stop := context.WithCancel(ctx)
	defer func() {
		stop()
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := m.store.Unlock(uctx, m.certName, m.cfg.Owner); err != nil {
			m.log.Warn("api certificate: releasing the renewal lease", "err", err)
		}
	}()
	go m.keepLease(lctx)
	// Another node may have finished just before the lease was ours.
	if err := m.refresh(lctx); err != nil {
		m.log.Warn("api certificate: reading the database", "err", err)
		return
	}
	if d = m.due(forced); d.ari && d.leaf != nil {
		m.updateARI(lctx, d.leaf)
		d = m.due(false)
	}
	if d.issue == "" {
		return
	}
	m.log.Info("api certificate: obtaining", "reason", d.issue, "names", strings.Join(m.names, ","))
	start := time.Now()
	leaf, err := m.obtain(lctx, d)
	if err != nil {
		m.recordFailure(lctx, err)
		return
	}
	m.log.Info("api certificate obtained", "names", strings.Join(leaf.DNSNames, ","), "serial", leaf.SerialNumber.Text(16),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "took", time.Since(start).Round(time.Millisecond))
	m.mu.Lock()
	failed := m.fail != nil
	m.fail = nil
	m.mu.Unlock()
	if failed {
		if err := m.store.DeleteValue(lctx, m.failName); err != nil && !errors.Is(err, storage.ErrNotFound) {
			m.log.Warn("api certificate: clearing the failure record", "err", err)
		}
	}
	m.updateARI(lctx, leaf)
}

// keepLease extends the lease while an attempt runs.
func (m *Manager) keepLease(ctx context.Context) {
	t := time.NewTicker(leaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		held, err := m.store.TryLock(ctx, m.certName, m.cfg.Owner, m.cfg.Now(), leaseTTL)
		if err == nil && !held {
			m.log.Warn("api certificate: the renewal lease was lost; another node may renew too")
		}
	}
}

func (m *Manager) setProblem(p string) {
	m.mu.Lock()
	m.problem = p
	m.mu.Unlock()
}

// refresh loads what changed in the database since the last look: the
// certificate (another node renewed it), its renewal information, the
// last failure. One query when nothing changed.
func (m *Manager) refresh(ctx context.Context) error {
	infos, err := m.store.ListValues(ctx, m.certName)
	if err != nil {
		return err
	}
	mods := map[string]time.Time{}
	for _, vi := range infos {
		mods[vi.Name] = vi.Modified
	}
	m.mu.Lock()
	certMod, ariMod, failMod := m.certMod, m.ariMod, m.failMod
	m.mu.Unlock()

	if mod, ok := mods[m.certName]; ok && !mod.Equal(certMod) {
		v, err := m.store.GetValue(ctx, m.certName)
		if err != nil {
			return err
		}
		if err := m.install(v); err != nil {
			// Not looked at again until it changes; the certificate
			// served (if any) stays until its renewal stores a good one.
			m.log.Error("api certificate in the database is not usable", "name", m.certName, "err", err)
			m.mu.Lock()
			m.certMod = v.Modified
			m.mu.Unlock()
		}
	}
	var ari ariRecord
	aMod, aOK, err := m.loadJSON(ctx, mods, m.ariName, ariMod, &ari)
	if err != nil {
		return err
	}
	var f failure
	fMod, fOK, err := m.loadJSON(ctx, mods, m.failName, failMod, &f)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !aMod.Equal(ariMod) {
		m.ari, m.ariMod = nil, aMod
		if aOK {
			m.ari = &ari
		}
	}
	if !fMod.Equal(failMod) {
		m.fail, m.failMod = nil, fMod
		if fOK {
			m.fail = &f
			if m.problem == "" { // another node's attempt: say why there is none
				m.problem = f.Error
			}
		}
	}
	return nil
}

// loadJSON reads the record name into into if its modification time in
// mods is not have, and returns that time (zero when there is no record)
// and whether into was filled. An unreadable record is logged and
// skipped until it changes.
func (m *Manager) loadJSON(ctx context.Context, mods map[string]time.Time, name string, have time.Time, into any) (time.Time, bool, error) {
	mod, ok := mods[name]
	if !ok || mod.Equal(have) {
		return mod, false, nil
	}
	v, err := m.store.GetValue(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return have, false, err
	}
	if err := json.Unmarshal(v.Data, into); err != nil {
		m.log.Warn("api certificate: unreadable record in the database; ignored", "name", name, "err", err)
		return v.Modified, false, nil
	}
	return v.Modified, true, nil
}

// storedCert is the certificate as kept in the database: one value, so
// that a node never reads a certificate with another's key.
type storedCert struct {
	Names  []string  `json:"names"`
	Chain  string    `json:"chain"` // PEM, leaf first
	Key    string    `json:"key"`   // PEM, PKCS #8
	Issued time.Time `json:"issued"`
	Node   string    `json:"node"` // who obtained it
}

// install serves the stored certificate v if it is usable.
func (m *Manager) install(v storage.Value) error {
	var sc storedCert
	if err := json.Unmarshal(v.Data, &sc); err != nil {
		return err
	}
	cert, err := tls.X509KeyPair([]byte(sc.Chain), []byte(sc.Key))
	if err != nil {
		return err
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return err
		}
	}
	if !sameNames(cert.Leaf.DNSNames, m.names) {
		return fmt.Errorf("it is for %v, not %v", cert.Leaf.DNSNames, m.names)
	}
	old := m.cur.Load()
	m.cur.Store(&cert)
	m.mu.Lock()
	m.certMod = v.Modified
	m.problem = ""
	m.mu.Unlock()
	m.once.Do(func() { close(m.ready) })
	if old == nil || old.Leaf.SerialNumber.Cmp(cert.Leaf.SerialNumber) != 0 {
		m.log.Info("api certificate loaded", "names", strings.Join(cert.Leaf.DNSNames, ","), "serial", cert.Leaf.SerialNumber.Text(16),
			"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339), "obtained_by", sc.Node)
	}
	return nil
}

func sameNames(a, b []string) bool {
	x := slices.Sorted(slices.Values(a))
	y := slices.Sorted(slices.Values(b))
	for i := range x {
		x[i] = strings.ToLower(x[i])
	}
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

// ariRecord is the CA's renewal information for one certificate, fetched
// by one node and shared: every node then renews (or waits) at the same
// time, chosen once at random within the CA's window.
type ariRecord struct {
	Serial      string           `json:"serial"` // hex serial of the certificate it is for
	Info        acme.RenewalInfo `json:"info"`
	Unsupported bool             `json:"unsupported,omitempty"` // the CA has no ARI
	Checked     time.Time        `json:"checked"`
}

// failure is the last failed attempt, shared so that no node retries
// before Next (CAs limit failed validations).
type failure struct {
	Attempts int       `json:"attempts"`
	At       time.Time `json:"at"`
	Next     time.Time `json:"next"`
	Error    string    `json:"error"`
	Node     string    `json:"node"`
}

// due says what the certificate needs now.
func (m *Manager) due(forced bool) due {
	now := m.cfg.Now()
	c := m.cur.Load()
	if c == nil {
		return due{issue: "no certificate yet"}
	}
	leaf := c.Leaf
	d := due{leaf: leaf}
	if !now.Before(leaf.NotAfter) {
		d.issue = "the certificate has expired"
		return d
	}
	serial := leaf.SerialNumber.Text(16)
	m.mu.Lock()
	ari := m.ari
	m.mu.Unlock()
	if ari == nil || ari.Serial != serial {
		ari = nil
		d.ari = true
	} else {
		switch {
		case forced:
			d.ari = true
		case ari.Unsupported:
			d.ari = now.Sub(ari.Checked) >= ariNoSupport
		case ari.Info.RetryAfter != nil:
			d.ari = !now.Before(*ari.Info.RetryAfter)
		default:
			d.ari = now.Sub(ari.Checked) >= ariDefaultRetry
		}
	}
	// Without a window from the CA: when two thirds of the lifetime
	// have passed, as CAs recommend.
	renewAt := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
	if ari != nil && !ari.Unsupported && ari.Info.HasWindow() {
		d.useARI = true
		renewAt = ari.Info.SelectedTime
		if renewAt.IsZero() {
			renewAt = ari.Info.SuggestedWindow.Start
		}
	}
	if !now.Before(renewAt) {
		d.issue = "renewal is due (" + renewAt.UTC().Format(time.RFC3339) + ")"
	}
	return d
}

// updateARI fetches the renewal information of leaf and stores it.
func (m *Manager) updateARI(ctx context.Context, leaf *x509.Certificate) {
	ac := m.acmeClient()
	rec := ariRecord{Serial: leaf.SerialNumber.Text(16), Checked: m.cfg.Now()}
	info, err := ac.GetRenewalInfo(ctx, leaf)
	switch {
	case errors.Is(err, acme.ErrUnsupported):
		rec.Unsupported = true
	case err != nil:
		// Try again at the next check; renewal falls back on the
		// certificate's lifetime meanwhile.
		m.log.Warn("api certificate: fetching renewal information (ARI)", "err", err)
		return
	default:
		rec.Info = info
		if info.RetryAfter == nil {
			next := rec.Checked.Add(ariDefaultRetry)
			rec.Info.RetryAfter = &next
		}
		m.log.Info("api certificate: renewal information", "window_start", info.SuggestedWindow.Start.UTC().Format(time.RFC3339),
			"window_end", info.SuggestedWindow.End.UTC().Format(time.RFC3339), "renew_at", info.SelectedTime.UTC().Format(time.RFC3339),
			"explanation", info.ExplanationURL)
	}
	b, err := json.Marshal(rec)
	if err == nil {
		err = m.store.PutValue(ctx, m.ariName, b, rec.Checked)
	}
	if err != nil {
		m.log.Warn("api certificate: storing renewal information", "err", err)
		return
	}
	m.mu.Lock()
	m.ari, m.ariMod = &rec, rec.Checked.UTC()
	m.mu.Unlock()
}

func (m *Manager) acmeClient() *acme.Client {
	return &acme.Client{Directory: m.cfg.Directory, HTTPClient: m.hc, UserAgent: "acmebroker", Logger: m.log.With("component", "acme")}
}

// obtain gets a certificate and stores and serves it.
func (m *Manager) obtain(ctx context.Context, d due) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, obtainTimeout)
	defer cancel()
	ac := m.acmeClient()
	acct, err := m.account(ctx, ac)
	if err != nil {
		return nil, err
	}
	key, err := client.NewCertKey(m.cfg.KeyType)
	if err != nil {
		return nil, err
	}
	csr, err := acmez.NewCSR(key, m.names)
	if err != nil {
		return nil, fmt.Errorf("make the CSR: %w", err)
	}
	params, err := acmez.OrderParametersFromCSR(acct, csr)
	if err != nil {
		return nil, fmt.Errorf("make the order: %w", err)
	}
	params.Profile = m.cfg.Profile
	if d.useARI && d.leaf != nil {
		params.Replaces = d.leaf
	}
	cl := &acmez.Client{Client: ac, ChallengeSolvers: map[string]acmez.Solver{
		acme.ChallengeTypeDNS01: &solver{chal: m.chal, log: m.log, nameservers: m.cfg.Nameservers, timeout: m.cfg.PropagationTimeout},
	}}
	chains, err := cl.ObtainCertificate(ctx, params)
	if err != nil {
		var p acme.Problem
		if errors.As(err, &p) && p.Type == acme.ProblemTypeAccountDoesNotExist {
			// The CA forgot the account: make a new one next time.
			_ = m.store.DeleteValue(ctx, m.acctName)
		}
		return nil, err
	}
	if len(chains) == 0 {
		return nil, errors.New("the CA offered no certificate chain")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	now := m.cfg.Now()
	sc := storedCert{
		Names: m.names, Chain: string(chains[0].ChainPEM),
		Key:    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
		Issued: now, Node: m.cfg.Owner,
	}
	b, err := json.Marshal(sc)
	if err != nil {
		return nil, err
	}
	v := storage.Value{Name: m.certName, Data: b, Modified: now.UTC()}
	if err := m.install(v); err != nil {
		return nil, fmt.Errorf("the certificate the CA issued is not usable: %w", err)
	}
	// Stored after it is served here: a failed write leaves this node
	// serving it, and the next check obtains one the others can load.
	if err := m.store.PutValue(ctx, m.certName, b, now); err != nil {
		return nil, fmt.Errorf("store the certificate: %w", err)
	}
	m.obtained.Add(1)
	return m.Leaf(), nil
}

// storedAccount is the ACME account as kept in the database.
type storedAccount struct {
	Location string   `json:"location"`
	Contact  []string `json:"contact,omitempty"`
	Key      string   `json:"key"` // PEM, PKCS #8
}

// account returns the ACME account for the directory, registering one (and
// agreeing to the CA's terms) the first time.
func (m *Manager) account(ctx context.Context, ac *acme.Client) (acme.Account, error) {
	v, err := m.store.GetValue(ctx, m.acctName)
	switch {
	case err == nil:
		var sa storedAccount
		if err := json.Unmarshal(v.Data, &sa); err != nil {
			return acme.Account{}, fmt.Errorf("stored ACME account: %w", err)
		}
		key, err := parseKey(sa.Key)
		if err != nil {
			return acme.Account{}, fmt.Errorf("stored ACME account key: %w", err)
		}
		return acme.Account{Status: acme.StatusValid, Location: sa.Location, Contact: sa.Contact, PrivateKey: key}, nil
	case !errors.Is(err, storage.ErrNotFound):
		return acme.Account{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return acme.Account{}, err
	}
	acct := acme.Account{TermsOfServiceAgreed: true, PrivateKey: key}
	if m.cfg.Email != "" {
		acct.Contact = []string{"mailto:" + m.cfg.Email}
	}
	if m.cfg.EABKeyID != "" {
		eab := acme.EAB{KeyID: m.cfg.EABKeyID, MACKey: strings.TrimRight(m.cfg.EABHMAC, "=")}
		if err := acct.SetExternalAccountBinding(ctx, ac, eab); err != nil {
			return acme.Account{}, fmt.Errorf("external account binding (api.acme.eab_kid, eab_hmac): %w", err)
		}
	}
	acct, err = ac.NewAccount(ctx, acct)
	if err != nil {
		return acme.Account{}, fmt.Errorf("register an ACME account at %s: %w", m.cfg.Directory, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return acme.Account{}, err
	}
	b, err := json.Marshal(storedAccount{Location: acct.Location, Contact: acct.Contact,
		Key: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))})
	if err != nil {
		return acme.Account{}, err
	}
	if err := m.store.PutValue(ctx, m.acctName, b, m.cfg.Now()); err != nil {
		return acme.Account{}, fmt.Errorf("store the ACME account: %w", err)
	}
	m.log.Info("api certificate: ACME account registered", "directory", m.cfg.Directory, "account", acct.Location)
	return acct, nil
}

func parseKey(p string) (crypto.Signer, error) {
	blk, _ := pem.Decode([]byte(p))
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%T is not a signing key", k)
	}
	return s, nil
}

// recordFailure stores the failure with the time before which no node
// tries again: 2 minutes after the first, doubling up to an hour (five
// failures in the first hour, what CAs such as Let's Encrypt allow per
// name and account).
func (m *Manager) recordFailure(ctx context.Context, err error) {
	now := m.cfg.Now()
	m.mu.Lock()
	n := 1
	if m.fail != nil {
		n = m.fail.Attempts + 1
	}
	m.mu.Unlock()
	wait := min(2*time.Minute<<min(n-1, 6), maxBackoff)
	f := failure{Attempts: n, At: now, Next: now.Add(wait), Error: err.Error(), Node: m.cfg.Owner}
	m.setProblem(err.Error())
	m.log.Error("api certificate: obtaining failed", "attempt", n, "retry_after", wait, "err", err)
	b, jerr := json.Marshal(f)
	if jerr == nil {
		jerr = m.store.PutValue(context.WithoutCancel(ctx), m.failName, b, now)
	}
	if jerr != nil {
		m.log.Warn("api certificate: storing the failure", "err", jerr)
		return
	}
	m.mu.Lock()
	m.fail, m.failMod = &f, now.UTC()
	m.mu.Unlock()
}

// solver answers dns-01 challenges from the broker's own zone.
type solver struct {
	chal        Challenges
	log         *slog.Logger
	nameservers []string
	timeout     time.Duration
}

func (s *solver) Present(ctx context.Context, c acme.Challenge) error {
	if err := s.chal.SetOwnChallenge(ctx, c.Identifier.Value, c.DNS01KeyAuthorization()); err != nil {
		return fmt.Errorf("publish the dns-01 value for %s: %w", c.Identifier.Value, err)
	}
	s.log.Debug("api certificate: dns-01 value published", "name", c.DNS01TXTRecordName())
	return nil
}

// Wait returns once every name server serves the value (acmez calls it
// after Present, before it tells the CA to look).
func (s *solver) Wait(ctx context.Context, c acme.Challenge) error {
	if s.timeout <= 0 || len(s.nameservers) == 0 {
		return nil
	}
	start := time.Now()
	ck := &client.Checker{Nameservers: s.nameservers, Interval: 50 * time.Millisecond}
	if err := ck.WaitServed(ctx, c.DNS01TXTRecordName(), []string{c.DNS01KeyAuthorization()}, s.timeout); err != nil {
		return fmt.Errorf("%w (set [api.acme] nameservers to addresses of the zone's name servers this host can reach, or propagation_timeout = \"0s\" to ask the CA at once)", err)
	}
	s.log.Debug("api certificate: dns-01 value served by every name server", "name", c.DNS01TXTRecordName(), "nameservers", strings.Join(s.nameservers, ","), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (s *solver) CleanUp(ctx context.Context, c acme.Challenge) error {
	return s.chal.ClearOwnChallenge(context.WithoutCancel(ctx), c.Identifier.Value, c.DNS01KeyAuthorization())
}
