// Package nodesync keeps one broker node's in-memory records current with
// changes other nodes make to the shared database.
//
// A Watcher listens for change notifications (PostgreSQL LISTEN/NOTIFY:
// every write announces its subdomain at commit), re-reads each changed
// subdomain and applies it to the index. After (re)connecting, and every
// ResyncInterval in case a notification was missed, it reconciles the whole
// index with a snapshot. When the database goes away the index keeps what
// it has (DNS answers from memory) and the Watcher reconnects with bounded
// backoff, resyncing once it is back.
package nodesync

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/acmebroker/acmebroker/internal/records"
)

// Applier brings the in-memory view in line with storage
// (internal/zone.Writer, which orders these with the node's own writes).
type Applier interface {
	// Refresh re-reads one subdomain and applies what storage holds: its
	// values, or its removal.
	Refresh(ctx context.Context, name string) error
	// Resync reconciles the whole view with a snapshot of storage.
	Resync(ctx context.Context) (records.ResyncStats, error)
}

// Notifier opens subscriptions to change notifications.
type Notifier interface {
	// Listen subscribes; every change committed after it returns is
	// delivered by the Subscription. ErrUnsupported (wrapped) if the
	// database cannot notify: the Watcher then only resyncs periodically.
	Listen(ctx context.Context) (Subscription, error)
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(ctx context.Context) (Subscription, error)

// Listen calls f.
func (f NotifierFunc) Listen(ctx context.Context) (Subscription, error) { return f(ctx) }

// Subscription delivers the names of changed subdomains.
type Subscription interface {
	// Next waits for a change. When ctx ends it returns ctx's error and
	// the subscription stays usable; any other error ends it.
	Next(ctx context.Context) (string, error)
	// Ping checks that the subscription's connection still works.
	Ping(ctx context.Context) error
	Close() error
}

// ErrUnsupported: the database has no change notifications.
var ErrUnsupported = errors.New("change notifications not supported")

// Config of a Watcher.
type Config struct {
	// ResyncInterval between full resyncs while connected. Default 1m.
	ResyncInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts, which doubles from MinBackoff. Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one re-read of a subdomain (and a ping of the
	// notification connection). Default 5s.
	Timeout time.Duration
	// ResyncTimeout bounds one full resync, so a database that stops
	// answering without closing the connection cannot hold the Watcher.
	// Default 5m (a million accounts take seconds).
	ResyncTimeout time.Duration
	Logger        *slog.Logger
}

// Watcher runs the sync loop; see the package comment.
type Watcher struct {
	cfg      Config
	zone     Applier
	notifier Notifier // nil: resync only
	log      *slog.Logger

	listening atomic.Bool
	down      atomic.Bool // lost the database; reconnecting
	resyncs   atomic.Int64
	applied   atomic.Int64
}

// New returns a Watcher. notifier may be nil (a database without
// notifications): the Watcher then only resyncs every ResyncInterval.
func New(cfg Config, zone Applier, notifier Notifier) *Watcher {
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = time.Minute
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(5*time.Second, cfg.MinBackoff)
	}
	log := readDefaults(&cfg.Timeout, &cfg.ResyncTimeout, cfg.Logger)
	return &Watcher{cfg: cfg, zone: zone, notifier: notifier, log: log}
}

// readDefaults fills in the Watcher's and the Poller's common settings:
// the bounds of one re-read and of one resync, and the logger.
func readDefaults(timeout, resyncTimeout *time.Duration, logger *slog.Logger) *slog.Logger {
	if *timeout <= 0 {
		*timeout = 5 * time.Second
	}
	if *resyncTimeout <= 0 {
		*resyncTimeout = 5 * time.Minute
	}
	if logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return logger
}

// Listening reports whether the Watcher currently receives notifications.
func (w *Watcher) Listening() bool { return w.listening.Load() }

// SyncProblem says what keeps other nodes' changes from arriving ("" when
// nothing does): the Watcher lost the database and is reconnecting.
func (w *Watcher) SyncProblem() string {
	if w.down.Load() {
		return "reconnecting to the database"
	}
	return ""
}

// Resyncs is the number of full resyncs done so far.
func (w *Watcher) Resyncs() int64 { return w.resyncs.Load() }

// Applied is the number of notified changes applied so far.
func (w *Watcher) Applied() int64 { return w.applied.Load() }

// Run keeps the index in sync until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	backoff := w.cfg.MinBackoff
	down := false // an outage is being reported; log its end once
	fail := func(msg string, err error) {
		w.down.Store(true)
		if !down {
			w.log.Warn(msg+"; DNS answers from memory until it is back", "err", err)
			down = true
		} else {
			w.log.Debug(msg, "err", err)
		}
		// Full jitter, so nodes do not reconnect in lockstep.
		d := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, w.cfg.MaxBackoff)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	for ctx.Err() == nil {
		var sub Subscription
		if w.notifier != nil {
			var err error
			sub, err = w.notifier.Listen(ctx)
			if errors.Is(err, ErrUnsupported) {
				w.log.Info("no change notifications from the database: other nodes' changes show at each resync", "resync_interval", w.cfg.ResyncInterval)
				w.notifier = nil
				continue
			}
			if err != nil {
				if ctx.Err() == nil {
					fail("node sync: cannot listen for changes", err)
				}
				continue
			}
		}
		// Listening first, then the resync: a change committed in between
		// is both in the snapshot and notified, never in neither.
		if err := w.resync(ctx); err != nil {
			if sub != nil {
				sub.Close()
			}
			if ctx.Err() == nil {
				fail("node sync: resync failed", err)
			}
			continue
		}
		if down {
			w.log.Info("node sync: database reachable again; records resynced")
			down = false
		}
		w.down.Store(false)
		backoff = w.cfg.MinBackoff
		err := w.follow(ctx, sub)
		if sub != nil {
			w.listening.Store(false)
			sub.Close()
		}
		if ctx.Err() == nil {
			fail("node sync: lost the database", err)
		}
	}
}

