package records

import (
	"errors"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/acmebroker/acmebroker/dnsserver"
)

// What zone transfers need from the index: the whole zone (Walk), what
// changed since a serial (Diff) and a signal when the serial moves (Changed).
//
// Secondaries must hold, at each serial, exactly what the primary would send
// for it, or an incremental transfer does not apply (NSD then falls back to
// a full one). What DNS serves moves without the serial (values age out of
// the window; pruning drops them), so transfers use a published view
// instead: each subdomain's values as served when its newest value was set
// (its last serial-moving change), and its persist records, which never
// age. It changes only with the serial, and it
// follows from the stored data alone, so it survives a restart. Values that
// age out stay published until the prune pass deletes them from the store,
// which moves the serial like an update: then the secondaries drop them.
//
// Walk copies only the names under the read lock, then the values in
// chunks, releasing the lock between chunks: a million accounts never hold
// writers (and the queries queued behind a waiting writer) for long. A
// subdomain changed during a walk is sent as it was when the walk began,
// taken from the journal, so the zone sent is exactly the one of the
// walk's serial.
//
// The journal remembers, for each serial-moving change, the subdomain and
// its published values before the change. It is written under the index's
// write lock by the code that changes an entry, so it is always in step
// with the data.

var _ dnsserver.ZoneSource = (*Index)(nil)

// walkChunk is how many subdomains a walk copies per read-lock hold.
const walkChunk = 2048

// journalRecord is one change of one subdomain.
type journalRecord struct {
	version uint32   // zone serial once the change is applied
	name    string   // subdomain
	before  []string // published values before the change
	// missed: a late change (its serial not above the zone's) applied
	// after a transfer of this version was handed out, so a secondary may
	// have the version without it (see Diff).
	missed bool
}

// journal is a bounded log of recent changes, oldest first, versions
// never decreasing. Guarded by Index.mu.
type journal struct {
	max     int
	recs    []journalRecord
	base    uint32 // serial when the journal started
	version uint32 // version of the newest change
	dropped bool   // some record has been dropped
	lost    uint32 // version of the newest dropped record
	// handedOut is version+1 of the newest version a Walk or Diff has
	// given out (0: none). Written under the read lock, hence atomic.
	handedOut atomic.Uint64
}

// zoneState is what the transfer side adds to an Index.
type zoneState struct {
	changed chan struct{} // poked, without blocking, when the serial moves
	j       *journal      // nil until EnableJournal; nothing below is kept before
	// pub holds the published values of entries where they differ from
	// the values held (aged-out values still published, or published
	// values since pruned). Guarded by Index.mu.
	pub map[int32][]string
}

func newZoneState() *zoneState { return &zoneState{changed: make(chan struct{}, 1)} }

// Changed implements dnsserver.ZoneSource: it receives after the serial has
// moved (several moves may show as one).
func (x *Index) Changed() <-chan struct{} { return x.zone.changed }

func (x *Index) poke() {
	select {
	case x.zone.changed <- struct{}{}:
	default:
	}
}

// EnableJournal starts keeping the published view and up to n changes for
// incremental zone transfers (IXFR). Call it after Load; a secondary whose
// serial is older than the serial at that time gets a full transfer.
func (x *Index) EnableJournal(n int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.zone.j = &journal{max: max(n, 1), base: x.serial.Load()}
	x.zone.j.version = x.zone.j.base
	x.zone.pub = map[int32][]string{}
	// What was published at the last change follows from the data alone,
	// so a restarted broker (or another node) publishes what the
	// secondaries already have.
	for i, sp := range x.spill {
		x.publish(i, content{recs: sp.recs, persist: sp.persist})
	}
}

// publish sets the published values of entry i holding c: the values the
// policy kept when the newest of them was set, and every persist record
// (which no policy ages). Called with mu held.
func (x *Index) publish(i int32, c content) {
	recs := c.recs
	if len(recs) == 0 {
		delete(x.zone.pub, i)
		return
	}
	kept := x.policy.Keep(recs, recs[0].UpdatedAt)
	if len(kept) == len(recs) {
		delete(x.zone.pub, i)
		return
	}
	vals := make([]string, len(kept), len(kept)+len(c.persist))
	for k, rec := range kept {
		vals[k] = rec.Value
	}
	x.zone.pub[i] = append(vals, c.persist...)
}

