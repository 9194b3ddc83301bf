// Package records holds the in-memory view of the zone's dynamic data: which
// subdomains are registered and the TXT values each one serves. The DNS
// server answers from it on every query (dnsserver.RecordSource); the API
// updates it after each write has been made durable in storage, so a value is
// served the moment /update returns 200.
//
// It is laid out for a million accounts: an account holding no more than the
// always-kept values (the steady state) costs one fixed-size, pointer-free
// slot in a chunked array, found through a map keyed by the subdomain's 16
// UUID bytes. The garbage collector has nothing to trace there, so neither
// queries nor updates slow down as accounts pile up. Other names, and
// accounts holding more values, use ordinary maps beside it.
package records

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/storage"
)

var _ dnsserver.RecordSource = (*Index)(nil)

const (
	inlineVals = 2  // values an entry holds in place
	inlineLen  = 47 // longest value held in place (a DNS-01 value is 43)
	chunkBits  = 12 // entries per chunk: 4096
	chunkSize  = 1 << chunkBits
)

type inlineValue struct {
	at  int64 // Unix nanoseconds
	n   uint8
	val [inlineLen]byte
}

// entry is one subdomain. n is the number of inline values, or -1 when
// the values are in Index.spill.
type entry struct {
	serial uint32 // serial of the write that produced the values
	n      int8
	vals   [inlineVals]inlineValue
}

// spilled holds the values of an entry that does not fit in place: more
// values than the always-kept ones, a long value, or any persist record.
type spilled struct {
	name string
	recs []storage.TXTRecord // newest first
	// persist are the TXT values of the subdomain's dns-persist-01
	// records, by issuer. They are served and published beside recs but
	// are no challenge values: the TXT policy never counts nor ages them.
	persist []string
}

// content is what one subdomain serves.
type content struct {
	recs    []storage.TXTRecord // challenge values, newest first
	persist []string            // persist records' values, by issuer
}

// persistValues are the TXT values of recs.
func persistValues(recs []storage.PersistRecord) []string {
	if len(recs) == 0 {
		return nil
	}
	vals := make([]string, len(recs))
	for i, r := range recs {
		vals[i] = r.Value()
	}
	return vals
}

// subdomainContent is what s serves.
func subdomainContent(s storage.Subdomain) content {
	return content{recs: s.Records, persist: persistValues(s.Persist)}
}

// Index is safe for concurrent use.
type Index struct {
	policy storage.TXTPolicy
	now    func() time.Time
	inline int // values an entry may hold in place under policy

	mu     sync.RWMutex
	uuids  map[[16]byte]int32 // canonical lower-case UUID names
	names  map[string]int32   // every other name
	chunks [][]entry
	count  int32   // entries allocated
	free   []int32 // entries of removed subdomains, for reuse
	spill  map[int32]spilled

	serial atomic.Uint32
	zone   *zoneState // zone transfers (walk.go)
	vers   versions   // per-name versions for the DNS answer cache (version.go)

	// Tombstones of removed subdomains, so that a write older than the
	// removal (an update whose database write finished before the account
	// was deleted, but which reaches memory after) cannot bring the name
	// back. Each carries the removal generation it was made in; the zone
	// writer forgets them once no write begun before it is in flight
	// (ForgetRemoved).
	gone    map[string]tombstone
	goneLog []burial      // every burial, in generation order
	gen     uint64        // removals so far
	oldest  atomic.Uint64 // generation of goneLog[0]; 0 when empty
}

type burial struct {
	name string
	gen  uint64
}

type tombstone struct {
	serial uint32 // of the removal
	gen    uint64 // removals before it, plus one
}

// New returns an empty index that serves values according to policy, aging
// them out of the window by the clock now.
func New(policy storage.TXTPolicy, now func() time.Time) *Index {
	return &Index{
		policy: policy, now: now,
		// In place only what the policy keeps whatever its age.
		inline: max(0, min(inlineVals, policy.Always, policy.Max)),
		uuids:  make(map[[16]byte]int32),
		names:  make(map[string]int32),
		spill:  make(map[int32]spilled),
		zone:   newZoneState(),
		vers:   newVersions(),
		gone:   make(map[string]tombstone),
	}
}

// Load fills the index from the store (at start-up).
func (x *Index) Load(ctx context.Context, st storage.Store) error {
	serial, err := st.Snapshot(ctx, func(s storage.Subdomain) error {
		x.mu.Lock()
		x.put(s.Name, subdomainContent(s), 0, true)
		x.mu.Unlock()
		return nil
	})
	if err != nil {
		return fmt.Errorf("records: load: %w", err)
	}
	x.bumpSerial(serial)
	return nil
}

