package client

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mholt/acmez/v3/acme"
)

// KeyTypes are the certificate key types --key-type accepts.
var KeyTypes = []string{"ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"}

// NewCertKey makes a private key of the given type.
func NewCertKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "", "ec256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ec384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "rsa3072":
		return rsa.GenerateKey(rand.Reader, 3072)
	case "rsa4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("--key-type %q is not one of %s", keyType, strings.Join(KeyTypes, ", "))
}

// ObtainRequest says what certificate to get and from where.
type ObtainRequest struct {
	Domains        []string
	CertName       string // default CertName(Domains)
	CAURL          string // ACME directory
	Email          string
	KeyType        string // see KeyTypes
	EABKeyID       string
	EABHMAC        string // base64url, as CAs hand it out
	Profile        string
	PreferredChain string // issuer CN of the chain's top certificate
	CARoot         string // PEM file to trust for the CA's TLS (recorded for renewals)
	DeployHook     string // recorded for renewals
	// Challenge is the challenge type (see ChallengeTypes; "" is dns-01),
	// recorded for renewals.
	Challenge string
	// SetPersist (dns-persist-01): set the broker account's record for the
	// CA (POST /persist) when it holds none the CA will accept for this
	// ACME account; obtain does. Without it (renew) the broker is not
	// called at all: the standing record must do.
	SetPersist bool
	// PersistUntil is the end of a record SetPersist writes (zero: none).
	PersistUntil time.Time
	// SkipCNAMECheck skips the check, through recursive DNS, that every
	// name's CNAME points at its broker account.
	SkipCNAMECheck bool
	// PropagationTimeout bounds the wait for the broker's name servers.
	PropagationTimeout time.Duration
	// RateLimitWait caps how long to wait when the CA answers 429 with a
	// Retry-After (0: RateLimitWait); beyond it Obtain fails at once.
	RateLimitWait time.Duration
	// Replaces is the ARI identifier (RFC 9773) of the certificate this
	// one replaces, sent as the order's "replaces" if the CA offers ARI,
	// so the CA can exempt the renewal from rate limits.
	Replaces string
	// NotIfIssuedSince: when the stored certificate of this name, for the
	// same names, was issued at or after this time (by another run that
	// held its lock while this one waited), Obtain does nothing.
	NotIfIssuedSince time.Time
}

// Check normalises and checks the request before anything goes to the
// broker or the CA: the names, the certificate name and the key type.
func (req *ObtainRequest) Check() error {
	if len(req.Domains) == 0 {
		return errors.New("no domain: pass -d example.org (repeat -d for more names)")
	}
	seen := map[string]bool{}
	var names []string
	for _, d := range req.Domains {
		n := normDomain(d)
		if err := CheckDomainName(n); err != nil {
			return err
		}
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	req.Domains = names
	if req.CertName == "" {
		req.CertName = CertName(req.Domains)
	}
	if err := ValidateCertName(req.CertName); err != nil {
		return fmt.Errorf("--cert-name: %w", err)
	}
	if !slices.Contains(KeyTypes, req.KeyType) && req.KeyType != "" {
		return fmt.Errorf("--key-type %q is not one of %s", req.KeyType, strings.Join(KeyTypes, ", "))
	}
	if req.KeyType == "" {
		req.KeyType = "ec256"
	}
	ch, err := ChallengeByType(req.Challenge)
	if err != nil {
		return fmt.Errorf("--challenge: %w", err)
	}
	req.Challenge = ch.Type()
	if !req.PersistUntil.IsZero() && !standing(ch) {
		return fmt.Errorf("--persist-until is for --challenge %s only", acme.ChallengeTypeDNSPersist01)
	}
	if req.PropagationTimeout <= 0 {
		req.PropagationTimeout = 2 * time.Minute
	}
	return nil
}

// CheckDomainName checks a name for a certificate: a DNS name of at least
// two labels, letters, digits and hyphens (IDNs in their xn-- form), with
// "*." only as the whole first label.
func CheckDomainName(d string) error {
	bad := func(why string) error {
		return fmt.Errorf("%q is not a name a CA can issue for: %s", d, why)
	}
	if d == "" {
		return bad("it is empty")
	}
	if len(d) > 253 {
		return bad("longer than 253 characters")
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return bad("a certificate name needs at least two labels, e.g. example.org")
	}
	for i, l := range labels {
		switch {
		case l == "*" && i == 0:
			continue
		case l == "":
			return bad("it has an empty label")
		case len(l) > 63:
			return bad("a label is longer than 63 characters")
		case strings.Contains(l, "*"):
			return bad(`a wildcard must be the whole first label, as in "*.example.org"`)
		case l[0] == '-' || l[len(l)-1] == '-':
			return bad("a label starts or ends with a hyphen")
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				if r > 127 {
					return bad("write internationalised names in their xn-- (punycode) form")
				}
				return bad(fmt.Sprintf("%q is not allowed in a DNS name", r))
			}
		}
	}
	if labels[0] == "*" && len(labels) < 3 {
		return bad("a wildcard needs a registered domain below it, as in *.example.org")
	}
	return nil
}

