package storagetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

func (s suite) updateAllowFrom(t *testing.T) {
	st, reopen := s.fresh(t)
	ctx := context.Background()
	a := account(1)
	a.AllowFrom = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	mustCreate(t, st, a)
	want := []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("2001:db8::/32")}
	if err := st.UpdateAllowFrom(ctx, a.Username, want); err != nil {
		t.Fatalf("UpdateAllowFrom: %v", err)
	}
	st.close(t)
	got, err := reopen(t).Account(ctx, a.Username)
	if err != nil {
		t.Fatal(err)
	}
	a.AllowFrom = want
	sameAccount(t, got, a)
	st2 := reopen(t)
	if err := st2.UpdateAllowFrom(ctx, a.Username, nil); err != nil {
		t.Fatalf("UpdateAllowFrom(nil): %v", err)
	}
	if got, _ := st2.Account(ctx, a.Username); len(got.AllowFrom) != 0 {
		t.Fatalf("allowfrom after clearing: %v", got.AllowFrom)
	}
	if err := st2.UpdateAllowFrom(ctx, account(2).Username, want); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("UpdateAllowFrom of an unknown account: %v, want ErrNotFound", err)
	}
}

func token(n int) storage.Token {
	return storage.Token{
		ID:        fmt.Sprintf("tok%04d", n),
		Hash:      fmt.Sprintf("$b2$salt$hash-%04d", n),
		CreatedAt: base.Add(time.Duration(n) * time.Second),
	}
}

func sameToken(t *testing.T, got, want storage.Token) {
	t.Helper()
	if got.ID != want.ID || got.Hash != want.Hash || got.Comment != want.Comment || got.MaxAccounts != want.MaxAccounts ||
		got.Accounts != want.Accounts || !got.ExpiresAt.Equal(want.ExpiresAt) || !got.CreatedAt.Equal(want.CreatedAt) ||
		!got.RevokedAt.Equal(want.RevokedAt) || fmt.Sprint(got.AllowFrom) != fmt.Sprint(want.AllowFrom) ||
		got.ExpiresAt.IsZero() != want.ExpiresAt.IsZero() || got.RevokedAt.IsZero() != want.RevokedAt.IsZero() {
		t.Fatalf("token:\n got  %+v\n want %+v", got, want)
	}
}

func (s suite) tokenRoundTrip(t *testing.T) {
	st, reopen := s.fresh(t)
	ctx := context.Background()
	a, b := token(1), token(2)
	b.Comment = "build farm"
	b.MaxAccounts = 10
	b.ExpiresAt = base.Add(24 * time.Hour)
	b.AllowFrom = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tk := range []storage.Token{b, a} {
		if err := st.CreateToken(ctx, tk); err != nil {
			t.Fatalf("CreateToken(%s): %v", tk.ID, err)
		}
	}
	if err := st.CreateToken(ctx, a); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("CreateToken with a taken ID: %v, want ErrConflict", err)
	}
	if _, err := st.Token(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Token(nope): %v, want ErrNotFound", err)
	}
	st.close(t)
	st = reopen(t)
	got, err := st.Token(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameToken(t, got, b)
	list, err := st.Tokens(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("Tokens: %v %v", list, err)
	}
	sameToken(t, list[0], a) // oldest first
	sameToken(t, list[1], b)
}

func (s suite) tokenRevoke(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	tk := token(1)
	if err := st.CreateToken(ctx, tk); err != nil {
		t.Fatal(err)
	}
	at := base.Add(time.Hour)
	if err := st.RevokeToken(ctx, tk.ID, at); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if err := st.RevokeToken(ctx, tk.ID, at.Add(time.Hour)); err != nil {
		t.Fatalf("RevokeToken twice: %v", err)
	}
	got, err := st.Token(ctx, tk.ID)
	if err != nil || !got.RevokedAt.Equal(at) {
		t.Fatalf("after revoking: %+v %v (want revoked at the first revocation, %s)", got, err, at)
	}
	if err := st.RevokeToken(ctx, "nope", at); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("RevokeToken(nope): %v, want ErrNotFound", err)
	}
}

func (s suite) tokenRegisterChecks(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	limited, expiring, revoked := token(1), token(2), token(3)
	limited.MaxAccounts = 2
	expiring.ExpiresAt = base.Add(time.Hour)
	for _, tk := range []storage.Token{limited, expiring, revoked} {
		if err := st.CreateToken(ctx, tk); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.RevokeToken(ctx, revoked.ID, base); err != nil {
		t.Fatal(err)
	}
	n := 0
	next := func(at time.Time) storage.Account {
		n++
		a := account(n)
		a.CreatedAt = at
		return a
	}
	for i := 0; i < 2; i++ {
		if _, err := st.CreateAccountWithToken(ctx, next(base), limited.ID); err != nil {
			t.Fatalf("registration %d with the limited token: %v", i+1, err)
		}
	}
	a := next(base)
	if _, err := st.CreateAccountWithToken(ctx, a, limited.ID); !errors.Is(err, storage.ErrTokenInvalid) {
		t.Fatalf("third registration with a token for 2: %v, want ErrTokenInvalid", err)
	}
	if _, err := st.Account(ctx, a.Username); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a refused registration left an account: %v", err)
	}
	if got, _ := st.Token(ctx, limited.ID); got.Accounts != 2 || got.Usable(base) != "used up" {
		t.Fatalf("limited token after 2 registrations: %+v (%q)", got, got.Usable(base))
	}
	if _, err := st.CreateAccountWithToken(ctx, next(base.Add(59*time.Minute)), expiring.ID); err != nil {
		t.Fatalf("registration before expiry: %v", err)
	}
	if _, err := st.CreateAccountWithToken(ctx, next(base.Add(time.Hour)), expiring.ID); !errors.Is(err, storage.ErrTokenInvalid) {
		t.Fatalf("registration at expiry: %v, want ErrTokenInvalid", err)
	}
	if _, err := st.CreateAccountWithToken(ctx, next(base), revoked.ID); !errors.Is(err, storage.ErrTokenInvalid) {
		t.Fatalf("registration with a revoked token: %v, want ErrTokenInvalid", err)
	}
	if _, err := st.CreateAccountWithToken(ctx, next(base), "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("registration with an unknown token: %v, want ErrNotFound", err)
	}
	// A clash on the subdomain does not use up the token.
	clash := next(base)
	clash.Subdomain = account(1).Subdomain
	before, _ := st.Token(ctx, expiring.ID)
	if _, err := st.CreateAccountWithToken(ctx, clash, expiring.ID); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("registration on a taken subdomain: %v, want ErrConflict", err)
	}
	if after, _ := st.Token(ctx, expiring.ID); after.Accounts != before.Accounts {
		t.Fatalf("a failed registration counted against the token: %d -> %d", before.Accounts, after.Accounts)
	}
}