// note is called by put before entry i of sub (exists: it was there
// already) takes recs from a write with the given serial (force: a reload,
// a prune or a resync, applied whatever the entry's serial). Called with mu
// held for writing.
func (x *Index) note(sub string, i int32, exists bool, c content, serial uint32, force bool) {
	z := x.zone
	j := z.j
	if j == nil {
		return
	}
	if force && exists && !serialLT(x.at(i).serial, serial) {
		// A prune (or reload) of what that write made: the published
		// values stay what they were. A forced write with a newer serial
		// (a resync from the database) is a change like any other.
		if _, ok := z.pub[i]; !ok {
			z.pub[i] = x.heldValues(nil, i)
		}
		return
	}
	r := journalRecord{version: j.version, name: sub}
	if exists {
		r.before = x.published(nil, i)
	}
	if cur := x.serial.Load(); serialLT(r.version, cur) {
		r.version = cur
	}
	if serialLT(r.version, serial) {
		r.version = serial
	} else {
		// A late change: two updates applied in the other order than the
		// database gave their serials. It joins the current version. The
		// broker holds transfers until writes in flight have been applied
		// (TransferConfig.Quiesce), so normally no secondary has this
		// version without it; if one may (the wait ran out), say so.
		r.missed = j.handedOut.Load() == uint64(r.version)+1
	}
	j.add(r)
	x.publish(i, c)
}

// noteRemove is called before entry i of sub is removed by a write with
// the given serial. Called with mu held for writing.
func (x *Index) noteRemove(sub string, i int32, serial uint32) {
	x.note(sub, i, true, content{}, serial, false)
	if x.zone.j != nil {
		delete(x.zone.pub, i)
	}
}

func (j *journal) add(r journalRecord) {
	if len(j.recs) >= j.max {
		n := max(1, j.max/8) // drop in batches: fewer copies
		j.dropped, j.lost = true, j.recs[n-1].version
		j.recs = slices.Delete(j.recs, 0, n)
	}
	j.recs = append(j.recs, r)
	j.version = r.version
}

// after returns the index of the first record with a version above s.
func (j *journal) after(s uint32) int {
	return sort.Search(len(j.recs), func(k int) bool { return serialLT(s, j.recs[k].version) })
}

// covers reports whether every change after serial s is still in the
// journal, and s is a serial the zone had while journalling.
func (j *journal) covers(s uint32) bool {
	if serialLT(s, j.base) || (j.dropped && serialLT(s, j.lost)) {
		return false
	}
	if s == j.base {
		return true
	}
	for _, r := range j.recs {
		if r.version == s {
			return true
		}
	}
	return false
}

// heldValues appends every value entry i holds, served or not. Called with
// mu held.
func (x *Index) heldValues(dst []string, i int32) []string {
	e := x.at(i)
	if e.n >= 0 {
		for k := range e.n {
			v := &e.vals[k]
			dst = append(dst, string(v.val[:v.n]))
		}
		return dst
	}
	sp := x.spill[i]
	for _, r := range sp.recs {
		dst = append(dst, r.Value)
	}
	return append(dst, sp.persist...)
}

// published appends the published values of entry i. Called with mu held.
func (x *Index) published(dst []string, i int32) []string {
	if p, ok := x.zone.pub[i]; ok {
		return append(dst, p...)
	}
	return x.heldValues(dst, i)
}

// zoneSerial is the serial that matches the data as it is now: the
// journal's version can be ahead of the serial for a moment (the serial
// moves after the write lock is released). Called with mu held.
func (x *Index) zoneSerial() uint32 {
	s := x.serial.Load()
	if j := x.zone.j; j != nil && serialLT(s, j.version) {
		s = j.version
	}
	return s
}

// Walk implements dnsserver.ZoneSource.
func (x *Index) Walk() dnsserver.ZoneWalker {
	x.mu.RLock()
	w := &walker{x: x, serial: x.zoneSerial()}
	if j := x.zone.j; j != nil {
		j.handedOut.Store(uint64(w.serial) + 1)
	}
	w.uuids = make([][16]byte, 0, len(x.uuids))
	for k := range x.uuids {
		w.uuids = append(w.uuids, k)
	}
	w.names = make([]string, 0, len(x.names))
	for n := range x.names {
		w.names = append(w.names, n)
	}
	x.mu.RUnlock()
	return w
}