// follow applies notifications and resyncs every ResyncInterval until an
// error (returned) or ctx ends.
func (w *Watcher) follow(ctx context.Context, sub Subscription) error {
	w.listening.Store(sub != nil)
	next := time.Now().Add(w.cfg.ResyncInterval)
	for {
		if time.Now().After(next) {
			if sub != nil {
				pctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
				err := sub.Ping(pctx)
				cancel()
				if err != nil {
					return err
				}
			}
			if err := w.resync(ctx); err != nil {
				return err
			}
			next = time.Now().Add(w.cfg.ResyncInterval)
		}
		if sub == nil {
			t := time.NewTimer(time.Until(next))
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		nctx, cancel := context.WithDeadline(ctx, next)
		name, err := sub.Next(nctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			continue // time to resync
		case err != nil:
			return err
		}
		if err := w.apply(ctx, name); err != nil {
			// The change is not applied: reconnect and resync.
			return err
		}
	}
}

// apply re-reads one subdomain and puts what storage holds in the index.
func (w *Watcher) apply(ctx context.Context, name string) error {
	if err := refresh(ctx, w.zone, name, w.cfg.Timeout); err != nil {
		return err
	}
	w.applied.Add(1)
	return nil
}

// refresh re-reads the subdomain name (within timeout) and applies it.
func refresh(ctx context.Context, zone Applier, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return zone.Refresh(ctx, name)
}

func (w *Watcher) resync(ctx context.Context) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, w.cfg.ResyncTimeout)
	defer cancel()
	stats, err := w.zone.Resync(ctx)
	if err != nil {
		return err
	}
	w.resyncs.Add(1)
	if stats.Changed > 0 || stats.Removed > 0 {
		w.log.Info("node sync: resync applied changes", "changed", stats.Changed, "removed", stats.Removed,
			"serial", stats.Serial, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}
