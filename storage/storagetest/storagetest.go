// Package storagetest is the conformance suite every storage.Store engine
// must pass. An engine's tests call Run with a function that makes a fresh,
// empty database:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) func(t *testing.T) storage.Store {
//			path := filepath.Join(t.TempDir(), "test.db")
//			return func(t *testing.T) storage.Store {
//				st, err := sqlite.Open(context.Background(), path, sqlite.Options{})
//				if err != nil {
//					t.Fatal(err)
//				}
//				return st
//			}
//		})
//	}
//
// What the suite pins down beyond the storage.Store doc comment:
//   - Times (Account.CreatedAt, TXTRecord.UpdatedAt) round-trip to the
//     microsecond: the suite uses whole-microsecond times and compares with
//     time.Time.Equal, so an engine may store microseconds (PostgreSQL
//     timestamptz) or nanoseconds, in any time zone.
//   - AllowFrom round-trips as a list of equal netip.Prefix values, in
//     order; empty and nil are the same.
//   - SetTXT for a subdomain no account has returns ErrNotFound.
//   - Every CreateAccount and SetTXT returns a serial greater than any
//     returned before, also after the store is reopened, and at least the
//     write time's Unix seconds; Snapshot returns the serial of the last
//     write. A failed write (a conflict) does not change the serial, nor
//     does UpdateKeyHash.
//   - Values with the same time are ordered by value (for determinism only;
//     the suite does not rely on it).
//   - A call whose ctx is already cancelled returns an error wrapping
//     context.Canceled and changes nothing.
//   - Calls made after Close return an error (and do not panic).
//   - Persist records round-trip every field (PersistUntil in whole
//     seconds), come by issuer everywhere, and count against
//     MaxPersistRecords per account even under concurrent sets.
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// Run runs the conformance suite. newDB creates a fresh, empty database and
// returns a function that opens a Store on it; open may be called more than
// once (to test reopening), and the suite closes what it opens.
func Run(t *testing.T, newDB func(t *testing.T) (open func(t *testing.T) storage.Store)) {
	s := suite{newDB: newDB}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"Account/RoundTrip", s.accountRoundTrip},
		{"Account/NotFound", s.accountNotFound},
		{"Account/DuplicateUsername", s.duplicateUsername},
		{"Account/DuplicateSubdomain", s.duplicateSubdomain},
		{"Account/UpdateKeyHash", s.updateKeyHash},
		{"SetTXT/FirstValue", s.setTXTFirstValue},
		{"SetTXT/RefreshMovesToFront", s.setTXTRefresh},
		{"SetTXT/Policy", s.setTXTPolicy},
		{"SetTXT/MatchesModel", s.setTXTModel},
		{"SetTXT/SubdomainsIndependent", s.setTXTIndependent},
		{"SetTXT/UnknownSubdomain", s.setTXTUnknownSubdomain},
		{"Serial/StrictlyIncreases", s.serialIncreases},
		{"Serial/SurvivesReopen", s.serialReopen},
		{"Snapshot/Contents", s.snapshotContents},
		{"Snapshot/Empty", s.snapshotEmpty},
		{"Snapshot/CallbackError", s.snapshotCallbackError},
		{"Persistence/Reopen", s.persistence},
		{"Concurrent/SetTXT", s.concurrentSetTXT},
		{"Concurrent/ConflictDoesNotFailOthers", s.concurrentConflict},
		{"Context/Cancelled", s.contextCancelled},
		{"Context/DeadlineExceeded", s.contextDeadline},
		{"Close/WritesInFlight", s.closeInFlight},
		{"Close/CallsAfterClose", s.callsAfterClose},
		{"Ping", s.ping},
		{"Account/UpdateAllowFrom", s.updateAllowFrom},
		{"Token/RoundTrip", s.tokenRoundTrip},
		{"Token/Revoke", s.tokenRevoke},
		{"Token/RegisterChecks", s.tokenRegisterChecks},
		{"Token/LimitUnderRace", s.tokenLimitUnderRace},
		{"PruneTXT", s.pruneTXT},
		{"Account/Delete", s.deleteAccount},
		{"Account/DeleteUnused", s.deleteUnused},
		{"Accounts/List", s.accountsList},
		{"Accounts/Empty", s.accountsEmpty},
		{"Accounts/CallbackError", s.accountsCallbackError},
		{"Account/SetDisabled", s.setDisabled},
		{"Subdomain", s.subdomain},
		{"Persist/RoundTrip", s.persistRoundTrip},
		{"Persist/Upsert", s.persistUpsert},
		{"Persist/Limit", s.persistLimit},
		{"Persist/LimitUnderRace", s.persistLimitUnderRace},
		{"Persist/Delete", s.persistDelete},
		{"Persist/UnknownSubdomain", s.persistUnknownSubdomain},
		{"Persist/Invalid", s.persistInvalid},
		{"Persist/GoesWithAccount", s.persistGoesWithAccount},
		{"Value/RoundTrip", s.valueRoundTrip},
		{"Value/DeleteAndList", s.valueDeleteAndList},
		{"Value/BadInput", s.valueBadInput},
		{"Lease/Exclusive", s.leaseExclusive},
		{"Lease/Race", s.leaseRace},
		{"OwnTXT", s.ownTXT},
		{"OwnTXT/Prune", s.ownPrune},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.fn)
	}
}