// Add records a newly registered subdomain with no values yet. A removal
// of the name by a newer write wins.
func (x *Index) Add(sub string, serial uint32) {
	sub = strings.ToLower(sub)
	x.mu.Lock()
	if _, ok := x.find(sub); !ok && !x.removedAfter(sub, serial) {
		x.put(sub, content{}, serial, true)
	}
	x.mu.Unlock()
	x.bumpSerial(serial)
}

// Set replaces the challenge values of sub with recs (newest first), as
// stored by the write with the given serial; its persist records stay. A
// write older than the one already applied (two updates racing to get
// here), or than the removal of sub, is ignored.
func (x *Index) Set(sub string, recs []storage.TXTRecord, serial uint32) {
	x.change(sub, serial, func(i int32, ok bool) content {
		c := content{recs: recs}
		if ok {
			c.persist = x.persistAt(i)
		}
		return c
	})
}

// SetPersist replaces the persist records of sub with recs (by issuer), as
// stored by the write with the given serial; its challenge values stay.
// Set's rules of order apply.
func (x *Index) SetPersist(sub string, recs []storage.PersistRecord, serial uint32) {
	vals := persistValues(recs)
	x.change(sub, serial, func(i int32, ok bool) content {
		c := content{persist: vals}
		if ok {
			c.recs = x.recsAt(i)
		}
		return c
	})
}

// Replace replaces everything sub serves (its values and its persist
// records) with what storage holds, read at the given serial: how a node
// applies a change another node, or an admin command, made. Set's rules of
// order apply.
func (x *Index) Replace(s storage.Subdomain, serial uint32) {
	c := subdomainContent(s)
	x.change(s.Name, serial, func(int32, bool) content { return c })
}

// change puts for sub what next makes of its entry (i, if ok), under the
// write lock, with Set's rules of order, and moves the serial.
func (x *Index) change(sub string, serial uint32, next func(i int32, ok bool) content) {
	sub = strings.ToLower(sub)
	x.mu.Lock()
	i, ok := x.find(sub)
	x.put(sub, next(i, ok), serial, false)
	x.mu.Unlock()
	x.bumpSerial(serial)
}

// recsAt returns the challenge values entry i holds (a copy when they are
// in place). Called with mu held.
func (x *Index) recsAt(i int32) []storage.TXTRecord {
	e := x.at(i)
	if e.n < 0 {
		return x.spill[i].recs
	}
	recs := make([]storage.TXTRecord, e.n)
	for j := range recs {
		v := &e.vals[j]
		recs[j] = storage.TXTRecord{Value: string(v.val[:v.n]), UpdatedAt: time.Unix(0, v.at).UTC()}
	}
	return recs
}

// persistAt returns the persist values entry i holds. Called with mu held.
func (x *Index) persistAt(i int32) []string {
	if x.at(i).n >= 0 {
		return nil
	}
	return x.spill[i].persist
}

// put stores c for sub unless an entry with a newer serial is there or sub
// was removed by a newer write (force: at load, no serial order yet).
// Called with mu held.
func (x *Index) put(sub string, c content, serial uint32, force bool) {
	i, ok := x.find(sub)
	if !ok {
		if !force && x.removedAfter(sub, serial) {
			return
		}
		i = x.alloc(sub)
	}
	e := x.at(i)
	if ok && !force && !serialLE(e.serial, serial) {
		return
	}
	x.note(sub, i, ok, c, serial, force)
	x.changed(sub)
	e.serial = serial
	if x.fits(c) {
		e.n = int8(len(c.recs))
		for j, r := range c.recs {
			v := &e.vals[j]
			v.at = r.UpdatedAt.UnixNano()
			v.n = uint8(copy(v.val[:], r.Value))
		}
		delete(x.spill, i)
		return
	}
	e.n = -1
	x.spill[i] = spilled{name: sub, recs: c.recs, persist: c.persist}
}

// fits reports whether c can be held in place: few short values and no
// persist record (those are rare; holding them in the spill map keeps
// every entry small and TXT's in-place path free of them).
func (x *Index) fits(c content) bool {
	if len(c.recs) > x.inline || len(c.persist) > 0 {
		return false
	}
	for _, r := range c.recs {
		if len(r.Value) > inlineLen {
			return false
		}
	}
	return true
}

// TXT implements dnsserver.RecordSource.
func (x *Index) TXT(dst []string, sub string) ([]string, bool) {
	dst, ok, _ := x.txt(dst, sub, false) // version.go
	return dst, ok
}

// Serial implements dnsserver.RecordSource.
func (x *Index) Serial() uint32 { return x.serial.Load() }

// Len is the number of registered subdomains.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.uuids) + len(x.names)
}

