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
	PruneTXT(ctx context.Context, subdomain string, now time.Time, policy storage.TXTPolicy) (int, error)
}

// Prune deletes values that have aged out of the policy's window, from the
// store and from memory. DNS stopped serving them when they aged out (TXT
// filters by time), so this only frees space. Only subdomains holding more
// than the always-kept values are looked at, under the read lock: queries
// are never blocked, and writers only for one pass over the map.
func (x *Index) Prune(ctx context.Context, st TXTPruner) (subs, values int, err error) {
	now := x.now()
	var due []string
	x.mu.RLock()
	for sub, e := range x.subs {
		if len(e.recs) > x.policy.Always && len(x.policy.Keep(e.recs, now)) < len(e.recs) {
			due = append(due, sub)
		}
	}
	x.mu.RUnlock()
	for _, sub := range due {
		n, err := st.PruneTXT(ctx, sub, now, x.policy)
		if err != nil {
			return subs, values, fmt.Errorf("records: prune %s: %w", sub, err)
		}
		x.mu.Lock()
		if e, ok := x.subs[sub]; ok {
			// A copy, so the pruned values' memory is freed.
			e.recs = slices.Clone(x.policy.Keep(e.recs, now))
			x.subs[sub] = e
		}
		x.mu.Unlock()
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
