// Package zone is the one writer of the broker's zone and accounts. Every
// change that must reach both storage and the in-memory view the DNS server
// answers from (register, set TXT, set or delete a dns-persist-01 record,
// delete, prune, key and allowfrom changes, and changes learned from other
// nodes or from admin commands) goes through
// a Writer: it makes the change durable first, then applies it to the view,
// and orders the two so that a late write never undoes a newer one (an
// update whose database write finished before its account was deleted, but
// which reaches memory after, does not bring the name back). Zone transfers
// wait on it (Quiesce) until the writes in flight have reached the view.
//
// The API and the admin commands call the Writer and never the two halves
// themselves; in a running broker nothing else calls the storage methods
// that change the zone.
package zone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/internal/secret"
	"github.com/acmebroker/acmebroker/storage"
)

// Store is the part of storage.Store the writer uses: the methods that
// change the zone or an account, and the reads that refresh the view.
type Store interface {
	CreateAccount(ctx context.Context, a storage.Account) (uint32, error)
	CreateAccountWithToken(ctx context.Context, a storage.Account, tokenID string) (uint32, error)
	SetTXT(ctx context.Context, subdomain, value string, at time.Time, p storage.TXTPolicy) ([]storage.TXTRecord, uint32, error)
	SetOwnTXT(ctx context.Context, name, value string, at time.Time, p storage.TXTPolicy) ([]storage.TXTRecord, uint32, error)
	DeleteOwnTXT(ctx context.Context, name, value string, at time.Time) ([]storage.TXTRecord, uint32, error)
	PruneTXT(ctx context.Context, subdomain string, now time.Time, p storage.TXTPolicy) (int, uint32, error)
	SetPersist(ctx context.Context, subdomain string, rec storage.PersistRecord) ([]storage.PersistRecord, uint32, error)
	DeletePersist(ctx context.Context, subdomain, issuer string) ([]storage.PersistRecord, uint32, error)
	DeleteAccount(ctx context.Context, username string) (uint32, error)
	DeleteUnusedAccount(ctx context.Context, username string, cutoff time.Time) (uint32, error)
	UpdateKeyHash(ctx context.Context, username, oldHash, newHash string) error
	UpdateAllowFrom(ctx context.Context, username string, allow []netip.Prefix) error
	Subdomain(ctx context.Context, name string) (storage.Subdomain, uint32, error)
	Snapshot(ctx context.Context, fn func(storage.Subdomain) error) (uint32, error)
}

// View is the in-memory view of the zone (*records.Index): applied to
// only after storage has the change, each change with the serial storage
// gave it.
type View interface {
	Add(subdomain string, serial uint32)
	Set(subdomain string, recs []storage.TXTRecord, serial uint32)
	SetPersist(subdomain string, recs []storage.PersistRecord, serial uint32)
	Replace(s storage.Subdomain, serial uint32)
	Remove(subdomain string, serial uint32)
	Due(now time.Time) []string
	Pruned(subdomain string, now time.Time, n int, serial uint32)
	Resync(ctx context.Context, st records.Snapshotter) (records.ResyncStats, error)
	RemovalGen() uint64
	ForgetRemoved(gen uint64)
}

var _ View = (*records.Index)(nil)

// Config of a Writer.
type Config struct {
	Zone   string            // the broker's zone, for Registration.Fulldomain
	Policy storage.TXTPolicy // which TXT values are kept
	// Reserved says why an account may not take the subdomain name ("" if
	// it may): names that carry static records, are at or below a
	// delegation, or are the name server's own. Nil: none.
	Reserved func(name string) string
	Now      func() time.Time
	Logger   *slog.Logger
}

// Errors of the writer, besides the storage sentinels it passes on.
var (
	// ErrReserved: the subdomain may not be registered (the wrapping
	// error says why).
	ErrReserved = errors.New("subdomain reserved")
	// ErrBadName: the subdomain is not one DNS label.
	ErrBadName = errors.New("not one DNS label")
)

// Writer is safe for concurrent use.
type Writer struct {
	cfg   Config
	store Store
	view  View
	log   *slog.Logger
	fl    inflight
}

// New returns a writer of st and view. A nil view (an admin command, which
// has none: a running broker learns of its changes from storage) makes
// every change to storage only.
func New(cfg Config, st Store, view View) *Writer {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if view == nil {
		view = noView{}
	}
	w := &Writer{cfg: cfg, store: st, view: view, log: log}
	w.fl.init()
	return w
}

// NewAccount is what a registration asks for.
type NewAccount struct {
	Subdomain string         // "" for a random one (a UUID, as acme-dns gives)
	AllowFrom []netip.Prefix // sources the account may update from; empty = anywhere
	TokenID   string         // registration token to count it against; "" for none
}

