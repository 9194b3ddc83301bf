package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// persistRec is a valid persist record of issuer set at base+at.
func persistRec(issuer string, at time.Duration) storage.PersistRecord {
	return storage.PersistRecord{
		Issuer:     issuer,
		AccountURI: "https://acme." + issuer + "/acct/" + fmt.Sprint(int64(at/time.Second)),
		SetAt:      base.Add(at),
	}
}

func mustSetPersist(t *testing.T, st storage.Store, sub string, rec storage.PersistRecord) ([]storage.PersistRecord, uint32) {
	t.Helper()
	recs, serial, err := st.SetPersist(context.Background(), sub, rec)
	if err != nil {
		t.Fatalf("SetPersist(%s, %s): %v", sub, rec.Issuer, err)
	}
	return recs, serial
}

// samePersist compares records field by field, in order.
func samePersist(t *testing.T, what string, got, want []storage.PersistRecord) {
	t.Helper()
	eq := len(got) == len(want)
	for i := 0; eq && i < len(got); i++ {
		g, w := got[i], want[i]
		eq = g.Issuer == w.Issuer && g.AccountURI == w.AccountURI && g.Policy == w.Policy &&
			g.PersistUntil.Equal(w.PersistUntil) && g.SetAt.Equal(w.SetAt)
	}
	if !eq {
		t.Errorf("%s:\n got %s\nwant %s", what, fmtPersist(got), fmtPersist(want))
	}
}

func fmtPersist(recs []storage.PersistRecord) string {
	s := "["
	for i, r := range recs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("{%q@%s}", r.Value(), r.SetAt.UTC().Format("15:04:05.000000"))
	}
	return s + "]"
}

// persistSnapshot returns each subdomain's persist records from Snapshot.
func persistSnapshot(t *testing.T, st storage.Store) (map[string][]storage.PersistRecord, uint32) {
	t.Helper()
	m := map[string][]storage.PersistRecord{}
	serial, err := st.Snapshot(context.Background(), func(s storage.Subdomain) error {
		m[s.Name] = s.Persist
		return nil
	})
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return m, serial
}

// persistRoundTrip: records of several issuers, every field kept, listed
// by issuer by PersistRecords, Snapshot and Subdomain, beside the TXT
// values (which they do not disturb) and across a reopen; each set moves
// the serial.
func (s suite) persistRoundTrip(t *testing.T) {
	st, reopen := s.fresh(t)
	ctx := context.Background()
	a, b := account(1), account(2)
	mustCreate(t, st, a)
	mustCreate(t, st, b)
	_, last := mustSet(t, st, a.Subdomain, "challenge-value", base.Add(time.Minute), storage.DefaultTXTPolicy)

	full := persistRec("pebble.letsencrypt.org", 2*time.Minute)
	full.Policy = storage.PolicyWildcard
	full.PersistUntil = base.Add(365 * 24 * time.Hour).Truncate(time.Second).UTC()
	plain := persistRec("ca.example.net", 3*time.Minute)
	other := persistRec("letsencrypt.org", 4*time.Minute)
	want := []storage.PersistRecord{plain, full} // by issuer
	for i, rec := range []storage.PersistRecord{full, plain} {
		recs, serial := mustSetPersist(t, st, a.Subdomain, rec)
		if !serialAfter(serial, last) {
			t.Errorf("SetPersist %d: serial %d, not past %d", i, serial, last)
		}
		last = serial
		if i == 1 {
			samePersist(t, "SetPersist's records", recs, want)
		}
	}
	mustSetPersist(t, st, b.Subdomain, other)

	check := func(st storage.Store, when string) {
		t.Helper()
		got, err := st.PersistRecords(ctx, a.Subdomain)
		if err != nil {
			t.Fatalf("%s: PersistRecords: %v", when, err)
		}
		samePersist(t, when+": PersistRecords", got, want)
		snap, _ := persistSnapshot(t, st)
		samePersist(t, when+": Snapshot", snap[a.Subdomain], want)
		samePersist(t, when+": Snapshot of the other account", snap[b.Subdomain], []storage.PersistRecord{other})
		sub, _, err := st.Subdomain(ctx, a.Subdomain)
		if err != nil {
			t.Fatalf("%s: Subdomain: %v", when, err)
		}
		samePersist(t, when+": Subdomain", sub.Persist, want)
		sameRecords(t, when+": Subdomain's values", sub.Records, []storage.TXTRecord{{Value: "challenge-value", UpdatedAt: base.Add(time.Minute)}})
		if got := sub.Persist[1].Value(); got != "pebble.letsencrypt.org; accounturi=https://acme.pebble.letsencrypt.org/acct/120; policy=wildcard; persistUntil="+fmt.Sprint(full.PersistUntil.Unix()) {
			t.Errorf("%s: Value() = %q", when, got)
		}
	}
	check(st, "before reopen")
	st.close(t)
	check(reopen(t), "after reopen")
}

