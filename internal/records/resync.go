package records

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/acmebroker/acmebroker/storage"
)

// Snapshotter is the part of storage.Store a resync reads.
type Snapshotter interface {
	Snapshot(ctx context.Context, fn func(storage.Subdomain) error) (uint32, error)
}

// ResyncStats says what a resync changed.
type ResyncStats struct {
	Serial  uint32 // serial of the snapshot
	Changed int    // subdomains added or whose values changed
	Removed int    // subdomains no longer in storage
}

// resyncBatch bounds the changes applied per hold of the write lock, so
// queries never wait behind a large resync for long.
const resyncBatch = 256

// Resync reconciles the index with storage: subdomains added, changed or
// removed by someone else (another node sharing the database) are brought
// in line with a snapshot of it. It is for a node that may have missed
// changes; the node's own writes and changes it was told of are applied as
// they come (Set, Remove), and Resync never undoes one newer than its
// snapshot.
//
// The snapshot is compared with memory under the read lock, one subdomain
// at a time, so queries are not held up; only differences are kept, and
// applied afterwards in small batches under the write lock with the
// snapshot's serial (Set's rule: an entry written by a newer serial stays).
// A subdomain in memory but not in the snapshot is removed unless an entry
// newer than the snapshot holds it. A subdomain removed from memory by a
// newer write than the snapshot (deleted after the snapshot was read) is
// not brought back: its tombstone wins (see Remove).
func (x *Index) Resync(ctx context.Context, st Snapshotter) (ResyncStats, error) {
	var (
		changed []storage.Subdomain
		seen    []uint64 // bitmap over entry numbers found in the snapshot
	)
	mark := func(i int32) {
		w := int(i) / 64
		if w >= len(seen) {
			seen = slices.Grow(seen, w+1-len(seen))[:w+1]
		}
		seen[w] |= 1 << (uint(i) % 64)
	}
	isSeen := func(i int32) bool {
		w := int(i) / 64
		return w < len(seen) && seen[w]&(1<<(uint(i)%64)) != 0
	}

	serial, err := st.Snapshot(ctx, func(s storage.Subdomain) error {
		name := strings.ToLower(s.Name)
		x.mu.RLock()
		i, ok := x.find(name)
		same := ok && x.holds(i, s)
		x.mu.RUnlock()
		if ok {
			mark(i)
		}
		if !same {
			changed = append(changed, storage.Subdomain{Name: name, Records: slices.Clone(s.Records), Persist: slices.Clone(s.Persist)})
		}
		return ctx.Err()
	})
	if err != nil {
		return ResyncStats{}, fmt.Errorf("records: resync: %w", err)
	}
	stats := ResyncStats{Serial: serial, Changed: len(changed)}

	for len(changed) > 0 {
		n := min(len(changed), resyncBatch)
		x.mu.Lock()
		for _, s := range changed[:n] {
			x.put(s.Name, subdomainContent(s), serial, false)
			if i, ok := x.find(s.Name); ok {
				mark(i) // in storage: not to be removed below
			}
		}
		x.mu.Unlock()
		changed = changed[n:]
	}

	// What memory holds that the snapshot did not have, written no later
	// than the snapshot: gone from storage.
	type gone struct {
		name string
		i    int32
	}
	var drop []gone
	x.mu.RLock()
	for k, i := range x.uuids {
		if !isSeen(i) && serialLE(x.at(i).serial, serial) {
			drop = append(drop, gone{uuidString(k), i})
		}
	}
	for name, i := range x.names {
		if !isSeen(i) && serialLE(x.at(i).serial, serial) {
			drop = append(drop, gone{name, i})
		}
	}
	x.mu.RUnlock()
	for len(drop) > 0 {
		n := min(len(drop), resyncBatch)
		x.mu.Lock()
		for _, g := range drop[:n] {
			// Checked again: it may have been written (or reused) since.
			if i, ok := x.find(g.name); ok && i == g.i && serialLE(x.at(i).serial, serial) {
				x.noteRemove(g.name, i, serial) // zone transfers (walk.go)
				x.drop(g.name, i)
				x.bury(g.name, serial)
				stats.Removed++
			}
		}
		x.mu.Unlock()
		drop = drop[n:]
	}
	x.bumpSerial(serial)
	return stats, nil
}

// holds reports whether entry i holds exactly the values and persist
// records of s. Called with mu held.
func (x *Index) holds(i int32, s storage.Subdomain) bool {
	e := x.at(i)
	recs := s.Records
	if e.n < 0 {
		sp := x.spill[i]
		return slices.EqualFunc(sp.recs, recs, func(a, b storage.TXTRecord) bool {
			return a.Value == b.Value && a.UpdatedAt.Equal(b.UpdatedAt)
		}) && slices.Equal(sp.persist, persistValues(s.Persist))
	}
	if int(e.n) != len(recs) || len(s.Persist) > 0 {
		return false
	}
	for j, r := range recs {
		v := &e.vals[j]
		if v.at != r.UpdatedAt.UnixNano() || string(v.val[:v.n]) != r.Value {
			return false
		}
	}
	return true
}

// drop forgets entry i, named name, without touching the serial (Remove
// without its bump). Called with mu held.
func (x *Index) drop(name string, i int32) {
	x.changed(name)
	if k, isUUID := uuidKey(name); isUUID {
		delete(x.uuids, k)
	} else {
		delete(x.names, name)
	}
	delete(x.spill, i)
	*x.at(i) = entry{}
	x.free = append(x.free, i)
}

// uuidString is the canonical text of a uuidKey.
func uuidString(k [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], k[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], k[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], k[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], k[8:10])
	b[23] = '-'
	hex.Encode(b[24:], k[10:])
	return string(b[:])
}
