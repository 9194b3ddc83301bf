package storagetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// Own names (storage.IsOwnName): the broker's own TXT values.

func (s suite) ownTXT(t *testing.T) {
	st, reopen := s.fresh(t)
	ctx := context.Background()
	a := account(1)
	mustCreate(t, st, a)
	p := storage.DefaultTXTPolicy
	_, last := mustSet(t, st, a.Subdomain, "account-value", base, p)

	const apex, below = "_acme-challenge", "_acme-challenge.api"
	recs, s1, err := st.SetOwnTXT(ctx, apex, "v1", base.Add(time.Second), p)
	if err != nil {
		t.Fatalf("SetOwnTXT: %v", err)
	}
	sameRecords(t, "SetOwnTXT", recs, []storage.TXTRecord{{Value: "v1", UpdatedAt: base.Add(time.Second)}})
	if !serialAfter(s1, last) {
		t.Fatalf("SetOwnTXT serial %d, not after %d", s1, last)
	}
	recs, s2, err := st.SetOwnTXT(ctx, apex, "v2", base.Add(2*time.Second), p)
	if err != nil || len(recs) != 2 || recs[0].Value != "v2" || !serialAfter(s2, s1) {
		t.Fatalf("second SetOwnTXT: %s serial %d, %v", fmtRecs(recs), s2, err)
	}
	if _, _, err := st.SetOwnTXT(ctx, below, "v3", base.Add(3*time.Second), p); err != nil {
		t.Fatalf("SetOwnTXT(%s): %v", below, err)
	}

	// Part of the zone: in the snapshot and by name, across a reopen.
	st.close(t)
	st = reopen(t)
	subs, serial := snapshot(t, st)
	sameRecords(t, "snapshot of "+apex, subs[apex], []storage.TXTRecord{
		{Value: "v2", UpdatedAt: base.Add(2 * time.Second)}, {Value: "v1", UpdatedAt: base.Add(time.Second)},
	})
	sameRecords(t, "snapshot of "+below, subs[below], []storage.TXTRecord{{Value: "v3", UpdatedAt: base.Add(3 * time.Second)}})
	sameRecords(t, "snapshot of the account", subs[a.Subdomain], []storage.TXTRecord{{Value: "account-value", UpdatedAt: base}})
	if len(subs) != 3 {
		t.Errorf("snapshot has %d names, want 3", len(subs))
	}
	got, gs, err := st.Subdomain(ctx, apex)
	if err != nil || got.Name != apex || len(got.Records) != 2 || gs != serial {
		t.Fatalf("Subdomain(%s) = %+v serial %d, %v; want 2 values at serial %d", apex, got, gs, err, serial)
	}

	// An own name is not an account's: no account API reaches it, and
	// SetOwnTXT takes no account's subdomain.
	if _, _, err := st.SetTXT(ctx, apex, "x", base.Add(4*time.Second), p); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetTXT(%s): %v, want ErrNotFound (no account has it)", apex, err)
	}
	for _, bad := range []string{a.Subdomain, "", "_", "_acme-challenge.", "_acme-challenge..x", "_ACME-challenge", "x._acme-challenge", "_acme-challenge.-x"} {
		if _, _, err := st.SetOwnTXT(ctx, bad, "x", base.Add(4*time.Second), p); err == nil {
			t.Errorf("SetOwnTXT(%q) = nil, want an error", bad)
		}
	}
	if _, s := snapshot(t, st); s != serial {
		t.Errorf("refused writes moved the serial %d -> %d", serial, s)
	}

	// Delete one value, then the last: the name is gone.
	left, d1, err := st.DeleteOwnTXT(ctx, apex, "v1", base.Add(5*time.Second))
	if err != nil || len(left) != 1 || left[0].Value != "v2" || !serialAfter(d1, serial) {
		t.Fatalf("DeleteOwnTXT: %s serial %d, %v; want [v2] after %d", fmtRecs(left), d1, err, serial)
	}
	if left, d, err := st.DeleteOwnTXT(ctx, apex, "v1", base.Add(6*time.Second)); err != nil || d != 0 || len(left) != 0 {
		t.Fatalf("DeleteOwnTXT of a value not there: %s serial %d, %v; want nothing changed", fmtRecs(left), d, err)
	}
	left, d2, err := st.DeleteOwnTXT(ctx, apex, "v2", base.Add(7*time.Second))
	if err != nil || len(left) != 0 || !serialAfter(d2, d1) {
		t.Fatalf("DeleteOwnTXT of the last value: %s serial %d, %v", fmtRecs(left), d2, err)
	}
	if _, gs, err := st.Subdomain(ctx, apex); !errors.Is(err, storage.ErrNotFound) || gs != d2 {
		t.Fatalf("Subdomain of an emptied own name: serial %d, %v; want ErrNotFound at %d", gs, err, d2)
	}
	if subs, _ := snapshot(t, st); subs[apex] != nil || len(subs) != 2 {
		t.Fatalf("snapshot after emptying %s: %v", apex, subs)
	}
}

// ownPrune: PruneTXT takes own names, with the same policy as accounts.
func (s suite) ownPrune(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	p := storage.TXTPolicy{Always: 2, Window: 10 * time.Minute, Max: 16}
	const name = "_acme-challenge"
	var last uint32
	for i, v := range []string{"a", "b", "c", "d"} {
		_, last = mustSetOwn(t, st, name, v, base.Add(time.Duration(i)*time.Minute), p)
	}
	if n, serial, err := st.PruneTXT(ctx, name, base.Add(5*time.Minute), p); err != nil || n != 0 || serial != 0 {
		t.Fatalf("prune within the window: %d serial %d, %v", n, serial, err)
	}
	n, serial, err := st.PruneTXT(ctx, name, base.Add(11*time.Minute+30*time.Second), p)
	if err != nil || n != 2 || !serialAfter(serial, last) {
		t.Fatalf("prune: %d serial %d, %v; want 2 after %d", n, serial, err, last)
	}
	got, _, err := st.Subdomain(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, "after prune", got.Records, []storage.TXTRecord{
		{Value: "d", UpdatedAt: base.Add(3 * time.Minute)}, {Value: "c", UpdatedAt: base.Add(2 * time.Minute)},
	})
	if n, _, err := st.PruneTXT(ctx, "_acme-challenge.none", base.Add(time.Hour), p); err != nil || n != 0 {
		t.Fatalf("prune of an own name with no values: %d, %v", n, err)
	}
}

func mustSetOwn(t *testing.T, st storage.Store, name, value string, at time.Time, p storage.TXTPolicy) ([]storage.TXTRecord, uint32) {
	t.Helper()
	recs, serial, err := st.SetOwnTXT(context.Background(), name, value, at, p)
	if err != nil {
		t.Fatalf("SetOwnTXT(%s, %s): %v", name, value, err)
	}
	return recs, serial
}
