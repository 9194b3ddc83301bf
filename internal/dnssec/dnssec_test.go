package dnssec

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/acmebroker/acmebroker/internal/pgtest"
	"github.com/acmebroker/acmebroker/storage"
	"github.com/acmebroker/acmebroker/storage/postgres"
	"github.com/acmebroker/acmebroker/storage/sqlite"
)

const testZone = "auth.example.test."

// clock is a settable clock for signers, stores and rollovers.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func sqliteStore(t *testing.T) storage.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "keys.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func testSealer(t *testing.T, hexKey string) *Sealer {
	t.Helper()
	s, err := ParseKeyFile([]byte(hexKey + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const (
	keyFileA = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	keyFileB = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
)

// privateTexts are forms of a key's private half that must never be
// seen in logs, errors or the sealed database value.
func privateTexts(t *testing.T, ks *Keyset) []string {
	t.Helper()
	var out []string
	for _, k := range ks.Keys {
		der, err := k.privateDER()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, base64.StdEncoding.EncodeToString(der), fmt.Sprintf("%x", der[len(der)-32:]))
	}
	return out
}

func TestKeysetRoundTrip(t *testing.T) {
	for _, alg := range []uint8{ECDSAP256SHA256, ED25519} {
		for _, split := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s split=%v", AlgorithmName(alg), split), func(t *testing.T) {
				ks, err := NewKeyset(testZone, alg, split, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				if want := map[bool]int{false: 1, true: 2}[split]; len(ks.Keys) != want {
					t.Fatalf("%d keys, want %d", len(ks.Keys), want)
				}
				for _, sealer := range []*Sealer{nil, testSealer(t, keyFileA)} {
					b, err := ks.Marshal(sealer)
					if err != nil {
						t.Fatal(err)
					}
					back, plain, err := ParseKeyset(b, testZone, sealer)
					if err != nil {
						t.Fatal(err)
					}
					if plain != (sealer == nil) {
						t.Fatalf("plain = %v with sealer %v", plain, sealer != nil)
					}
					for i, k := range back.Keys {
						if k.ID != ks.Keys[i].ID || k.Tag() != ks.Keys[i].Tag() || k.Role != ks.Keys[i].Role || k.DS != ks.Keys[i].DS {
							t.Fatalf("key %d: %v, stored %v", i, k, ks.Keys[i])
						}
						// The private key still signs for the public one.
						rr, _ := dns.NewRR(testZone + " 60 IN TXT \"x\"")
						sig := &dns.RRSIG{Algorithm: k.Algorithm(), SignerName: testZone, KeyTag: k.Tag(), Inception: 1, Expiration: 2}
						if err := sig.Sign(k.priv, []dns.RR{rr}); err != nil {
							t.Fatal(err)
						}
						if err := sig.Verify(ks.Keys[i].DNSKEY(60), []dns.RR{rr}); err != nil {
							t.Fatalf("reloaded key %s does not sign for its DNSKEY: %v", k, err)
						}
					}
					if sealer != nil {
						for _, p := range privateTexts(t, ks) {
							if bytes.Contains(b, []byte(p)) {
								t.Fatal("the sealed value holds the private key in the clear")
							}
						}
					}
				}
			})
		}
	}
}

// TestSealedKeysNeedTheirKeyFile: keys encrypted at rest do not load
// without the key file, nor with another; the errors say what to do and
// quote nothing secret.
func TestSealedKeysNeedTheirKeyFile(t *testing.T) {
	ks, _ := NewKeyset(testZone, ECDSAP256SHA256, false, time.Now())
	b, err := ks.Marshal(testSealer(t, keyFileA))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ParseKeyset(b, testZone, nil); err == nil || !strings.Contains(err.Error(), "set dns.dnssec.key_file") {
		t.Fatalf("without the key file: %v", err)
	}
	_, _, err = ParseKeyset(b, testZone, testSealer(t, keyFileB))
	if err == nil || !strings.Contains(err.Error(), "does not decrypt") {
		t.Fatalf("with another key file: %v", err)
	}
	if strings.Contains(err.Error(), keyFileB) || strings.Contains(err.Error(), keyFileA) {
		t.Fatal("the error quotes a key file")
	}
	// Another zone's keys are refused.
	if _, _, err := ParseKeyset(b, "other.example.", testSealer(t, keyFileA)); err == nil || !strings.Contains(err.Error(), "for zone") {
		t.Fatalf("keys of another zone: %v", err)
	}
}

