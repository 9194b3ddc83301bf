package config

import (
	"errors"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/dnsserver/rrl"
	"github.com/acmebroker/acmebroker/internal/fieldcheck"
	"github.com/acmebroker/acmebroker/storage"
)

// The DNS server's abuse limits are checked by the components that apply
// them (dnsserver.TCPLimits.Check, rrl.Config.Check); the config only
// builds their settings and names the keys.

// TCPLimits returns the [dns] table's TCP connection limits.
func (d DNS) TCPLimits() dnsserver.TCPLimits {
	return dnsserver.TCPLimits{
		PerSource:      d.TCPPerSource,
		MaxConnections: d.TCPMaxConnections,
		IdleTimeout:    d.TCPIdleTimeout.Duration,
		MaxQueries:     d.TCPMaxQueries,
		MaxLifetime:    d.TCPMaxLifetime.Duration,
	}
}

// Limiter returns the [dns.rrl] table as the limiter's settings. Exempt
// prefixes that do not parse are left out (Validate reports them).
func (r RRL) Limiter() rrl.Config {
	return rrl.Config{
		ResponsesPerSecond: r.ResponsesPerSecond,
		NXDomainPerSecond:  r.NXDomainPerSecond,
		ErrorsPerSecond:    r.ErrorsPerSecond,
		LargePerSecond:     r.LargePerSecond,
		LargeSize:          r.LargeSize,
		Slip:               r.Slip,
		Window:             r.Window.Duration,
		IPv4Prefix:         r.IPv4Prefix,
		IPv6Prefix:         r.IPv6Prefix,
		TableSize:          r.TableSize,
		Exempt:             storage.ParsePrefixes(r.Exempt),
	}
}

// badFields reports every error of a component's Check under table (the
// keys' table, "dns" or "dns.rrl"): a fieldcheck.Error under its field's
// key, any other under the table's name.
func badFields(bad func(key, format string, args ...any), table string, err error) {
	if err == nil {
		return
	}
	for _, e := range unjoin(err) {
		if fe := (*fieldcheck.Error)(nil); errors.As(e, &fe) {
			bad(table+"."+fe.Field, "%s", fe.Msg)
		} else {
			bad(table, "%v", e)
		}
	}
}
