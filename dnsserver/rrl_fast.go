package dnsserver

import "net/netip"

var _ Limiter = (*RRL)(nil)

// Limit implements Limiter for the fast path: the same buckets and rules
// as the middleware (Wrap), for an answer the fast path is about to send.
// A slip is written over the start of resp, allocating nothing.
func (r *RRL) Limit(src netip.Addr, resp []byte) []byte {
	switch r.decideAddr(src, resp) {
	case drop:
		return nil
	case slip:
		return slipInPlace(resp)
	}
	return resp
}

// slipInPlace turns resp into its slip answer (slipAnswer) in place.
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
	clear(out[6:12])
	return out
}
