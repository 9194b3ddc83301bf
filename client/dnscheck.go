package client

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ErrCNAMERequired: the CNAME that delegates a domain's challenge to the
// broker is missing. It says exactly which record to add.
type ErrCNAMERequired struct {
	Domain string // example.org
	FQDN   string // _acme-challenge.example.org.
	Target string // <uuid>.auth.example.org.
	Found  string // the CNAME target found instead, if any
	// Publish is where the record to add stands, when not at FQDN: the
	// wildcard *._acme-challenge.example.org. that covers every
	// dns-account-01 label.
	Publish string
	// Challenge is the challenge type the CNAME is for ("": dns-01).
	Challenge string
}

func (e *ErrCNAMERequired) Error() string {
	owner := e.FQDN
	if e.Publish != "" {
		owner = e.Publish
	}
	if e.Found != "" {
		return fmt.Sprintf("%s points at %s, not at this broker account: change the record in the zone of %s to\n  %s CNAME %s",
			e.FQDN, e.Found, e.Domain, owner, e.Target)
	}
	check := "acmebroker client check"
	if e.Challenge != "" && e.Challenge != TypeDNS01 {
		check += " --challenge " + e.Challenge
	}
	return fmt.Sprintf("no CNAME at %s: add this record in the zone of %s (at your DNS provider), then run `%s`:\n  %s CNAME %s",
		e.FQDN, e.Domain, check, owner, e.Target)
}

// ErrNotPropagated: the broker's name servers did not all serve a value in time.
type ErrNotPropagated struct {
	Name    string
	Missing map[string]string // nameserver -> the last answer it gave
	Waited  time.Duration
	// Final: every server that lacks the values gave an answer that waiting
	// cannot change (REFUSED, or an answer without authority), so the wait
	// stopped early.
	Final bool
}

func (e *ErrNotPropagated) Error() string {
	var b strings.Builder
	if e.Final {
		fmt.Fprintf(&b, "the TXT values for %s cannot be served as things are (stopped after %s):", e.Name, e.Waited.Round(time.Millisecond))
	} else {
		fmt.Fprintf(&b, "the TXT values for %s were not served by every authoritative name server after %s:", e.Name, e.Waited.Round(time.Millisecond))
	}
	servers := make([]string, 0, len(e.Missing))
	for ns := range e.Missing {
		servers = append(servers, ns)
	}
	slices.Sort(servers)
	for _, ns := range servers {
		fmt.Fprintf(&b, "\n  %s: %s", ns, e.Missing[ns])
	}
	if e.Final {
		b.WriteString("\nare these the broker zone's name servers? (--nameserver chooses which to ask; without it they are found through NS records)")
	} else {
		b.WriteString("\nis every name server of the broker zone up and serving it? (use --nameserver to choose which to check, --propagation-timeout to wait longer)")
	}
	return b.String()
}

// Checker looks things up in DNS: through recursive resolvers (CNAME check,
// finding name servers) and directly at the authoritative servers (to know
// when a value is really served, without any cache in between).
type Checker struct {
	// Resolvers are recursive resolvers as host:port; empty: /etc/resolv.conf.
	Resolvers []string
	// Nameservers, when set, are the authoritative servers (host:port) of the
	// broker zone to check, instead of those found through NS lookups.
	Nameservers []string
	// Interval between checks while waiting; 0 means 200 ms.
	Interval time.Duration
	// Timeout of one query; 0 means 2 s.
	QueryTimeout time.Duration
	// Progress is told, every ProgressEvery (0: 3 s) while WaitServed
	// waits, what each server still lacks. nil: silent.
	Progress      func(msg string)
	ProgressEvery time.Duration
}

func (c *Checker) resolvers() ([]string, error) {
	if len(c.Resolvers) > 0 {
		return c.Resolvers, nil
	}
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil || len(cc.Servers) == 0 {
		return nil, fmt.Errorf("no DNS resolver: /etc/resolv.conf lists none; pass --resolver 192.0.2.53:53")
	}
	out := make([]string, len(cc.Servers))
	for i, s := range cc.Servers {
		out[i] = net.JoinHostPort(s, cc.Port)
	}
	return out, nil
}