// Registration is a new account with its key, which exists only here: the
// store keeps its hash.
type Registration struct {
	Account    storage.Account
	Key        string
	Fulldomain string
}

// Register creates an account. Errors: ErrBadName or ErrReserved for a
// chosen subdomain that cannot be had, storage.ErrConflict when it is
// taken, storage.ErrTokenInvalid / ErrNotFound for the token, or the
// store's.
func (w *Writer) Register(ctx context.Context, req NewAccount) (Registration, error) {
	name := strings.ToLower(strings.TrimSpace(req.Subdomain))
	if name == "" {
		name = uuid.NewString()
	} else {
		if !storage.IsLabel(name) {
			return Registration{}, fmt.Errorf("zone: subdomain %q: %w (1-63 letters, digits and hyphens, not starting or ending with a hyphen)", req.Subdomain, ErrBadName)
		}
		if w.cfg.Reserved != nil {
			if why := w.cfg.Reserved(name); why != "" {
				return Registration{}, fmt.Errorf("zone: subdomain %s: %w: %s", name, ErrReserved, why)
			}
		}
	}
	key, err := secret.NewKey()
	if err != nil {
		return Registration{}, fmt.Errorf("zone: make key: %w", err)
	}
	hash, err := secret.Hash(key)
	if err != nil {
		return Registration{}, fmt.Errorf("zone: hash key: %w", err)
	}
	a := storage.Account{
		Username:  uuid.NewString(),
		KeyHash:   hash,
		Subdomain: name,
		AllowFrom: req.AllowFrom,
		CreatedAt: w.cfg.Now(),
	}
	t := w.fl.begin(w.view)
	defer w.fl.done(w.view, t)
	var serial uint32
	if req.TokenID != "" {
		serial, err = w.store.CreateAccountWithToken(ctx, a, req.TokenID)
	} else {
		serial, err = w.store.CreateAccount(ctx, a)
	}
	if err != nil {
		return Registration{}, err
	}
	w.view.Add(a.Subdomain, serial)
	return Registration{Account: a, Key: key, Fulldomain: a.Subdomain + "." + strings.TrimSuffix(w.cfg.Zone, ".")}, nil
}

// SetTXT adds value to subdomain's values and returns those kept, newest
// first. storage.ErrNotFound if no account holds the subdomain (any more).
func (w *Writer) SetTXT(ctx context.Context, subdomain, value string) ([]storage.TXTRecord, error) {
	t := w.fl.begin(w.view)
	defer w.fl.done(w.view, t)
	recs, serial, err := w.store.SetTXT(ctx, subdomain, value, w.cfg.Now(), w.cfg.Policy)
	if err != nil {
		return nil, err
	}
	w.view.Set(subdomain, recs, serial)
	return recs, nil
}

// OwnChallengeName is the own name (storage.IsOwnName) at which the broker
// answers the dns-01 challenges of domain, a name inside zone (a wildcard
// "*.<name>" is validated at <name>): "_acme-challenge" for the apex,
// "_acme-challenge.api" for api.<zone>.
func OwnChallengeName(zone, domain string) (string, error) {
	z := strings.ToLower(strings.TrimSuffix(zone, "."))
	d := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(domain, "*."), "."))
	name := "_acme-challenge"
	switch {
	case d == z:
	case strings.HasSuffix(d, "."+z):
		name += "." + strings.TrimSuffix(d, "."+z)
	default:
		return "", fmt.Errorf("zone: %s is not inside the zone %s: the broker answers dns-01 challenges for its own zone only", domain, zone)
	}
	if !storage.IsOwnName(name) {
		return "", fmt.Errorf("zone: %s: %w (letters, digits and hyphens, one label after another)", domain, ErrBadName)
	}
	return name, nil
}

// SetOwnChallenge serves value at _acme-challenge.<domain> (domain inside
// the zone; see OwnChallengeName): the broker answering a dns-01 challenge
// for its own certificate. The value is stored first, so every node on the
// database and every secondary serves it, like an account's value.
func (w *Writer) SetOwnChallenge(ctx context.Context, domain, value string) error {
	name, err := OwnChallengeName(w.cfg.Zone, domain)
	if err != nil {
		return err
	}
	if !storage.IsDNS01Value(value) {
		return fmt.Errorf("zone: own challenge for %s: the value is not a dns-01 value (43 base64url characters)", domain)
	}
	t := w.fl.begin(w.view)
	defer w.fl.done(w.view, t)
	recs, serial, err := w.store.SetOwnTXT(ctx, name, value, w.cfg.Now(), w.cfg.Policy)
	if err != nil {
		return err
	}
	w.view.Set(name, recs, serial)
	return nil
}