type suite struct {
	newDB func(t *testing.T) func(t *testing.T) storage.Store
}

// base is a whole-microsecond time in a non-UTC zone: engines must keep the
// instant, not the zone or the nanoseconds.
var base = time.Date(2031, time.March, 4, 5, 6, 7, 891_234_000, time.FixedZone("UTC+2", 2*3600))

// store is a Store the suite opened; close closes it once.
type store struct {
	storage.Store
	once sync.Once
	err  error
}

func (s *store) close(t *testing.T) {
	t.Helper()
	s.once.Do(func() { s.err = s.Store.Close() })
	if s.err != nil {
		t.Fatalf("Close: %v", s.err)
	}
}

// fresh opens a store on a new, empty database and returns it with the
// function that opens the same database again.
func (s suite) fresh(t *testing.T) (*store, func(t *testing.T) *store) {
	t.Helper()
	open := s.newDB(t)
	reopen := func(t *testing.T) *store {
		t.Helper()
		st := open(t)
		if st == nil {
			t.Fatal("open returned a nil Store")
		}
		w := &store{Store: st}
		t.Cleanup(func() {
			w.once.Do(func() { w.err = st.Close() })
			if w.err != nil {
				t.Errorf("Close: %v", w.err)
			}
		})
		return w
	}
	return reopen(t), reopen
}

func account(n int) storage.Account {
	return storage.Account{
		Username:  fmt.Sprintf("user-%04d-0000-4000-8000-000000000000", n),
		KeyHash:   fmt.Sprintf("$2a$10$hash-of-key-%04d", n),
		Subdomain: fmt.Sprintf("sub-%04d", n),
		CreatedAt: base.Add(time.Duration(n) * time.Second),
	}
}

func mustCreate(t *testing.T, st storage.Store, a storage.Account) uint32 {
	t.Helper()
	serial, err := st.CreateAccount(context.Background(), a)
	if err != nil {
		t.Fatalf("CreateAccount(%s): %v", a.Username, err)
	}
	return serial
}

func mustSet(t *testing.T, st storage.Store, sub, value string, at time.Time, p storage.TXTPolicy) ([]storage.TXTRecord, uint32) {
	t.Helper()
	recs, serial, err := st.SetTXT(context.Background(), sub, value, at, p)
	if err != nil {
		t.Fatalf("SetTXT(%s, %s): %v", sub, value, err)
	}
	return recs, serial
}

func sameAccount(t *testing.T, got, want storage.Account) {
	t.Helper()
	if got.Username != want.Username || got.KeyHash != want.KeyHash || got.Subdomain != want.Subdomain {
		t.Errorf("account = {%q %q %q}, want {%q %q %q}", got.Username, got.KeyHash, got.Subdomain,
			want.Username, want.KeyHash, want.Subdomain)
	}
	if !slices.Equal(got.AllowFrom, want.AllowFrom) {
		t.Errorf("AllowFrom = %v, want %v", got.AllowFrom, want.AllowFrom)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("CreatedAt = %v, want %v", got.CreatedAt, want.CreatedAt)
	}
}

// sameRecords compares values and times, in order.
func sameRecords(t *testing.T, what string, got, want []storage.TXTRecord) {
	t.Helper()
	eq := len(got) == len(want)
	for i := 0; eq && i < len(got); i++ {
		eq = got[i].Value == want[i].Value && got[i].UpdatedAt.Equal(want[i].UpdatedAt)
	}
	if !eq {
		t.Errorf("%s:\n got %s\nwant %s", what, fmtRecs(got), fmtRecs(want))
	}
}

func fmtRecs(rs []storage.TXTRecord) string {
	s := "["
	for i, r := range rs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s@%s", r.Value, r.UpdatedAt.UTC().Format("15:04:05.000000"))
	}
	return s + "]"
}

// snapshot returns the store's whole state, failing on a subdomain reported
// twice.
func snapshot(t *testing.T, st storage.Store) (map[string][]storage.TXTRecord, uint32) {
	t.Helper()
	m := map[string][]storage.TXTRecord{}
	serial, err := st.Snapshot(context.Background(), func(s storage.Subdomain) error {
		if _, dup := m[s.Name]; dup {
			return fmt.Errorf("subdomain %s reported twice", s.Name)
		}
		m[s.Name] = s.Records
		return nil
	})
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return m, serial
}

func (s suite) accountRoundTrip(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	a := account(1)
	a.AllowFrom = []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("2001:db8:1::/48"),
		netip.MustParsePrefix("198.51.100.7/32"),
		netip.MustParsePrefix("2001:db8::1/128"),
		netip.MustParsePrefix("0.0.0.0/0"),
	}
	b := account(2)
	b.AllowFrom = nil
	for _, acc := range []storage.Account{a, b} {
		if serial := mustCreate(t, st, acc); serial == 0 {
			t.Errorf("CreateAccount(%s) returned serial 0", acc.Username)
		}
	}
	for _, want := range []storage.Account{a, b} {
		got, err := st.Account(ctx, want.Username)
		if err != nil {
			t.Fatalf("Account(%s): %v", want.Username, err)
		}
		sameAccount(t, got, want)
	}
}

