package dnssec

import (
	"bytes"
	"context"
	"log/slog"
	"time"
)

// NodeConfig configures a Node.
type NodeConfig struct {
	// Refresh is how often the node reads the key set from the database;
	// default DefaultRefresh.
	Refresh time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Logger; nil: discard.
	Logger *slog.Logger
}

// DefaultRefresh is how often a node reads the key set by default.
const DefaultRefresh = time.Minute

// Node keeps one broker's signer on the key set in the database: it
// re-reads it every Refresh (so a rollover step any node or an admin
// command took reaches this node's answers within that time) and takes
// the steps of a rollover that fall due (under the lease, so one node
// takes each).
type Node struct {
	store   *Store
	signer  *Signer
	refresh time.Duration
	now     func() time.Time
	logger  *slog.Logger
	ks      *Keyset
	raw     []byte
}

// NewNode returns a node whose signer uses ks now.
func NewNode(store *Store, signer *Signer, ks *Keyset, cfg NodeConfig) *Node {
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Node{store: store, signer: signer, refresh: cfg.Refresh, now: cfg.Now, logger: cfg.Logger, ks: ks}
}

// Run calls Tick every Refresh until ctx ends.
func (n *Node) Run(ctx context.Context) {
	t := time.NewTicker(n.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.Tick(ctx)
		}
	}
}

// Tick reads the key set, gives it to the signer if it changed, and takes
// a rollover step that is due. A database that does not answer leaves the
// signer on the keys it has (logged).
func (n *Node) Tick(ctx context.Context) {
	raw, err := n.store.Raw(ctx)
	if err != nil || raw == nil {
		if ctx.Err() == nil {
			n.logger.Warn("dnssec: cannot read the keys; signing with the keys held", "err", err)
		}
		return
	}
	if !bytes.Equal(raw, n.raw) {
		ks, _, err := ParseKeyset(raw, n.store.zone, n.store.sealer)
		if err != nil {
			n.logger.Error("dnssec: the keys in the database do not load; signing with the keys held", "err", err)
			return
		}
		n.use(ks, raw)
	}
	if r := n.ks.Rollover; r == nil || r.WaitingForDS || r.NotBefore.IsZero() || n.now().Before(r.NotBefore) {
		return
	}
	ks, err := n.store.Update(ctx, func(cur *Keyset) (*Keyset, error) {
		if cur == nil || !cur.Advance(n.now()) {
			return nil, nil // another node took the step
		}
		return cur, nil
	})
	if err != nil {
		n.logger.Warn("dnssec: rollover step", "err", err)
		return
	}
	if ks != nil {
		raw, err := n.store.Raw(ctx)
		if err == nil && raw != nil {
			n.use(ks, raw)
		}
	}
}

func (n *Node) use(ks *Keyset, raw []byte) {
	if err := n.signer.SetKeys(ks); err != nil {
		n.logger.Error("dnssec: the keys in the database cannot sign; signing with the keys held", "err", err)
		return
	}
	if n.raw != nil {
		n.logger.Info("dnssec: keys changed", "zone", ks.Zone, "keys", len(ks.Keys), "rollover", rolloverState(ks))
	}
	n.ks, n.raw = ks, raw
}

func rolloverState(ks *Keyset) string {
	switch {
	case ks.Rollover != nil:
		return ks.Rollover.Describe()
	case ks.Last != nil:
		return ks.Last.Describe()
	}
	return "none"
}
