package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mholt/acmez/v3/acme"
)

// The ACME protocol layer is github.com/mholt/acmez/v3/acme (see
// docs/design.md for why). This file adds what a command-line client needs
// on top of it: one account per CA directory URL, kept in State under its
// lock and registered again when the CA forgot it; the CA's Retry-After,
// honoured up to a cap; and problem documents turned into messages.

// RateLimitWait is how long a run waits, by default, when the CA answers
// 429 with a Retry-After; beyond it the run fails at once.
const RateLimitWait = 2 * time.Minute

// ErrRateLimited: the CA asked to come back later than this run waits.
type ErrRateLimited struct {
	Until  time.Time // zero: the CA did not say
	Detail string
}

func (e *ErrRateLimited) Error() string {
	if e.Until.IsZero() {
		return "rate limited by the CA (it gave no time to retry): " + e.Detail
	}
	return fmt.Sprintf("rate limited by the CA until %s: %s", e.Until.UTC().Format(time.RFC3339), e.Detail)
}

// acmeSession is an ACME client bound to one account of one CA.
type acmeSession struct {
	is     *Issuer
	caURL  string
	c      *acme.Client
	acct   acme.Account
	rec    *retryAfterRecorder
	dir    acme.Directory
	req    ObtainRequest // email, EAB: for registering again
	maxRLW time.Duration // rate-limit wait cap

	mu          sync.Mutex
	reregisters int
}

// session opens the account for req.CAURL: loads (or makes) its key under
// the accounts lock, registers it if this state directory has none for the
// CA, and updates its contact if req.Email changed.
func (is *Issuer) session(ctx context.Context, req ObtainRequest) (*acmeSession, error) {
	base := is.HTTP
	if base == nil {
		base = &http.Client{Timeout: 60 * time.Second}
	}
	rec := &retryAfterRecorder{next: base.Transport, seen: map[string]time.Time{}, now: is.now}
	hc := *base
	hc.Transport = rec
	s := &acmeSession{
		is: is, caURL: req.CAURL, rec: rec, req: req, maxRLW: req.RateLimitWait,
		c: &acme.Client{Directory: req.CAURL, HTTPClient: &hc, UserAgent: "acmebroker", Logger: is.acmeLogger()},
	}
	if s.maxRLW <= 0 {
		s.maxRLW = RateLimitWait
	}
	dir, err := s.c.GetDirectory(ctx)
	if err != nil {
		return nil, fmt.Errorf("ACME directory %s: %s (is --ca right, and does --ca-root trust its TLS certificate?)", req.CAURL, describeACME(err))
	}
	s.dir = dir
	lk, err := is.State.LockAccounts(ctx, is.lockOptions())
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	key, _, err := is.State.ACMEAccountKey(req.CAURL)
	if err != nil {
		return nil, err
	}
	s.acct = acme.Account{PrivateKey: key}
	rec0 := is.State.ACMEAccountRecord(req.CAURL)
	if rec0.URL == "" {
		if err := s.register(ctx); err != nil {
			return nil, err
		}
		return s, nil
	}
	s.acct.Location, s.acct.Contact = rec0.URL, rec0.Contact
	if want := contactOf(req.Email); req.Email != "" && !slices.Equal(want, rec0.Contact) {
		if err := s.updateContact(ctx, want); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func contactOf(email string) []string {
	if email == "" {
		return nil
	}
	return []string{"mailto:" + email}
}

// register makes a new account (or finds the existing one of this key) and
// records it. Called under the accounts lock.
func (s *acmeSession) register(ctx context.Context) error {
	a := acme.Account{PrivateKey: s.acct.PrivateKey, Contact: contactOf(s.req.Email), TermsOfServiceAgreed: true}
	if s.req.EABKeyID != "" {
		eab := acme.EAB{KeyID: s.req.EABKeyID, MACKey: strings.TrimRight(s.req.EABHMAC, "=")}
		if err := a.SetExternalAccountBinding(ctx, s.c, eab); err != nil {
			return fmt.Errorf("--eab-kid/--eab-hmac: %w (--eab-hmac must be the base64url key your CA gave)", err)
		}
	} else if s.dir.Meta != nil && s.dir.Meta.ExternalAccountRequired {
		return errors.New("this CA requires external account binding: pass --eab-kid and --eab-hmac from your CA account")
	}
	if s.dir.Meta != nil && s.dir.Meta.TermsOfService != "" {
		s.is.say("Agreeing to the CA's terms of service: %s", s.dir.Meta.TermsOfService)
	}
	var got acme.Account
	err := s.retryRateLimited(ctx, "new account", func() error {
		var err error
		got, err = s.c.NewAccount(ctx, a)
		return err
	})
	if err != nil {
		return fmt.Errorf("ACME account: %s", describeACME(err))
	}
	got.PrivateKey = a.PrivateKey
	s.acct = got
	return s.is.State.SaveACMEAccount(s.caURL, got.Location, got.Contact)
}

// updateContact changes the account's contact (a changed --email). Called
// under the accounts lock, from session.
func (s *acmeSession) updateContact(ctx context.Context, contact []string) error {
	a := s.acct
	a.Contact = contact
	err := s.retryRateLimited(ctx, "account update", func() error {
		_, err := s.c.UpdateAccount(ctx, a)
		return err
	})
	if accountGone(err) {
		return s.registerAgain(ctx, err) // with the new contact
	}
	if err != nil {
		return fmt.Errorf("updating the ACME account's contact to %s: %s", strings.Join(contact, ", "), describeACME(err))
	}
	s.acct.Contact = contact
	s.is.logger().Info("acme account contact updated", "account", s.acct.Location, "contact", strings.Join(contact, ","))
	s.is.say("Updated the ACME account's contact to %s", strings.Join(contact, ", "))
	return s.is.State.SaveACMEAccount(s.caURL, s.acct.Location, contact)
}

// account is the account to sign with (it changes if registered again).
func (s *acmeSession) account() acme.Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acct
}

// accountGone reports whether err says the CA does not know the account
// (any more), or that the stored account does not belong to this key.
func accountGone(err error) bool {
	var p acme.Problem
	if !errors.As(err, &p) {
		return false
	}
	if p.Type == acme.ProblemTypeAccountDoesNotExist {
		return true
	}
	return (p.Type == acme.ProblemTypeUnauthorized || p.Type == acme.ProblemTypeMalformed) &&
		strings.Contains(strings.ToLower(p.Detail), "jws verification")
}

// reregister is called when the CA answered that it does not know the
// stored account: it finds the account of the key, or registers a new one,
// under the accounts lock.
func (s *acmeSession) reregister(ctx context.Context, cause error, used acme.Account) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acct.Location != used.Location {
		return nil // another goroutine of this run did it already
	}
	lk, err := s.is.State.LockAccounts(ctx, s.is.lockOptions())
	if err != nil {
		return err
	}
	defer lk.Unlock()
	if cur := s.is.State.ACMEAccountURL(s.caURL); cur != "" && cur != used.Location {
		s.acct.Location = cur // another run did it already
		return nil
	}
	return s.registerAgain(ctx, cause)
}

