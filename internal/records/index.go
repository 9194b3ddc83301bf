// Package records holds the in-memory view of the zone's dynamic data: which
// subdomains are registered and the TXT values each one serves. The DNS
// server answers from it on every query (dnsserver.RecordSource); the API
// updates it after each write has been made durable in storage, so a value is
// served the moment /update returns 200.
package records

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/storage"
)

var _ dnsserver.RecordSource = (*Index)(nil)

type entry struct {
	recs   []storage.TXTRecord // newest first, as the store keeps them
	serial uint32              // serial of the write that produced recs
}

// Index is safe for concurrent use.
type Index struct {
	policy storage.TXTPolicy
	now    func() time.Time

	mu   sync.RWMutex
	subs map[string]entry

	serial atomic.Uint32
}

// New returns an empty index that serves values according to policy, aging
// them out of the window by the clock now.
func New(policy storage.TXTPolicy, now func() time.Time) *Index {
	return &Index{policy: policy, now: now, subs: make(map[string]entry)}
}

// Load fills the index from the store (at start-up).
func (x *Index) Load(ctx context.Context, st storage.Store) error {
	serial, err := st.Snapshot(ctx, func(s storage.Subdomain) error {
		x.mu.Lock()
		x.subs[s.Name] = entry{recs: s.Records}
		x.mu.Unlock()
		return nil
	})
	if err != nil {
		return fmt.Errorf("records: load: %w", err)
	}
	x.bumpSerial(serial)
	return nil
}

// Add records a newly registered subdomain with no values yet.
func (x *Index) Add(sub string, serial uint32) {
	x.mu.Lock()
	if _, ok := x.subs[sub]; !ok {
		x.subs[sub] = entry{serial: serial}
	}
	x.mu.Unlock()
	x.bumpSerial(serial)
}

// Set replaces the values of sub with recs (newest first), as stored by the
// write with the given serial. A write older than the one already applied
// (two updates racing to get here) is ignored.
func (x *Index) Set(sub string, recs []storage.TXTRecord, serial uint32) {
	x.mu.Lock()
	if e, ok := x.subs[sub]; !ok || serialLE(e.serial, serial) {
		x.subs[sub] = entry{recs: recs, serial: serial}
	}
	x.mu.Unlock()
	x.bumpSerial(serial)
}

// TXT implements dnsserver.RecordSource.
func (x *Index) TXT(dst []string, sub string) ([]string, bool) {
	x.mu.RLock()
	e, ok := x.subs[sub]
	x.mu.RUnlock()
	if !ok {
		return dst, false
	}
	recs := e.recs
	if len(recs) > x.policy.Always {
		recs = x.policy.Keep(recs, x.now())
	}
	for _, r := range recs {
		dst = append(dst, r.Value)
	}
	return dst, true
}

// Serial implements dnsserver.RecordSource.
func (x *Index) Serial() uint32 { return x.serial.Load() }

// Len is the number of registered subdomains.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.subs)
}

func (x *Index) bumpSerial(s uint32) {
	for {
		cur := x.serial.Load()
		if !serialLT(cur, s) || x.serial.CompareAndSwap(cur, s) {
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