// persistUpsert: setting an issuer's record again replaces it (one record
// per issuer) and moves the serial; the TXT values are untouched.
func (s suite) persistUpsert(t *testing.T) {
	st, _ := s.fresh(t)
	a := account(1)
	mustCreate(t, st, a)
	mustSet(t, st, a.Subdomain, "v", base, storage.DefaultTXTPolicy)
	_, s1 := mustSetPersist(t, st, a.Subdomain, persistRec("letsencrypt.org", time.Minute))
	changed := persistRec("letsencrypt.org", 2*time.Minute)
	changed.AccountURI = "https://acme-v02.api.letsencrypt.org/acme/acct/42"
	changed.Policy = storage.PolicyWildcard
	recs, s2 := mustSetPersist(t, st, a.Subdomain, changed)
	samePersist(t, "after the second set", recs, []storage.PersistRecord{changed})
	if !serialAfter(s2, s1) {
		t.Errorf("serial %d after replacing a record, not past %d", s2, s1)
	}
	// Back to no policy: an empty policy replaces "wildcard".
	plain := persistRec("letsencrypt.org", 3*time.Minute)
	recs, _ = mustSetPersist(t, st, a.Subdomain, plain)
	samePersist(t, "after the third set", recs, []storage.PersistRecord{plain})
	sub, _, err := st.Subdomain(context.Background(), a.Subdomain)
	if err != nil || len(sub.Records) != 1 {
		t.Fatalf("Subdomain after persist sets: %+v %v", sub, err)
	}
}

// persistLimit: MaxPersistRecords issuers fit; one more is ErrTooMany and
// changes nothing (nor the serial); replacing one of them still works.
func (s suite) persistLimit(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	a := account(1)
	mustCreate(t, st, a)
	var last uint32
	for i := range storage.MaxPersistRecords {
		_, last = mustSetPersist(t, st, a.Subdomain, persistRec(fmt.Sprintf("ca%d.example", i), time.Duration(i)*time.Second))
	}
	_, _, err := st.SetPersist(ctx, a.Subdomain, persistRec("one-too-many.example", time.Hour))
	if !errors.Is(err, storage.ErrTooMany) {
		t.Fatalf("SetPersist of record %d: %v, want ErrTooMany", storage.MaxPersistRecords+1, err)
	}
	recs, err := st.PersistRecords(ctx, a.Subdomain)
	if err != nil || len(recs) != storage.MaxPersistRecords {
		t.Fatalf("after the refused set: %d records, %v", len(recs), err)
	}
	if _, serial := persistSnapshot(t, st); serial != last {
		t.Errorf("serial %d after a refused set, want %d", serial, last)
	}
	if _, _, err := st.SetPersist(ctx, a.Subdomain, persistRec("ca3.example", time.Hour)); err != nil {
		t.Fatalf("replacing a record at the limit: %v", err)
	}
}