func (c *Checker) exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	to := c.QueryTimeout
	if to == 0 {
		to = 2 * time.Second
	}
	cl := &dns.Client{Net: "udp", Timeout: to}
	r, _, err := cl.ExchangeContext(ctx, m, server)
	if err == nil && r.Truncated {
		cl.Net = "tcp"
		r, _, err = cl.ExchangeContext(ctx, m, server)
	}
	return r, err
}

// recursive asks the resolvers in turn until one answers.
func (c *Checker) recursive(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	rs, err := c.resolvers()
	if err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	var last error
	for _, r := range rs {
		resp, err := c.exchange(ctx, m, r)
		if err == nil && (resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError) {
			return resp, nil
		}
		if err == nil {
			err = fmt.Errorf("%s answered %s", r, dns.RcodeToString[resp.Rcode])
		}
		last = err
	}
	return nil, fmt.Errorf("resolving %s %s: %w", name, dns.TypeToString[qtype], last)
}

// CheckCNAME checks that _acme-challenge.<domain> is a CNAME (possibly through
// a chain) to target. It returns *ErrCNAMERequired when it is missing or
// points elsewhere.
func (c *Checker) CheckCNAME(ctx context.Context, domain, target string) error {
	return c.CheckCNAMEAt(ctx, domain, ChallengeName(domain), target)
}

// CheckCNAMEAt checks that name (where the CA looks for domain's record) is
// a CNAME, possibly through a chain, to target.
func (c *Checker) CheckCNAMEAt(ctx context.Context, domain, name, target string) error {
	fqdn := dns.Fqdn(strings.ToLower(name))
	target = dns.Fqdn(strings.ToLower(target))
	name = fqdn
	var first string
	for hop := 0; hop < 8; hop++ {
		resp, err := c.recursive(ctx, name, dns.TypeCNAME)
		if err != nil {
			return err
		}
		next := ""
		for _, rr := range resp.Answer {
			if cn, ok := rr.(*dns.CNAME); ok && strings.EqualFold(cn.Hdr.Name, name) {
				next = strings.ToLower(cn.Target)
			}
		}
		if next == "" {
			break
		}
		if first == "" {
			first = next
		}
		if next == target {
			return nil
		}
		name = next
	}
	return &ErrCNAMERequired{Domain: baseDomain(domain), FQDN: fqdn, Target: target, Found: first}
}