func TestParseKeyFile(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		ok         bool
	}{
		{"hex", keyFileA, true},
		{"hex with newline", keyFileA + "\n", true},
		{"base64", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)), true},
		{"short hex", keyFileA[:62], false},
		{"16 bytes base64", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16)), false},
		{"empty", "", false},
		{"not hex", strings.Repeat("zz", 32), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKeyFile([]byte(tc.text))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if err != nil && (!strings.Contains(err.Error(), "openssl rand -hex 32") || (tc.text != "" && strings.Contains(err.Error(), tc.text))) {
				t.Fatalf("error %q: want the hint, and not the content", err)
			}
		})
	}
}

// TestPrivateKeyNeverLogged: generating, sealing, loading and rolling
// keys with every log level on never writes a private key; printing a
// key any way fmt or slog can shows only its public facts.
func TestPrivateKeyNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st := sqliteStore(t)
	store, err := NewStore(st, StoreConfig{Zone: testZone, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := store.LoadOrCreate(t.Context(), Generation{Algorithm: ECDSAP256SHA256})
	if err != nil {
		t.Fatal(err)
	}
	// A key file configured later: the keys are sealed on the next start.
	sealed, _ := NewStore(st, StoreConfig{Zone: testZone, Logger: logger, Sealer: testSealer(t, keyFileA)})
	if _, err := sealed.LoadOrCreate(t.Context(), Generation{Algorithm: ECDSAP256SHA256}); err != nil {
		t.Fatal(err)
	}
	v, _ := st.GetValue(t.Context(), sealed.valueName())
	if _, plain, err := ParseKeyset(v.Data, testZone, testSealer(t, keyFileA)); err != nil || plain {
		t.Fatalf("after a start with a key file: plain %v, %v", plain, err)
	}
	signer, _ := NewSigner(SignerConfig{Zone: testZone, Logger: logger}, ks)
	node := NewNode(sealed, signer, ks, NodeConfig{Logger: logger})
	if _, err := sealed.Update(t.Context(), func(cur *Keyset) (*Keyset, error) {
		_, err := cur.StartRollover(CSK, ECDSAP256SHA256, Timing{}, time.Now())
		return cur, err
	}); err != nil {
		t.Fatal(err)
	}
	node.Tick(t.Context())
	node.Tick(t.Context())
	all, _, _ := sealed.Load(t.Context())
	k := *all.Keys[0]
	logger.Info("keys", "key", all.Keys[0], "value", k, "keys", all.Keys)
	printed := fmt.Sprintf("%v %+v %#v %s %v %+v", k, k, k, all.Keys[0], all.Keys, all)
	if logs.Len() == 0 {
		t.Fatal("nothing was logged: the test proves nothing")
	}
	for _, p := range append(privateTexts(t, ks), privateTexts(t, all)...) {
		if strings.Contains(logs.String(), p) || strings.Contains(printed, p) {
			t.Fatalf("a private key was logged or printed:\n%s\n%s", logs.String(), printed)
		}
	}
}

// openStores gives n key stores (as n nodes would have) on one database:
// SQLite, and PostgreSQL when the test database is configured.
func sharedDatabases(t *testing.T) map[string]func(t *testing.T) storage.Store {
	return map[string]func(t *testing.T) storage.Store{
		"sqlite": sqliteStore,
		"postgres": func(t *testing.T) storage.Store {
			dsn := pgtest.Schema(t)
			st, err := postgres.Open(t.Context(), dsn, postgres.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
	}
}

// TestKeysGeneratedOnceForAllNodes: nodes starting at once on one
// database all end up with the same keys, made by exactly one of them.
func TestKeysGeneratedOnceForAllNodes(t *testing.T) {
	for name, open := range sharedDatabases(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			const nodes = 8
			var logs syncBuffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			ids := make([]string, nodes)
			var wg sync.WaitGroup
			errs := make(chan error, nodes)
			for i := range nodes {
				wg.Go(func() {
					store, err := NewStore(st, StoreConfig{Zone: testZone, Logger: logger})
					if err != nil {
						errs <- err
						return
					}
					ks, err := store.LoadOrCreate(context.Background(), Generation{Algorithm: ED25519, Split: true})
					if err != nil {
						errs <- err
						return
					}
					ids[i] = ks.Keys[0].ID + ks.Keys[1].ID
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			for i := range ids {
				if ids[i] != ids[0] {
					t.Fatalf("node %d has keys %s, node 0 %s", i, ids[i], ids[0])
				}
			}
			if n := strings.Count(logs.String(), "dnssec key generated"); n != 2 {
				t.Fatalf("%d keys generated, want 2 (one KSK, one ZSK, once)\n%s", n, logs.String())
			}
		})
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func txtSet(owner, val string, ttl uint32) []dns.RR {
	return []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl}, Txt: []string{val}}}
}

// TestSignatureTimes: inception back-dated by InceptionSkew, expiry
// after the validity; the cached signature is served until half the
// validity has passed, then made anew.
func TestSignatureTimes(t *testing.T) {
	clk := newClock()
	ks, _ := NewKeyset(testZone, ECDSAP256SHA256, false, clk.Now())
	s, err := NewSigner(SignerConfig{Zone: testZone, Validity: 96 * time.Hour, Now: clk.Now}, ks)
	if err != nil {
		t.Fatal(err)
	}
	set := txtSet("x."+testZone, "v", 60)
	sigs, err := s.Sign(nil, set)
	if err != nil || len(sigs) != 1 {
		t.Fatal(sigs, err)
	}
	sig := sigs[0].(*dns.RRSIG)
	if got, want := int64(sig.Inception), clk.Now().Add(-InceptionSkew).Unix(); got != want {
		t.Fatalf("inception %d, want %d", got, want)
	}
	if got, want := int64(sig.Expiration), clk.Now().Add(96*time.Hour).Unix(); got != want {
		t.Fatalf("expiration %d, want %d", got, want)
	}
	clk.Add(47 * time.Hour)
	again, _ := s.Sign(nil, set)
	if again[0] != sigs[0] || s.Stats().Signatures != 1 {
		t.Fatal("re-signed before half the validity passed")
	}
	clk.Add(2 * time.Hour)
	fresh, _ := s.Sign(nil, set)
	if fresh[0] == sigs[0] || s.Stats().Signatures != 2 {
		t.Fatal("not re-signed after half the validity")
	}
	if fs := fresh[0].(*dns.RRSIG); int64(fs.Expiration) != clk.Now().Add(96*time.Hour).Unix() {
		t.Fatalf("fresh expiration %d", fs.Expiration)
	}
}

// TestSignatureCacheBounded: a flood of distinct names keeps the cache
// within its size.
func TestSignatureCacheBounded(t *testing.T) {
	ks, _ := NewKeyset(testZone, ED25519, false, time.Now())
	s, _ := NewSigner(SignerConfig{Zone: testZone, CacheSize: 256}, ks)
	for i := range 2000 {
		if _, err := s.Sign(nil, txtSet(fmt.Sprintf("n%d.%s", i, testZone), "v", 60)); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.cache.len(); n > 256 {
		t.Fatalf("%d RRsets cached, bound 256", n)
	}
}

// signerTags are the key tags the signer signs data and the DNSKEY set
// with, and those it publishes in DNSKEY and CDS.
func signerTags(t *testing.T, s *Signer) (data, keyset, published, cds string) {
	t.Helper()
	tags := func(rrs []dns.RR) string {
		var out []string
		for _, rr := range rrs {
			switch r := rr.(type) {
			case *dns.RRSIG:
				out = append(out, fmt.Sprint(r.KeyTag))
			case *dns.DNSKEY:
				out = append(out, fmt.Sprint(r.KeyTag()))
			case *dns.CDS:
				out = append(out, fmt.Sprint(r.KeyTag))
			}
		}
		return strings.Join(out, ",")
	}
	d, err := s.Sign(nil, txtSet("t."+testZone, fmt.Sprint(time.Now().UnixNano()), 60))
	if err != nil {
		t.Fatal(err)
	}
	dnskey, cdsSet, _ := s.Keys()
	k, err := s.Sign(nil, dnskey)
	if err != nil {
		t.Fatal(err)
	}
	return tags(d), tags(k), tags(dnskey), tags(cdsSet)
}

// TestRolloverSteps walks each kind of rollover on a settable clock:
// each step comes exactly when its wait, computed from the timing, has
// passed (not a second before), the key set is valid at every step, and
// the signer signs and publishes what the step says.
func TestRolloverSteps(t *testing.T) {
	timing := Timing{DNSKEYTTL: time.Hour, MaxTTL: 2 * time.Hour, ParentDSTTL: 24 * time.Hour, Propagation: 2 * time.Minute, Safety: 10 * time.Minute}
	type state struct{ data, keyset, published, cds string }
	for _, tc := range []struct {
		role  Role
		split bool
		// waits before steps 2 and 3
		wait1, wait2 time.Duration
		// what the signer does at steps 1, 2 and 3 (O: old key, N: new, K: the other key of a split set)
		states [3]state
	}{
		{CSK, false, 2*time.Hour + 12*time.Minute, 24*time.Hour + 12*time.Minute, [3]state{
			{"O,N", "O,N", "O,N", "O"}, {"O,N", "O,N", "O,N", "N"}, {"N", "N", "N", "N"}}},
		{KSK, true, time.Hour + 12*time.Minute, 24*time.Hour + 12*time.Minute, [3]state{
			{"K", "O,N", "O,K,N", "O"}, {"K", "O,N", "O,K,N", "N"}, {"K", "N", "K,N", "N"}}},
		{ZSK, true, time.Hour + 12*time.Minute, 2*time.Hour + 12*time.Minute, [3]state{
			{"O", "K", "K,O,N", "K"}, {"N", "K", "K,O,N", "K"}, {"N", "K", "K,N", "K"}}},
	} {
		t.Run(string(tc.role), func(t *testing.T) {
			clk := newClock()
			ks, _ := NewKeyset(testZone, ECDSAP256SHA256, tc.split, clk.Now())
			s, _ := NewSigner(SignerConfig{Zone: testZone, Now: clk.Now}, ks)
			names := map[string]string{}
			for _, k := range ks.Keys {
				if k.Role == tc.role {
					names[fmt.Sprint(k.Tag())] = "O"
				} else {
					names[fmt.Sprint(k.Tag())] = "K"
				}
			}
			r, err := ks.StartRollover(tc.role, ECDSAP256SHA256, timing, clk.Now())
			if err != nil {
				t.Fatal(err)
			}
			names[fmt.Sprint(ks.Key(r.New).Tag())] = "N"
			if _, err := ks.StartRollover(tc.role, ECDSAP256SHA256, timing, clk.Now()); err != ErrRolloverInProgress {
				t.Fatalf("second rollover: %v", err)
			}
			check := func(step int) {
				t.Helper()
				b, err := ks.Marshal(nil)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				back, _, err := ParseKeyset(b, testZone, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.SetKeys(back); err != nil {
					t.Fatal(err)
				}
				d, k, p, c := signerTags(t, s)
				rename := func(tags string) string {
					var out []string
					for _, x := range strings.Split(tags, ",") {
						out = append(out, names[x])
					}
					return strings.Join(out, ",")
				}
				got := state{rename(d), rename(k), rename(p), rename(c)}
				if got != tc.states[step-1] {
					t.Fatalf("step %d: data signed by %s, DNSKEY set by %s, published %s, CDS %s; want %+v", step, got.data, got.keyset, got.published, got.cds, tc.states[step-1])
				}
			}
			check(1)
			clk.Add(tc.wait1 - time.Second)
			if ks.Advance(clk.Now()) {
				t.Fatal("step 2 came early")
			}
			clk.Add(time.Second)
			if !ks.Advance(clk.Now()) {
				t.Fatal("step 2 did not come")
			}
			check(2)
			if tc.role != ZSK {
				clk.Add(48 * time.Hour)
				if ks.Advance(clk.Now()) || !ks.Rollover.WaitingForDS {
					t.Fatal("the old key went before the parent's DS changed")
				}
				if err := ks.ConfirmDS(clk.Now()); err != nil {
					t.Fatal(err)
				}
			}
			clk.Add(tc.wait2 - time.Second)
			if ks.Advance(clk.Now()) {
				t.Fatal("step 3 came early")
			}
			clk.Add(time.Second)
			if !ks.Advance(clk.Now()) || ks.Rollover != nil || ks.Last == nil || ks.Last.Step != stepDone {
				t.Fatal("step 3 did not finish the rollover")
			}
			check(3)
		})
	}
}

func TestRolloverRefusals(t *testing.T) {
	ks, _ := NewKeyset(testZone, ECDSAP256SHA256, false, time.Now())
	if _, err := ks.StartRollover(ZSK, ECDSAP256SHA256, Timing{}, time.Now()); err == nil || !strings.Contains(err.Error(), "roll the csk") {
		t.Fatalf("zsk rollover of a csk zone: %v", err)
	}
	if _, err := ks.StartRollover(CSK, ED25519, Timing{}, time.Now()); err == nil || !strings.Contains(err.Error(), "algorithm rollover") {
		t.Fatalf("algorithm change: %v", err)
	}
	if err := ks.ConfirmDS(time.Now()); err == nil {
		t.Fatal("ConfirmDS with no rollover")
	}
}