// registerAgain registers the key anew and says so. Called under the
// accounts lock, with s.mu held or no other goroutine running.
func (s *acmeSession) registerAgain(ctx context.Context, cause error) error {
	old := s.acct.Location
	if err := s.register(ctx); err != nil {
		return err
	}
	var p acme.Problem
	if errors.As(cause, &p) && p.Type == acme.ProblemTypeAccountDoesNotExist {
		s.is.logger().Warn("acme account unknown to the CA; registered again",
			"old_account", old, "new_account", s.acct.Location, "directory", s.caURL, "cause", shortProblem(cause))
		s.is.say("The CA no longer knows ACME account %s (%s); registered again as %s", old, shortProblem(cause), s.acct.Location)
		return nil
	}
	s.is.logger().Warn("acme account of another key in account.json; using the account of the key",
		"old_account", old, "new_account", s.acct.Location, "directory", s.caURL, "cause", shortProblem(cause))
	s.is.say("ACME account %s does not belong to the key in %s (%s); using the key's account %s",
		old, filepath.Join(s.is.State.acmeDir(s.caURL), "account.key"), shortProblem(cause), s.acct.Location)
	return nil
}

// do runs an ACME call with the account: if the CA does not know the
// account it is registered again and the call repeated once; a rate limit
// is waited out if the CA asks for no more than the cap.
func (s *acmeSession) do(ctx context.Context, what string, call func(acme.Account) error) error {
	for attempt := 0; ; attempt++ {
		a := s.account()
		err := s.retryRateLimited(ctx, what, func() error { return call(a) })
		if err == nil || !accountGone(err) || attempt > 0 {
			return err
		}
		s.mu.Lock()
		n := s.reregisters
		s.reregisters++
		s.mu.Unlock()
		if n > 2 {
			return err
		}
		if rerr := s.reregister(ctx, err, a); rerr != nil {
			return fmt.Errorf("%w (and registering again failed: %v)", err, rerr)
		}
	}
}

