package client

// dns-persist-01 (draft-ietf-acme-dns-persist): the broker account's
// standing records (GET, POST and DELETE /persist, docs/api.md), what
// obtain sets, and the issuance that uses them. A renewal writes nothing to
// the broker: the record stands, and the CA only has to find it. So a
// record the user removed to end the authorization is never set again
// behind their back; only an explicit obtain sets one.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// PersistRecord is one dns-persist-01 record a broker account holds.
type PersistRecord struct {
	Issuer     string    // the CA's issuer-domain-name; one record per issuer
	AccountURI string    // the ACME account it authorizes
	Wildcard   bool      // policy=wildcard: wildcards and names below too
	Until      time.Time // persistUntil: the CA ignores it after; zero: no end
	Value      string    // the TXT value the broker serves
	SetAt      time.Time
}

// Describe is the record for people, on one line.
func (r PersistRecord) Describe() string {
	s := r.Issuer + " for account " + r.AccountURI
	if r.Wildcard {
		s += ", policy=wildcard"
	}
	if !r.Until.IsZero() {
		s += ", until " + r.Until.UTC().Format(time.RFC3339)
	} else {
		s += ", no end"
	}
	return s
}

// PersistList is a broker account's records (every /persist answer).
type PersistList struct {
	Fulldomain string
	Records    []PersistRecord
	Max        int
}

// Of returns the record of issuer, if the account has one.
func (l PersistList) Of(issuer string) (PersistRecord, bool) {
	for _, r := range l.Records {
		if strings.EqualFold(r.Issuer, issuer) {
			return r, true
		}
	}
	return PersistRecord{}, false
}

type persistJSON struct {
	Issuer       string `json:"issuer"`
	AccountURI   string `json:"accounturi"`
	Policy       string `json:"policy,omitempty"`
	PersistUntil int64  `json:"persist_until,omitempty"`
	Value        string `json:"value,omitempty"`
	SetAt        string `json:"set_at,omitempty"`
}