// persistLimitUnderRace: many new issuers at once; exactly the limit get
// in.
func (s suite) persistLimitUnderRace(t *testing.T) {
	st, _ := s.fresh(t)
	a := account(1)
	mustCreate(t, st, a)
	const tries = 3 * storage.MaxPersistRecords
	var ok, full atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range tries {
		wg.Go(func() {
			<-start
			_, _, err := st.SetPersist(context.Background(), a.Subdomain, persistRec(fmt.Sprintf("race%d.example", i), time.Duration(i)*time.Second))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, storage.ErrTooMany):
				full.Add(1)
			default:
				t.Errorf("SetPersist %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	recs, err := st.PersistRecords(context.Background(), a.Subdomain)
	if ok.Load() != storage.MaxPersistRecords || full.Load() != tries-storage.MaxPersistRecords || len(recs) != storage.MaxPersistRecords || err != nil {
		t.Fatalf("%d accepted, %d refused, %d stored (%v); want %d, %d, %d", ok.Load(), full.Load(), len(recs), err,
			storage.MaxPersistRecords, tries-storage.MaxPersistRecords, storage.MaxPersistRecords)
	}
}

// persistDelete: a delete moves the serial and leaves the others; deleting
// an issuer that has no record changes nothing and returns serial 0.
func (s suite) persistDelete(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	a := account(1)
	mustCreate(t, st, a)
	keep := persistRec("keep.example", time.Second)
	mustSetPersist(t, st, a.Subdomain, keep)
	_, last := mustSetPersist(t, st, a.Subdomain, persistRec("drop.example", 2*time.Second))

	recs, deleted, err := st.DeletePersist(ctx, a.Subdomain, "drop.example")
	if err != nil {
		t.Fatalf("DeletePersist: %v", err)
	}
	samePersist(t, "after the delete", recs, []storage.PersistRecord{keep})
	if !serialAfter(deleted, last) {
		t.Errorf("serial %d after the delete, not past %d", deleted, last)
	}
	recs, serial, err := st.DeletePersist(ctx, a.Subdomain, "drop.example")
	if err != nil || serial != 0 {
		t.Fatalf("DeletePersist of a missing issuer: serial %d, %v; want 0, nil", serial, err)
	}
	samePersist(t, "after deleting a missing issuer", recs, []storage.PersistRecord{keep})
	snap, snapSerial := persistSnapshot(t, st)
	samePersist(t, "Snapshot", snap[a.Subdomain], []storage.PersistRecord{keep})
	if snapSerial != deleted {
		t.Errorf("Snapshot serial %d, want the delete's %d (deleting nothing must not move it)", snapSerial, deleted)
	}
}

// persistUnknownSubdomain: every persist call for a subdomain no account
// has is ErrNotFound and stores nothing.
func (s suite) persistUnknownSubdomain(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	mustCreate(t, st, account(1))
	_, before := persistSnapshot(t, st)
	if _, _, err := st.SetPersist(ctx, "no-such-sub", persistRec("letsencrypt.org", time.Second)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetPersist: %v, want ErrNotFound", err)
	}
	if _, _, err := st.DeletePersist(ctx, "no-such-sub", "letsencrypt.org"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeletePersist: %v, want ErrNotFound", err)
	}
	if _, err := st.PersistRecords(ctx, "no-such-sub"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("PersistRecords: %v, want ErrNotFound", err)
	}
	if snap, after := persistSnapshot(t, st); after != before || len(snap) != 1 {
		t.Errorf("after the refused calls: serial %d (was %d), %v", after, before, snap)
	}
}

// persistInvalid: the engine refuses a record that fails its checks and
// stores nothing.
func (s suite) persistInvalid(t *testing.T) {
	st, _ := s.fresh(t)
	a := account(1)
	mustCreate(t, st, a)
	bad := map[string]storage.PersistRecord{}
	r := persistRec("letsencrypt.org", time.Second)
	r.Issuer = "Not A Host"
	bad["issuer"] = r
	r = persistRec("letsencrypt.org", time.Second)
	r.AccountURI = "http://acme.example/acct/1"
	bad["accounturi"] = r
	r = persistRec("letsencrypt.org", time.Second)
	r.Policy = "everything"
	bad["policy"] = r
	r = persistRec("letsencrypt.org", time.Second)
	r.PersistUntil = r.SetAt.Add(-time.Hour).Truncate(time.Second)
	bad["persist_until"] = r
	r = persistRec("letsencrypt.org", time.Second)
	r.SetAt = time.Time{}
	bad["set_at"] = r
	for field, rec := range bad {
		if _, _, err := st.SetPersist(context.Background(), a.Subdomain, rec); err == nil {
			t.Errorf("SetPersist with a bad %s was accepted", field)
		}
	}
	if recs, err := st.PersistRecords(context.Background(), a.Subdomain); err != nil || len(recs) != 0 {
		t.Fatalf("after bad records: %v %v", fmtPersist(recs), err)
	}
}

// persistGoesWithAccount: deleting the account deletes its records; a new
// account on the same subdomain starts without any. An account holding a
// record is never deleted as unused, and Accounts counts its records.
func (s suite) persistGoesWithAccount(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	a, b := account(1), account(2)
	mustCreate(t, st, a)
	mustCreate(t, st, b)
	mustSetPersist(t, st, a.Subdomain, persistRec("letsencrypt.org", time.Second))
	mustSetPersist(t, st, a.Subdomain, persistRec("pebble.letsencrypt.org", 2*time.Second))
	mustSetPersist(t, st, b.Subdomain, persistRec("letsencrypt.org", 3*time.Second))

	// Long unused by any measure but its persist records.
	if _, err := st.DeleteUnusedAccount(ctx, a.Username, base.Add(1000*time.Hour)); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("DeleteUnusedAccount of an account holding persist records: %v, want ErrInUse", err)
	}
	counts := map[string]int{}
	for _, ai := range listAccounts(t, st) {
		counts[ai.Subdomain] = ai.Persist
	}
	if counts[a.Subdomain] != 2 || counts[b.Subdomain] != 1 {
		t.Errorf("Accounts' persist counts %v, want %s: 2, %s: 1", counts, a.Subdomain, b.Subdomain)
	}
	if ai, err := st.AccountBySubdomain(ctx, a.Subdomain); err != nil || ai.Persist != 2 {
		t.Errorf("AccountBySubdomain: persist %d, %v; want 2", ai.Persist, err)
	}

	if _, err := st.DeleteAccount(ctx, a.Username); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PersistRecords(ctx, a.Subdomain); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("PersistRecords after the account's delete: %v, want ErrNotFound", err)
	}
	again := account(3)
	again.Subdomain = a.Subdomain
	mustCreate(t, st, again)
	if recs, err := st.PersistRecords(ctx, a.Subdomain); err != nil || len(recs) != 0 {
		t.Fatalf("a new account on the subdomain inherited %s (%v)", fmtPersist(recs), err)
	}
	snap, _ := persistSnapshot(t, st)
	if len(snap[a.Subdomain]) != 0 || len(snap[b.Subdomain]) != 1 {
		t.Errorf("Snapshot after the delete: %v", snap)
	}
	// Without its record, the account ages like any other.
	if _, _, err := st.DeletePersist(ctx, b.Subdomain, "letsencrypt.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DeleteUnusedAccount(ctx, b.Username, base.Add(1000*time.Hour)); err != nil {
		t.Fatalf("DeleteUnusedAccount after its record went: %v", err)
	}
}
