package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/storage"
)

// Named values and leases (storage/values.go).

func (s suite) valueRoundTrip(t *testing.T) {
	st, reopen := s.fresh(t)
	ctx := context.Background()
	key := bytes.Repeat([]byte{0, 1, 2, 0xff, '\n'}, 1000) // binary, not text
	if err := st.PutValue(ctx, "tls/acme/key", key, base); err != nil {
		t.Fatalf("PutValue: %v", err)
	}
	if err := st.PutValue(ctx, "tls/empty", nil, base); err != nil {
		t.Fatalf("PutValue(empty): %v", err)
	}
	_, serial := snapshot(t, st)
	st.close(t)
	st = reopen(t)
	got, err := st.GetValue(ctx, "tls/acme/key")
	if err != nil {
		t.Fatalf("GetValue after reopen: %v", err)
	}
	if got.Name != "tls/acme/key" || !bytes.Equal(got.Data, key) || !got.Modified.Equal(base) {
		t.Fatalf("GetValue = %q (%d bytes) at %v, want %d bytes at %v", got.Name, len(got.Data), got.Modified, len(key), base)
	}
	empty, err := st.GetValue(ctx, "tls/empty")
	if err != nil || empty.Data == nil || len(empty.Data) != 0 {
		t.Fatalf("GetValue(empty) = %v (nil data: %v), %v; want an empty, non-nil value", empty.Data, empty.Data == nil, err)
	}
	// Replacing keeps one value, with the new data and time.
	later := base.Add(time.Hour)
	if err := st.PutValue(ctx, "tls/acme/key", []byte("new"), later); err != nil {
		t.Fatalf("PutValue (replace): %v", err)
	}
	if got, _ := st.GetValue(ctx, "tls/acme/key"); string(got.Data) != "new" || !got.Modified.Equal(later) {
		t.Fatalf("after replacing: %q at %v", got.Data, got.Modified)
	}
	// Values are not the zone: the serial stays.
	if _, after := snapshot(t, st); after != serial {
		t.Errorf("serial moved from %d to %d with values only", serial, after)
	}
	if _, err := st.GetValue(ctx, "tls/acme"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetValue of a prefix: %v, want ErrNotFound", err)
	}
}

