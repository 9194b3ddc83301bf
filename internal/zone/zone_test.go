package zone_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/internal/zone"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

const value = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"

func open(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "z.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// gatedStore holds SetTXT after the database has the value and before it
// returns: the moment the attack review's race needs, made deterministic.
type gatedStore struct {
	zone.Store
	stored  chan struct{} // closed when the write is durable
	release chan struct{} // closed to let SetTXT return
}

func (g *gatedStore) SetTXT(ctx context.Context, sub, v string, at time.Time, p storage.TXTPolicy) ([]storage.TXTRecord, uint32, error) {
	recs, serial, err := g.Store.SetTXT(ctx, sub, v, at, p)
	close(g.stored)
	<-g.release
	return recs, serial, err
}

// TestDeleteWinsOverLateUpdate is the attack review's defect 1: an update
// whose database write finished before DELETE /account, but which reached
// memory after it, re-created the name for good.
func TestDeleteWinsOverLateUpdate(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	idx := records.New(storage.DefaultTXTPolicy, time.Now)
	g := &gatedStore{Store: st, stored: make(chan struct{}), release: make(chan struct{})}
	w := zone.New(zone.Config{Zone: "auth.example.test", Policy: storage.DefaultTXTPolicy}, g, idx)

	reg, err := w.Register(ctx, zone.NewAccount{})
	if err != nil {
		t.Fatal(err)
	}
	sub := reg.Account.Subdomain
	updated := make(chan error, 1)
	go func() { _, err := w.SetTXT(ctx, sub, value); updated <- err }()
	<-g.stored
	if err := w.Delete(ctx, reg.Account); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	if err := <-updated; err != nil {
		t.Fatal(err)
	}
	if v, ok := idx.TXT(nil, sub); ok {
		t.Fatalf("the deleted account is served again: %v", v)
	}
	if n := idx.Tombstones(); n != 0 {
		t.Fatalf("%d tombstones kept with no write in flight", n)
	}
}

// Many accounts, each deleted while four updates race it (the review's
// reproduction: 102 of 300 stayed): none is served afterwards, every
// update answers success or not-found, and no tombstone is left.
func TestDeleteUnderConcurrentUpdates(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	idx := records.New(storage.DefaultTXTPolicy, time.Now)
	w := zone.New(zone.Config{Zone: "auth.example.test", Policy: storage.DefaultTXTPolicy}, st, idx)
	const accounts, updaters = 60, 4
	var wg sync.WaitGroup
	errc := make(chan error, accounts*(updaters+1))
	for range accounts {
		reg, err := w.Register(ctx, zone.NewAccount{})
		if err != nil {
			t.Fatal(err)
		}
		for range updaters {
			wg.Go(func() {
				for range 5 {
					if _, err := w.SetTXT(ctx, reg.Account.Subdomain, value); err != nil && !errors.Is(err, storage.ErrNotFound) {
						errc <- err
					}
				}
			})
		}
		wg.Go(func() {
			if err := w.Delete(ctx, reg.Account); err != nil {
				errc <- err
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if n := idx.Len(); n != 0 {
		t.Fatalf("%d deleted accounts still served", n)
	}
	if n := idx.Tombstones(); n != 0 {
		t.Fatalf("%d tombstones kept with no write in flight", n)
	}
}

// Of concurrent rotations with one key exactly one wins; the others get
// ErrConflict and change nothing.
func TestRotateKeyOnce(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	w := zone.New(zone.Config{Policy: storage.DefaultTXTPolicy}, st, nil)
	reg, err := w.Register(ctx, zone.NewAccount{})
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		won  []string
		lost int
	)
	for range 5 {
		wg.Go(func() {
			key, err := w.RotateKey(ctx, reg.Account)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, key)
			case errors.Is(err, storage.ErrConflict):
				lost++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(won) != 1 || lost != 4 {
		t.Fatalf("%d rotations won, %d lost; want 1 and 4", len(won), lost)
	}
}

// Names the zone's own records use cannot be registered; others can; a
// bad label is refused.
func TestRegisterReserved(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	reserved := func(name string) string {
		if name == "www" {
			return "it has static CNAME records"
		}
		return ""
	}
	w := zone.New(zone.Config{Zone: "auth.example.test.", Policy: storage.DefaultTXTPolicy, Reserved: reserved}, st, nil)
	if _, err := w.Register(ctx, zone.NewAccount{Subdomain: "WWW"}); !errors.Is(err, zone.ErrReserved) {
		t.Fatalf("www: %v", err)
	}
	if _, err := w.Register(ctx, zone.NewAccount{Subdomain: "a.b"}); !errors.Is(err, zone.ErrBadName) {
		t.Fatalf("a.b: %v", err)
	}
	reg, err := w.Register(ctx, zone.NewAccount{Subdomain: "Web1"})
	if err != nil || reg.Account.Subdomain != "web1" || reg.Fulldomain != "web1.auth.example.test" || len(reg.Key) != 40 {
		t.Fatalf("web1: %+v %v", reg, err)
	}
	if _, err := w.Register(ctx, zone.NewAccount{Subdomain: "web1"}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("web1 again: %v", err)
	}
}

// Prune deletes aged-out values from storage and memory and moves the
// serial; a second pass finds nothing.
func TestPrune(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	p := storage.TXTPolicy{Always: 2, Window: 10 * time.Minute, Max: 16}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	idx := records.New(p, clock)
	w := zone.New(zone.Config{Policy: p, Now: clock}, st, idx)
	busy, err := w.Register(ctx, zone.NewAccount{Subdomain: "busy"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Register(ctx, zone.NewAccount{Subdomain: "quiet"}); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if _, err := w.SetTXT(ctx, "busy", fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Minute)
	}
	if _, err := w.SetTXT(ctx, "quiet", "q"); err != nil {
		t.Fatal(err)
	}
	before := idx.Serial()
	now = now.Add(7*time.Minute + 30*time.Second) // v0..v3 aged out; v4, v5 always kept
	subs, values, err := w.Prune(ctx)
	if err != nil || subs != 1 || values != 4 {
		t.Fatalf("Prune: %d subdomains, %d values, %v; want 1, 4", subs, values, err)
	}
	if got, _ := idx.TXT(nil, "busy"); fmt.Sprint(got) != "[v5 v4]" {
		t.Fatalf("served after pruning: %v", got)
	}
	if idx.Serial() == before {
		t.Fatal("pruning did not move the serial")
	}
	sub, _, err := st.Subdomain(ctx, busy.Account.Subdomain)
	if err != nil || len(sub.Records) != 2 {
		t.Fatalf("stored after pruning: %v %v", sub.Records, err)
	}
	if subs, values, _ := w.Prune(ctx); subs != 0 || values != 0 {
		t.Fatalf("second prune found %d/%d", subs, values)
	}
}

// Quiesce returns at once with nothing in flight, waits for a write that
// is between storage and memory, and is bounded.
func TestQuiesce(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	idx := records.New(storage.DefaultTXTPolicy, time.Now)
	g := &gatedStore{Store: st, stored: make(chan struct{}), release: make(chan struct{})}
	w := zone.New(zone.Config{Policy: storage.DefaultTXTPolicy}, g, idx)
	reg, err := w.Register(ctx, zone.NewAccount{})
	if err != nil {
		t.Fatal(err)
	}
	w.Quiesce(time.Minute) // nothing in flight: returns at once (or the test times out)

	go func() { _, _ = w.SetTXT(ctx, reg.Account.Subdomain, value) }()
	<-g.stored
	start := time.Now()
	w.Quiesce(30 * time.Millisecond) // the write is held: Quiesce gives up at its bound
	if time.Since(start) < 30*time.Millisecond {
		t.Fatal("Quiesce returned with a write in flight")
	}
	done := make(chan struct{})
	go func() { w.Quiesce(time.Minute); close(done) }()
	close(g.release)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Quiesce did not return once the write reached memory")
	}
	if _, ok := idx.TXT(nil, reg.Account.Subdomain); !ok {
		t.Fatal("the write is not served after Quiesce")
	}
}

func TestOwnChallengeName(t *testing.T) {
	const z = "auth.example.test"
	for _, tc := range []struct {
		domain, want string
		ok           bool
	}{
		{"auth.example.test", "_acme-challenge", true},
		{"AUTH.example.test.", "_acme-challenge", true},
		{"*.auth.example.test", "_acme-challenge", true},
		{"api.auth.example.test", "_acme-challenge.api", true},
		{"*.a.b.auth.example.test", "_acme-challenge.a.b", true},
		{"example.test", "", false},
		{"xauth.example.test", "", false},
		{"other.test", "", false},
		{"_x.auth.example.test", "", false},
		{"a..auth.example.test", "", false},
	} {
		got, err := zone.OwnChallengeName(z, tc.domain)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("OwnChallengeName(%q) = %q, %v; want %q (ok %v)", tc.domain, got, err, tc.want, tc.ok)
		}
	}
}

// TestOwnChallenge: the broker's own challenge values are served at
// _acme-challenge.<name> from the moment SetOwnChallenge returns, are in
// storage (a restarted or other node loads them) and are gone, name and
// all, once cleared. No account can take the name.
func TestOwnChallenge(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	idx := records.New(storage.DefaultTXTPolicy, time.Now)
	w := zone.New(zone.Config{Zone: "auth.example.test", Policy: storage.DefaultTXTPolicy}, st, idx)
	const other = "MPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"
	if err := w.SetOwnChallenge(ctx, "auth.example.test", value); err != nil {
		t.Fatal(err)
	}
	if err := w.SetOwnChallenge(ctx, "*.auth.example.test", other); err != nil {
		t.Fatal(err)
	}
	if err := w.SetOwnChallenge(ctx, "api.auth.example.test", value); err != nil {
		t.Fatal(err)
	}
	if got, ok := idx.TXT(nil, "_acme-challenge"); !ok || len(got) != 2 {
		t.Fatalf("served at _acme-challenge: %v %v, want both values", got, ok)
	}
	fresh := records.New(storage.DefaultTXTPolicy, time.Now)
	if err := fresh.Load(ctx, st); err != nil {
		t.Fatal(err)
	}
	if got, ok := fresh.TXT(nil, "_acme-challenge.api"); !ok || len(got) != 1 || got[0] != value {
		t.Fatalf("a fresh load serves %v %v at _acme-challenge.api", got, ok)
	}
	for _, bad := range []string{"example.test", "x.other.test"} {
		if err := w.SetOwnChallenge(ctx, bad, value); err == nil {
			t.Errorf("SetOwnChallenge(%s) outside the zone = nil", bad)
		}
	}
	if err := w.SetOwnChallenge(ctx, "auth.example.test", "not a dns-01 value"); err == nil {
		t.Error("SetOwnChallenge took a value that is no dns-01 value")
	}
	if _, err := w.Register(ctx, zone.NewAccount{Subdomain: "_acme-challenge"}); !errors.Is(err, zone.ErrBadName) {
		t.Errorf("Register(_acme-challenge): %v, want ErrBadName", err)
	}

	if err := w.ClearOwnChallenge(ctx, "auth.example.test", value); err != nil {
		t.Fatal(err)
	}
	if got, _ := idx.TXT(nil, "_acme-challenge"); len(got) != 1 || got[0] != other {
		t.Fatalf("after clearing one value: %v, want [%s]", got, other)
	}
	if err := w.ClearOwnChallenge(ctx, "*.auth.example.test", other); err != nil {
		t.Fatal(err)
	}
	if err := w.ClearOwnChallenge(ctx, "*.auth.example.test", other); err != nil {
		t.Fatalf("clearing twice: %v", err)
	}
	if got, ok := idx.TXT(nil, "_acme-challenge"); ok {
		t.Fatalf("after clearing every value the name is still there: %v", got)
	}
	if _, _, err := st.Subdomain(ctx, "_acme-challenge"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("storage still has _acme-challenge: %v", err)
	}
}