func (s suite) accountNotFound(t *testing.T) {
	st, _ := s.fresh(t)
	mustCreate(t, st, account(1))
	_, err := st.Account(context.Background(), "no-such-user")
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Account(unknown) error = %v, want ErrNotFound", err)
	}
}

func (s suite) duplicateUsername(t *testing.T) {
	s.duplicate(t, func(a storage.Account) storage.Account {
		b := account(2)
		b.Username = a.Username
		return b
	})
}

func (s suite) duplicateSubdomain(t *testing.T) {
	s.duplicate(t, func(a storage.Account) storage.Account {
		b := account(2)
		b.Subdomain = a.Subdomain
		return b
	})
}

// duplicate creates an account, then a second that clashes with it, and
// checks that the second is refused with ErrConflict and changes nothing.
func (s suite) duplicate(t *testing.T, clash func(storage.Account) storage.Account) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	a := account(1)
	a.AllowFrom = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	mustCreate(t, st, a)
	_, before := snapshot(t, st)

	b := clash(a)
	if _, err := st.CreateAccount(ctx, b); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("CreateAccount(clash) error = %v, want ErrConflict", err)
	}
	got, err := st.Account(ctx, a.Username)
	if err != nil {
		t.Fatalf("Account(first): %v", err)
	}
	sameAccount(t, got, a)
	if b.Username != a.Username {
		if _, err := st.Account(ctx, b.Username); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Account(refused username) error = %v, want ErrNotFound", err)
		}
	}
	subs, after := snapshot(t, st)
	if len(subs) != 1 {
		t.Errorf("Snapshot has %d subdomains after a refused CreateAccount, want 1", len(subs))
	}
	if after != before {
		t.Errorf("serial changed from %d to %d by a refused CreateAccount", before, after)
	}
	// The store still works after the conflict.
	mustCreate(t, st, account(3))
}

func (s suite) updateKeyHash(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	a := account(1)
	a.AllowFrom = []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}
	mustCreate(t, st, a)
	other := account(2)
	mustCreate(t, st, other)

	old := a.KeyHash
	a.KeyHash = "$argon2id$v=19$m=65536,t=3,p=4$new"
	if err := st.UpdateKeyHash(ctx, a.Username, old, a.KeyHash); err != nil {
		t.Fatalf("UpdateKeyHash: %v", err)
	}
	// Compare-and-swap: a second change from the same old hash loses and
	// changes nothing (two concurrent rotations: exactly one wins).
	if err := st.UpdateKeyHash(ctx, a.Username, old, "$argon2id$v=19$m=65536,t=3,p=4$late"); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("UpdateKeyHash from a stale hash: %v, want ErrConflict", err)
	}
	got, err := st.Account(ctx, a.Username)
	if err != nil {
		t.Fatal(err)
	}
	sameAccount(t, got, a)
	gotOther, err := st.Account(ctx, other.Username)
	if err != nil {
		t.Fatal(err)
	}
	sameAccount(t, gotOther, other)

	if err := st.UpdateKeyHash(ctx, "no-such-user", "x", "y"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("UpdateKeyHash(unknown) error = %v, want ErrNotFound", err)
	}
}

func (s suite) setTXTFirstValue(t *testing.T) {
	st, _ := s.fresh(t)
	a := account(1)
	created := mustCreate(t, st, a)
	at := base.Add(time.Hour)
	recs, serial := mustSet(t, st, a.Subdomain, "first", at, storage.DefaultTXTPolicy)
	sameRecords(t, "SetTXT", recs, []storage.TXTRecord{{Value: "first", UpdatedAt: at}})
	if serial <= created {
		t.Errorf("SetTXT serial %d not above CreateAccount serial %d", serial, created)
	}
	subs, _ := snapshot(t, st)
	sameRecords(t, "Snapshot", subs[a.Subdomain], recs)
}

func (s suite) setTXTRefresh(t *testing.T) {
	st, _ := s.fresh(t)
	a := account(1)
	mustCreate(t, st, a)
	p := storage.DefaultTXTPolicy
	t0 := base.Add(time.Hour)
	mustSet(t, st, a.Subdomain, "a", t0, p)
	mustSet(t, st, a.Subdomain, "b", t0.Add(time.Second), p)
	recs, _ := mustSet(t, st, a.Subdomain, "a", t0.Add(2*time.Second), p)
	want := []storage.TXTRecord{{Value: "a", UpdatedAt: t0.Add(2 * time.Second)}, {Value: "b", UpdatedAt: t0.Add(time.Second)}}
	sameRecords(t, "SetTXT(refresh a)", recs, want)
	subs, _ := snapshot(t, st)
	sameRecords(t, "Snapshot", subs[a.Subdomain], want)
}

// set is one SetTXT of a policy case: value at base+offset.
type set struct {
	value string
	at    time.Duration
}

