// Package acmedns is a libdns provider (github.com/libdns/libdns) for the
// acme-dns API, as acmebroker and acme-dns serve it: what CertMagic, and so
// a Caddy module, needs to answer dns-01 challenges through a broker.
//
// A broker account holds the dns-01 values of one name: the customer's zone
// delegates _acme-challenge.<name> to the account's fulldomain with a CNAME,
// and the provider sets values with POST /update. Registering accounts is
// out of scope: register with `acmebroker client register` (which writes
// the accounts.json Accounts reads) or POST /register, and add the CNAME.
//
// The API can only add TXT values at _acme-challenge names. It cannot list
// or delete them: the broker serves the newest values of each account and
// ages older ones out (acme-dns keeps the two newest). So GetRecords lists
// what this Provider set, and DeleteRecords forgets; see each method.
//
//	p := &acmedns.Provider{Accounts: map[string]acmedns.Account{
//		"example.org": {Username: "...", Password: "...", Subdomain: "...", ServerURL: "https://auth.example.org"},
//	}}
//	solver := &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{DNSProvider: p}}
package acmedns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libdns/libdns"
)

// Provider sets dns-01 values through an acme-dns API. Its exported fields
// are its configuration (JSON, for a Caddy module); it is safe for
// concurrent use once configured.
type Provider struct {
	// Accounts maps a domain to the broker account holding the values of
	// _acme-challenge.<domain>, which covers <domain> and *.<domain> (and
	// names below it without an entry of their own, whose CNAMEs point at
	// the same account). It is the accounts.json that `acmebroker client
	// register` and lego write, so it can be loaded with json.Unmarshal.
	Accounts map[string]Account `json:"accounts,omitempty"`

	// One account for every domain (as caddy-dns/acmedns configures it),
	// used when Accounts has no entry for a domain.
	Username  string `json:"username,omitempty"`
	Password  string `json:"password,omitempty"`
	Subdomain string `json:"subdomain,omitempty"`
	// ServerURL is the API's base URL (a path prefix is kept), for the
	// account above and for Accounts entries without their own.
	ServerURL string `json:"server_url,omitempty"`

	// HTTPClient makes the calls; nil: one with a 30 s timeout.
	HTTPClient *http.Client `json:"-"`

	mu  sync.Mutex
	set map[string][]libdns.TXT // by zone: what this Provider set and has not forgotten
}

// Account is one broker account, in the JSON form acme-dns clients store.
type Account struct {
	Username   string `json:"username"`
	Password   string `json:"password"`
	Subdomain  string `json:"subdomain"`
	FullDomain string `json:"fulldomain,omitempty"`
	ServerURL  string `json:"server_url,omitempty"`
}

var (
	_ libdns.RecordGetter   = (*Provider)(nil)
	_ libdns.RecordAppender = (*Provider)(nil)
	_ libdns.RecordSetter   = (*Provider)(nil)
	_ libdns.RecordDeleter  = (*Provider)(nil)
)

// ErrUnsupported: the API cannot hold this record (only TXT records at
// _acme-challenge names).
var ErrUnsupported = errors.New("the acme-dns API holds TXT records at _acme-challenge names only")

// APIError is a call the API refused or failed.
type APIError struct {
	URL    string
	Status int    // HTTP status; 0 if there was no answer
	Code   string // the API's "error" string (forbidden, bad_txt, ...)
	Err    error  // transport error
}

func (e *APIError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("acme-dns update at %s: %v", e.URL, e.Err)
	}
	msg := fmt.Sprintf("acme-dns update at %s: HTTP %d", e.URL, e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	switch e.Code {
	case "forbidden":
		msg += " (wrong username or password, or this address is outside the account's allowfrom)"
	case "bad_txt":
		msg += " (the value is not a dns-01 value: 43 base64url characters)"
	case "bad_subdomain":
		msg += " (the subdomain is not the account's)"
	}
	return msg
}

func (e *APIError) Unwrap() error { return e.Err }

// AppendRecords sets each TXT record's value on the account of its name
// and returns the records set (libdns.TXT). The API keeps every value
// the policy allows, so nothing that was there is removed.
func (p *Provider) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	var out []libdns.Record
	for _, r := range recs {
		txt, acct, err := p.resolve(zone, r)
		if err != nil {
			return out, err
		}
		if err := p.update(ctx, acct, txt.Text); err != nil {
			return out, err
		}
		p.remember(zone, txt)
		out = append(out, txt)
	}
	return out, nil
}

// SetRecords sets the values of each name's TXT record set and returns
// them. The API has no delete: the values set become the newest of their
// account, which the broker (and acme-dns, up to two) serves; older ones
// are served until they age out (the broker's txt_window).
func (p *Provider) SetRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	out, err := p.AppendRecords(ctx, zone, recs)
	if err != nil {
		return out, err
	}
	// What this Provider remembers for those names is now exactly recs.
	p.mu.Lock()
	kept := p.set[zoneKey(zone)][:0]
	for _, old := range p.set[zoneKey(zone)] {
		if !sameNameIn(old, out) || containsTXT(out, old) {
			kept = append(kept, old)
		}
	}
	p.set[zoneKey(zone)] = kept
	p.mu.Unlock()
	return out, nil
}

