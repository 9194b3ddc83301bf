package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// The path a CA takes to a challenge value, checked link by link by
// `client check`: the name's CNAME to its broker account, the broker
// zone's delegation (its NS, and their addresses, found through a recursive
// resolver as the CA finds them), and the account's value as the recursive
// resolver sees it compared with what the broker's own name servers serve.
// A broken link is reported with the fix.

// Link is one checked link of the path.
type Link struct {
	What   string // e.g. "CNAME _acme-challenge.example.org."
	OK     bool
	Detail string // what was found, or what is wrong and what to do
}

// PathReport is the check of one name.
type PathReport struct {
	Domain string
	Links  []Link
}

// OK reports whether every link holds.
func (r PathReport) OK() bool {
	for _, l := range r.Links {
		if !l.OK {
			return false
		}
	}
	return len(r.Links) > 0
}

// PathItem is one name to check and the account its challenges go to.
type PathItem struct {
	Domain     string
	RecordName string // where the CNAME stands (DNSChallenge.CNAMEName)
	Account    BrokerAccount
}

// CheckPaths checks every item. The links shared by names of one broker
// account (delegation, value) are checked once.
func (c *Checker) CheckPaths(ctx context.Context, items []PathItem) []PathReport {
	shared := map[string][]Link{}
	out := make([]PathReport, 0, len(items))
	for _, it := range items {
		r := PathReport{Domain: it.Domain}
		target := dns.Fqdn(strings.ToLower(it.Account.FullDomain))
		cname := Link{What: "CNAME " + it.RecordName + " -> " + target}
		if err := c.CheckCNAMEAt(ctx, it.Domain, it.RecordName, target); err != nil {
			cname.Detail = err.Error()
		} else {
			cname.OK, cname.Detail = true, "in place (through the recursive resolver)"
		}
		r.Links = append(r.Links, cname)
		links, ok := shared[target]
		if !ok {
			links = c.accountLinks(ctx, target)
			shared[target] = links
		}
		r.Links = append(r.Links, links...)
		out = append(out, r)
	}
	return out
}

// brokerZone is the zone of an account's fulldomain: acme-dns and
// acmebroker hand out one label below their zone.
func brokerZone(fulldomain string) string {
	_, zone, ok := strings.Cut(dns.Fqdn(fulldomain), ".")
	if !ok || zone == "" {
		return "."
	}
	return zone
}

func (c *Checker) accountLinks(ctx context.Context, fulldomain string) []Link {
	zone := brokerZone(fulldomain)
	del := Link{What: "delegation of the broker zone " + zone}
	if addrs, err := c.delegation(ctx, zone); err != nil {
		del.Detail = err.Error()
	} else {
		del.OK, del.Detail = true, "its name servers resolve: "+strings.Join(addrs, ", ")
	}
	val := Link{What: "TXT " + fulldomain + " through the recursive resolver and on the broker"}
	if detail, err := c.compareValues(ctx, fulldomain); err != nil {
		val.Detail = err.Error()
	} else {
		val.OK, val.Detail = true, detail
	}
	return []Link{del, val}
}

// delegation checks that zone's NS records, and their addresses, resolve
// through the recursive resolver, as they must for the CA.
func (c *Checker) delegation(ctx context.Context, zone string) ([]string, error) {
	fix := fmt.Sprintf("the parent zone of %s must delegate it to the broker's DNS servers (NS records, with glue if they are inside it), and each must answer for it", strings.TrimSuffix(zone, "."))
	resp, err := c.recursive(ctx, zone, dns.TypeNS)
	if err != nil {
		return nil, fmt.Errorf("the recursive resolver cannot resolve the broker zone (%v): %s", err, fix)
	}
	if resp.Rcode == dns.RcodeNameError {
		return nil, fmt.Errorf("the broker zone %s does not exist for the recursive resolver (NXDOMAIN): %s", zone, fix)
	}
	var names []string
	for _, rr := range resp.Answer {
		if ns, ok := rr.(*dns.NS); ok && strings.EqualFold(ns.Hdr.Name, zone) {
			names = append(names, ns.Ns)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("the recursive resolver finds no NS records for %s: %s", zone, fix)
	}
	var out []string
	for _, ns := range names {
		addrs := c.addresses(ctx, ns)
		if len(addrs) == 0 {
			return nil, fmt.Errorf("the name server %s of %s has no address through the recursive resolver: add its A/AAAA records (glue at the parent if it is inside %s)", ns, zone, zone)
		}
		out = append(out, strings.TrimSuffix(ns, ".")+" ("+strings.Join(addrs, ", ")+")")
	}
	return out, nil
}

// compareValues looks up name's TXT through the recursive resolver and
// directly on the broker's name servers: they must agree, else the CA
// (which uses a resolver) looks elsewhere than where the client waits.
func (c *Checker) compareValues(ctx context.Context, name string) (string, error) {
	servers, err := c.authoritative(ctx, name)
	if err != nil {
		return "", fmt.Errorf("finding the broker's name servers: %w", err)
	}
	var viaResolver, onBroker []string
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			// The value may have changed between the two lookups.
			t := time.NewTimer(300 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return "", ctx.Err()
			case <-t.C:
			}
		}
		resp, err := c.recursive(ctx, name, dns.TypeTXT)
		if err != nil {
			return "", fmt.Errorf("the recursive resolver cannot look it up (%v): the CA will fail the same way; see the delegation above", err)
		}
		viaResolver = txtValues(resp)
		onBroker, err = c.authoritativeTXT(ctx, name, servers)
		if err != nil {
			return "", err
		}
		slices.Sort(viaResolver)
		slices.Sort(onBroker)
		if slices.Equal(viaResolver, onBroker) {
			switch len(onBroker) {
			case 0:
				return "the same on both sides (no value set yet)", nil
			case 1:
				return "the same value on both sides", nil
			}
			return fmt.Sprintf("the same %d values on both sides", len(onBroker)), nil
		}
	}
	return "", fmt.Errorf("the recursive resolver sees %s but the broker's name servers (%s) serve %s: the resolver reaches other servers for this zone than those the client waits for (a stale or wrong delegation, or --nameserver pointing elsewhere)",
		describeValues(viaResolver), strings.Join(servers, ", "), describeValues(onBroker))
}

func (c *Checker) authoritativeTXT(ctx context.Context, name string, servers []string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	var problems []string
	for _, s := range servers {
		resp, err := c.exchange(ctx, m.Copy(), s)
		st := judgeTXT(resp, err, nil)
		if err == nil && !st.final && (resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError) {
			return txtValues(resp), nil
		}
		problems = append(problems, s+" "+st.last)
	}
	return nil, errors.New("no broker name server answered with authority: " + strings.Join(problems, "; "))
}

func describeValues(v []string) string {
	switch len(v) {
	case 0:
		return "no value"
	case 1:
		return "1 value (" + v[0] + ")"
	}
	return fmt.Sprintf("%d values (%s)", len(v), strings.Join(v, ", "))
}