// retryRateLimited repeats call while the CA answers 429 with a
// Retry-After within the cap; beyond it, it fails at once with
// ErrRateLimited.
func (s *acmeSession) retryRateLimited(ctx context.Context, what string, call func() error) error {
	var waited time.Duration
	for {
		err := call()
		var p acme.Problem
		if err == nil || !errors.As(err, &p) || (p.Status != http.StatusTooManyRequests && p.Type != acme.ProblemTypeRateLimited) {
			return err
		}
		until := s.rec.lastRateLimit()
		if until.IsZero() {
			return &ErrRateLimited{Detail: p.Detail}
		}
		wait := until.Sub(s.is.now())
		if wait < 0 {
			wait = 0
		}
		if waited+wait > s.maxRLW {
			return &ErrRateLimited{Until: until, Detail: p.Detail}
		}
		s.is.say("Rate limited by the CA (%s); retrying %s in %s, as it asks", p.Detail, what, wait.Round(time.Second))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		waited += wait
	}
}

// retryAfterRecorder remembers the Retry-After of the CA's answers: per
// URL, for polling, and the last 429's, because acmez hands no response
// headers back with an error.
type retryAfterRecorder struct {
	next http.RoundTripper
	now  func() time.Time
	mu   sync.Mutex
	seen map[string]time.Time // URL -> when to ask again
	rl   time.Time            // the last 429's Retry-After
}

func (r *retryAfterRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	next := r.next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(req)
	if err == nil {
		now := r.now()
		d := ParseRetryAfter(resp.Header.Get("Retry-After"), now)
		r.mu.Lock()
		if len(r.seen) > 10000 {
			clear(r.seen)
		}
		r.seen[req.URL.String()] = now.Add(d)
		if resp.StatusCode == http.StatusTooManyRequests {
			r.rl = time.Time{}
			if resp.Header.Get("Retry-After") != "" {
				r.rl = now.Add(d)
			}
		}
		r.mu.Unlock()
	}
	return resp, err
}

// retryAfter is how long the CA asked to wait before asking url again
// (0 if it did not), at most a minute.
func (r *retryAfterRecorder) retryAfter(url string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.seen[url].Sub(r.now())
	return min(max(d, 0), time.Minute)
}

func (r *retryAfterRecorder) lastRateLimit() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rl
}

// ParseRetryAfter reads a Retry-After header: seconds or an HTTP date.
// Anything else, or a time in the past, is 0. At most 30 days.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	const most = 30 * 24 * time.Hour
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return min(time.Duration(min(secs, int64(most/time.Second)))*time.Second, most)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), most)
	}
	return 0
}

// poll calls check, first after 50 ms (the CA needs a moment to validate
// or to issue: asking at once mostly earns a pending answer and a
// Retry-After), then until it reports done, waiting what the CA's last
// Retry-After for url asked, else 100 ms doubling to 2 s; for 5 minutes at
// most.
func poll(ctx context.Context, rec *retryAfterRecorder, url string, check func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	t := time.NewTimer(50 * time.Millisecond)
	select {
	case <-ctx.Done():
		t.Stop()
		return fmt.Errorf("waiting for the CA: %w", ctx.Err())
	case <-t.C:
	}
	d := 100 * time.Millisecond
	for {
		done, err := check()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		wait := d
		if ra := rec.retryAfter(url); ra > 0 {
			wait = ra
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for the CA: %w", ctx.Err())
		case <-t.C:
		}
		if d < 2*time.Second {
			d *= 2
		}
	}
}

// acmeLogger is the log for acmez: its warnings and errors only (it logs
// each renewal-info fetch at info level, which is noise on a terminal).
func (is *Issuer) acmeLogger() *slog.Logger {
	return slog.New(minLevel{is.logger().Handler(), slog.LevelWarn})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(as), m.min}
}

func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{m.Handler.WithGroup(name), m.min}
}

// shortProblem is a problem's type and detail on one line.
func shortProblem(err error) string {
	var p acme.Problem
	if errors.As(err, &p) {
		return strings.TrimPrefix(p.Type, acme.ProblemTypeNamespace) + ": " + p.Detail
	}
	return err.Error()
}

// describeACME renders an error from the CA: a problem document's type,
// detail and the subproblem of each identifier; other errors as they are.
func describeACME(err error) string {
	var p acme.Problem
	if errors.As(err, &p) {
		return describeProblem(p)
	}
	if err == nil {
		return "unknown problem"
	}
	return err.Error()
}

func describeProblem(p acme.Problem) string {
	var b strings.Builder
	typ := strings.TrimPrefix(p.Type, acme.ProblemTypeNamespace)
	if typ == "" {
		typ = fmt.Sprintf("HTTP %d", p.Status)
	}
	fmt.Fprintf(&b, "%s: %s", typ, p.Detail)
	for _, sp := range p.Subproblems {
		id := ""
		if sp.Identifier.Value != "" {
			id = sp.Identifier.Value + ": "
		}
		fmt.Fprintf(&b, "\n    %s%s: %s", id, strings.TrimPrefix(sp.Type, acme.ProblemTypeNamespace), sp.Detail)
	}
	return b.String()
}