// ParsePersistList reads a /persist answer. It refuses records a broker
// does not serve (no issuer or account, a policy other than wildcard, a
// negative end, a value beyond one TXT string): the client decides from
// them whether to write, and a garbled answer must not look like a usable
// record.
func ParsePersistList(body []byte) (PersistList, error) {
	var raw struct {
		Fulldomain string        `json:"fulldomain"`
		Records    []persistJSON `json:"records"`
		Max        int           `json:"max"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return PersistList{}, fmt.Errorf("the answer of /persist is not the JSON expected: %w", err)
	}
	if len(raw.Records) > 1000 {
		return PersistList{}, fmt.Errorf("the answer of /persist has %d records; a broker holds a handful", len(raw.Records))
	}
	l := PersistList{Fulldomain: raw.Fulldomain, Max: raw.Max, Records: make([]PersistRecord, 0, len(raw.Records))}
	for i, j := range raw.Records {
		bad := func(why string) error {
			return fmt.Errorf("record %d of the answer of /persist %s", i+1, why)
		}
		switch {
		case j.Issuer == "" || strings.ContainsAny(j.Issuer, "; \t\r\n"):
			return PersistList{}, bad("has no usable issuer")
		case j.AccountURI == "" || strings.ContainsAny(j.AccountURI, "; \t\r\n"):
			return PersistList{}, bad("has no usable accounturi")
		case j.Policy != "" && !strings.EqualFold(j.Policy, "wildcard"):
			return PersistList{}, bad(fmt.Sprintf("has policy %q, not wildcard", j.Policy))
		case j.PersistUntil < 0:
			return PersistList{}, bad("has a negative persist_until")
		case len(j.Value) > 255:
			return PersistList{}, bad("has a value longer than one TXT string (255 bytes)")
		}
		r := PersistRecord{Issuer: strings.ToLower(j.Issuer), AccountURI: j.AccountURI, Wildcard: j.Policy != "", Value: j.Value}
		if j.PersistUntil > 0 {
			r.Until = time.Unix(j.PersistUntil, 0).UTC()
		}
		if t, err := time.Parse(time.RFC3339Nano, j.SetAt); err == nil {
			r.SetAt = t
		}
		if r.Value == "" {
			r.Value = r.issueValue()
		}
		l.Records = append(l.Records, r)
	}
	return l, nil
}

// issueValue is the record in the broker's canonical RFC 8659 form.
func (r PersistRecord) issueValue() string {
	v := r.Issuer + "; accounturi=" + r.AccountURI
	if r.Wildcard {
		v += "; policy=wildcard"
	}
	if !r.Until.IsZero() {
		v += "; persistUntil=" + strconv.FormatInt(r.Until.Unix(), 10)
	}
	return v
}

// errNoPersist: the broker has no /persist endpoint.
const errNoPersist = "this broker has no /persist endpoint (acme-dns, or an acmebroker older than dns-persist-01 records): use --challenge dns-01 or dns-account-01 with it"

// persistCall calls /persist (path "" or "/<issuer>") and reads the list
// the broker answers with.
func (c *BrokerClient) persistCall(ctx context.Context, op, method string, acct BrokerAccount, path string, body []byte) (PersistList, error) {
	u, err := joinURL(acct.ServerURL, "/persist"+path)
	if err != nil {
		return PersistList{}, err
	}
	var raw json.RawMessage
	err = c.call(ctx, op, method, u, body, authHeader(acct), http.StatusOK, &raw)
	var be *BrokerError
	if errors.As(err, &be) && (be.Status == http.StatusNotFound || be.Status == http.StatusMethodNotAllowed) && be.Code == "" {
		be.Detail = errNoPersist
		return PersistList{}, err
	}
	if err != nil {
		return PersistList{}, err
	}
	l, err := ParsePersistList(raw)
	if err != nil {
		return PersistList{}, &BrokerError{Op: op, URL: u, Status: http.StatusOK, Detail: err.Error()}
	}
	return l, nil
}

// Persist lists the account's dns-persist-01 records (GET /persist).
func (c *BrokerClient) Persist(ctx context.Context, acct BrokerAccount) (PersistList, error) {
	return c.persistCall(ctx, "persist list", http.MethodGet, acct, "", nil)
}

// SetPersist sets the account's record of r.Issuer (POST /persist),
// replacing the one it had; it returns the records after the change.
func (c *BrokerClient) SetPersist(ctx context.Context, acct BrokerAccount, r PersistRecord) (PersistList, error) {
	j := persistJSON{Issuer: r.Issuer, AccountURI: r.AccountURI}
	if r.Wildcard {
		j.Policy = "wildcard"
	}
	if !r.Until.IsZero() {
		j.PersistUntil = r.Until.Unix()
	}
	b, _ := json.Marshal(j)
	return c.persistCall(ctx, "persist change", http.MethodPost, acct, "", b)
}

// DeletePersist removes the account's record of issuer (DELETE
// /persist/{issuer}); it returns the records left.
func (c *BrokerClient) DeletePersist(ctx context.Context, acct BrokerAccount, issuer string) (PersistList, error) {
	return c.persistCall(ctx, "persist removal", http.MethodDelete, acct, "/"+url.PathEscape(issuer), nil)
}

// persistMargin: a record that ends sooner than this is set again by
// obtain; the CA must still accept it when it looks, moments later.
const persistMargin = 10 * time.Minute

// planPersist decides the record obtain needs at one broker account, from
// the records it has, the issuer-domain-names the CA offers (in its
// order), this ACME account, whether a wildcard is asked and the end the
// user asked for (zero: none asked). write is false when a record the CA
// will accept stands already; why says, for people, why one is written.
//
// A record of this account is never narrowed: its policy=wildcard stays
// (another certificate's renewals may rely on it), and its end stays unless
// a new one is asked or it has run out.
func planPersist(have PersistList, offered []string, account string, wildcard bool, until, now time.Time) (rec PersistRecord, write bool, why string) {
	for _, iss := range offered {
		r, ok := have.Of(iss)
		if ok && r.AccountURI == account && (r.Wildcard || !wildcard) &&
			(r.Until.IsZero() || r.Until.After(now.Add(persistMargin))) &&
			(until.IsZero() || r.Until.Equal(until)) {
			return r, false, ""
		}
	}
	issuer := offered[0]
	for _, iss := range offered {
		if _, ok := have.Of(iss); ok {
			issuer = iss // replace the CA's record rather than add a second
			break
		}
	}
	rec = PersistRecord{Issuer: issuer, AccountURI: account, Wildcard: wildcard, Until: until}
	old, ok := have.Of(issuer)
	switch {
	case !ok:
		why = "the broker account has no record for " + issuer
	case old.AccountURI != account:
		why = "its record for " + issuer + " authorizes another ACME account, " + old.AccountURI + "; replacing it"
	case !old.Until.IsZero() && !old.Until.After(now.Add(persistMargin)):
		why = "its record for " + issuer + " ran out at " + old.Until.UTC().Format(time.RFC3339)
		if until.IsZero() {
			why += "; the new one has no end (--persist-until bounds it)"
		}
	case wildcard && !old.Wildcard:
		why = "its record for " + issuer + " has no policy=wildcard, which a wildcard name needs"
	default:
		why = "--persist-until asks for a new end"
	}
	if ok && old.AccountURI == account {
		rec.Wildcard = rec.Wildcard || old.Wildcard
		if until.IsZero() && old.Until.After(now.Add(persistMargin)) {
			rec.Until = old.Until
		}
	}
	rec.Value = rec.issueValue()
	return rec, true, why
}

// ParsePersistUntil reads --persist-until: a duration from now ("90d",
// "2160h", "1h30m"), a date ("2027-06-30", the end of that day in UTC) or
// an RFC 3339 time. The result is whole seconds, in the future, before
// 2262.
func ParsePersistUntil(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	bad := func(why string) (time.Time, error) {
		return time.Time{}, fmt.Errorf("--persist-until %q: %s (give a duration such as 90d or 2160h, a date such as 2027-06-30, or an RFC 3339 time)", s, why)
	}
	if s == "" {
		return bad("it is empty")
	}
	var t time.Time
	if d, ok := strings.CutSuffix(s, "d"); ok && d != "" && strings.Trim(d, "0123456789") == "" {
		n, err := strconv.Atoi(d)
		if err != nil || n > 100*365 {
			return bad("too many days")
		}
		t = now.Add(time.Duration(n) * 24 * time.Hour)
	} else if d, err := time.ParseDuration(s); err == nil {
		t = now.Add(d)
	} else if day, err := time.Parse(time.DateOnly, s); err == nil {
		t = day.Add(24*time.Hour - time.Second)
	} else if at, err := time.Parse(time.RFC3339, s); err == nil {
		t = at
	} else {
		return bad("not a duration, a date or a time")
	}
	t = t.UTC().Truncate(time.Second)
	if !t.After(now) {
		return bad("it is not in the future")
	}
	if t.Year() >= 2262 {
		return bad("too far in the future")
	}
	return t, nil
}

// brokerPersist reads every broker account's records before the order,
// which also checks the credentials: a broker outage or revoked
// credentials stop obtain before the CA has a pending order.
func (is *Issuer) brokerPersist(ctx context.Context, accts map[string]BrokerAccount) error {
	seen := map[string]bool{}
	for _, a := range accts {
		if seen[acctKey(a)] {
			continue
		}
		seen[acctKey(a)] = true
		if _, err := is.Broker.Persist(ctx, a); err != nil {
			return fmt.Errorf("the broker did not accept the account %s; nothing was asked of the CA: %w", a.FullDomain, err)
		}
	}
	return nil
}

// solvePersist answers dns-persist-01 tasks. With set (obtain) it first
// makes sure each broker account holds a record the CA will accept for
// this account, setting one where it does not and waiting until the
// broker's name servers serve it; without (renew) it writes nothing and
// calls nothing on the broker: the standing record must do.
func (is *Issuer) solvePersist(ctx context.Context, s *acmeSession, tasks []*task, req ObtainRequest) error {
	if len(tasks) == 0 {
		return nil
	}
	if !req.SetPersist {
		is.say("dns-persist-01: the CA checks the standing records; nothing is written to the broker")
		return is.validate(ctx, s, tasks)
	}
	groups, keys := byAccount(tasks)
	account := s.account().Location
	byName := map[string][]string{}
	for _, k := range keys {
		ts := groups[k]
		a := ts[0].acct
		// Read and write under the account's lock: two obtains at once
		// (one with a wildcard) must not undo each other's record.
		lk, err := is.State.lockBroker(ctx, a, is.lockOptions())
		if err != nil {
			return err
		}
		defer lk.Unlock()
		have, err := is.Broker.Persist(ctx, a)
		if err != nil {
			return err
		}
		wildcard := false
		for _, t := range ts {
			wildcard = wildcard || t.authz.Wildcard
		}
		offered := ts[0].chal.IssuerDomainNames
		if len(offered) == 0 {
			return fmt.Errorf("the CA's dns-persist-01 challenge for %s names no issuer-domain-names: no record can be set for it", ts[0].name)
		}
		rec, write, why := planPersist(have, offered, account, wildcard, req.PersistUntil, is.now())
		if !write {
			is.say("dns-persist-01: %s already holds the record %q; nothing to write", a.FullDomain, rec.Value)
			continue
		}
		got, err := is.Broker.SetPersist(ctx, a, rec)
		if err != nil {
			return fmt.Errorf("setting the dns-persist-01 record of %s (%s): %w", a.FullDomain, rec.Describe(), err)
		}
		if r, ok := got.Of(rec.Issuer); ok {
			rec = r
		}
		is.logger().Info("dns-persist-01 record set", "fulldomain", a.FullDomain, "issuer", rec.Issuer, "account", rec.AccountURI)
		is.say("dns-persist-01: %s; set %q at %s", why, rec.Value, a.FullDomain)
		byName[a.FullDomain] = append(byName[a.FullDomain], rec.Value)
	}
	if len(byName) > 0 {
		if err := waitServedAll(ctx, is.Checker, byName, req.PropagationTimeout); err != nil {
			return err
		}
	}
	return is.validate(ctx, s, tasks)
}

// persistAdvice is what to do when the CA refused a dns-persist-01
// validation: the likely cause, read from the CA's detail where it names
// one, and the commands that show and set the record.
func (is *Issuer) persistAdvice(t *task, detail string) string {
	d := strings.ToLower(detail)
	var cause string
	switch {
	case strings.Contains(d, "accounturi"):
		cause = "the record there names another ACME account than this one (" + t.account + ")"
	case strings.Contains(d, "persistuntil"):
		cause = "the record there has run out (persistUntil)"
	case strings.Contains(d, "policy"):
		cause = "the record there has no policy=wildcard, which " + t.name + " needs"
	case strings.Contains(d, "no txt record") || strings.Contains(d, "no valid txt record"):
		cause = "the broker serves no record for this CA there (removed, or never set)"
	default:
		cause = "the record there must name this CA and this ACME account (" + t.account + ")"
	}
	return fmt.Sprintf("  %s\n  to set it for this account: %s\n  to see the records the broker holds: %s",
		cause, t.fix, is.command("persist", "list", "--domain", baseDomain(t.name)))
}