func (s suite) setTXTPolicy(t *testing.T) {
	def := storage.DefaultTXTPolicy // Always 2, Window 10m, Max 16
	var twenty []set
	for i := range 20 {
		twenty = append(twenty, set{fmt.Sprintf("v%02d", i), time.Duration(i) * time.Second})
	}
	tests := []struct {
		name   string
		policy storage.TXTPolicy
		sets   []set
		want   []string // values after the last set, newest first
	}{
		{
			name:   "two newest kept however old",
			policy: def,
			sets:   []set{{"a", 0}, {"b", time.Second}, {"c", 24 * time.Hour}},
			want:   []string{"c", "b"},
		},
		{
			name:   "within window all kept",
			policy: def,
			sets:   []set{{"a", 0}, {"b", time.Minute}, {"c", 2 * time.Minute}, {"d", 3 * time.Minute}, {"e", 9 * time.Minute}},
			want:   []string{"e", "d", "c", "b", "a"},
		},
		{
			name:   "outside window beyond two newest dropped",
			policy: def,
			sets:   []set{{"a", 0}, {"b", time.Minute}, {"c", 2 * time.Minute}, {"d", 15 * time.Minute}},
			want:   []string{"d", "c"},
		},
		{
			name:   "window boundary is exclusive",
			policy: def,
			sets:   []set{{"a", 0}, {"b", time.Second}, {"c", 2 * time.Second}, {"d", 10 * time.Minute}},
			want:   []string{"d", "c", "b"},
		},
		{
			name:   "max caps values within window",
			policy: def,
			sets:   twenty,
			want:   []string{"v19", "v18", "v17", "v16", "v15", "v14", "v13", "v12", "v11", "v10", "v09", "v08", "v07", "v06", "v05", "v04"},
		},
		{
			name:   "dropped values stay dropped under a wider policy",
			policy: storage.TXTPolicy{Always: 1, Window: 0, Max: 1},
			sets:   []set{{"a", 0}, {"b", time.Second}, {"c", 2 * time.Second}},
			want:   []string{"c", "b"}, // a was deleted by b's narrow policy
		},
		{
			name:   "always one, no window",
			policy: storage.TXTPolicy{Always: 1, Window: 0, Max: 5},
			sets:   []set{{"a", 0}, {"b", time.Second}},
			want:   []string{"b"},
		},
		{
			name:   "always zero, window only",
			policy: storage.TXTPolicy{Always: 0, Window: 5 * time.Second, Max: 10},
			sets:   []set{{"a", 0}, {"b", 3 * time.Second}, {"c", 6 * time.Second}},
			want:   []string{"c", "b"},
		},
		{
			name:   "always above max",
			policy: storage.TXTPolicy{Always: 5, Window: 0, Max: 3},
			sets:   []set{{"a", 0}, {"b", time.Hour}, {"c", 2 * time.Hour}, {"d", 3 * time.Hour}, {"e", 4 * time.Hour}},
			want:   []string{"e", "d", "c"},
		},
		{
			name:   "refresh rescues an old value",
			policy: def,
			sets:   []set{{"a", 0}, {"b", time.Second}, {"c", 2 * time.Second}, {"a", 20 * time.Minute}},
			want:   []string{"a", "c"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := s.fresh(t)
			a := account(1)
			mustCreate(t, st, a)
			var recs []storage.TXTRecord
			for i, x := range tc.sets {
				p := tc.policy
				if tc.name == "dropped values stay dropped under a wider policy" && i == len(tc.sets)-1 {
					p = def // the wider policy must not bring a and b back
				}
				recs, _ = mustSet(t, st, a.Subdomain, x.value, base.Add(x.at), p)
			}
			var got []string
			for _, r := range recs {
				got = append(got, r.Value)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("SetTXT kept %v, want %v", got, tc.want)
			}
			subs, _ := snapshot(t, st)
			sameRecords(t, "Snapshot vs last SetTXT", subs[a.Subdomain], recs)
		})
	}
}

// setTXTModel drives a long sequence of writes (new values, refreshes, time
// jumps) and checks each result against storage.TXTPolicy.Keep applied to
// a model of the stored set.
func (s suite) setTXTModel(t *testing.T) {
	st, _ := s.fresh(t)
	a := account(1)
	mustCreate(t, st, a)
	p := storage.TXTPolicy{Always: 2, Window: 90 * time.Second, Max: 5}
	var model []storage.TXTRecord // newest first
	now := base
	for i := range 120 {
		// Steps of 7-36s with an occasional long gap; values reuse a small
		// alphabet so refreshes are common.
		step := time.Duration(7+(i*13)%30) * time.Second
		if i%17 == 0 {
			step = 10 * time.Minute
		}
		now = now.Add(step)
		value := fmt.Sprintf("val-%d", (i*7)%9)

		model = slices.DeleteFunc(model, func(r storage.TXTRecord) bool { return r.Value == value })
		model = append([]storage.TXTRecord{{Value: value, UpdatedAt: now}}, model...)
		model = slices.Clone(p.Keep(model, now))

		recs, _ := mustSet(t, st, a.Subdomain, value, now, p)
		sameRecords(t, fmt.Sprintf("step %d: SetTXT(%s)", i, value), recs, model)
		if t.Failed() {
			return
		}
	}
	subs, _ := snapshot(t, st)
	sameRecords(t, "Snapshot", subs[a.Subdomain], model)
}

