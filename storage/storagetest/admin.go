package storagetest

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// listAccounts collects what Accounts reports, failing on an error.
func listAccounts(t *testing.T, st storage.Store) []storage.AccountInfo {
	t.Helper()
	var out []storage.AccountInfo
	if err := st.Accounts(context.Background(), func(ai storage.AccountInfo) error {
		out = append(out, ai)
		return nil
	}); err != nil {
		t.Fatalf("Accounts: %v", err)
	}
	return out
}

// accountsList: every account once, in subdomain order, with its fields,
// the number of its values, the time of the newest (also after an older
// value was refreshed, and after the policy dropped some) and its disabled
// flag; a deleted account is gone from the list.
func (s suite) accountsList(t *testing.T) {
	st, reopen := s.fresh(t)
	ctx := context.Background()
	// Created in an order that is not the subdomain order.
	a, b, c, d := account(3), account(1), account(2), account(4)
	a.AllowFrom = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	for _, acc := range []storage.Account{a, b, c, d} {
		mustCreate(t, st, acc)
	}
	p := storage.DefaultTXTPolicy
	// a: three values, the oldest refreshed last, so the newest time
	// belongs to the value set first.
	mustSet(t, st, a.Subdomain, "a1", base.Add(time.Minute), p)
	mustSet(t, st, a.Subdomain, "a2", base.Add(2*time.Minute), p)
	mustSet(t, st, a.Subdomain, "a3", base.Add(3*time.Minute), p)
	mustSet(t, st, a.Subdomain, "a1", base.Add(4*time.Minute), p)
	// c: the policy keeps 2 of 3 (the window has passed for the oldest).
	mustSet(t, st, c.Subdomain, "c1", base.Add(time.Hour), p)
	mustSet(t, st, c.Subdomain, "c2", base.Add(2*time.Hour), p)
	mustSet(t, st, c.Subdomain, "c3", base.Add(3*time.Hour), p)
	if err := st.SetDisabled(ctx, c.Username, true); err != nil {
		t.Fatalf("SetDisabled: %v", err)
	}
	if _, err := st.DeleteAccount(ctx, d.Username); err != nil {
		t.Fatalf("DeleteAccount: %v", err)
	}

	check := func(got []storage.AccountInfo) {
		t.Helper()
		want := []struct {
			acct     storage.Account
			values   int
			last     time.Time
			disabled bool
		}{
			{b, 0, time.Time{}, false},
			{c, 2, base.Add(3 * time.Hour), true},
			{a, 3, base.Add(4 * time.Minute), false},
		}
		if len(got) != len(want) {
			names := make([]string, len(got))
			for i, ai := range got {
				names[i] = ai.Subdomain
			}
			t.Fatalf("Accounts listed %v, want %s %s %s", names, b.Subdomain, c.Subdomain, a.Subdomain)
		}
		for i, w := range want {
			g := got[i]
			sameAccount(t, g.Account, w.acct)
			if g.Values != w.values {
				t.Errorf("%s: Values = %d, want %d", g.Subdomain, g.Values, w.values)
			}
			if !g.LastUpdate.Equal(w.last) || g.LastUpdate.IsZero() != w.last.IsZero() {
				t.Errorf("%s: LastUpdate = %v, want %v", g.Subdomain, g.LastUpdate, w.last)
			}
			if g.Disabled != w.disabled {
				t.Errorf("%s: Disabled = %v, want %v", g.Subdomain, g.Disabled, w.disabled)
			}
		}
	}
	check(listAccounts(t, st))
	// One account by its subdomain: the same as its row in the list.
	for _, ai := range listAccounts(t, st) {
		got, err := st.AccountBySubdomain(ctx, ai.Subdomain)
		if err != nil || !reflect.DeepEqual(got, ai) {
			t.Fatalf("AccountBySubdomain(%s) = %+v, %v; Accounts lists %+v", ai.Subdomain, got, err, ai)
		}
	}
	if _, err := st.AccountBySubdomain(ctx, d.Subdomain); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("AccountBySubdomain of a deleted account: %v, want ErrNotFound", err)
	}
	st.close(t)
	check(listAccounts(t, reopen(t)))
}

func (s suite) accountsEmpty(t *testing.T) {
	st, _ := s.fresh(t)
	if got := listAccounts(t, st); len(got) != 0 {
		t.Fatalf("Accounts of an empty store: %v", got)
	}
}