func (s suite) tokenLimitUnderRace(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	tk := token(1)
	tk.MaxAccounts = 5
	if err := st.CreateToken(ctx, tk); err != nil {
		t.Fatal(err)
	}
	const callers = 40
	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = st.CreateAccountWithToken(ctx, account(100+i), tk.ID)
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, storage.ErrTokenInvalid):
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	got, _ := st.Token(ctx, tk.ID)
	if ok != 5 || got.Accounts != 5 {
		t.Fatalf("%d registrations succeeded, token counts %d; want exactly 5", ok, got.Accounts)
	}
}

func (s suite) pruneTXT(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	a := account(1)
	mustCreate(t, st, a)
	p := storage.TXTPolicy{Always: 2, Window: 10 * time.Minute, Max: 16}
	for i := range 5 {
		mustSet(t, st, a.Subdomain, fmt.Sprintf("value-%d", i), base.Add(time.Duration(i)*time.Minute), p)
	}
	serialBefore := snapshotSerial(t, st)
	// Within the window: nothing to prune.
	if n, serial, err := st.PruneTXT(ctx, a.Subdomain, base.Add(9*time.Minute), p); err != nil || n != 0 || serial != 0 {
		t.Fatalf("prune within the window: %d, serial %d, %v; want nothing", n, serial, err)
	}
	if s := snapshotSerial(t, st); s != serialBefore {
		t.Fatalf("a prune that deleted nothing moved the serial %d -> %d", serialBefore, s)
	}
	// 12 minutes after the first value: values 0..2 are older than the
	// window, but the 2 newest (3, 4) always stay.
	n, pruned, err := st.PruneTXT(ctx, a.Subdomain, base.Add(12*time.Minute+30*time.Second), p)
	if err != nil || n != 3 {
		t.Fatalf("prune: deleted %d (%v), want 3", n, err)
	}
	got, serial := snapshot(t, st)
	sameRecords(t, "after pruning", got[a.Subdomain], []storage.TXTRecord{
		{Value: "value-4", UpdatedAt: base.Add(4 * time.Minute)},
		{Value: "value-3", UpdatedAt: base.Add(3 * time.Minute)},
	})
	// Secondaries hold the pruned values (they came with the last
	// update): the serial moves so that they drop them.
	if !serialAfter(pruned, serialBefore) || serial != pruned {
		t.Fatalf("serial %d before the prune, %d returned by it, %d after; want it moved and returned", serialBefore, pruned, serial)
	}
	if n, serial, err := st.PruneTXT(ctx, "no-such-sub", base, p); err != nil || n != 0 || serial != 0 {
		t.Fatalf("prune of an unknown subdomain: %d, serial %d, %v", n, serial, err)
	}
}

func snapshotSerial(t *testing.T, st storage.Store) uint32 {
	t.Helper()
	_, serial := snapshot(t, st)
	return serial
}

func (s suite) deleteAccount(t *testing.T) {
	st, reopen := s.fresh(t)
	ctx := context.Background()
	a, b := account(1), account(2)
	mustCreate(t, st, a)
	mustCreate(t, st, b)
	mustSet(t, st, a.Subdomain, "va", base, storage.DefaultTXTPolicy)
	_, before := mustSet(t, st, b.Subdomain, "vb", base, storage.DefaultTXTPolicy)
	serial, err := st.DeleteAccount(ctx, a.Username)
	if err != nil {
		t.Fatalf("DeleteAccount: %v", err)
	}
	if !serialAfter(serial, before) {
		t.Fatalf("serial %d after deleting, was %d", serial, before)
	}
	if _, err := st.DeleteAccount(ctx, a.Username); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	st.close(t)
	st = reopen(t)
	if _, err := st.Account(ctx, a.Username); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted account still there: %v", err)
	}
	got, _ := snapshot(t, st)
	if _, ok := got[a.Subdomain]; ok || len(got[b.Subdomain]) != 1 {
		t.Fatalf("snapshot after delete: %v", got)
	}
	// The subdomain is free again, without old values.
	a.Username = account(3).Username
	mustCreate(t, st, a)
	if got, _ := snapshot(t, st); len(got[a.Subdomain]) != 0 {
		t.Fatalf("a re-registered subdomain serves old values: %v", got[a.Subdomain])
	}
}

func serialAfter(a, b uint32) bool { return a != b && int32(a-b) > 0 }
