package records

import (
	"encoding/hex"
	"slices"

	"github.com/acmebroker/acmebroker/dnsserver"
)

// What zone transfers need from the index: the whole zone (Walk), what
// changed since a serial (Diff) and a signal when the serial moves (Changed).
//
// Walk copies only the names under the read lock, then the values in
// chunks, releasing the lock between chunks: a million accounts never hold
// writers (and the queries queued behind a waiting writer) for long. A
// subdomain changed during a walk is served as it is when its chunk is read,
// newer than the serial the walk is labelled with; every such change is in
// the journal with a version at or above that serial, so the incremental
// transfer a secondary asks for next (the serial has moved, NOTIFY says so)
// puts it right.
//
// The journal remembers, for each change, the subdomain and every value it
// held before (served or aged out but not yet pruned): a secondary may have
// any of them, so an incremental transfer deletes them all and adds what is
// served now. It is written under the index's write lock, by the same code
// that changes an entry, so it is always in step with the data.

var _ dnsserver.ZoneSource = (*Index)(nil)

// walkChunk is how many subdomains a walk copies per read-lock hold.
const walkChunk = 2048

// journalRecord is one change of one subdomain.
type journalRecord struct {
	version uint32   // zone serial once the change is applied
	name    string   // subdomain
	held    []string // values held before the change
}

// journal is a bounded ring of recent changes. Guarded by Index.mu.
type journal struct {
	max     int
	recs    []journalRecord // oldest first
	base    uint32          // serial when the journal started
	version uint32          // version of the newest change
	dropped bool            // some record has been dropped
	lost    uint32          // version of the newest dropped record
}

// zoneState is what the transfer side adds to an Index.
type zoneState struct {
	changed chan struct{} // poked, without blocking, when the serial moves
	j       *journal      // nil until EnableJournal
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

// EnableJournal starts remembering up to n changes for incremental zone
// transfers (IXFR). Call it after Load; a secondary whose serial is older
// than the serial at that time gets a full transfer.
func (x *Index) EnableJournal(n int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.zone.j = &journal{max: max(n, 1), base: x.serial.Load()}
	x.zone.j.version = x.zone.j.base
}

// note records, before entry i of sub is changed by a write with the given
// serial, the values it holds. Called with mu held for writing.
func (x *Index) note(sub string, i int32, exists bool, serial uint32) {
	j := x.zone.j
	if j == nil {
		return
	}
	v := j.version
	if cur := x.serial.Load(); serialLT(v, cur) {
		v = cur
	}
	if serialLT(v, serial) {
		v = serial
	}
	r := journalRecord{version: v, name: sub}
	if exists {
		r.held = x.heldValues(nil, i)
	}
	if len(j.recs) >= j.max {
		n := max(1, j.max/8) // drop in batches: fewer copies
		j.dropped, j.lost = true, j.recs[n-1].version
		j.recs = slices.Delete(j.recs, 0, n)
	}
	j.recs = append(j.recs, r)
	j.version = v
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
	for _, r := range x.spill[i].recs {
		dst = append(dst, r.Value)
	}
	return dst
}

// servedValues appends the values entry i serves now. Called with mu held
// for reading.
func (x *Index) servedValues(dst []string, i int32) []string {
	e := x.at(i)
	if e.n >= 0 {
		return x.heldValues(dst, i)
	}
	for _, r := range x.policy.Keep(x.spill[i].recs, x.now()) {
		dst = append(dst, r.Value)
	}
	return dst
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
}

func (w *walker) Serial() uint32 { return w.serial }

func (w *walker) Next(dst []dnsserver.ZoneEntry) ([]dnsserver.ZoneEntry, bool) {
	x := w.x
	x.mu.RLock()
	defer x.mu.RUnlock()
	for n := 0; n < walkChunk && len(w.uuids) > 0; n++ {
		k := w.uuids[len(w.uuids)-1]
		w.uuids = w.uuids[:len(w.uuids)-1]
		if i, ok := x.uuids[k]; ok { // else removed since the walk began
			dst = append(dst, dnsserver.ZoneEntry{Name: uuidString(k), Values: x.servedValues(nil, i)})
		}
	}
	for n := 0; n < walkChunk && len(w.names) > 0; n++ {
		name := w.names[len(w.names)-1]
		w.names = w.names[:len(w.names)-1]
		if i, ok := x.names[name]; ok {
			dst = append(dst, dnsserver.ZoneEntry{Name: name, Values: x.servedValues(nil, i)})
		}
	}
	return dst, len(w.uuids)+len(w.names) > 0
}

// uuidString is the canonical text of a UUID key (the inverse of uuidKey).
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

// Diff implements dnsserver.ZoneSource.
func (x *Index) Diff(from uint32) (uint32, []dnsserver.ZoneDiff, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	serial := x.zoneSerial()
	j := x.zone.j
	if j == nil || from == 0 || serialLT(serial, from) || serialLT(from, j.base) || (j.dropped && !serialLT(j.lost, from)) {
		return serial, nil, false
	}
	start := -1
	known := from == j.base
	for k, r := range j.recs {
		if r.version == from {
			known = true
		}
		if start < 0 && !serialLT(r.version, from) {
			start = k
		}
	}
	if !known {
		return serial, nil, false // a serial this zone never had
	}
	if start < 0 {
		return serial, nil, true
	}
	byName := map[string]int{}
	var diffs []dnsserver.ZoneDiff
	for _, r := range j.recs[start:] {
		k, ok := byName[r.name]
		if !ok {
			k = len(diffs)
			byName[r.name] = k
			diffs = append(diffs, dnsserver.ZoneDiff{Name: r.name})
		}
		diffs[k].Del = append(diffs[k].Del, r.held...)
	}
	for k := range diffs {
		d := &diffs[k]
		if i, ok := x.find(d.Name); ok {
			d.Add = x.servedValues(nil, i)
		}
		// A value both held before and served now stays: no need to delete
		// and add it again. Duplicates in Del go too.
		slices.Sort(d.Del)
		d.Del = slices.Compact(d.Del)
		d.Del = slices.DeleteFunc(d.Del, func(v string) bool { return slices.Contains(d.Add, v) })
	}
	return serial, diffs, true
}