// accountsCallbackError: an error from fn stops the walk and is returned
// (wrapped), and the store stays usable.
func (s suite) accountsCallbackError(t *testing.T) {
	st, _ := s.fresh(t)
	for i := 1; i <= 3; i++ {
		mustCreate(t, st, account(i))
	}
	stop := errors.New("stop here")
	calls := 0
	err := st.Accounts(context.Background(), func(storage.AccountInfo) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Accounts with a failing callback: err %v after %d calls, want the callback's error after 1", err, calls)
	}
	mustCreate(t, st, account(4))
	if got := listAccounts(t, st); len(got) != 4 {
		t.Fatalf("after a stopped walk: %d accounts, want 4", len(got))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := st.Accounts(ctx, func(storage.AccountInfo) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Accounts with a cancelled ctx: %v, want context.Canceled", err)
	}
}

// setDisabled: the flag reads back through Account and Accounts, survives
// reopening, can be cleared, does not move the serial or touch the values,
// and an unknown account is ErrNotFound.
func (s suite) setDisabled(t *testing.T) {
	st, reopen := s.fresh(t)
	ctx := context.Background()
	a, b := account(1), account(2)
	mustCreate(t, st, a)
	mustCreate(t, st, b)
	mustSet(t, st, a.Subdomain, "va", base, storage.DefaultTXTPolicy)
	before := snapshotSerial(t, st)
	if got, err := st.Account(ctx, a.Username); err != nil || got.Disabled {
		t.Fatalf("new account: Disabled %v, err %v", got.Disabled, err)
	}
	if err := st.SetDisabled(ctx, a.Username, true); err != nil {
		t.Fatalf("SetDisabled(true): %v", err)
	}
	if err := st.SetDisabled(ctx, a.Username, true); err != nil {
		t.Fatalf("SetDisabled(true) twice: %v", err)
	}
	st.close(t)
	st = reopen(t)
	if got, err := st.Account(ctx, a.Username); err != nil || !got.Disabled {
		t.Fatalf("after disabling and reopening: Disabled %v, err %v", got.Disabled, err)
	}
	if got, _ := st.Account(ctx, b.Username); got.Disabled {
		t.Fatal("disabling one account disabled another")
	}
	snap, serial := snapshot(t, st)
	if serial != before {
		t.Errorf("serial %d after SetDisabled, was %d", serial, before)
	}
	if len(snap[a.Subdomain]) != 1 {
		t.Errorf("a disabled account's values: %v, want them kept", snap[a.Subdomain])
	}
	if err := st.SetDisabled(ctx, a.Username, false); err != nil {
		t.Fatalf("SetDisabled(false): %v", err)
	}
	if got, _ := st.Account(ctx, a.Username); got.Disabled {
		t.Fatal("still disabled after enabling")
	}
	if err := st.SetDisabled(ctx, account(9).Username, true); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SetDisabled of an unknown account: %v, want ErrNotFound", err)
	}
}

// subdomain: one subdomain's values, newest first, with the serial of the
// same state; a subdomain without values has none; unknown or deleted is
// ErrNotFound.
func (s suite) subdomain(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	a, b := account(1), account(2)
	mustCreate(t, st, a)
	mustCreate(t, st, b)
	p := storage.DefaultTXTPolicy
	mustSet(t, st, a.Subdomain, "v1", base, p)
	mustSet(t, st, a.Subdomain, "v2", base.Add(time.Second), p)
	_, last := mustSet(t, st, b.Subdomain, "other", base.Add(2*time.Second), p)

	got, serial, err := st.Subdomain(ctx, a.Subdomain)
	if err != nil {
		t.Fatalf("Subdomain: %v", err)
	}
	if got.Name != a.Subdomain {
		t.Errorf("Name = %q, want %q", got.Name, a.Subdomain)
	}
	sameRecords(t, "Subdomain records", got.Records, []storage.TXTRecord{
		{Value: "v2", UpdatedAt: base.Add(time.Second)}, {Value: "v1", UpdatedAt: base},
	})
	if serial != last {
		t.Errorf("serial %d, want %d (the last write's)", serial, last)
	}

	c := account(3)
	mustCreate(t, st, c)
	got, _, err = st.Subdomain(ctx, c.Subdomain)
	if err != nil || len(got.Records) != 0 || got.Name != c.Subdomain {
		t.Fatalf("Subdomain without values: %+v, %v", got, err)
	}
	if _, _, err := st.Subdomain(ctx, "no-such-sub"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Subdomain(unknown): %v, want ErrNotFound", err)
	}
	del, err := st.DeleteAccount(ctx, a.Username)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Subdomain(ctx, a.Subdomain); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Subdomain of a deleted account: %v, want ErrNotFound", err)
	}
	if _, serial, err := st.Subdomain(ctx, b.Subdomain); err != nil || serial != del {
		t.Fatalf("serial after a delete: %d (%v), want %d", serial, err, del)
	}
}

// deleteUnused: an account is deleted only if its last use (newest value,
// or creation without values) is at or before the cutoff, checked with the
// delete; otherwise ErrInUse and it stays whole. Unknown: ErrNotFound.
func (s suite) deleteUnused(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	p := storage.DefaultTXTPolicy
	a, b := account(1), account(2) // created at base+1s, base+2s
	mustCreate(t, st, a)
	mustCreate(t, st, b)
	_, before := mustSet(t, st, a.Subdomain, "a1", base.Add(time.Hour), p)

	if _, err := st.DeleteUnusedAccount(ctx, a.Username, base.Add(time.Hour-time.Microsecond)); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("DeleteUnusedAccount of an account used after the cutoff: %v, want ErrInUse", err)
	}
	if got, _, err := st.Subdomain(ctx, a.Subdomain); err != nil || len(got.Records) != 1 {
		t.Fatalf("an account kept as in use lost something: %+v %v", got, err)
	}
	if _, err := st.DeleteUnusedAccount(ctx, b.Username, base.Add(time.Second)); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("DeleteUnusedAccount of an account without values created after the cutoff: %v, want ErrInUse", err)
	}
	serial, err := st.DeleteUnusedAccount(ctx, a.Username, base.Add(time.Hour))
	if err != nil {
		t.Fatalf("DeleteUnusedAccount with the cutoff at its last use: %v", err)
	}
	if !serialAfter(serial, before) {
		t.Errorf("serial %d after the delete, want past %d", serial, before)
	}
	if _, err := st.Account(ctx, a.Username); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("account after DeleteUnusedAccount: %v, want ErrNotFound", err)
	}
	if _, err := st.DeleteUnusedAccount(ctx, b.Username, base.Add(2*time.Second)); err != nil {
		t.Fatalf("DeleteUnusedAccount without values, cutoff at creation: %v", err)
	}
	if _, err := st.DeleteUnusedAccount(ctx, "no-such-user", base.Add(time.Hour)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteUnusedAccount(unknown): %v, want ErrNotFound", err)
	}
}