func (s suite) setTXTIndependent(t *testing.T) {
	st, _ := s.fresh(t)
	a, b := account(1), account(2)
	mustCreate(t, st, a)
	mustCreate(t, st, b)
	p := storage.TXTPolicy{Always: 1, Window: 0, Max: 1}
	mustSet(t, st, a.Subdomain, "a1", base, p)
	mustSet(t, st, b.Subdomain, "b1", base.Add(time.Second), p)
	recs, _ := mustSet(t, st, a.Subdomain, "a2", base.Add(2*time.Second), p)
	sameRecords(t, "SetTXT(a)", recs, []storage.TXTRecord{{Value: "a2", UpdatedAt: base.Add(2 * time.Second)}})
	subs, _ := snapshot(t, st)
	sameRecords(t, "Snapshot(b)", subs[b.Subdomain], []storage.TXTRecord{{Value: "b1", UpdatedAt: base.Add(time.Second)}})
}

func (s suite) setTXTUnknownSubdomain(t *testing.T) {
	st, _ := s.fresh(t)
	mustCreate(t, st, account(1))
	_, before := snapshot(t, st)
	_, _, err := st.SetTXT(context.Background(), "no-such-subdomain", "v", base, storage.DefaultTXTPolicy)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SetTXT(unknown subdomain) error = %v, want ErrNotFound", err)
	}
	subs, after := snapshot(t, st)
	if _, ok := subs["no-such-subdomain"]; ok || len(subs) != 1 {
		t.Errorf("Snapshot after refused SetTXT = %v", subs)
	}
	if after != before {
		t.Errorf("serial changed from %d to %d by a refused SetTXT", before, after)
	}
}

func (s suite) serialIncreases(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	var last uint32
	check := func(what string, serial uint32) {
		t.Helper()
		if serial <= last {
			t.Errorf("%s: serial %d, not above the previous %d", what, serial, last)
		}
		last = serial
	}
	a := account(1)
	a.CreatedAt = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC) // far in the past
	check("CreateAccount(old time)", mustCreate(t, st, a))
	_, serial := mustSet(t, st, a.Subdomain, "x", base, storage.DefaultTXTPolicy)
	check("SetTXT", serial)
	if serial < uint32(base.Unix()) {
		t.Errorf("SetTXT at %v returned serial %d, below the time's Unix seconds %d", base, serial, base.Unix())
	}
	_, serial = mustSet(t, st, a.Subdomain, "x", base, storage.DefaultTXTPolicy)
	check("SetTXT(same value, same time)", serial)
	_, serial = mustSet(t, st, a.Subdomain, "y", base.Add(-time.Hour), storage.DefaultTXTPolicy)
	check("SetTXT(earlier time)", serial)
	b := account(2)
	b.CreatedAt = base.Add(-48 * time.Hour)
	check("CreateAccount(earlier time)", mustCreate(t, st, b))
	for i := range 5 {
		_, serial = mustSet(t, st, b.Subdomain, fmt.Sprint(i), base, storage.DefaultTXTPolicy)
		check("SetTXT(burst)", serial)
	}
	later := base.Add(1000 * time.Hour)
	_, serial = mustSet(t, st, b.Subdomain, "later", later, storage.DefaultTXTPolicy)
	check("SetTXT(much later)", serial)

	if err := st.UpdateKeyHash(ctx, a.Username, a.KeyHash, "new"); err != nil {
		t.Fatal(err)
	}
	if _, snap := snapshot(t, st); snap != last {
		t.Errorf("Snapshot serial = %d, want the last write's %d", snap, last)
	}
}

func (s suite) serialReopen(t *testing.T) {
	st, reopen := s.fresh(t)
	a := account(1)
	mustCreate(t, st, a)
	var last uint32
	for i := range 3 {
		_, last = mustSet(t, st, a.Subdomain, fmt.Sprint(i), base, storage.DefaultTXTPolicy)
	}
	st.close(t)

	st2 := reopen(t)
	if _, snap := snapshot(t, st2); snap != last {
		t.Errorf("Snapshot serial after reopen = %d, want %d", snap, last)
	}
	// A write dated before everything stored still gets a larger serial.
	_, serial := mustSet(t, st2, a.Subdomain, "after-reopen", base.Add(-time.Hour), storage.DefaultTXTPolicy)
	if serial <= last {
		t.Errorf("first serial after reopen = %d, not above %d", serial, last)
	}
	b := account(2)
	b.CreatedAt = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if s2 := mustCreate(t, st2, b); s2 <= serial {
		t.Errorf("CreateAccount serial after reopen = %d, not above %d", s2, serial)
	}
}

