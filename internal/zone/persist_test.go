package zone_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/internal/records"
	"github.com/acmebroker/acmebroker/internal/zone"
	"github.com/acmebroker/acmebroker/storage"
)

// gatedPersist holds SetPersist after the database has the record and
// before it returns.
type gatedPersist struct {
	zone.Store
	stored  chan struct{}
	release chan struct{}
}

func (g *gatedPersist) SetPersist(ctx context.Context, sub string, rec storage.PersistRecord) ([]storage.PersistRecord, uint32, error) {
	recs, serial, err := g.Store.SetPersist(ctx, sub, rec)
	close(g.stored)
	<-g.release
	return recs, serial, err
}

// TestPersistThroughWriter: a record set through the writer is stored,
// stamped with the writer's clock and served at once; a bad one is a
// PersistError and stored nowhere; the limit is storage.ErrTooMany; a
// delete stops serving it, and deleting what is not there changes nothing.
// Refresh brings a record another node set.
func TestPersistThroughWriter(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	idx := records.New(storage.DefaultTXTPolicy, func() time.Time { return now })
	w := zone.New(zone.Config{Zone: "auth.example.test", Policy: storage.DefaultTXTPolicy, Now: func() time.Time { return now }}, st, idx)
	reg, err := w.Register(ctx, zone.NewAccount{})
	if err != nil {
		t.Fatal(err)
	}
	sub := reg.Account.Subdomain
	if _, err := w.SetTXT(ctx, sub, value); err != nil {
		t.Fatal(err)
	}
	rec := storage.PersistRecord{Issuer: "letsencrypt.org", AccountURI: "https://acme.example/acct/1", Policy: storage.PolicyWildcard}
	recs, err := w.SetPersist(ctx, sub, rec)
	if err != nil || len(recs) != 1 || !recs[0].SetAt.Equal(now) {
		t.Fatalf("SetPersist: %+v %v", recs, err)
	}
	if got, _ := idx.TXT(nil, sub); !slices.Equal(got, []string{value, rec.Value()}) {
		t.Fatalf("served %v", got)
	}

	bad := rec
	bad.PersistUntil = now.Add(-time.Hour)
	var pe *storage.PersistError
	if _, err := w.SetPersist(ctx, sub, bad); !errors.As(err, &pe) || pe.Field != "persist_until" {
		t.Fatalf("SetPersist of a record already run out: %v", err)
	}
	for i := 1; i < storage.MaxPersistRecords; i++ {
		r := rec
		r.Issuer = string(rune('a'+i)) + ".example"
		if _, err := w.SetPersist(ctx, sub, r); err != nil {
			t.Fatal(err)
		}
	}
	extra := rec
	extra.Issuer = "ninth.example"
	if _, err := w.SetPersist(ctx, sub, extra); !errors.Is(err, storage.ErrTooMany) {
		t.Fatalf("ninth record: %v, want ErrTooMany", err)
	}
	if got, _ := idx.TXT(nil, sub); len(got) != 1+storage.MaxPersistRecords {
		t.Fatalf("served %d values, want %d", len(got), 1+storage.MaxPersistRecords)
	}

	serial := idx.Serial()
	if _, deleted, err := w.DeletePersist(ctx, sub, "no-such.example"); err != nil || deleted || idx.Serial() != serial {
		t.Fatalf("DeletePersist of a missing issuer: deleted %v, %v, serial %d -> %d", deleted, err, serial, idx.Serial())
	}
	left, deleted, err := w.DeletePersist(ctx, sub, "letsencrypt.org")
	if err != nil || !deleted || len(left) != storage.MaxPersistRecords-1 {
		t.Fatalf("DeletePersist: %d left, %v, %v", len(left), deleted, err)
	}
	if got, _ := idx.TXT(nil, sub); slices.Contains(got, rec.Value()) {
		t.Fatalf("deleted record still served: %v", got)
	}

	// Another node sets one; Refresh applies it with the values.
	other := rec
	other.SetAt = now
	if _, _, err := st.SetPersist(ctx, sub, other); err != nil {
		t.Fatal(err)
	}
	if err := w.Refresh(ctx, sub); err != nil {
		t.Fatal(err)
	}
	if got, _ := idx.TXT(nil, sub); !slices.Contains(got, rec.Value()) || !slices.Contains(got, value) {
		t.Fatalf("after Refresh: %v", got)
	}

	// Deleting the account clears them.
	if err := w.Delete(ctx, reg.Account); err != nil {
		t.Fatal(err)
	}
	if got, ok := idx.TXT(nil, sub); ok {
		t.Fatalf("deleted account served %v", got)
	}
	if _, err := w.SetPersist(ctx, sub, rec); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SetPersist after the delete: %v, want ErrNotFound", err)
	}
}

// TestDeleteWinsOverLatePersist: a persist record stored before the
// account's delete but applied to memory after it does not bring the name
// back.
func TestDeleteWinsOverLatePersist(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	idx := records.New(storage.DefaultTXTPolicy, time.Now)
	g := &gatedPersist{Store: st, stored: make(chan struct{}), release: make(chan struct{})}
	w := zone.New(zone.Config{Zone: "auth.example.test", Policy: storage.DefaultTXTPolicy}, g, idx)
	reg, err := w.Register(ctx, zone.NewAccount{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := w.SetPersist(ctx, reg.Account.Subdomain, storage.PersistRecord{Issuer: "letsencrypt.org", AccountURI: "https://acme.example/acct/1"})
		done <- err
	}()
	<-g.stored
	if err := w.Delete(ctx, reg.Account); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v, ok := idx.TXT(nil, reg.Account.Subdomain); ok {
		t.Fatalf("the deleted account is served again: %v", v)
	}
}