// Remove forgets sub (its account was deleted by the write with the given
// serial): DNS answers NXDOMAIN for it from now on. An entry written by a
// newer write (the name registered again since) stays. Writes older than
// serial that arrive later are ignored until ForgetRemoved drops the
// tombstone.
func (x *Index) Remove(sub string, serial uint32) {
	sub = strings.ToLower(sub)
	x.mu.Lock()
	if i, ok := x.find(sub); ok && serialLE(x.at(i).serial, serial) {
		x.noteRemove(sub, i, serial)
		x.drop(sub, i)
	}
	x.bury(sub, serial)
	x.mu.Unlock()
	x.bumpSerial(serial)
}

// bury records that sub was removed by the write with the given serial.
// Called with mu held for writing.
func (x *Index) bury(sub string, serial uint32) {
	if old, ok := x.gone[sub]; ok && serialLE(serial, old.serial) {
		return
	}
	x.gen++
	x.gone[sub] = tombstone{serial: serial, gen: x.gen}
	x.goneLog = append(x.goneLog, burial{sub, x.gen})
	if len(x.goneLog) == 1 {
		x.oldest.Store(x.gen)
	}
}

// removedAfter reports whether sub was removed by a write at or after
// serial. Called with mu held.
func (x *Index) removedAfter(sub string, serial uint32) bool {
	t, ok := x.gone[sub]
	return ok && serialLE(serial, t.serial)
}

// RemovalGen is the number of removals so far. A writer notes it when a
// write begins; see ForgetRemoved.
func (x *Index) RemovalGen() uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.gen
}

// ForgetRemoved drops the tombstones of removals up to generation gen:
// the caller knows that every write begun before them has been applied
// (or has failed), so none can come late any more.
func (x *Index) ForgetRemoved(gen uint64) {
	if o := x.oldest.Load(); o == 0 || o > gen {
		return // nothing to forget: no lock taken, the common case
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for n < len(x.goneLog) && x.goneLog[n].gen <= gen {
		b := x.goneLog[n]
		// A name buried again since has a newer tombstone: keep that.
		if t, ok := x.gone[b.name]; ok && t.gen == b.gen {
			delete(x.gone, b.name)
		}
		n++
	}
	if n > 0 {
		x.goneLog = append(x.goneLog[:0], x.goneLog[n:]...)
	}
	if len(x.goneLog) == 0 {
		x.oldest.Store(0)
	} else {
		x.oldest.Store(x.goneLog[0].gen)
	}
}

// Tombstones is the number of removals remembered (for tests and metrics).
func (x *Index) Tombstones() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.gone)
}

// find returns the entry number of sub. Called with mu held.
func (x *Index) find(sub string) (int32, bool) {
	if k, ok := uuidKey(sub); ok {
		i, ok := x.uuids[k]
		return i, ok
	}
	i, ok := x.names[sub]
	return i, ok
}

// alloc adds an empty entry for sub. Called with mu held.
func (x *Index) alloc(sub string) int32 {
	var i int32
	if n := len(x.free); n > 0 {
		i, x.free = x.free[n-1], x.free[:n-1]
	} else {
		i = x.count
		if int(i)>>chunkBits == len(x.chunks) {
			x.chunks = append(x.chunks, make([]entry, chunkSize))
		}
		x.count++
	}
	if k, ok := uuidKey(sub); ok {
		x.uuids[k] = i
	} else {
		x.names[strings.Clone(sub)] = i
	}
	return i
}

func (x *Index) at(i int32) *entry { return &x.chunks[i>>chunkBits][i&(chunkSize-1)] }

// uuidKey parses the canonical lower-case text form of a UUID
// (8-4-4-4-12 hex digits). Any other spelling is not a key, so every name
// has exactly one place.
func uuidKey(s string) ([16]byte, bool) {
	var k [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return k, false
	}
	j := 0
	for i := 0; i < 36; i += 2 {
		if s[i] == '-' {
			i--
			continue
		}
		hi, ok1 := hexLower(s[i])
		lo, ok2 := hexLower(s[i+1])
		if !ok1 || !ok2 {
			return k, false
		}
		k[j] = hi<<4 | lo
		j++
	}
	return k, j == 16
}

func hexLower(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func (x *Index) bumpSerial(s uint32) {
	for {
		cur := x.serial.Load()
		if !serialLT(cur, s) {
			return
		}
		if x.serial.CompareAndSwap(cur, s) {
			x.poke()
			return
		}
	}
}

// serialLT compares serials in RFC 1982 arithmetic; 0 (never set) is below all.
func serialLT(a, b uint32) bool {
	if a == 0 {
		return b != 0
	}
	return a != b && int32(b-a) > 0
}

func serialLE(a, b uint32) bool { return a == b || serialLT(a, b) }