// ClearOwnChallenge stops serving value at _acme-challenge.<domain>; once
// no value is left the name is gone (NXDOMAIN). A value not served is no
// error.
func (w *Writer) ClearOwnChallenge(ctx context.Context, domain, value string) error {
	name, err := OwnChallengeName(w.cfg.Zone, domain)
	if err != nil {
		return err
	}
	t := w.fl.begin(w.view)
	defer w.fl.done(w.view, t)
	recs, serial, err := w.store.DeleteOwnTXT(ctx, name, value, w.cfg.Now())
	switch {
	case err != nil:
		return err
	case serial == 0: // nothing deleted
	case len(recs) == 0:
		w.view.Remove(name, serial)
	default:
		w.view.Set(name, recs, serial)
	}
	return nil
}

// SetPersist sets a dns-persist-01 record of subdomain (replacing the one
// of the same issuer), stamped with the time now, and returns the
// subdomain's records, by issuer. A record failing rec.Check is a
// *storage.PersistError; storage.ErrTooMany if the account holds
// storage.MaxPersistRecords of other issuers; storage.ErrNotFound if no
// account holds the subdomain (any more).
func (w *Writer) SetPersist(ctx context.Context, subdomain string, rec storage.PersistRecord) ([]storage.PersistRecord, error) {
	rec.SetAt = w.cfg.Now()
	if err := rec.Check(rec.SetAt); err != nil {
		return nil, err
	}
	t := w.fl.begin(w.view)
	defer w.fl.done(w.view, t)
	recs, serial, err := w.store.SetPersist(ctx, subdomain, rec)
	if err != nil {
		return nil, err
	}
	w.view.SetPersist(subdomain, recs, serial)
	return recs, nil
}

// DeletePersist removes subdomain's dns-persist-01 record of issuer (DNS
// stops serving it at once) and returns the records left; deleted is false,
// and nothing changes, if there was none of that issuer.
// storage.ErrNotFound if no account holds the subdomain (any more).
func (w *Writer) DeletePersist(ctx context.Context, subdomain, issuer string) (recs []storage.PersistRecord, deleted bool, err error) {
	t := w.fl.begin(w.view)
	defer w.fl.done(w.view, t)
	recs, serial, err := w.store.DeletePersist(ctx, subdomain, issuer)
	if err != nil || serial == 0 {
		return recs, false, err
	}
	w.view.SetPersist(subdomain, recs, serial)
	return recs, true, nil
}

// Delete removes an account and its values; DNS forgets the subdomain at
// once, and writes older than the delete that arrive later cannot bring it
// back. storage.ErrNotFound if there is no such account.
func (w *Writer) Delete(ctx context.Context, a storage.Account) error {
	t := w.fl.begin(w.view)
	defer w.fl.done(w.view, t)
	serial, err := w.store.DeleteAccount(ctx, a.Username)
	if err != nil {
		return err
	}
	w.view.Remove(a.Subdomain, serial)
	return nil
}

// DeleteUnused is Delete for an account not used since cutoff, checked in
// the same transaction (storage.ErrInUse if it was).
func (w *Writer) DeleteUnused(ctx context.Context, a storage.Account, cutoff time.Time) error {
	t := w.fl.begin(w.view)
	defer w.fl.done(w.view, t)
	serial, err := w.store.DeleteUnusedAccount(ctx, a.Username, cutoff)
	if err != nil {
		return err
	}
	w.view.Remove(a.Subdomain, serial)
	return nil
}

// RotateKey gives a a new key if its key is still the one a was read with:
// of concurrent rotations exactly one wins, the others get
// storage.ErrConflict (and storage.ErrNotFound once it is deleted).
func (w *Writer) RotateKey(ctx context.Context, a storage.Account) (string, error) {
	key, err := secret.NewKey()
	if err != nil {
		return "", fmt.Errorf("zone: make key: %w", err)
	}
	hash, err := secret.Hash(key)
	if err != nil {
		return "", fmt.Errorf("zone: hash key: %w", err)
	}
	if err := w.store.UpdateKeyHash(ctx, a.Username, a.KeyHash, hash); err != nil {
		return "", err
	}
	return key, nil
}

// UpgradeKeyHash stores the current form of the hash of a's key (which the
// caller has just verified against a's legacy hash), unless the key was
// changed meanwhile.
func (w *Writer) UpgradeKeyHash(ctx context.Context, a storage.Account, key string) error {
	hash, err := secret.Hash(key)
	if err != nil {
		return fmt.Errorf("zone: hash key: %w", err)
	}
	return w.store.UpdateKeyHash(ctx, a.Username, a.KeyHash, hash)
}

// SetAllowFrom replaces the sources a may update from. It does not change
// the zone. storage.ErrNotFound if a is gone.
func (w *Writer) SetAllowFrom(ctx context.Context, a storage.Account, allow []netip.Prefix) error {
	return w.store.UpdateAllowFrom(ctx, a.Username, allow)
}

