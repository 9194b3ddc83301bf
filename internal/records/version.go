package records

import (
	"hash/maphash"
	"sync/atomic"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/storage"
)

// What the DNS server's answer cache (dnsserver/fastpath.go) needs from the
// index: a version per name that moves on every change of what TXT returns
// for it, readable without a lock, and the time at which values age out
// of the window (which changes the answer without any write).
//
// Versions live in a fixed table of counters indexed by a hash of the
// name, not in the entries: reading one on every cached answer then costs
// a hash and an atomic load, not a map lookup under the lock. Names that
// share a counter invalidate each other's cached answers, which costs a
// refill, never a wrong answer.

var _ dnsserver.VersionedSource = (*Index)(nil)

// versionBits sizes the table: 2^18 counters (1 MiB), about four names
// each at a million accounts.
const versionBits = 18

type versions struct {
	seed maphash.Seed
	ctr  []atomic.Uint32
}

func newVersions() versions {
	return versions{seed: maphash.MakeSeed(), ctr: make([]atomic.Uint32, 1<<versionBits)}
}

func (v *versions) ref(sub string) uint32 {
	return uint32(maphash.String(v.seed, sub) & (1<<versionBits - 1))
}

// changed moves the version of sub. Called with Index.mu held for writing,
// before it is released: a reader that finds the old version after the
// write has returned is impossible.
func (x *Index) changed(sub string) { x.vers.ctr[x.vers.ref(sub)].Add(1) }

// TXTStamped implements dnsserver.VersionedSource: TXT, with the version of
// sub read under the same lock as its values, and the time (Unix ns) at
// which the oldest value served beyond the always-kept ones leaves the
// window (0: none does).
func (x *Index) TXTStamped(dst []string, sub string) ([]string, bool, dnsserver.Stamp) {
	return x.txt(dst, sub, true)
}

// Version implements dnsserver.VersionedSource.
func (x *Index) Version(ref uint32) uint32 {
	return x.vers.ctr[ref&(1<<versionBits-1)].Load()
}

// AppendTXT implements dnsserver.ValueAppender: TXTStamped, with the
// values copied end to end into buf and where each ends appended to ends,
// so that the fast path builds an answer without allocating. sub is only
// read during the call.
func (x *Index) AppendTXT(buf []byte, ends []int, sub string) ([]byte, []int, bool, dnsserver.Stamp) {
	e, sp, ok, st := x.read(sub, true)
	if !ok {
		return buf, ends, false, st
	}
	if e.n >= 0 {
		for j := range e.n {
			v := &e.vals[j]
			buf = append(buf, v.val[:v.n]...)
			ends = append(ends, len(buf))
		}
		return buf, ends, true, st
	}
	for _, r := range x.served(sp.recs, true, &st) {
		buf = append(buf, r.Value...)
		ends = append(ends, len(buf))
	}
	for _, v := range sp.persist {
		buf = append(buf, v...)
		ends = append(ends, len(buf))
	}
	return buf, ends, true, st
}

// txt is TXT, and with stamp also the stamp of what it returns.
func (x *Index) txt(dst []string, sub string, stamp bool) ([]string, bool, dnsserver.Stamp) {
	e, sp, ok, st := x.read(sub, stamp)
	if !ok {
		return dst, false, st
	}
	if e.n >= 0 {
		for j := range e.n {
			v := &e.vals[j]
			dst = append(dst, string(v.val[:v.n]))
		}
		return dst, true, st
	}
	for _, r := range x.served(sp.recs, stamp, &st) {
		dst = append(dst, r.Value)
	}
	return append(dst, sp.persist...), true, st
}

// read returns what sub serves, read under one lock with (if stamp) the
// version of sub: a copy of its entry when the values are held in place
// (n >= 0), else its spilled records, which are never modified once
// stored (every change replaces them) and so are read outside the lock.
func (x *Index) read(sub string, stamp bool) (entry, spilled, bool, dnsserver.Stamp) {
	var st dnsserver.Stamp
	x.mu.RLock()
	defer x.mu.RUnlock()
	if stamp {
		st.Ref = x.vers.ref(sub)
		st.Version = x.vers.ctr[st.Ref].Load()
	}
	i, ok := x.find(sub)
	if !ok {
		return entry{}, spilled{}, false, st
	}
	if e := x.at(i); e.n >= 0 {
		return *e, spilled{}, true, st
	}
	return entry{n: -1}, x.spill[i], true, st
}

// served is the spilled records recs that the TXT policy serves now; with
// stamp it sets st.Until to when the oldest of them beyond the always-kept
// ones leaves the window.
func (x *Index) served(recs []storage.TXTRecord, stamp bool, st *dnsserver.Stamp) []storage.TXTRecord {
	if len(recs) > x.policy.Always {
		recs = x.policy.Keep(recs, x.now())
		if stamp && len(recs) > x.policy.Always {
			// Newest first: the last one served leaves the window first.
			st.Until = recs[len(recs)-1].UpdatedAt.Add(x.policy.Window).UnixNano()
		}
	}
	return recs
}