// DeleteRecords forgets the records (GetRecords no longer lists them) and
// returns those it knew. The API has no delete: the broker stops serving a
// value once it ages out of its window, acme-dns once two newer values are
// set. That is enough for dns-01, whose values are used once.
func (p *Provider) DeleteRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []libdns.Record
	set := p.set[zoneKey(zone)]
	for _, r := range recs {
		rr := r.RR()
		for i, have := range set {
			if strings.EqualFold(have.Name, rr.Name) && (rr.Data == "" || have.Text == rr.Data) {
				out = append(out, have)
				set = append(set[:i], set[i+1:]...)
				break
			}
		}
	}
	if p.set != nil {
		p.set[zoneKey(zone)] = set
	}
	return out, nil
}

// GetRecords returns the TXT records of zone that this Provider set and
// has not deleted: the API has no way to list a zone.
func (p *Provider) GetRecords(_ context.Context, zone string) ([]libdns.Record, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]libdns.Record, 0, len(p.set[zoneKey(zone)]))
	for _, t := range p.set[zoneKey(zone)] {
		out = append(out, t)
	}
	return out, nil
}

// resolve checks r and finds the account for its name.
func (p *Provider) resolve(zone string, r libdns.Record) (libdns.TXT, Account, error) {
	rr := r.RR()
	if !strings.EqualFold(rr.Type, "TXT") {
		return libdns.TXT{}, Account{}, fmt.Errorf("%s record %s: %w", rr.Type, rr.Name, ErrUnsupported)
	}
	fqdn := strings.ToLower(strings.TrimSuffix(libdns.AbsoluteName(rr.Name, zone), "."))
	domain, ok := strings.CutPrefix(fqdn, "_acme-challenge.")
	if !ok {
		return libdns.TXT{}, Account{}, fmt.Errorf("TXT record %s: %w", fqdn, ErrUnsupported)
	}
	acct, err := p.account(domain)
	if err != nil {
		return libdns.TXT{}, Account{}, err
	}
	return libdns.TXT{Name: rr.Name, TTL: rr.TTL, Text: rr.Data}, acct, nil
}

// account returns the account for domain: the Accounts entry for it (or
// its wildcard), else for its closest parent (one account may serve several
// names whose _acme-challenge CNAMEs all point at it, as the bundled client
// registers them), else the single account.
func (p *Provider) account(domain string) (Account, error) {
	for d := domain; d != ""; {
		for key, a := range p.Accounts {
			if k := strings.ToLower(strings.TrimSuffix(key, ".")); k == d || k == "*."+d {
				if a.ServerURL == "" {
					a.ServerURL = p.ServerURL
				}
				return a, nil
			}
		}
		_, d, _ = strings.Cut(d, ".")
	}
	if p.Username != "" {
		return Account{Username: p.Username, Password: p.Password, Subdomain: p.Subdomain, ServerURL: p.ServerURL}, nil
	}
	return Account{}, fmt.Errorf("no acme-dns account for %s: register one (acmebroker client register --domain %s), point _acme-challenge.%s at its fulldomain with a CNAME, and add it to Accounts", domain, domain, domain)
}

func (p *Provider) remember(zone string, t libdns.TXT) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.set == nil {
		p.set = map[string][]libdns.TXT{}
	}
	set := p.set[zoneKey(zone)]
	for i, have := range set {
		if strings.EqualFold(have.Name, t.Name) && have.Text == t.Text {
			set[i] = t // set again: the API refreshed its time
			return
		}
	}
	p.set[zoneKey(zone)] = append(set, t)
}

func zoneKey(zone string) string { return strings.ToLower(strings.TrimSuffix(zone, ".")) }

func sameNameIn(t libdns.TXT, recs []libdns.Record) bool {
	for _, r := range recs {
		if strings.EqualFold(r.RR().Name, t.Name) {
			return true
		}
	}
	return false
}

func containsTXT(recs []libdns.Record, t libdns.TXT) bool {
	for _, r := range recs {
		if rr := r.RR(); strings.EqualFold(rr.Name, t.Name) && rr.Data == t.Text {
			return true
		}
	}
	return false
}

// maxAttempts of one update: a refused connection, a 5xx or a 429 is
// tried again shortly (libdns asks providers for a little retrying).
const maxAttempts = 3

// update posts value to the account's /update.
func (p *Provider) update(ctx context.Context, a Account, value string) error {
	u, err := url.Parse(strings.TrimSpace(a.ServerURL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("acme-dns server URL %q must look like https://auth.example.org", a.ServerURL)
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/update"
	body, err := json.Marshal(map[string]string{"subdomain": a.Subdomain, "txt": value})
	if err != nil {
		return err
	}
	hc := p.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	for attempt := 1; ; attempt++ {
		retry, wait, err := p.post(ctx, hc, u.String(), a, body)
		if !retry || attempt == maxAttempts {
			return err
		}
		t := time.NewTimer(wait * time.Duration(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

func (p *Provider) post(ctx context.Context, hc *http.Client, u string, a Account, body []byte) (retry bool, wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return false, 0, &APIError{URL: u, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Api-User", a.Username)
	req.Header.Set("X-Api-Key", a.Password)
	res, err := hc.Do(req)
	if err != nil {
		return ctx.Err() == nil, 250 * time.Millisecond, &APIError{URL: u, Err: err}
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if res.StatusCode == http.StatusOK {
		return false, 0, nil
	}
	e := &APIError{URL: u, Status: res.StatusCode}
	var eb struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &eb) == nil {
		e.Code = eb.Error
	}
	wait = 250 * time.Millisecond
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s > 0 {
		wait = min(time.Duration(s)*time.Second, 2*time.Second)
	}
	return res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests, wait, e
}