type walker struct {
	x      *Index
	serial uint32
	uuids  [][16]byte
	names  []string
	err    error
}

func (w *walker) Serial() uint32 { return w.serial }
func (w *walker) Err() error     { return w.err }

func (w *walker) Next(dst []dnsserver.ZoneEntry) ([]dnsserver.ZoneEntry, bool) {
	x := w.x
	x.mu.RLock()
	defer x.mu.RUnlock()
	var before map[string][]string // values at the walk's serial of names changed since
	for n := 0; n < walkChunk && w.err == nil && len(w.uuids)+len(w.names) > 0; n++ {
		var name string
		var i int32
		var ok bool
		if k := len(w.uuids); k > 0 {
			key := w.uuids[k-1]
			w.uuids = w.uuids[:k-1]
			name = uuidString(key)
			i, ok = x.uuids[key]
		} else {
			name = w.names[len(w.names)-1]
			w.names = w.names[:len(w.names)-1]
			i, ok = x.names[name]
		}
		if x.zone.j == nil { // not journalling: as it is now
			if ok {
				dst = append(dst, dnsserver.ZoneEntry{Name: name, Values: x.published(nil, i)})
			}
			continue
		}
		if ok && !serialLT(w.serial, x.at(i).serial) {
			dst = append(dst, dnsserver.ZoneEntry{Name: name, Values: x.published(nil, i)})
			continue
		}
		// Removed or changed since the walk began: as it was then.
		if before == nil {
			if before, w.err = w.changedSince(); w.err != nil {
				break
			}
		}
		if v, had := before[name]; had {
			dst = append(dst, dnsserver.ZoneEntry{Name: name, Values: v})
		} else if ok { // changed without a journal record (a reload): as it is
			dst = append(dst, dnsserver.ZoneEntry{Name: name, Values: x.published(nil, i)})
		}
	}
	return dst, w.err == nil && len(w.uuids)+len(w.names) > 0
}

// changedSince maps each subdomain changed after the walk's serial to its
// published values at that serial. Called with mu held.
func (w *walker) changedSince() (map[string][]string, error) {
	j := w.x.zone.j
	if j == nil || (j.dropped && serialLT(w.serial, j.lost)) {
		return nil, errors.New("records: too many changes during the zone walk; try again")
	}
	m := map[string][]string{}
	for _, r := range j.recs[j.after(w.serial):] {
		if _, seen := m[r.name]; !seen {
			m[r.name] = r.before
		}
	}
	return m, nil
}

// Diff implements dnsserver.ZoneSource: for each subdomain changed after
// from, the values it had then that it has no more, and the values it has
// now that it had not then. Nothing deleted is missing on a secondary at
// from, nothing added is there already.
func (x *Index) Diff(from uint32) (uint32, []dnsserver.ZoneDiff, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	serial := x.zoneSerial()
	j := x.zone.j
	if j == nil || serialLT(serial, from) || !j.covers(from) {
		return serial, nil, false
	}
	j.handedOut.Store(uint64(serial) + 1)
	// Changes at from that a secondary may have missed are sent again: if
	// it has them after all, the difference does not apply and it takes a
	// full transfer, which is slower but never leaves a value out.
	start := j.after(from)
	for start > 0 && j.recs[start-1].version == from && j.recs[start-1].missed {
		start--
	}
	byName := map[string]int{}
	var diffs []dnsserver.ZoneDiff
	for _, r := range j.recs[start:] {
		if _, ok := byName[r.name]; ok {
			continue // the first change after from has the values at from
		}
		byName[r.name] = len(diffs)
		diffs = append(diffs, dnsserver.ZoneDiff{Name: r.name, Del: slices.Clone(r.before)})
	}
	out := diffs[:0]
	for _, d := range diffs {
		if i, ok := x.find(d.Name); ok {
			d.Add = x.published(nil, i)
		}
		then := slices.Clone(d.Del)
		d.Del = slices.DeleteFunc(d.Del, func(v string) bool { return slices.Contains(d.Add, v) })
		d.Add = slices.DeleteFunc(d.Add, func(v string) bool { return slices.Contains(then, v) })
		if len(d.Del)+len(d.Add) > 0 {
			out = append(out, d)
		}
	}
	return serial, out, true
}