func (s suite) snapshotContents(t *testing.T) {
	st, _ := s.fresh(t)
	p := storage.DefaultTXTPolicy
	want := map[string][]storage.TXTRecord{}
	for i := 1; i <= 5; i++ {
		a := account(i)
		mustCreate(t, st, a)
		want[a.Subdomain] = nil
	}
	// sub-0001: three values; sub-0003: one; the others none.
	var last uint32
	for i, v := range []string{"old", "mid", "new"} {
		at := base.Add(time.Duration(i) * time.Minute)
		want["sub-0001"] = append([]storage.TXTRecord{{Value: v, UpdatedAt: at}}, want["sub-0001"]...)
		mustSet(t, st, "sub-0001", v, at, p)
	}
	_, last = mustSet(t, st, "sub-0003", "only", base, p)
	want["sub-0003"] = []storage.TXTRecord{{Value: "only", UpdatedAt: base}}

	got, serial := snapshot(t, st)
	if serial != last {
		t.Errorf("Snapshot serial = %d, want %d", serial, last)
	}
	if len(got) != len(want) {
		t.Errorf("Snapshot has %d subdomains, want %d: %v", len(got), len(want), got)
	}
	for sub, recs := range want {
		gotRecs, ok := got[sub]
		if !ok {
			t.Errorf("Snapshot lacks %s", sub)
			continue
		}
		sameRecords(t, "Snapshot "+sub, gotRecs, recs)
	}
}

func (s suite) snapshotEmpty(t *testing.T) {
	st, _ := s.fresh(t)
	n := 0
	if _, err := st.Snapshot(context.Background(), func(storage.Subdomain) error { n++; return nil }); err != nil {
		t.Fatalf("Snapshot of an empty store: %v", err)
	}
	if n != 0 {
		t.Errorf("Snapshot of an empty store called fn %d times", n)
	}
}

func (s suite) snapshotCallbackError(t *testing.T) {
	st, _ := s.fresh(t)
	for i := 1; i <= 3; i++ {
		mustCreate(t, st, account(i))
	}
	stop := errors.New("stop here")
	calls := 0
	_, err := st.Snapshot(context.Background(), func(storage.Subdomain) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		t.Errorf("Snapshot error = %v, want it to wrap fn's error", err)
	}
	if calls != 1 {
		t.Errorf("fn called %d times after returning an error, want 1", calls)
	}
	// The store is still usable (no leaked transaction or connection).
	mustCreate(t, st, account(4))
	if subs, _ := snapshot(t, st); len(subs) != 4 {
		t.Errorf("Snapshot after an aborted one has %d subdomains, want 4", len(subs))
	}
}

func (s suite) persistence(t *testing.T) {
	st, reopen := s.fresh(t)
	a, b := account(1), account(2)
	a.AllowFrom = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:ab::/48")}
	mustCreate(t, st, a)
	mustCreate(t, st, b)
	mustSet(t, st, a.Subdomain, "one", base, storage.DefaultTXTPolicy)
	mustSet(t, st, a.Subdomain, "two", base.Add(time.Second), storage.DefaultTXTPolicy)
	old := a.KeyHash
	a.KeyHash = "rehashed"
	if err := st.UpdateKeyHash(context.Background(), a.Username, old, a.KeyHash); err != nil {
		t.Fatal(err)
	}
	before, serial := snapshot(t, st)
	st.close(t)

	st2 := reopen(t)
	for _, want := range []storage.Account{a, b} {
		got, err := st2.Account(context.Background(), want.Username)
		if err != nil {
			t.Fatalf("Account(%s) after reopen: %v", want.Username, err)
		}
		sameAccount(t, got, want)
	}
	after, serial2 := snapshot(t, st2)
	if serial2 != serial {
		t.Errorf("serial after reopen = %d, want %d", serial2, serial)
	}
	if len(after) != len(before) {
		t.Errorf("Snapshot after reopen has %d subdomains, want %d", len(after), len(before))
	}
	for sub, recs := range before {
		sameRecords(t, "Snapshot after reopen "+sub, after[sub], recs)
	}
}

