package records

import (
	"slices"
	"strings"
	"time"
)

// Due returns the subdomains holding values that have aged out of the
// policy's window at now. DNS stopped serving those values when they aged
// out (TXT filters by time); the zone writer deletes them from storage,
// which moves the serial, and applies that with Pruned, so secondaries drop
// them too. Only subdomains holding more than the always-kept values are
// looked at, under the read lock: queries are never blocked.
func (x *Index) Due(now time.Time) []string {
	var due []string
	x.mu.RLock()
	for _, sp := range x.spill { // only entries holding more than the always-kept values
		if len(x.policy.Keep(sp.recs, now)) < len(sp.recs) {
			due = append(due, sp.name)
		}
	}
	x.mu.RUnlock()
	return due
}

// Pruned applies the pruning of sub at now: the store deleted n aged-out
// values with the write serial. With n > 0 it is a change like an update,
// which a newer write wins over; with n == 0 (another node pruned them
// first, and its change comes by notification) only the memory is freed.
// Either way the pruned values' memory is freed (a copy is kept, in place
// if what is left fits).
func (x *Index) Pruned(sub string, now time.Time, n int, serial uint32) {
	sub = strings.ToLower(sub)
	x.mu.Lock()
	if i, ok := x.find(sub); ok {
		if sp, ok := x.spill[i]; ok {
			c := content{recs: slices.Clone(x.policy.Keep(sp.recs, now)), persist: sp.persist}
			if n > 0 {
				x.put(sub, c, serial, false)
			} else {
				x.put(sub, c, x.at(i).serial, true)
			}
		}
	}
	x.mu.Unlock()
	if n > 0 {
		x.bumpSerial(serial)
	}
}