func (s suite) valueDeleteAndList(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	names := []string{"dnssec/zsk", "tls/acme/b", "tls/acme/a", "tls/acme_x", "tls/acme/a/deeper", "tls/acmf", "TLS/acme/upper", "tls/"}
	for i, n := range names {
		if err := st.PutValue(ctx, n, []byte(strings.Repeat("x", i)), base.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatalf("PutValue(%s): %v", n, err)
		}
	}
	list := func(prefix string) []string {
		t.Helper()
		vs, err := st.ListValues(ctx, prefix)
		if err != nil {
			t.Fatalf("ListValues(%q): %v", prefix, err)
		}
		var out []string
		for _, v := range vs {
			i := slices.Index(names, v.Name)
			if i < 0 || v.Size != i || !v.Modified.Equal(base.Add(time.Duration(i)*time.Second)) {
				t.Errorf("ListValues(%q) gave %+v, which was not put", prefix, v)
			}
			out = append(out, v.Name)
		}
		return out
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"tls/acme/", []string{"tls/acme/a", "tls/acme/a/deeper", "tls/acme/b"}},
		{"tls/acme", []string{"tls/acme/a", "tls/acme/a/deeper", "tls/acme/b", "tls/acme_x"}},
		{"", []string{"TLS/acme/upper", "dnssec/zsk", "tls/", "tls/acme/a", "tls/acme/a/deeper", "tls/acme/b", "tls/acme_x", "tls/acmf"}},
		{"tls/acme/a/deeper", []string{"tls/acme/a/deeper"}},
		{"tls/acme/a/deeper/", nil},
		{"%", nil}, // not a pattern
		{"tls/acme%", nil},
		{"nothing", nil},
	} {
		if got := list(tc.prefix); !slices.Equal(got, tc.want) {
			t.Errorf("ListValues(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
	if err := st.DeleteValue(ctx, "tls/acme/a"); err != nil {
		t.Fatalf("DeleteValue: %v", err)
	}
	if _, err := st.GetValue(ctx, "tls/acme/a"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetValue after delete: %v, want ErrNotFound", err)
	}
	if err := st.DeleteValue(ctx, "tls/acme/a"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteValue twice: %v, want ErrNotFound", err)
	}
	if got := list("tls/acme/a"); !slices.Equal(got, []string{"tls/acme/a/deeper"}) {
		t.Errorf("after delete, ListValues = %q: a delete takes one name, not its prefix", got)
	}
}

func (s suite) valueBadInput(t *testing.T) {
	st, _ := s.fresh(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		data []byte
		at   time.Time
	}{
		{"", nil, base},
		{"has space", nil, base},
		{"tab\t", nil, base},
		{"é", nil, base},
		{strings.Repeat("n", storage.MaxValueName+1), nil, base},
		{"big", make([]byte, storage.MaxValueSize+1), base},
		{"notime", nil, time.Time{}},
	} {
		if err := st.PutValue(ctx, tc.name, tc.data, tc.at); err == nil {
			t.Errorf("PutValue(%.20q, %d bytes, %v) = nil, want an error", tc.name, len(tc.data), tc.at)
		}
	}
	if vs, err := st.ListValues(ctx, ""); err != nil || len(vs) != 0 {
		t.Errorf("after refused puts: %v, %v; want nothing stored", vs, err)
	}
	if err := st.PutValue(ctx, strings.Repeat("n", storage.MaxValueName), make([]byte, storage.MaxValueSize), base); err != nil {
		t.Errorf("PutValue at both limits: %v", err)
	}
	for _, tc := range []struct {
		name, owner string
		ttl         time.Duration
	}{
		{"", "a", time.Minute},
		{"x y", "a", time.Minute},
		{"l", "", time.Minute},
		{"l", strings.Repeat("o", storage.MaxValueName+1), time.Minute},
		{"l", "a", 0},
		{"l", "a", -time.Second},
	} {
		if held, err := st.TryLock(ctx, tc.name, tc.owner, base, tc.ttl); err == nil || held {
			t.Errorf("TryLock(%q, %.10q, %s) = %v, %v; want an error", tc.name, tc.owner, tc.ttl, held, err)
		}
	}
}

func (s suite) leaseExclusive(t *testing.T) {
	st, reopen := s.fresh(t)
	ctx := context.Background()
	try := func(owner string, at time.Time, ttl time.Duration) bool {
		t.Helper()
		held, err := st.TryLock(ctx, "renew", owner, at, ttl)
		if err != nil {
			t.Fatalf("TryLock(%s): %v", owner, err)
		}
		return held
	}
	if !try("a", base, time.Minute) {
		t.Fatal("a did not get a free lease")
	}
	if try("b", base.Add(30*time.Second), time.Minute) {
		t.Fatal("b got a lease a holds")
	}
	// a extends its lease: it now runs to base+90s.
	if !try("a", base.Add(30*time.Second), time.Minute) {
		t.Fatal("a could not extend its own lease")
	}
	if try("b", base.Add(89*time.Second), time.Minute) {
		t.Fatal("b got the lease before a's extension ran out")
	}
	// Leases survive a reopen (a restarted node still sees another's).
	st.close(t)
	st = reopen(t)
	if try("b", base.Add(60*time.Second), time.Minute) {
		t.Fatal("b got a's lease after a reopen")
	}
	// Expired: b takes it; a has lost it and cannot extend it any more.
	if !try("b", base.Add(90*time.Second), time.Minute) {
		t.Fatal("b did not get an expired lease")
	}
	if try("a", base.Add(91*time.Second), time.Minute) {
		t.Fatal("a got back a lease b took over")
	}
	// a's unlock of a lease it lost does not free b's.
	if err := st.Unlock(ctx, "renew", "a"); err != nil {
		t.Fatalf("Unlock by a former holder: %v", err)
	}
	if try("c", base.Add(92*time.Second), time.Minute) {
		t.Fatal("c got the lease b holds after a stale unlock by a")
	}
	if err := st.Unlock(ctx, "renew", "b"); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if !try("c", base.Add(93*time.Second), time.Minute) {
		t.Fatal("c did not get the lease b released")
	}
	// Names are independent.
	if held, err := st.TryLock(ctx, "other", "a", base.Add(93*time.Second), time.Minute); err != nil || !held {
		t.Fatalf("TryLock of another name: %v, %v", held, err)
	}
	if err := st.Unlock(ctx, "never-taken", "a"); err != nil {
		t.Fatalf("Unlock of a lease never taken: %v", err)
	}
}

// leaseRace: of many owners racing for a free lease exactly one wins, and
// so again once the lease has expired.
func (s suite) leaseRace(t *testing.T) {
	st, _ := s.fresh(t)
	const n = 16
	for round, at := range []time.Time{base, base.Add(2 * time.Minute)} {
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []string
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				owner := fmt.Sprintf("node-%d-%d", round, i)
				held, err := st.TryLock(context.Background(), "renew", owner, at, time.Minute)
				if err != nil {
					t.Errorf("TryLock(%s): %v", owner, err)
					return
				}
				if held {
					mu.Lock()
					winners = append(winners, owner)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d owners got the lease (%v), want exactly 1", round, len(winners), winners)
		}
	}
}

// valuesDeadContext: the value and lease methods honour a done ctx.
func valuesDeadContext(t *testing.T, st storage.Store, ctx context.Context, check func(string, error)) {
	t.Helper()
	_, err := st.GetValue(ctx, "v")
	check("GetValue", err)
	check("PutValue", st.PutValue(ctx, "v2", []byte("x"), base))
	check("DeleteValue", st.DeleteValue(ctx, "v"))
	_, err = st.ListValues(ctx, "")
	check("ListValues", err)
	_, err = st.TryLock(ctx, "l", "a", base, time.Minute)
	check("TryLock", err)
	check("Unlock", st.Unlock(ctx, "l", "a"))
}