// Refresh re-reads one subdomain from storage and applies what it finds
// (its values and persist records, or its absence): how the view learns of
// a change another node or an admin command made.
func (w *Writer) Refresh(ctx context.Context, name string) error {
	t := w.fl.begin(w.view)
	defer w.fl.done(w.view, t)
	sub, serial, err := w.store.Subdomain(ctx, name)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		w.view.Remove(name, serial)
	case err != nil:
		return err
	default:
		w.view.Replace(sub, serial)
	}
	return nil
}

// Resync reconciles the view with a snapshot of storage (a node that may
// have missed changes).
func (w *Writer) Resync(ctx context.Context) (records.ResyncStats, error) {
	t := w.fl.begin(w.view)
	defer w.fl.done(w.view, t)
	return w.view.Resync(ctx, w.store)
}

// Prune deletes the values that have aged out of the window from storage
// and from the view. DNS stopped serving them when they aged out; the
// deletion moves the serial, so secondaries drop them too.
func (w *Writer) Prune(ctx context.Context) (subs, values int, err error) {
	now := w.cfg.Now()
	for _, name := range w.view.Due(now) {
		n, err := w.pruneOne(ctx, name, now)
		if err != nil {
			return subs, values, fmt.Errorf("zone: prune %s: %w", name, err)
		}
		subs++
		values += n
	}
	return subs, values, nil
}

func (w *Writer) pruneOne(ctx context.Context, name string, now time.Time) (int, error) {
	t := w.fl.begin(w.view)
	defer w.fl.done(w.view, t)
	n, serial, err := w.store.PruneTXT(ctx, name, now, w.cfg.Policy)
	if err != nil {
		return 0, err
	}
	w.view.Pruned(name, now, n, serial)
	return n, nil
}

// PruneEvery runs Prune every interval until ctx ends.
func (w *Writer) PruneEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		subs, values, err := w.Prune(ctx)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("pruning aged-out TXT values", "err", err)
		}
		if values > 0 {
			w.log.Info("pruned aged-out TXT values", "subdomains", subs, "values", values, "took", time.Since(start).Round(time.Millisecond))
		}
	}
}

// Quiesce returns once no write is between storage and the view, or after
// max. Zone transfers call it so that two writes applied to the view in the
// other order than their serials are both there before a secondary copies
// the zone.
func (w *Writer) Quiesce(max time.Duration) { w.fl.wait(max) }

// inflight tracks the writes between storage and the view. Each write
// notes the view's removal generation when it begins; tombstones of
// removals up to the lowest generation still in flight can go, since every
// write that could carry an older serial has been applied.
type inflight struct {
	mu     sync.Mutex
	active map[uint64]int // removal generation at begin -> writes
	n      int
	idle   chan struct{} // closed while n == 0
}

func (f *inflight) init() {
	f.active = make(map[uint64]int)
	f.idle = make(chan struct{})
	close(f.idle)
}

func (f *inflight) begin(v View) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Read under f.mu, so that done's lowest generation never passes a
	// write that has begun.
	gen := v.RemovalGen()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
	f.active[gen]++
	return gen
}

func (f *inflight) done(v View, gen uint64) {
	f.mu.Lock()
	f.n--
	if f.active[gen]--; f.active[gen] == 0 {
		delete(f.active, gen)
	}
	lowest, none := uint64(0), f.n == 0
	if none {
		close(f.idle)
	} else {
		first := true
		for g := range f.active {
			if first || g < lowest {
				lowest, first = g, false
			}
		}
	}
	if none {
		// Nothing in flight: every tombstone made so far can go.
		lowest = v.RemovalGen()
	}
	v.ForgetRemoved(lowest)
	f.mu.Unlock()
}

func (f *inflight) wait(max time.Duration) {
	f.mu.Lock()
	idle := f.idle
	f.mu.Unlock()
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}

// noView is the view of a writer without one (an admin command).
type noView struct{}

func (noView) Add(string, uint32)                                 {}
func (noView) Set(string, []storage.TXTRecord, uint32)            {}
func (noView) SetPersist(string, []storage.PersistRecord, uint32) {}
func (noView) Replace(storage.Subdomain, uint32)                  {}
func (noView) Remove(string, uint32)                              {}
func (noView) Due(time.Time) []string                             { return nil }
func (noView) Pruned(string, time.Time, int, uint32)              {}
func (noView) RemovalGen() uint64                                 { return 0 }
func (noView) ForgetRemoved(uint64)                               {}
func (noView) Resync(context.Context, records.Snapshotter) (records.ResyncStats, error) {
	return records.ResyncStats{}, nil
}
