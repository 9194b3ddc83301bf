package client

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Challenge is one dns-01 value that another ACME client (certbot,
// dehydrated) asks its hook to publish.
type Challenge struct {
	Domain string // the name being validated: example.org or *.example.org
	Value  string // the TXT value: base64url of the SHA-256 of the key authorization
}

// HookInputError: a hook was called with input that no ACME client sends.
// The CLI turns it into a usage error.
type HookInputError struct{ Msg string }

func (e *HookInputError) Error() string { return e.Msg }

func checkChallenge(c Challenge, domainFrom, valueFrom string) error {
	d := strings.TrimSuffix(c.Domain, ".")
	// ACME identifiers are host names (IDNs as xn-- A-labels): letters,
	// digits, hyphens (and underscores, which some zones use), "*." first
	// for a wildcard. Anything else is no name a CA validates (found by
	// FuzzParseModMD: a quote passed dns.IsDomainName).
	if _, ok := dns.IsDomainName(d); !ok || d == "" || strings.IndexFunc(strings.TrimPrefix(d, "*."), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) >= 0 {
		return &HookInputError{fmt.Sprintf("%s %q is not a domain name", domainFrom, c.Domain)}
	}
	if c.Value == "" {
		return &HookInputError{fmt.Sprintf("%s is empty: there is no challenge value to publish", valueFrom)}
	}
	// A dns-01 value is 43 characters of base64url; the broker checks the
	// length, this only keeps garbage from being sent at all.
	if len(c.Value) > 255 || strings.IndexFunc(c.Value, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		return &HookInputError{fmt.Sprintf("%s %q is not a dns-01 value (base64url characters)", valueFrom, c.Value)}
	}
	return nil
}

// CertbotChallenge reads the challenge certbot hands its --manual-auth-hook
// in the environment: CERTBOT_DOMAIN (without "*." for a wildcard) and
// CERTBOT_VALIDATION (the TXT value).
func CertbotChallenge(getenv func(string) string) (Challenge, error) {
	c := Challenge{Domain: getenv("CERTBOT_DOMAIN"), Value: getenv("CERTBOT_VALIDATION")}
	if c.Domain == "" {
		return Challenge{}, &HookInputError{"CERTBOT_DOMAIN is not set: this command is meant to be run by certbot, as --manual-auth-hook 'acmebroker client hook certbot auth'"}
	}
	if c.Value == "" {
		return Challenge{}, &HookInputError{"CERTBOT_VALIDATION is not set: this command is meant to be run by certbot for a dns-01 challenge (--preferred-challenges dns)"}
	}
	if err := checkChallenge(c, "CERTBOT_DOMAIN", "CERTBOT_VALIDATION"); err != nil {
		return Challenge{}, err
	}
	return c, nil
}

// DehydratedCall is one call of dehydrated's hook: the operation and, for
// deploy_challenge and clean_challenge, the challenges.
type DehydratedCall struct {
	Op         string
	Challenges []Challenge
}

// Dehydrated's operations that carry challenges.
const (
	DehydratedDeploy = "deploy_challenge"
	DehydratedClean  = "clean_challenge"
)

// ParseDehydrated parses the arguments dehydrated calls its hook with:
//
//	deploy_challenge DOMAIN TOKEN_FILENAME TOKEN_VALUE [DOMAIN TOKEN_FILENAME TOKEN_VALUE ...]
//	clean_challenge  (the same)
//	any other operation, with whatever arguments
//
// With HOOK_CHAIN=yes dehydrated passes every challenge of a certificate in
// one call; without it, one triple per call. Operations other than the two
// above are returned with no challenges: dehydrated adds operations over
// time, and a hook must ignore those it does not know.
func ParseDehydrated(args []string) (DehydratedCall, error) {
	if len(args) == 0 || args[0] == "" {
		return DehydratedCall{}, &HookInputError{"no operation: dehydrated calls its hook with an operation such as deploy_challenge first"}
	}
	call := DehydratedCall{Op: args[0]}
	if call.Op != DehydratedDeploy && call.Op != DehydratedClean {
		return call, nil
	}
	rest := args[1:]
	if len(rest) == 0 || len(rest)%3 != 0 {
		return DehydratedCall{}, &HookInputError{fmt.Sprintf("%s takes DOMAIN TOKEN_FILENAME TOKEN_VALUE triples; got %d argument(s)", call.Op, len(rest))}
	}
	for i := 0; i < len(rest); i += 3 {
		c := Challenge{Domain: rest[i], Value: rest[i+2]}
		n := i/3 + 1
		if err := checkChallenge(c, fmt.Sprintf("%s: domain #%d", call.Op, n), fmt.Sprintf("%s: token value #%d", call.Op, n)); err != nil {
			return DehydratedCall{}, err
		}
		call.Challenges = append(call.Challenges, c)
	}
	return call, nil
}

// ModMDCall is one call of the program Apache mod_md runs for dns-01
// challenges (MDChallengeDns01).
type ModMDCall struct {
	Op        string    // ModMDSetup or ModMDTeardown
	Challenge Challenge // a teardown may come without the value
}

// mod_md's operations.
const (
	ModMDSetup    = "setup"
	ModMDTeardown = "teardown"
)

// ParseModMD parses the arguments mod_md calls its MDChallengeDns01
// program with:
//
//	setup DOMAIN TOKEN
//	teardown DOMAIN [TOKEN]
//
// DOMAIN is the name validated (without "*." for a wildcard), TOKEN the
// TXT value; mod_md passes the value to teardown too with
// MDChallengeDns01Version 2.
func ParseModMD(args []string) (ModMDCall, error) {
	if len(args) == 0 {
		return ModMDCall{}, &HookInputError{"no operation: mod_md calls its MDChallengeDns01 program with setup DOMAIN TOKEN or teardown DOMAIN"}
	}
	call := ModMDCall{Op: args[0]}
	switch {
	case call.Op == ModMDSetup && len(args) == 3:
		call.Challenge = Challenge{Domain: args[1], Value: args[2]}
		if err := checkChallenge(call.Challenge, "setup: domain", "setup: token"); err != nil {
			return ModMDCall{}, err
		}
		return call, nil
	case call.Op == ModMDSetup:
		return ModMDCall{}, &HookInputError{fmt.Sprintf("setup takes DOMAIN TOKEN; got %d argument(s)", len(args)-1)}
	case call.Op == ModMDTeardown && (len(args) == 2 || len(args) == 3):
		call.Challenge.Domain = args[1]
		value := "-" // a teardown without a value: only the domain is checked
		if len(args) == 3 {
			call.Challenge.Value, value = args[2], args[2]
		}
		if err := checkChallenge(Challenge{Domain: args[1], Value: value}, "teardown: domain", "teardown: token"); err != nil {
			return ModMDCall{}, err
		}
		return call, nil
	case call.Op == ModMDTeardown:
		return ModMDCall{}, &HookInputError{fmt.Sprintf("teardown takes DOMAIN [TOKEN]; got %d argument(s)", len(args)-1)}
	}
	return ModMDCall{}, &HookInputError{fmt.Sprintf("unknown operation %q: mod_md calls setup or teardown", call.Op)}
}

// Hook publishes the values of other ACME clients' dns-01 challenges through
// the broker accounts saved in State (by `acmebroker client register`) and
// waits until every authoritative server of the broker zone serves them, so
// that the client's next step, asking the CA to validate, succeeds.
type Hook struct {
	State   *State
	Broker  *BrokerClient
	Checker *Checker
	// PropagationTimeout bounds the wait for the name servers; 0 means 2 min.
	PropagationTimeout time.Duration
	// CheckCNAME: check each name's _acme-challenge CNAME through recursive
	// DNS first, so a missing one is reported as the record to add.
	CheckCNAME bool
	// Log receives one progress line per step (nil: none). Never secrets.
	Log io.Writer
	// Now is the clock for the progress figures (nil: time.Now).
	Now func() time.Time
}

func (h *Hook) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Hook) say(format string, args ...any) {
	if h.Log != nil {
		fmt.Fprintf(h.Log, format+"\n", args...)
	}
}

