package storage

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// dns-persist-01 (draft-ietf-acme-dns-persist) authorizes one ACME account
// at one CA for as long as a TXT record stands at
// _validation-persist.<name>. With the broker that name is a CNAME to the
// account's fulldomain, where the broker serves the account's persist
// records beside its challenge values. Each record is an RFC 8659
// issue-value:
//
//	<issuer-domain-name>; accounturi=<url>[; policy=wildcard][; persistUntil=<unix seconds>]
//
// A CA reads only the records whose issuer-domain-name is one of its own,
// so records for several CAs, and challenge values, share the name.

// MaxPersistRecords is how many persist records one account may hold: one
// per CA it uses, with room to move between CAs.
const MaxPersistRecords = 8

// PolicyWildcard is the one policy a persist record may carry: it
// authorizes wildcard certificates and names below the validated one.
const PolicyWildcard = "wildcard"

// maxTXTString is the longest DNS character-string: a persist record is
// served as one, so that every resolver and CA reads it whole.
const maxTXTString = 255

// PersistRecord is one dns-persist-01 record of an account. Within an
// account it is keyed by Issuer.
type PersistRecord struct {
	Issuer       string    // issuer-domain-name of the CA, lower case, no trailing dot
	AccountURI   string    // URL of the ACME account at that CA (https)
	Policy       string    // "" or PolicyWildcard
	PersistUntil time.Time // the CA refuses it after this time; zero: no end (whole seconds)
	SetAt        time.Time // when it was set (storage keeps it; not published)
}

// Value is the record's TXT value in canonical form: tags in a fixed order,
// one space after each semicolon, as CAs and ACME clients write it.
func (p PersistRecord) Value() string {
	var b strings.Builder
	b.Grow(len(p.Issuer) + len(p.AccountURI) + 64)
	b.WriteString(p.Issuer)
	b.WriteString("; accounturi=")
	b.WriteString(p.AccountURI)
	if p.Policy != "" {
		b.WriteString("; policy=")
		b.WriteString(p.Policy)
	}
	if !p.PersistUntil.IsZero() {
		b.WriteString("; persistUntil=")
		b.WriteString(strconv.FormatInt(p.PersistUntil.Unix(), 10))
	}
	return b.String()
}

// UntilUnix is PersistUntil in Unix seconds, 0 when unset: how the
// engines store it.
func (p PersistRecord) UntilUnix() int64 {
	if p.PersistUntil.IsZero() {
		return 0
	}
	return p.PersistUntil.Unix()
}

// UntilFromUnix is the PersistUntil of a stored UntilUnix.
func UntilFromUnix(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}

// PersistError says which field of a persist record is wrong and why.
type PersistError struct {
	Field  string // "issuer", "accounturi", "policy", "persist_until" or "value"
	Reason string
}

func (e *PersistError) Error() string { return e.Field + ": " + e.Reason }

