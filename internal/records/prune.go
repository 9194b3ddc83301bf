package records

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// TXTPruner is the part of storage.Store that pruning needs.
type TXTPruner interface {
	PruneTXT(ctx context.Context, subdomain string, now time.Time, policy storage.TXTPolicy) (int, uint32, error)
}

// Prune deletes values that have aged out of the policy's window, from the
// store and from memory. DNS stopped serving them when they aged out (TXT
// filters by time); the store moves the serial for each subdomain it prunes,
// and that change goes to the published view and the journal like an
// update, so secondaries drop the values too. Only subdomains holding more
// than the always-kept values are looked at, under the read lock: queries
// are never blocked, and writers only for one pass over the map.
func (x *Index) Prune(ctx context.Context, st TXTPruner) (subs, values int, err error) {
	now := x.now()
	type due struct {
		i    int32
		name string
	}
	var todo []due
	x.mu.RLock()
	for i, sp := range x.spill { // only entries holding more than the always-kept values
		if len(x.policy.Keep(sp.recs, now)) < len(sp.recs) {
			todo = append(todo, due{i, sp.name})
		}
	}
	x.mu.RUnlock()
	for _, d := range todo {
		n, serial, err := st.PruneTXT(ctx, d.name, now, x.policy)
		if err != nil {
			return subs, values, fmt.Errorf("records: prune %s: %w", d.name, err)
		}
		x.mu.Lock()
		if sp, ok := x.spill[d.i]; ok {
			// A copy, so the pruned values' memory is freed; in place if
			// what is left fits. With a serial (the store deleted them) a
			// change like an update, which a newer write wins over;
			// without (another node pruned them first, and its change
			// comes by notification) only the memory is freed.
			kept := slices.Clone(x.policy.Keep(sp.recs, now))
			if n > 0 {
				x.put(d.name, kept, serial, false)
			} else {
				x.put(d.name, kept, x.at(d.i).serial, true)
			}
		}
		x.mu.Unlock()
		if n > 0 {
			x.bumpSerial(serial)
		}
		subs++
		values += n
	}
	return subs, values, nil
}

// PruneEvery runs Prune every interval until ctx ends.
func (x *Index) PruneEvery(ctx context.Context, interval time.Duration, st TXTPruner, logger *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		subs, values, err := x.Prune(ctx, st)
		if err != nil && ctx.Err() == nil {
			logger.Warn("pruning aged-out TXT values", "err", err)
		}
		if values > 0 {
			logger.Info("pruned aged-out TXT values", "subdomains", subs, "values", values, "took", time.Since(start).Round(time.Millisecond))
		}
	}
}
