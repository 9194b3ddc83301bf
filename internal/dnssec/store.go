package dnssec

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// Values is what the key store needs of the database: named values and
// leases (storage.Store has them). Every node on one database sees the
// same values, so every node signs with the same keys.
type Values interface {
	GetValue(ctx context.Context, name string) (storage.Value, error)
	PutValue(ctx context.Context, name string, data []byte, at time.Time) error
	TryLock(ctx context.Context, name, owner string, at time.Time, ttl time.Duration) (bool, error)
	Unlock(ctx context.Context, name, owner string) error
}

// StoreConfig configures a Store.
type StoreConfig struct {
	// Zone is the signed zone.
	Zone string
	// Sealer encrypts private keys at rest; nil stores them unencrypted.
	Sealer *Sealer
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Logger; nil: discard. Keys are logged by their public facts only.
	Logger *slog.Logger
}

// Store keeps the zone's key set in the database. Changes are made under a
// lease, so that two nodes (or a node and an admin command) never both
// generate keys or both take a rollover step.
type Store struct {
	v      Values
	zone   string
	sealer *Sealer
	now    func() time.Time
	logger *slog.Logger
	owner  string
}

// NewStore returns a key store for cfg.Zone in v.
func NewStore(v Values, cfg StoreConfig) (*Store, error) {
	if cfg.Zone == "" {
		return nil, errors.New("dnssec: zone is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	id := make([]byte, 6)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	z := strings.TrimSuffix(strings.ToLower(cfg.Zone), ".")
	return &Store{v: v, zone: z + ".", sealer: cfg.Sealer, now: cfg.Now, logger: cfg.Logger,
		owner: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(id))}, nil
}

// valueName and leaseName: where a zone's keys live, and the lease that
// serialises changes to them.
func (s *Store) valueName() string { return "dnssec/" + strings.TrimSuffix(s.zone, ".") + "/keys" }
func (s *Store) leaseName() string { return "dnssec/" + strings.TrimSuffix(s.zone, ".") + "/lock" }

// ErrNoKeys: the zone has no keys in the database yet.
var ErrNoKeys = errors.New("dnssec: no keys in the database yet")

// Load reads the key set; ErrNoKeys if there is none. raw is the stored
// form, for noticing changes cheaply.
func (s *Store) Load(ctx context.Context) (ks *Keyset, raw []byte, err error) {
	ks, raw, _, err = s.load(ctx)
	return ks, raw, err
}

// load is Load, and reports whether a private key is stored unencrypted.
func (s *Store) load(ctx context.Context) (ks *Keyset, raw []byte, plain bool, err error) {
	v, err := s.v.GetValue(ctx, s.valueName())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, false, ErrNoKeys
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("dnssec: read keys: %w", err)
	}
	ks, plain, err = ParseKeyset(v.Data, s.zone, s.sealer)
	if err != nil {
		return nil, nil, false, err
	}
	return ks, v.Data, plain, nil
}

// Raw reads the stored form of the key set only (nil if none), so a node
// can tell whether it changed without decrypting anything.
func (s *Store) Raw(ctx context.Context) ([]byte, error) {
	v, err := s.v.GetValue(ctx, s.valueName())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dnssec: read keys: %w", err)
	}
	return v.Data, nil
}

// Generation says what keys a zone gets when it has none.
type Generation struct {
	Algorithm uint8
	Split     bool // a KSK and a ZSK rather than one CSK
}

// LoadOrCreate returns the key set, generating it first if the database
// has none (the first start of the first node; the others, starting at
// the same time, wait for it and load the same keys). With a key file
// configured, keys stored unencrypted are encrypted on the way.
func (s *Store) LoadOrCreate(ctx context.Context, gen Generation) (*Keyset, error) {
	ks, _, plain, err := s.load(ctx)
	switch {
	case err == nil && !(s.sealer != nil && plain):
		s.warnMismatch(ks, gen)
		return ks, nil
	case err != nil && !errors.Is(err, ErrNoKeys):
		return nil, err
	}
	ks, err = s.update(ctx, func(ks *Keyset, plain bool) (*Keyset, error) {
		switch {
		case ks != nil && s.sealer != nil && plain:
			s.logger.Info("dnssec: encrypting the keys in the database with the key file", "zone", s.zone)
			return ks, nil
		case ks != nil:
			return nil, nil // another node made them meanwhile
		}
		nks, err := NewKeyset(s.zone, gen.Algorithm, gen.Split, s.now())
		if err != nil {
			return nil, err
		}
		for _, k := range nks.Keys {
			s.logger.Info("dnssec key generated", "zone", s.zone, "key", k)
		}
		return nks, nil
	})
	if err != nil {
		return nil, err
	}
	s.warnMismatch(ks, gen)
	return ks, nil
}

// warnMismatch logs when the configured key kind is not what the database
// holds: the keys there rule (every node must sign alike).
func (s *Store) warnMismatch(ks *Keyset, gen Generation) {
	if ks.Split() != gen.Split {
		s.logger.Warn("dnssec: the keys in the database are not what dns.dnssec.split_keys asks for; the keys in the database are used", "zone", s.zone, "split_in_database", ks.Split())
	}
	for _, k := range ks.Keys {
		if k.Algorithm() != gen.Algorithm {
			s.logger.Warn("dnssec: the keys in the database use another algorithm than dns.dnssec.algorithm; they are used as they are", "zone", s.zone, "key", k)
			break
		}
	}
}

// leaseTTL bounds how long a crashed node can block key changes.
const leaseTTL = 30 * time.Second

// lockWait bounds how long Update waits for another node's lease.
const lockWait = 2 * leaseTTL

// Update changes the key set under the lease: it reads the stored key set
// (nil if none) and calls fn, which changes it in place and returns it to
// have it stored (sealed when a key file is configured), or returns nil to
// store nothing. Update returns the key set as stored.
func (s *Store) Update(ctx context.Context, fn func(*Keyset) (*Keyset, error)) (*Keyset, error) {
	return s.update(ctx, func(ks *Keyset, _ bool) (*Keyset, error) { return fn(ks) })
}

func (s *Store) update(ctx context.Context, fn func(ks *Keyset, plain bool) (*Keyset, error)) (*Keyset, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.v.Unlock(uctx, s.leaseName(), s.owner); err != nil {
			s.logger.Warn("dnssec: releasing the key lease", "err", err)
		}
	}()
	cur, _, plain, err := s.load(ctx)
	if err != nil && !errors.Is(err, ErrNoKeys) {
		return nil, err
	}
	next, err := fn(cur, plain)
	if err != nil || next == nil {
		return cur, err
	}
	b, err := next.Marshal(s.sealer)
	if err != nil {
		return nil, err
	}
	if err := s.v.PutValue(ctx, s.valueName(), b, s.now()); err != nil {
		return nil, fmt.Errorf("dnssec: store keys: %w", err)
	}
	return next, nil
}

// lock takes the lease, waiting (bounded) while another node holds it.
func (s *Store) lock(ctx context.Context) error {
	deadline := time.Now().Add(lockWait)
	for {
		ok, err := s.v.TryLock(ctx, s.leaseName(), s.owner, s.now(), leaseTTL)
		if err != nil {
			return fmt.Errorf("dnssec: take the key lease: %w", err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dnssec: another node has held the key lease %s for over %s", s.leaseName(), lockWait)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