func (s suite) concurrentSetTXT(t *testing.T) {
	st, _ := s.fresh(t)
	const (
		workers = 32
		writes  = 20
		shared  = 3
	)
	for i := range workers + shared {
		mustCreate(t, st, account(i))
	}
	// Large enough that nothing is dropped: every acknowledged value must be
	// there afterwards.
	p := storage.TXTPolicy{Always: workers * writes, Window: 0, Max: workers * writes}
	type ack struct {
		sub, value string
		serial     uint32
	}
	acks := make(chan ack, workers*writes)
	errs := make(chan error, workers*writes)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range writes {
				// Even writes go to the worker's own subdomain, odd ones to a
				// subdomain shared with other workers.
				sub := account(w).Subdomain
				if i%2 == 1 {
					sub = account(workers + (w+i)%shared).Subdomain
				}
				value := fmt.Sprintf("w%02d-%02d", w, i)
				at := base.Add(time.Duration(i) * time.Millisecond)
				recs, serial, err := st.SetTXT(context.Background(), sub, value, at, p)
				if err != nil {
					errs <- fmt.Errorf("SetTXT(%s, %s): %w", sub, value, err)
					continue
				}
				if !slices.ContainsFunc(recs, func(r storage.TXTRecord) bool { return r.Value == value }) {
					errs <- fmt.Errorf("SetTXT(%s, %s) returned %s without the value", sub, value, fmtRecs(recs))
				}
				acks <- ack{sub, value, serial}
			}
		})
	}
	close(start)
	wg.Wait()
	close(acks)
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	subs, snapSerial := snapshot(t, st)
	seen := map[uint32]string{}
	var maxSerial uint32
	n := 0
	for a := range acks {
		n++
		if prev, dup := seen[a.serial]; dup {
			t.Errorf("serial %d returned to both %s and %s", a.serial, prev, a.value)
		}
		seen[a.serial] = a.value
		maxSerial = max(maxSerial, a.serial)
		if !slices.ContainsFunc(subs[a.sub], func(r storage.TXTRecord) bool { return r.Value == a.value }) {
			t.Errorf("acknowledged %s in %s missing from Snapshot", a.value, a.sub)
		}
	}
	if n != workers*writes {
		t.Errorf("%d of %d writes acknowledged", n, workers*writes)
	}
	if snapSerial != maxSerial {
		t.Errorf("Snapshot serial = %d, want the largest returned, %d", snapSerial, maxSerial)
	}
	total := 0
	for _, recs := range subs {
		total += len(recs)
	}
	if total != workers*writes {
		t.Errorf("Snapshot holds %d values, want %d", total, workers*writes)
	}
}

// concurrentConflict issues many writes at once, one of which clashes, so
// that engines which batch writes (group commit) put it in a batch with
// others. Only the clashing write may fail.
func (s suite) concurrentConflict(t *testing.T) {
	st, _ := s.fresh(t)
	taken := account(0)
	mustCreate(t, st, taken)
	const rounds, perRound = 5, 16
	for r := range rounds {
		start := make(chan struct{})
		errs := make([]error, perRound)
		var wg sync.WaitGroup
		for i := range perRound {
			wg.Go(func() {
				<-start
				a := account(1 + r*perRound + i)
				if i == perRound/2 {
					a.Subdomain = taken.Subdomain
				}
				_, errs[i] = st.CreateAccount(context.Background(), a)
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			a := account(1 + r*perRound + i)
			if i == perRound/2 {
				if !errors.Is(err, storage.ErrConflict) {
					t.Errorf("round %d: clashing CreateAccount error = %v, want ErrConflict", r, err)
				}
				if _, err := st.Account(context.Background(), a.Username); !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("round %d: clashing account was stored (Account error %v)", r, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("round %d: CreateAccount(%s) = %v, want nil", r, a.Username, err)
				continue
			}
			if _, err := st.Account(context.Background(), a.Username); err != nil {
				t.Errorf("round %d: Account(%s) after a nil CreateAccount: %v", r, a.Username, err)
			}
		}
	}
	got, err := st.Account(context.Background(), taken.Username)
	if err != nil {
		t.Fatal(err)
	}
	sameAccount(t, got, taken)
}

func (s suite) contextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.deadContext(t, ctx, context.Canceled)
}

func (s suite) contextDeadline(t *testing.T) {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	s.deadContext(t, ctx, context.DeadlineExceeded)
}

// deadContext calls every method with a ctx that is already done and checks
// that each returns an error wrapping want and changes nothing.
func (s suite) deadContext(t *testing.T, ctx context.Context, want error) {
	st, _ := s.fresh(t)
	a := account(1)
	mustCreate(t, st, a)
	_, before := snapshot(t, st)
	if err := st.PutValue(context.Background(), "v", []byte("kept"), base); err != nil {
		t.Fatal(err)
	}

	b := account(2)
	_, err := st.CreateAccount(ctx, b)
	check := func(method string, err error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("%s error = %v, want it to wrap %v", method, err, want)
		}
	}
	check("CreateAccount", err)
	_, err = st.Account(ctx, a.Username)
	check("Account", err)
	check("UpdateKeyHash", st.UpdateKeyHash(ctx, a.Username, a.KeyHash, "changed"))
	_, _, err = st.SetTXT(ctx, a.Subdomain, "v", base, storage.DefaultTXTPolicy)
	check("SetTXT", err)
	called := false
	_, err = st.Snapshot(ctx, func(storage.Subdomain) error { called = true; return nil })
	check("Snapshot", err)
	if called {
		t.Error("Snapshot called fn with a done ctx")
	}
	check("Ping", st.Ping(ctx))
	_, _, err = st.SetPersist(ctx, a.Subdomain, persistRec("letsencrypt.org", time.Second))
	check("SetPersist", err)
	_, _, err = st.DeletePersist(ctx, a.Subdomain, "letsencrypt.org")
	check("DeletePersist", err)
	_, err = st.PersistRecords(ctx, a.Subdomain)
	check("PersistRecords", err)
	valuesDeadContext(t, st, ctx, check)

	// Nothing changed.
	if _, err := st.Account(context.Background(), b.Username); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CreateAccount with a done ctx stored the account (Account error %v)", err)
	}
	got, err := st.Account(context.Background(), a.Username)
	if err != nil {
		t.Fatal(err)
	}
	sameAccount(t, got, a)
	subs, after := snapshot(t, st)
	if len(subs[a.Subdomain]) != 0 {
		t.Errorf("SetTXT with a done ctx stored %s", fmtRecs(subs[a.Subdomain]))
	}
	if after != before {
		t.Errorf("serial changed from %d to %d by calls with a done ctx", before, after)
	}
	if v, err := st.GetValue(context.Background(), "v"); err != nil || string(v.Data) != "kept" {
		t.Errorf("value after calls with a done ctx: %q, %v; want \"kept\"", v.Data, err)
	}
	if vs, _ := st.ListValues(context.Background(), "v2"); len(vs) != 0 {
		t.Errorf("PutValue with a done ctx stored %v", vs)
	}
	if held, err := st.TryLock(context.Background(), "l", "b", base, time.Minute); err != nil || !held {
		t.Errorf("TryLock with a done ctx took the lease (b cannot: %v, %v)", held, err)
	}
}

