package client

import (
	"github.com/mholt/acmez/v3/acme"
)

// DNSChallenge is an ACME challenge type that the CA validates by looking
// up a TXT record, which the customer's zone delegates to a broker account
// with a CNAME, and the broker serves. The Issuer tries the types it is
// given in order and answers, for each authorization, the first one the CA
// offers; dns-01 is the only one today. Another DNS-based type (such as
// dns-account-01, whose record name depends on the ACME account) is added by
// implementing this interface; the batching, propagation checks and
// diagnostics stay as they are.
type DNSChallenge interface {
	// Type is the ACME challenge type, e.g. "dns-01".
	Type() string
	// RecordName is where the CA looks up the TXT record for domain (which
	// may start with "*."), before following CNAMEs; fully qualified.
	// accountURL is the ACME account that will validate ("" when not
	// known yet).
	RecordName(domain, accountURL string) string
	// RecordValue is the TXT value that answers ch for the account.
	RecordValue(ch acme.Challenge, acct acme.Account) (string, error)
}

// DNS01 is RFC 8555's dns-01: _acme-challenge.<domain> (a wildcard's
// without "*.") holds base64url(SHA-256(key authorization)).
type DNS01 struct{}

// Type implements DNSChallenge.
func (DNS01) Type() string { return acme.ChallengeTypeDNS01 }

// RecordName implements DNSChallenge.
func (DNS01) RecordName(domain, _ string) string { return ChallengeName(domain) + "." }

// RecordValue implements DNSChallenge.
func (DNS01) RecordValue(ch acme.Challenge, _ acme.Account) (string, error) {
	return ch.DNS01KeyAuthorization(), nil
}

var _ DNSChallenge = DNS01{}

// challenges is the preference list of the issuer.
func (is *Issuer) challenges() []DNSChallenge {
	if len(is.Challenges) > 0 {
		return is.Challenges
	}
	return []DNSChallenge{DNS01{}}
}

// pick returns the first challenge of the preference list that z offers.
func (is *Issuer) pick(z acme.Authorization) (DNSChallenge, acme.Challenge, bool) {
	for _, t := range is.challenges() {
		for _, ch := range z.Challenges {
			if ch.Type == t.Type() {
				return t, ch, true
			}
		}
	}
	return nil, acme.Challenge{}, false
}