// authoritative finds host:port of every authoritative server of the zone
// holding name: the zone cut is found with SOA queries, its NS names are
// resolved to addresses.
func (c *Checker) authoritative(ctx context.Context, name string) ([]string, error) {
	if len(c.Nameservers) > 0 {
		return c.Nameservers, nil
	}
	zone := dns.Fqdn(name)
	var nsNames []string
	for {
		resp, err := c.recursive(ctx, zone, dns.TypeNS)
		if err != nil {
			return nil, err
		}
		for _, rr := range resp.Answer {
			if ns, ok := rr.(*dns.NS); ok && strings.EqualFold(ns.Hdr.Name, zone) {
				nsNames = append(nsNames, ns.Ns)
			}
		}
		if len(nsNames) > 0 {
			break
		}
		i := strings.IndexByte(zone, '.')
		if i < 0 || i == len(zone)-1 {
			return nil, fmt.Errorf("found no NS records for %s or any parent", name)
		}
		zone = zone[i+1:]
	}
	var out []string
	for _, ns := range nsNames {
		for _, ip := range c.addresses(ctx, ns) {
			out = append(out, net.JoinHostPort(ip, "53"))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the name servers of %s (%s) have no addresses", zone, strings.Join(nsNames, ", "))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// addresses resolves name's A and AAAA records through the recursive
// resolvers ("" for none).
func (c *Checker) addresses(ctx context.Context, name string) []string {
	var out []string
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := c.recursive(ctx, name, qt)
		if err != nil {
			continue
		}
		for _, rr := range resp.Answer {
			switch a := rr.(type) {
			case *dns.A:
				out = append(out, a.A.String())
			case *dns.AAAA:
				out = append(out, a.AAAA.String())
			}
		}
	}
	return out
}

// serverState is what one name server last said while WaitServed waits.
type serverState struct {
	last  string // its last real answer, for people
	final bool   // an answer that waiting cannot change
	done  bool   // serves every value
}

// WaitServed waits until every authoritative server of name's zone answers
// TXT queries for name with all of values, polling every Interval, for at most
// timeout. Servers are asked directly (RD clear), so no cache can mislead.
// It stops early when every server still lacking values gave an answer
// that waiting cannot change (REFUSED, or an answer without the AA bit:
// not a server of the zone). The error reports each server's last real
// answer, never an artefact of the deadline.
func (c *Checker) WaitServed(ctx context.Context, name string, values []string, timeout time.Duration) error {
	start := time.Now()
	// The wait's deadline ends the waiting, never a query: a query cut
	// short by it would report "i/o timeout" instead of the server's
	// real answer. A query may so end up to QueryTimeout after it.
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	servers, err := c.authoritative(wctx, name)
	if err != nil {
		return fmt.Errorf("finding the name servers of %s: %w", name, err)
	}
	interval := c.Interval
	if interval == 0 {
		interval = 200 * time.Millisecond
	}
	every := c.ProgressEvery
	if every <= 0 {
		every = 3 * time.Second
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	state := map[string]*serverState{}
	for _, s := range servers {
		state[s] = &serverState{last: "no answer yet"}
	}
	lastProgress := start
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, s := range servers {
			st := state[s]
			if st.done || st.final {
				continue
			}
			resp, err := c.exchange(ctx, m.Copy(), s)
			if err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
			*st = judgeTXT(resp, err, values)
		}
		pending, final := map[string]string{}, true
		for s, st := range state {
			if !st.done {
				pending[s] = st.last
				final = final && st.final
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if final {
			return &ErrNotPropagated{Name: name, Missing: pending, Waited: time.Since(start), Final: true}
		}
		if c.Progress != nil && time.Since(lastProgress) >= every {
			lastProgress = time.Now()
			for _, s := range servers {
				if st := state[s]; !st.done {
					c.Progress(fmt.Sprintf("waiting for %s to serve %s: %s", s, strings.TrimSuffix(name, "."), st.last))
				}
			}
		}
		select {
		case <-wctx.Done():
			if ctx.Err() == nil {
				return &ErrNotPropagated{Name: name, Missing: pending, Waited: time.Since(start)}
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

// judgeTXT reads one server's answer to the TXT query.
func judgeTXT(resp *dns.Msg, err error, values []string) serverState {
	switch {
	case err != nil:
		return serverState{last: "no answer: " + err.Error()}
	case resp.Rcode == dns.RcodeRefused:
		return serverState{last: "answered REFUSED: it does not serve this zone", final: true}
	case resp.Rcode == dns.RcodeNotAuth:
		return serverState{last: "answered NOTAUTH: it is not authoritative for this zone", final: true}
	case !resp.Authoritative && (resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError):
		return serverState{last: "answered without authority (AA bit clear): it is not a name server of this zone (a resolver?)", final: true}
	case resp.Rcode == dns.RcodeNameError:
		return serverState{last: "answered NXDOMAIN: the name does not exist there (yet)"}
	case resp.Rcode != dns.RcodeSuccess:
		return serverState{last: "answered " + dns.RcodeToString[resp.Rcode]}
	}
	got := txtValues(resp)
	served := 0
	for _, v := range values {
		if slices.Contains(got, v) {
			served++
		}
	}
	if served == len(values) {
		return serverState{last: "serves every value", done: true}
	}
	return serverState{last: fmt.Sprintf("%d of %d values", served, len(values))}
}

func txtValues(resp *dns.Msg) []string {
	var got []string
	for _, rr := range resp.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			got = append(got, strings.Join(txt.Txt, ""))
		}
	}
	return got
}
