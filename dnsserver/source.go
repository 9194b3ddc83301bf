package dnsserver

// RecordSource is what the DNS server needs from the broker's data: the TXT
// values of registered subdomains and the zone serial. It is read on every
// query, so implementations answer from memory and must be safe for
// concurrent use.
type RecordSource interface {
	// TXT appends to dst the TXT values currently served for subdomain (a
	// lower-case single label, without the zone) and reports whether that
	// subdomain is registered at all (registered with no values: NODATA).
	TXT(dst []string, subdomain string) ([]string, bool)
	// Serial is the current SOA serial.
	Serial() uint32
}