// closeInFlight closes the store while writers are busy and checks that
// every write that returned nil is there after reopening.
func (s suite) closeInFlight(t *testing.T) {
	st, reopen := s.fresh(t)
	const workers = 16
	for i := range workers {
		mustCreate(t, st, account(i))
	}
	p := storage.TXTPolicy{Always: 1 << 20, Max: 1 << 20}
	type ack struct{ sub, value string }
	var (
		mu      sync.Mutex
		acked   []ack
		created []storage.Account
	)
	enough := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				var err error
				if i%4 == 3 {
					a := account(1000 + w*10000 + i)
					if _, err = st.CreateAccount(context.Background(), a); err == nil {
						mu.Lock()
						created = append(created, a)
						mu.Unlock()
					}
				} else {
					sub, value := account(w).Subdomain, fmt.Sprintf("w%d-%d", w, i)
					if _, _, err = st.SetTXT(context.Background(), sub, value, base.Add(time.Duration(i)*time.Microsecond), p); err == nil {
						mu.Lock()
						acked = append(acked, ack{sub, value})
						if len(acked) >= 4*workers {
							once.Do(func() { close(enough) })
						}
						mu.Unlock()
					}
				}
				if err != nil {
					return // closed under us: expected
				}
				if i > 100000 {
					t.Error("writes kept succeeding after Close")
					return
				}
			}
		})
	}
	<-enough
	st.close(t)
	wg.Wait()

	st2 := reopen(t)
	subs, _ := snapshot(t, st2)
	for _, a := range acked {
		if !slices.ContainsFunc(subs[a.sub], func(r storage.TXTRecord) bool { return r.Value == a.value }) {
			t.Errorf("acknowledged %s in %s lost by Close", a.value, a.sub)
		}
	}
	for _, a := range created {
		if _, err := st2.Account(context.Background(), a.Username); err != nil {
			t.Errorf("acknowledged account %s lost by Close: %v", a.Username, err)
		}
	}
	t.Logf("%d SetTXT and %d CreateAccount acknowledged before Close", len(acked), len(created))
}

func (s suite) callsAfterClose(t *testing.T) {
	st, _ := s.fresh(t)
	a := account(1)
	mustCreate(t, st, a)
	st.close(t)
	ctx := context.Background()
	if _, err := st.CreateAccount(ctx, account(2)); err == nil {
		t.Error("CreateAccount after Close returned nil")
	}
	if _, _, err := st.SetTXT(ctx, a.Subdomain, "v", base, storage.DefaultTXTPolicy); err == nil {
		t.Error("SetTXT after Close returned nil")
	}
	if err := st.UpdateKeyHash(ctx, a.Username, a.KeyHash, "h"); err == nil {
		t.Error("UpdateKeyHash after Close returned nil")
	}
	if _, err := st.Account(ctx, a.Username); err == nil {
		t.Error("Account after Close returned nil")
	}
	if _, err := st.Snapshot(ctx, func(storage.Subdomain) error { return nil }); err == nil {
		t.Error("Snapshot after Close returned nil")
	}
	if err := st.Ping(ctx); err == nil {
		t.Error("Ping after Close returned nil")
	}
	if _, _, err := st.SetPersist(ctx, a.Subdomain, persistRec("letsencrypt.org", time.Second)); err == nil {
		t.Error("SetPersist after Close returned nil")
	}
	if _, _, err := st.DeletePersist(ctx, a.Subdomain, "letsencrypt.org"); err == nil {
		t.Error("DeletePersist after Close returned nil")
	}
	if _, err := st.PersistRecords(ctx, a.Subdomain); err == nil {
		t.Error("PersistRecords after Close returned nil")
	}
	if err := st.PutValue(ctx, "v", nil, base); err == nil {
		t.Error("PutValue after Close returned nil")
	}
	if _, err := st.GetValue(ctx, "v"); err == nil {
		t.Error("GetValue after Close returned nil")
	}
	if _, err := st.TryLock(ctx, "l", "a", base, time.Minute); err == nil {
		t.Error("TryLock after Close returned nil")
	}
}

func (s suite) ping(t *testing.T) {
	st, _ := s.fresh(t)
	if err := st.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