// Deploy sets every challenge's value on the broker account covering its
// name, then waits once for all of them to be served. Accounts (and CNAMEs,
// with CheckCNAME) are checked before any value is sent, so a missing one
// fails the call without a partial update.
func (h *Hook) Deploy(ctx context.Context, chs []Challenge) error {
	start := h.now()
	accts := make([]BrokerAccount, len(chs))
	checked := map[string]bool{}
	for i, c := range chs {
		_, a, err := h.State.AccountFor(c.Domain)
		if err != nil {
			return err
		}
		accts[i] = a
		if base := baseDomain(c.Domain); h.CheckCNAME && !checked[base] {
			if err := h.Checker.CheckCNAME(ctx, base, a.FullDomain); err != nil {
				return err
			}
			checked[base] = true
		}
	}
	byName := map[string][]string{}
	for i, c := range chs {
		if err := h.Broker.Update(ctx, accts[i], c.Value); err != nil {
			return err
		}
		name := accts[i].FullDomain
		byName[name] = append(byName[name], c.Value)
		h.say("acmebroker: %s: value set at %s", ChallengeName(c.Domain), strings.TrimSuffix(name, "."))
	}
	timeout := h.PropagationTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	if err := waitServedAll(ctx, h.Checker, byName, timeout); err != nil {
		return err
	}
	h.say("acmebroker: %d value(s) served by every name server of the broker zone after %s", len(chs), h.now().Sub(start).Round(time.Millisecond))
	return nil
}
