package rrl

import "net/netip"

// Limit is the limiter for the DNS server's fast path
// (dnsserver.Limiter): the same buckets and rules as Wrap, for an answer
// the fast path is about to send to src over UDP. It returns resp to send
// it, nil to drop it, or the slip answer written over the start of resp
// (allocating nothing). The fast path never takes a query with a cookie
// (an EDNS option), so Config.Verified has nothing to say about its
// answers.
func (r *Limiter) Limit(src netip.Addr, resp []byte) []byte {
	switch r.decideAddr(src, resp) {
	case drop:
		return nil
	case slip:
		return slipInPlace(resp)
	}
	return resp
}

// slipInPlace turns resp into its slip answer (see slipAnswer) in place.
func slipInPlace(resp []byte) []byte {
	if len(resp) < 12 {
		return nil
	}
	end := 12
	if resp[4] == 0 && resp[5] == 1 {
		end = questionEnd(resp)
	}
	out := resp[:end]
	out[2] |= 0x02 // TC
	if end == 12 {
		out[4], out[5] = 0, 0
	}
	clear(out[6:12]) // ANCOUNT, NSCOUNT, ARCOUNT
	return out
}