// Issued says what Obtain did.
type Issued struct {
	Name     string
	Dir      string
	Domains  []string
	NotAfter time.Time
	// Meanwhile: another run issued the certificate while this one waited
	// for its lock; this run did nothing (and runs no hook).
	Meanwhile bool
}

// Issuer obtains, renews and revokes certificates.
type Issuer struct {
	State   *State
	Broker  *BrokerClient
	Checker *Checker
	HTTP    *http.Client // talks to the CA (carries --ca-root trust); nil: default
	Logger  *slog.Logger // nil: none
	Out     io.Writer    // progress for people; nil: none
	Now     func() time.Time
	// Lock says how to wait for the state directory's locks.
	Lock LockOptions
	// Command renders a client command for error messages, e.g.
	// Command("check", "--domain", name), with whatever flags this run
	// needs repeated (state directory, resolvers); nil: "acmebroker
	// client" and the words, quoted for a shell.
	Command func(args ...string) string
}

func (is *Issuer) say(format string, args ...any) {
	if is.Out != nil {
		fmt.Fprintf(is.Out, format+"\n", args...)
	}
}

func (is *Issuer) now() time.Time {
	if is.Now != nil {
		return is.Now()
	}
	return time.Now()
}

func (is *Issuer) logger() *slog.Logger {
	if is.Logger != nil {
		return is.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (is *Issuer) lockOptions() LockOptions {
	o := is.Lock
	if o.Wait == nil {
		o.Wait = func(msg string) { is.say("%s", msg) }
	}
	return o
}

func (is *Issuer) command(args ...string) string {
	if is.Command != nil {
		return is.Command(args...)
	}
	return ClientCommand(args...)
}

// ClientCommand is "acmebroker client" and args, each quoted for a POSIX
// shell where it needs to be.
func ClientCommand(args ...string) string {
	var b strings.Builder
	b.WriteString("acmebroker client")
	for _, a := range args {
		b.WriteString(" " + ShellQuote(a))
	}
	return b.String()
}

// ShellQuote quotes s for a POSIX shell unless it is plainly safe.
func ShellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@,+=", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Obtain gets a certificate for req.Domains and stores it, under the
// certificate's lock. The previous certificate of the same name, if any,
// stays in place until the new one is fully written. Everything that can
// be checked without the CA is checked before the CA is asked anything:
// the names, the broker accounts and CNAMEs, and that the broker accepts
// the credentials; so a mistake or a broker outage leaves no pending order.
func (is *Issuer) Obtain(ctx context.Context, req ObtainRequest) (Issued, error) {
	if err := req.Check(); err != nil {
		return Issued{}, err
	}
	lk, err := is.State.LockCertificate(ctx, req.CertName, is.lockOptions())
	if err != nil {
		return Issued{}, err
	}
	defer lk.Unlock()
	if !req.NotIfIssuedSince.IsZero() {
		if c, err := is.State.LoadCertificate(req.CertName); err == nil && !c.Renewal.IssuedAt.Before(req.NotIfIssuedSince) && sameNames(c.Renewal.Domains, req.Domains) {
			is.say("Certificate %s was issued by another run at %s while this one waited; not repeating it", req.CertName, c.Renewal.IssuedAt.UTC().Format(time.RFC3339))
			return Issued{Name: req.CertName, Dir: c.Dir, Domains: c.Renewal.Domains, NotAfter: c.Leaf.NotAfter, Meanwhile: true}, nil
		}
	}
	return is.obtainLocked(ctx, req)
}

func sameNames(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// task is one authorization to validate and the value that answers it.
type task struct {
	authz   acme.Authorization
	chal    acme.Challenge
	typ     DNSChallenge
	name    string // as in the certificate: example.org or *.example.org
	value   string
	acct    BrokerAccount
	account string // the ACME account's URL
	setAt   time.Time
	done    atomic.Bool
	record  string // where the CA looks, before CNAMEs
	fix     string // dns-persist-01: the command that sets the record
}

func acctKey(a BrokerAccount) string { return a.ServerURL + "\x00" + a.Username }

func (is *Issuer) obtainLocked(ctx context.Context, req ObtainRequest) (Issued, error) {
	certKey, err := NewCertKey(req.KeyType)
	if err != nil {
		return Issued{}, err
	}

	chType, err := ChallengeByType(req.Challenge)
	if err != nil {
		return Issued{}, err
	}
	// Every name needs a broker account and a CNAME pointing at it.
	accts := map[string]BrokerAccount{}
	checked := map[string]bool{}
	for _, d := range req.Domains {
		_, a, err := is.State.AccountFor(d)
		if err != nil {
			return Issued{}, err
		}
		accts[d] = a
		rn := chType.RecordName(d, is.State.ACMEAccountURL(req.CAURL))
		if !req.SkipCNAMECheck && !checked[rn] {
			if err := is.Checker.CheckCNAMEAt(ctx, d, rn, a.FullDomain); err != nil {
				var cr *ErrCNAMERequired
				if errors.As(err, &cr) {
					cr.Publish, cr.Challenge = chType.CNAMEName(d), chType.Type()
				}
				return Issued{}, err
			}
			checked[rn] = true
		}
	}
	var limits map[string]BrokerLimits
	switch {
	case standing(chType) && req.SetPersist:
		err = is.brokerPersist(ctx, accts)
	case standing(chType):
		// A renewal: the record stands; the broker's API is not needed.
	default:
		limits, err = is.brokerLimits(ctx, accts)
	}
	if err != nil {
		return Issued{}, err
	}

	s, err := is.session(ctx, req)
	if err != nil {
		return Issued{}, err
	}
	order, err := is.newOrder(ctx, s, req)
	if err != nil {
		return Issued{}, err
	}
	is.say("Order %s: %d authorization(s)", order.Location, len(order.Authorizations))
	tasks, err := is.collect(ctx, s, order, accts, chType)
	if err != nil {
		return Issued{}, err
	}
	if standing(chType) {
		fix := []string{"obtain", "--challenge", chType.Type(), "--cert-name", req.CertName}
		for _, d := range req.Domains {
			fix = append(fix, "-d", d)
		}
		fix = append(fix, "--ca", req.CAURL)
		if req.CARoot != "" {
			fix = append(fix, "--ca-root", req.CARoot)
		}
		for _, t := range tasks {
			t.fix = is.command(fix...)
		}
		err = is.solvePersist(ctx, s, tasks, req)
	} else {
		err = is.solve(ctx, s, tasks, limits, req.PropagationTimeout)
	}
	if err != nil {
		return Issued{}, err
	}

	csr, err := makeCSR(certKey, req.Domains)
	if err != nil {
		return Issued{}, err
	}
	order, chains, err := is.finalize(ctx, s, order, csr)
	if err != nil {
		return Issued{}, err
	}
	chain := is.pickChain(chains, req.PreferredChain)
	der, err := pemChainDER(chain.ChainPEM)
	if err != nil {
		return Issued{}, err
	}
	files, leaf, err := encodeChain(der, certKey)
	if err != nil {
		return Issued{}, err
	}
	if err := checkLeaf(leaf, certKey, req.Domains); err != nil {
		return Issued{}, err
	}
	r := Renewal{
		Domains: req.Domains, CAURL: req.CAURL, Email: req.Email, KeyType: req.KeyType,
		Profile: req.Profile, PreferredChain: req.PreferredChain, CARoot: req.CARoot,
		Nameservers: is.Checker.Nameservers, Resolvers: is.Checker.Resolvers,
		DeployHook: req.DeployHook, CertURL: chain.URL, OrderURL: order.Location, AccountURL: s.account().Location,
		IssuedAt: is.now(), Challenge: chType.Type(),
	}
	if ri := chain.RenewalInfo; ri != nil && ri.HasWindow() {
		r.RenewAt, r.ARIWindowAt = ri.SelectedTime, ri.SuggestedWindow.End
	}
	dir, err := is.State.SaveCertificate(req.CertName, files, r, is.now())
	if err != nil {
		return Issued{}, err
	}
	is.logger().Debug("certificate issued", "cert_name", req.CertName, "domains", strings.Join(req.Domains, " "), "not_after", leaf.NotAfter, "order", order.Location)
	is.say("Certificate for %s saved in %s (valid until %s)", strings.Join(req.Domains, ", "), dir, leaf.NotAfter.UTC().Format(time.RFC3339))
	return Issued{Name: req.CertName, Dir: dir, Domains: req.Domains, NotAfter: leaf.NotAfter}, nil
}

// brokerLimits asks every broker account of the order what it may serve at
// once; the broker checks the credentials on the way, so the order is only
// created once the broker has accepted them. A plain acme-dns has no such
// endpoint: its credentials are checked with one throwaway value (which the
// first real ones push out of its two slots).
func (is *Issuer) brokerLimits(ctx context.Context, accts map[string]BrokerAccount) (map[string]BrokerLimits, error) {
	out := map[string]BrokerLimits{}
	for _, a := range accts {
		k := acctKey(a)
		if _, ok := out[k]; ok {
			continue
		}
		l, err := is.Broker.Limits(ctx, a)
		if err != nil {
			return nil, fmt.Errorf("the broker did not accept the account %s; nothing was asked of the CA: %w", a.FullDomain, err)
		}
		if l.Plain {
			if err := is.Broker.Update(ctx, a, throwawayValue()); err != nil {
				return nil, fmt.Errorf("the broker did not accept the account %s; nothing was asked of the CA: %w", a.FullDomain, err)
			}
			is.say("The broker at %s has no GET /account (acme-dns?): validating at most %d names of an account at once", a.ServerURL, l.Batch())
		}
		out[k] = l
	}
	return out, nil
}

func throwawayValue() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// newOrder places the order, as a replacement of req.Replaces when the CA
// offers ARI. If the CA refuses it as a replacement (the old certificate
// already replaced, or unknown after a CA reset) it is placed again
// without: the renewal matters more than the exemption.
func (is *Issuer) newOrder(ctx context.Context, s *acmeSession, req ObtainRequest) (acme.Order, error) {
	o := acme.Order{Profile: req.Profile}
	for _, d := range req.Domains {
		o.Identifiers = append(o.Identifiers, acme.Identifier{Type: "dns", Value: d})
	}
	if req.Replaces != "" && s.dir.RenewalInfo != "" {
		o.Replaces = req.Replaces
	}
	place := func() (acme.Order, error) {
		var got acme.Order
		err := s.do(ctx, "new order", func(a acme.Account) error {
			var err error
			got, err = s.c.NewOrder(ctx, a, o)
			return err
		})
		return got, err
	}
	got, err := place()
	var rl *ErrRateLimited
	if err != nil && o.Replaces != "" && !errors.As(err, &rl) && !errors.Is(err, context.Canceled) {
		is.logger().Warn("order refused as a replacement; ordering without replaces", "replaces", o.Replaces, "err", shortProblem(err))
		is.say("The CA refused the order as a renewal of %s (%s); ordering without \"replaces\"", o.Replaces, shortProblem(err))
		o.Replaces = ""
		got, err = place()
	}
	if err != nil {
		if errors.As(err, &rl) {
			return acme.Order{}, err
		}
		return acme.Order{}, fmt.Errorf("new order: %s", describeACME(err))
	}
	return got, nil
}

// collect fetches the order's authorizations and picks, for each that is
// not valid yet, the challenge to answer and its value.
func (is *Issuer) collect(ctx context.Context, s *acmeSession, order acme.Order, accts map[string]BrokerAccount, typ DNSChallenge) ([]*task, error) {
	zs := make([]acme.Authorization, len(order.Authorizations))
	err := forEach(ctx, len(zs), 8, func(i int) error {
		return s.do(ctx, "authorization", func(a acme.Account) error {
			z, err := s.c.GetAuthorization(ctx, a, order.Authorizations[i])
			if err != nil {
				return fmt.Errorf("authorization %s: %s", order.Authorizations[i], describeACME(err))
			}
			zs[i] = z
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	var tasks []*task
	for _, z := range zs {
		if z.Status == acme.StatusValid {
			continue
		}
		name := z.IdentifierValue()
		ch, ok := pick(typ, z)
		if !ok {
			var offered []string
			for _, c := range z.Challenges {
				offered = append(offered, c.Type)
			}
			return nil, fmt.Errorf("the CA offers no %s challenge for %s (it offers %s): choose one of those with --challenge", typ.Type(), name, strings.Join(offered, ", "))
		}
		a, ok := accts[name]
		if !ok {
			var err error
			if _, a, err = is.State.AccountFor(name); err != nil {
				return nil, err
			}
		}
		acct := s.account()
		v, err := typ.RecordValue(ch, acct)
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, &task{authz: z, chal: ch, typ: typ, name: name, value: v, acct: a, account: acct.Location, record: typ.RecordName(name, acct.Location)})
	}
	return tasks, nil
}

// solve answers the tasks in rounds: each round sets, for every broker
// account, no more values than that account serves at once, waits until
// every authoritative server serves them, and has the CA validate them
// while keeping them from ageing out of the broker's window. The broker
// accounts are locked meanwhile, so that another run of this client does
// not push the values out.
func (is *Issuer) solve(ctx context.Context, s *acmeSession, tasks []*task, limits map[string]BrokerLimits, timeout time.Duration) error {
	if len(tasks) == 0 {
		return nil
	}
	queues, keys := byAccount(tasks)
	rounds := 0
	for _, k := range keys {
		lk, err := is.State.lockBroker(ctx, queues[k][0].acct, is.lockOptions())
		if err != nil {
			return err
		}
		defer lk.Unlock()
		b := limits[k].Batch()
		rounds = max(rounds, (len(queues[k])+b-1)/b)
	}
	if rounds > 1 {
		is.say("Validating %d names in %d rounds: the broker serves at most %d values of an account at once", len(tasks), rounds, limits[keys[0]].Batch())
	}
	for round := 1; ; round++ {
		var batch []*task
		for _, k := range keys {
			n := min(limits[k].Batch(), len(queues[k]))
			batch = append(batch, queues[k][:n]...)
			queues[k] = queues[k][n:]
		}
		if len(batch) == 0 {
			return nil
		}
		if err := is.publish(ctx, batch); err != nil {
			return err
		}
		if err := is.waitServed(ctx, batch, timeout); err != nil {
			return err
		}
		stop := is.keepFresh(ctx, batch, limits)
		err := is.validate(ctx, s, batch)
		stop()
		if err != nil {
			return err
		}
	}
}

// byAccount groups tasks by broker account; keys are the accounts'
// acctKey, sorted (the order their locks are taken in).
func byAccount(tasks []*task) (map[string][]*task, []string) {
	groups := map[string][]*task{}
	var keys []string
	for _, t := range tasks {
		k := acctKey(t.acct)
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], t)
	}
	slices.Sort(keys)
	return groups, keys
}

// publish sets every value of the batch on its broker account.
func (is *Issuer) publish(ctx context.Context, batch []*task) error {
	for _, t := range batch {
		if err := is.Broker.Update(ctx, t.acct, t.value); err != nil {
			return err
		}
		t.setAt = is.now()
	}
	return nil
}

// waitServed waits until the broker's name servers serve every value.
func (is *Issuer) waitServed(ctx context.Context, batch []*task, timeout time.Duration) error {
	byName := map[string][]string{}
	for _, t := range batch {
		byName[t.acct.FullDomain] = append(byName[t.acct.FullDomain], t.value)
	}
	return waitServedAll(ctx, is.Checker, byName, timeout)
}

// waitServedAll waits, for every name at once, until the broker's name
// servers serve all of its values.
func waitServedAll(ctx context.Context, ck *Checker, byName map[string][]string, timeout time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, 0, len(byName))
	var mu sync.Mutex
	for name, values := range byName {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ck.WaitServed(ctx, name, values, timeout); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// keepFresh sets again, while the CA validates, every value that would
// otherwise age out of its account's window (values beyond the newest
// txt_always are served only while younger than the window). It returns
// the function that stops it.
func (is *Issuer) keepFresh(ctx context.Context, batch []*task, limits map[string]BrokerLimits) func() {
	perAcct := map[string]int{}
	for _, t := range batch {
		perAcct[acctKey(t.acct)]++
	}
	var watch []*task
	tick := time.Hour
	for _, t := range batch {
		l := limits[acctKey(t.acct)]
		if l.TXTWindow > 0 && perAcct[acctKey(t.acct)] > l.TXTAlways {
			watch = append(watch, t)
			tick = min(tick, max(l.TXTWindow/4, 100*time.Millisecond))
		}
	}
	if len(watch) == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(tick)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			for _, t := range watch {
				if t.done.Load() || is.now().Sub(t.setAt) < limits[acctKey(t.acct)].TXTWindow/2 {
					continue
				}
				if err := is.Broker.Update(ctx, t.acct, t.value); err != nil {
					if ctx.Err() == nil {
						is.logger().Warn("could not refresh a value still being validated", "domain", t.name, "err", err)
					}
					continue
				}
				t.setAt = is.now()
				is.logger().Debug("value refreshed before it ages out of the broker's window", "domain", t.name)
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// validate tells the CA to check every challenge of the batch and waits
// for the results, polling fast but honouring Retry-After.
func (is *Issuer) validate(ctx context.Context, s *acmeSession, batch []*task) error {
	err := forEach(ctx, len(batch), 8, func(i int) error {
		t := batch[i]
		return s.do(ctx, "challenge", func(a acme.Account) error {
			if _, err := s.c.InitiateChallenge(ctx, a, t.chal); err != nil {
				return fmt.Errorf("asking the CA to validate %s: %s", t.name, describeACME(err))
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	return forEach(ctx, len(batch), len(batch), func(i int) error {
		t := batch[i]
		return poll(ctx, s.rec, t.authz.Location, func() (bool, error) {
			var z acme.Authorization
			err := s.do(ctx, "authorization", func(a acme.Account) error {
				var err error
				z, err = s.c.GetAuthorization(ctx, a, t.authz.Location)
				return err
			})
			if err != nil {
				return false, fmt.Errorf("authorization of %s: %s", t.name, describeACME(err))
			}
			switch z.Status {
			case acme.StatusValid:
				t.done.Store(true)
				return true, nil
			case acme.StatusInvalid, acme.StatusDeactivated, acme.StatusExpired, acme.StatusRevoked:
				t.done.Store(true)
				return false, is.authzFailure(t, z)
			}
			return false, nil
		})
	})
}

func (is *Issuer) authzFailure(t *task, z acme.Authorization) error {
	detail := "no detail given"
	for _, ch := range z.Challenges {
		if ch.Type == t.chal.Type && ch.Error != nil {
			detail = describeProblem(*ch.Error)
		}
	}
	check := is.command("check", "--domain", t.name, "--challenge", t.typ.Type())
	if t.typ.Type() == acme.ChallengeTypeDNS01 {
		check = is.command("check", "--domain", t.name)
	}
	msg := fmt.Sprintf("the CA could not validate %s (status %s): %s\n  the CA looked up TXT %s, which should be a CNAME to %s",
		t.name, z.Status, detail, t.record, t.acct.FullDomain)
	if standing(t.typ) {
		msg += ", where the broker serves the account's dns-persist-01 records\n" + is.persistAdvice(t, detail)
	}
	return fmt.Errorf("%s\n  to find the broken link, run: %s", msg, check)
}

// finalize sends the CSR and fetches the certificate chains. acmez's
// finalize waits the CA's Retry-After before its first look at the order;
// a parallel poll (fast at first, then honouring Retry-After) fetches the
// certificate as soon as it is out.
func (is *Issuer) finalize(ctx context.Context, s *acmeSession, order acme.Order, csr []byte) (acme.Order, []acme.Certificate, error) {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		o   acme.Order
		err error
	}
	res := make(chan result, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		var o acme.Order
		err := s.do(fctx, "finalize", func(a acme.Account) error {
			var err error
			o, err = s.c.FinalizeOrder(fctx, a, order, csr)
			return err
		})
		res <- result{o, err}
	}()
	go func() {
		defer wg.Done()
		var out acme.Order
		err := poll(fctx, s.rec, order.Location, func() (bool, error) {
			// A fresh Order: acmez decodes into it, and the slices of
			// order are in use by the finalize call.
			o, err := s.c.GetOrder(fctx, s.account(), acme.Order{Location: order.Location})
			if err != nil {
				return false, err
			}
			if o.Status == acme.StatusInvalid || o.Status == acme.StatusValid {
				out = o
				return true, nil
			}
			return false, nil
		})
		if err == nil {
			res <- result{out, nil}
		}
	}()
	r := <-res
	cancel()
	wg.Wait()
	if r.err != nil {
		return acme.Order{}, nil, fmt.Errorf("finalizing the order: %s", describeACME(r.err))
	}
	o := r.o
	if o.Location == "" {
		o.Location = order.Location
	}
	if o.Status != acme.StatusValid || o.Certificate == "" {
		detail := "no detail given"
		if o.Error != nil {
			detail = describeProblem(*o.Error)
		}
		return acme.Order{}, nil, fmt.Errorf("the order failed (status %s): %s", o.Status, detail)
	}
	var chains []acme.Certificate
	err := s.do(ctx, "certificate", func(a acme.Account) error {
		var err error
		chains, err = s.c.GetCertificateChain(ctx, a, o.Certificate)
		return err
	})
	if err != nil || len(chains) == 0 {
		return acme.Order{}, nil, fmt.Errorf("downloading the certificate: %s", describeACME(err))
	}
	return o, chains, nil
}

// pickChain returns the chain whose top certificate is issued by issuerCN,
// else the CA's default (the first).
func (is *Issuer) pickChain(chains []acme.Certificate, issuerCN string) acme.Certificate {
	if issuerCN == "" {
		return chains[0]
	}
	for _, c := range chains {
		if der, err := pemChainDER(c.ChainPEM); err == nil && topIssuer(der) == issuerCN {
			return c
		}
	}
	is.say("No chain whose top certificate is issued by %q; keeping the default chain", issuerCN)
	return chains[0]
}

func pemChainDER(chain []byte) ([][]byte, error) {
	var der [][]byte
	for {
		var blk *pem.Block
		blk, chain = pem.Decode(chain)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			der = append(der, blk.Bytes)
		}
	}
	if len(der) == 0 {
		return nil, errors.New("the CA returned no certificate")
	}
	return der, nil
}

// forEach runs fn(0..n-1), at most par at once, and returns the errors
// joined. It stops starting new calls when ctx ends.
func forEach(ctx context.Context, n, par int, fn func(i int) error) error {
	sem := make(chan struct{}, max(1, par))
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func topIssuer(der [][]byte) string {
	if len(der) == 0 {
		return ""
	}
	c, err := x509.ParseCertificate(der[len(der)-1])
	if err != nil {
		return ""
	}
	return c.Issuer.CommonName
}

func makeCSR(key crypto.Signer, domains []string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: domains[0]},
		DNSNames: domains,
	}
	return x509.CreateCertificateRequest(rand.Reader, tmpl, key)
}

func encodeChain(der [][]byte, key crypto.Signer) (CertFiles, *x509.Certificate, error) {
	if len(der) == 0 {
		return CertFiles{}, nil, errors.New("the CA returned no certificate")
	}
	leaf, err := x509.ParseCertificate(der[0])
	if err != nil {
		return CertFiles{}, nil, fmt.Errorf("the CA returned an unreadable certificate: %w", err)
	}
	var f CertFiles
	f.Cert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der[0]})
	for _, d := range der[1:] {
		f.Chain = append(f.Chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	if f.KeyPEM, err = encodePrivateKey(key); err != nil {
		return CertFiles{}, nil, err
	}
	return f, leaf, nil
}

// checkLeaf refuses to store a certificate that does not match what was asked.
func checkLeaf(leaf *x509.Certificate, key crypto.Signer, domains []string) error {
	type pub interface{ Equal(crypto.PublicKey) bool }
	if p, ok := key.Public().(pub); !ok || !p.Equal(leaf.PublicKey) {
		return errors.New("the CA returned a certificate for another key; nothing was saved")
	}
	for _, d := range domains {
		if !slices.Contains(leaf.DNSNames, d) {
			return fmt.Errorf("the CA returned a certificate without %s; nothing was saved", d)
		}
	}
	return nil
}
