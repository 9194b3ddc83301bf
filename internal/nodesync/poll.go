package nodesync

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Feed is a durable log of the subdomains other processes changed in the
// store (SQLite's changes table, written by the admin commands).
type Feed interface {
	// ChangeMark returns the newest change's mark; later changes get higher
	// marks.
	ChangeMark(ctx context.Context) (int64, error)
	// ChangesAfter returns up to limit changed subdomains after mark,
	// oldest first, and the mark to pass next.
	ChangesAfter(ctx context.Context, mark int64, limit int) ([]string, int64, error)
	// ForgetChanges deletes the changes up to mark.
	ForgetChanges(ctx context.Context, mark int64) error
}

// PollConfig configures a Poller.
type PollConfig struct {
	// Interval between looks at the feed. Default 1s.
	Interval time.Duration
	// Batch is how many changes are re-read one by one in a look; more
	// than that (an import of many accounts) and the Poller resyncs the
	// whole index instead. Default 1000.
	Batch int
	// Timeout bounds one re-read (see Config.Timeout); ResyncTimeout one
	// full resync. Defaults 5s and 5m.
	Timeout, ResyncTimeout time.Duration
	Logger                 *slog.Logger
}

// Poller keeps the index of a broker serving from a single-node store
// current with what admin commands change in that store meanwhile (account
// delete, prune, create; import): it looks at the Feed every Interval and
// re-reads each subdomain named there.
type Poller struct {
	cfg  PollConfig
	feed Feed
	zone Applier
	log  *slog.Logger

	mark    int64 // changes up to here are in the index; owned by Run after Mark
	applied atomic.Int64
	resyncs atomic.Int64
}

// NewPoller returns a Poller; call Mark before the index is loaded.
func NewPoller(cfg PollConfig, feed Feed, zone Applier) *Poller {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	log := readDefaults(&cfg.Timeout, &cfg.ResyncTimeout, cfg.Logger)
	return &Poller{cfg: cfg, feed: feed, zone: zone, log: log}
}

// Mark notes where the feed stands. Called before the index is loaded, so
// that a change committed in between is both loaded and re-read (harmless)
// rather than neither. What the feed holds up to there (an import run while
// no broker was) is in the load, so it is deleted.
func (p *Poller) Mark(ctx context.Context) error {
	m, err := p.feed.ChangeMark(ctx)
	if err != nil {
		return err
	}
	p.mark = m
	if m > 0 {
		if err := p.feed.ForgetChanges(ctx, m); err != nil {
			p.log.Warn("cannot delete the admin commands' changes from before the start; the next applied change deletes them", "err", err)
		}
	}
	return nil
}

// Applied is the number of changed subdomains re-read so far.
func (p *Poller) Applied() int64 { return p.applied.Load() }

// Resyncs is the number of full resyncs done for large batches.
func (p *Poller) Resyncs() int64 { return p.resyncs.Load() }

// Run looks at the feed every Interval until ctx ends. A failed look is
// logged (once per outage) and tried again at the next tick; the index keeps
// what it has meanwhile.
func (p *Poller) Run(ctx context.Context) {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := p.Poll(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			p.log.Warn("cannot read the admin commands' changes; DNS keeps its records and the next look retries", "err", err)
			failing = true
		case err != nil:
			p.log.Debug("reading changes", "err", err)
		case failing:
			p.log.Info("reading the admin commands' changes again")
			failing = false
		}
	}
}

// Poll applies what the feed holds after the mark (Run calls it every
// Interval; tests call it directly).
func (p *Poller) Poll(ctx context.Context) error {
	for {
		names, next, err := p.feed.ChangesAfter(ctx, p.mark, p.cfg.Batch)
		if err != nil || len(names) == 0 {
			return err
		}
		if len(names) >= p.cfg.Batch {
			return p.resync(ctx)
		}
		for _, name := range names {
			if err := refresh(ctx, p.zone, name, p.cfg.Timeout); err != nil {
				return err // the mark stays: the next look re-reads them all
			}
			p.applied.Add(1)
		}
		p.log.Info("applied changes made by admin commands", "subdomains", len(names))
		if err := p.forget(ctx, next); err != nil {
			return err
		}
	}
}

// resync reloads the whole index: cheaper than one re-read per subdomain
// after a large import.
func (p *Poller) resync(ctx context.Context) error {
	m, err := p.feed.ChangeMark(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, p.cfg.ResyncTimeout)
	stats, err := p.zone.Resync(rctx)
	cancel()
	if err != nil {
		return err
	}
	p.resyncs.Add(1)
	p.log.Info("resynced after many changes made by admin commands", "changed", stats.Changed, "removed", stats.Removed,
		"took", time.Since(start).Round(time.Millisecond))
	return p.forget(ctx, m)
}

func (p *Poller) forget(ctx context.Context, mark int64) error {
	p.mark = mark
	return p.feed.ForgetChanges(ctx, mark)
}
