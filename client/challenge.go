package client

import (
	"fmt"
	"strings"

	"github.com/mholt/acmez/v3/acme"
)

// DNSChallenge is an ACME challenge type that the CA validates by looking
// up a TXT record, which the customer's zone delegates to a broker account
// with a CNAME, and the broker serves. An order is answered with one type,
// the one asked for (ObtainRequest.Challenge) and stored with the
// certificate for its renewals: the types need different CNAMEs, so falling
// back to another would only fail at the CA.
type DNSChallenge interface {
	// Type is the ACME challenge type, e.g. "dns-01".
	Type() string
	// RecordName is where the CA looks up the TXT record for domain (which
	// may start with "*."), before following CNAMEs; fully qualified.
	// accountURL is the ACME account that will validate ("" when not
	// known yet).
	RecordName(domain, accountURL string) string
	// CNAMEName is where the customer publishes the CNAME to the broker
	// account for domain, once, whatever the ACME account; fully
	// qualified. It is RecordName for every type but dns-account-01,
	// whose one wildcard CNAME covers every account's label.
	CNAMEName(domain string) string
	// RecordValue is the TXT value that answers ch for the account.
	RecordValue(ch acme.Challenge, acct acme.Account) (string, error)
}

// The challenge types, as ACME names them.
const (
	TypeDNS01        = acme.ChallengeTypeDNS01
	TypeDNSAccount01 = acme.ChallengeTypeDNSAccount01
	TypeDNSPersist01 = acme.ChallengeTypeDNSPersist01
)

// ChallengeTypes are the types `obtain --challenge` takes, the default
// first.
var ChallengeTypes = []string{TypeDNS01, TypeDNSAccount01, TypeDNSPersist01}

// ChallengeByType returns the challenge type named t ("" is dns-01).
func ChallengeByType(t string) (DNSChallenge, error) {
	switch strings.ToLower(strings.TrimSpace(t)) {
	case "", acme.ChallengeTypeDNS01:
		return DNS01{}, nil
	case acme.ChallengeTypeDNSAccount01:
		return DNSAccount01{}, nil
	case acme.ChallengeTypeDNSPersist01:
		return DNSPersist01{}, nil
	}
	return nil, fmt.Errorf("challenge type %q is not one of %s", t, strings.Join(ChallengeTypes, ", "))
}

// DNS01 is RFC 8555's dns-01: _acme-challenge.<domain> (a wildcard's
// without "*.") holds base64url(SHA-256(key authorization)).
type DNS01 struct{}

// Type implements DNSChallenge.
func (DNS01) Type() string { return acme.ChallengeTypeDNS01 }

// RecordName implements DNSChallenge.
func (DNS01) RecordName(domain, _ string) string { return ChallengeName(domain) + "." }

// CNAMEName implements DNSChallenge.
func (DNS01) CNAMEName(domain string) string { return ChallengeName(domain) + "." }

// RecordValue implements DNSChallenge.
func (DNS01) RecordValue(ch acme.Challenge, _ acme.Account) (string, error) {
	return ch.DNS01KeyAuthorization(), nil
}

// DNSAccount01 is draft-ietf-acme-dns-account-label's dns-account-01: the
// value of dns-01 at _<label>._acme-challenge.<domain>, the label derived
// from the ACME account's URL, so several ACME accounts validate one name
// without sharing a record. One wildcard CNAME,
// *._acme-challenge.<domain>, delegates every label to the broker.
type DNSAccount01 struct{}

// Type implements DNSChallenge.
func (DNSAccount01) Type() string { return acme.ChallengeTypeDNSAccount01 }

// RecordName implements DNSChallenge. Without an account URL it is the
// wildcard owner, which is what answers for every label.
func (DNSAccount01) RecordName(domain, accountURL string) string {
	if accountURL == "" {
		return DNSAccount01{}.CNAMEName(domain)
	}
	ch := acme.Challenge{Identifier: acme.Identifier{Type: "dns", Value: baseDomain(domain)}}
	return ch.DNSAccount01TXTRecordName(acme.Account{Location: accountURL}) + "."
}

// CNAMEName implements DNSChallenge: the wildcard below
// _acme-challenge.<domain>.
func (DNSAccount01) CNAMEName(domain string) string { return "*." + ChallengeName(domain) + "." }

// RecordValue implements DNSChallenge: the dns-01 digest, which the
// broker's /update takes as it is.
func (DNSAccount01) RecordValue(ch acme.Challenge, _ acme.Account) (string, error) {
	return ch.DNS01KeyAuthorization(), nil
}

// DNSPersist01 is draft-ietf-acme-dns-persist's dns-persist-01: one
// standing record at _validation-persist.<domain>, an RFC 8659
// issue-value naming the CA and the ACME account, authorizes that account
// while it stands. The broker serves it at the account's fulldomain
// (POST /persist); the Issuer sets it when asked to (obtain) and otherwise
// only asks the CA to look (renew), with no write to the broker.
type DNSPersist01 struct{}

// Type implements DNSChallenge.
func (DNSPersist01) Type() string { return acme.ChallengeTypeDNSPersist01 }

// RecordName implements DNSChallenge.
func (DNSPersist01) RecordName(domain, _ string) string {
	return DNSPersist01{}.CNAMEName(domain)
}

// CNAMEName implements DNSChallenge.
func (DNSPersist01) CNAMEName(domain string) string {
	return "_validation-persist." + baseDomain(domain) + "."
}

// RecordValue implements DNSChallenge: the least record that answers ch
// (the first issuer-domain-name the CA offers, this account, no policy
// and no end). The record the Issuer sets adds policy=wildcard for a
// wildcard and persistUntil when asked (see planPersist).
func (DNSPersist01) RecordValue(ch acme.Challenge, acct acme.Account) (string, error) {
	if len(ch.IssuerDomainNames) == 0 {
		return "", fmt.Errorf("the CA's dns-persist-01 challenge for %s names no issuer-domain-names", ch.Identifier.Value)
	}
	return ch.DNSPersist01TXTRecordValue(acct, ch.IssuerDomainNames[0], false), nil
}

// standing reports whether t's record stands between issuances instead of
// being set for each challenge.
func standing(t DNSChallenge) bool { return t.Type() == acme.ChallengeTypeDNSPersist01 }

var (
	_ DNSChallenge = DNS01{}
	_ DNSChallenge = DNSAccount01{}
	_ DNSChallenge = DNSPersist01{}
)

// pick returns the challenge of z of type t.
func pick(t DNSChallenge, z acme.Authorization) (acme.Challenge, bool) {
	for _, ch := range z.Challenges {
		if ch.Type == t.Type() {
			return ch, true
		}
	}
	return acme.Challenge{}, false
}