func persistErr(field, format string, args ...any) error {
	return &PersistError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Check checks a record to be set at time now: what CheckShape checks, and
// that persistUntil, if set, is after now (a record that has already run
// out would authorize nothing).
func (p PersistRecord) Check(now time.Time) error {
	if err := p.CheckShape(); err != nil {
		return err
	}
	if !p.PersistUntil.IsZero() && !p.PersistUntil.After(now) {
		return persistErr("persist_until", "%d (%s) is not in the future: give a later Unix time, or none for a record without end",
			p.PersistUntil.Unix(), p.PersistUntil.UTC().Format(time.RFC3339))
	}
	return nil
}

// CheckSet checks what SetPersist is given, in every engine: a storable
// SetAt, and the record as Check finds it at that time.
func (p PersistRecord) CheckSet() error {
	if err := ValidTime("set_at", p.SetAt); err != nil {
		return err
	}
	return p.Check(p.SetAt)
}

// CheckShape checks the record's fields, whatever the time: the issuer a
// lower-case host name, the account URI an https URL of RFC 8659 value
// characters, the policy empty or "wildcard", persistUntil whole seconds
// within the years 1970-2262, and the TXT value within one
// character-string (255 bytes).
func (p PersistRecord) CheckShape() error {
	if err := CheckIssuer(p.Issuer); err != nil {
		return err
	}
	if err := checkAccountURI(p.AccountURI); err != nil {
		return err
	}
	if p.Policy != "" && p.Policy != PolicyWildcard {
		return persistErr("policy", "%q is not a policy: give \"wildcard\" (wildcard certificates and names below) or leave it out", p.Policy)
	}
	if !p.PersistUntil.IsZero() {
		if p.PersistUntil.Unix() <= 0 || p.PersistUntil.Nanosecond() != 0 {
			return persistErr("persist_until", "must be a positive whole number of seconds since 1970 (Unix time)")
		}
		if err := ValidTime("persist_until", p.PersistUntil); err != nil {
			return persistErr("persist_until", "%v", err)
		}
	}
	if n := len(p.Value()); n > maxTXTString {
		return persistErr("value", "the TXT value would be %d bytes, more than the %d of one DNS character-string: use a shorter accounturi", n, maxTXTString)
	}
	return nil
}

// CheckIssuer checks that s is an RFC 8659 issuer-domain-name of at least
// two labels, in lower case (NormalizeIssuer gives that form); the error
// is a *PersistError.
func CheckIssuer(s string) error {
	const what = "issuer"
	switch {
	case s == "":
		return persistErr(what, "is empty: give the CA's issuer domain name, e.g. letsencrypt.org (the ACME challenge lists it in issuer-domain-names)")
	case len(s) > 253:
		return persistErr(what, "is %d bytes long, more than a domain name's 253", len(s))
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return persistErr(what, "%q is a single label: give the CA's full issuer domain name, e.g. letsencrypt.org", s)
	}
	for _, l := range labels {
		if !IsLabel(l) {
			return persistErr(what, "%q is not a host name: lower-case letters, digits and hyphens in dot-separated labels of 1-63, no label starting or ending with a hyphen", s)
		}
	}
	return nil
}

// NormalizeIssuer returns s in the form records keep: lower case, without
// surrounding spaces or a trailing dot.
func NormalizeIssuer(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// checkAccountURI: an absolute https URL with a host and no user
// information or fragment, made of the characters RFC 8659 allows in a
// parameter value (printable ASCII but ';').
func checkAccountURI(s string) error {
	const what = "accounturi"
	if s == "" {
		return persistErr(what, "is empty: give the URL of your ACME account at that CA (its \"Location\", e.g. https://acme-v02.api.letsencrypt.org/acme/acct/123456)")
	}
	for i := 0; i < len(s); i++ {
		if !isIssueValueChar(s[i]) {
			return persistErr(what, "has %q at byte %d: an issue-value parameter holds printable ASCII other than ';' and space", s[i], i)
		}
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return persistErr(what, "is not a URL: %v", errors.Unwrap(err))
	case u.Scheme != "https" || !strings.HasPrefix(s, "https://"):
		return persistErr(what, "must be an https URL (starting https://), not %q", s)
	case u.Host == "" || u.Hostname() == "":
		return persistErr(what, "has no host: %q", s)
	case u.User != nil:
		return persistErr(what, "must not carry user information (user@host)")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return persistErr(what, "must not carry a fragment (#...)")
	}
	return nil
}

// isIssueValueChar: RFC 8659 value = *(%x21-3A / %x3C-7E).
func isIssueValueChar(c byte) bool { return c >= 0x21 && c <= 0x7e && c != ';' }

// ParsePersistValue parses the TXT value of a persist record, strictly: an
// issuer-domain-name and semicolon-separated tag=value parameters (RFC 8659,
// spaces and tabs allowed around each part, tags in any case), accounturi
// required, policy and persistUntil optional, no tag twice, no other tag.
// The record it returns passes CheckShape; its Value is canonical (the
// issuer and policy in lower case), so it may differ from s in spacing and
// case. SetAt is zero.
func ParsePersistValue(s string) (PersistRecord, error) {
	var p PersistRecord
	if len(s) > maxTXTString {
		return p, persistErr("value", "is %d bytes, more than one DNS character-string (%d)", len(s), maxTXTString)
	}
	parts := strings.Split(s, ";")
	p.Issuer = strings.ToLower(trimWSP(parts[0]))
	if err := CheckIssuer(p.Issuer); err != nil {
		return PersistRecord{}, err
	}
	seen := map[string]bool{}
	for _, param := range parts[1:] {
		param = trimWSP(param)
		tag, value, ok := strings.Cut(param, "=")
		tag, value = strings.ToLower(trimWSP(tag)), trimWSP(value)
		switch {
		case param == "":
			return PersistRecord{}, persistErr("value", "has an empty parameter (two semicolons, or one at the end)")
		case !ok || !IsLabel(tag): // RFC 8659 tag = (ALPHA / DIGIT) *( *("-") (ALPHA / DIGIT)), lower-cased here
			return PersistRecord{}, persistErr("value", "parameter %q is not tag=value", param)
		case seen[tag]:
			return PersistRecord{}, persistErr("value", "has the tag %q twice", tag)
		}
		seen[tag] = true
		for i := 0; i < len(value); i++ {
			if !isIssueValueChar(value[i]) {
				return PersistRecord{}, persistErr("value", "the value of %q has %q, which RFC 8659 does not allow", tag, value[i])
			}
		}
		switch tag {
		case "accounturi":
			p.AccountURI = value
		case "policy":
			p.Policy = strings.ToLower(value)
		case "persistuntil":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || value[0] == '+' || value[0] == '-' {
				return PersistRecord{}, persistErr("persist_until", "%q is not a Unix time", value)
			}
			if n <= 0 || n > maxTime.Unix() {
				return PersistRecord{}, persistErr("persist_until", "%d is outside 1970-2262", n)
			}
			p.PersistUntil = time.Unix(n, 0).UTC()
		default:
			return PersistRecord{}, persistErr("value", "has the unknown tag %q (known: accounturi, policy, persistUntil)", tag)
		}
	}
	if !seen["accounturi"] {
		return PersistRecord{}, persistErr("accounturi", "is missing: the record must name the ACME account it authorizes")
	}
	if err := p.CheckShape(); err != nil {
		return PersistRecord{}, err
	}
	return p, nil
}

func trimWSP(s string) string { return strings.Trim(s, " \t") }
