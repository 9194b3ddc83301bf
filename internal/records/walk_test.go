package records

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/acmebroker/acmebroker/dnsserver"
	"github.com/acmebroker/acmebroker/storage"
)

func walkAll(x *Index) (uint32, map[string][]string) {
	w := x.Walk()
	out := map[string][]string{}
	var chunk []dnsserver.ZoneEntry
	for more := true; more; {
		chunk, more = w.Next(chunk[:0])
		for _, e := range chunk {
			if _, dup := out[e.Name]; dup {
				panic("walked twice: " + e.Name)
			}
			out[e.Name] = e.Values
		}
	}
	return w.Serial(), out
}

func TestWalk(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	x := New(storage.TXTPolicy{Always: 2, Window: 10 * time.Minute, Max: 16}, func() time.Time { return now })
	x.EnableJournal(100)
	const n = 3*walkChunk + 7 // several chunks
	for i := range n {
		name := fmt.Sprintf("%08x-0000-4000-8000-000000000000", i)
		if i%5 == 0 {
			name = fmt.Sprintf("web%d", i)
		}
		x.Set(name, recs(now, 0), uint32(i+1))
	}
	x.Add("empty", n+1)
	x.Set("spilled", recs(now, 0, time.Second, 20*time.Minute), n+2) // c is out of the window
	serial, got := walkAll(x)
	if serial != n+2 || len(got) != n+2 {
		t.Fatalf("walk: serial %d, %d names; want %d, %d", serial, len(got), n+2, n+2)
	}
	if v := got["00000001-0000-4000-8000-000000000000"]; !slices.Equal(v, []string{"a"}) {
		t.Fatalf("uuid entry: %v", v)
	}
	if v := got["web5"]; !slices.Equal(v, []string{"a"}) {
		t.Fatalf("named entry: %v", v)
	}
	if v, ok := got["empty"]; !ok || len(v) != 0 {
		t.Fatalf("registered without values: %v %v", v, ok)
	}
	if v := got["spilled"]; !slices.Equal(v, []string{"a", "b"}) {
		t.Fatalf("aged-out value walked: %v", v)
	}

	// Too many changes while walking: the walk stops with an error
	// rather than send a zone that matches no serial.
	w := x.Walk()
	for i := range 200 {
		x.Set("web0", vals(now, fmt.Sprint(i)), uint32(n+3+i))
	}
	var all []dnsserver.ZoneEntry
	for more := true; more; {
		all, more = w.Next(all)
	}
	if w.Err() == nil {
		t.Fatal("walk outran by the journal did not fail")
	}
}

func TestChangedSignal(t *testing.T) {
	x := New(storage.DefaultTXTPolicy, time.Now)
	x.Set("a", recs(time.Now(), 0), 5)
	select {
	case <-x.Changed():
	default:
		t.Fatal("no signal after the serial moved")
	}
	x.Set("a", recs(time.Now(), 0), 4) // older: serial stays
	select {
	case <-x.Changed():
		t.Fatal("signal without a serial change")
	default:
	}
}

func diffMap(diffs []dnsserver.ZoneDiff) map[string]string {
	m := map[string]string{}
	for _, d := range diffs {
		sort.Strings(d.Add)
		sort.Strings(d.Del)
		m[d.Name] = fmt.Sprint(d.Del, d.Add)
	}
	return m
}

func vals(now time.Time, vs ...string) []storage.TXTRecord {
	out := make([]storage.TXTRecord, len(vs))
	for i, v := range vs {
		out[i] = storage.TXTRecord{Value: v, UpdatedAt: now.Add(-time.Duration(i) * time.Second)}
	}
	return out
}

func TestDiff(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clk := func() time.Time { return now }
	x := New(storage.TXTPolicy{Always: 2, Window: 10 * time.Minute, Max: 16}, clk)
	x.Set("keep", vals(now, "a"), 10)
	x.Set("gone", vals(now, "a"), 11)
	if _, _, ok := x.Diff(11); ok {
		t.Fatal("Diff without a journal")
	}
	x.EnableJournal(100)

	if s, d, ok := x.Diff(11); !ok || s != 11 || len(d) != 0 {
		t.Fatalf("current: %d %v %v", s, d, ok)
	}
	x.Set("keep", vals(now, "new", "a"), 12)
	x.Remove("gone", 13)
	x.Add("fresh", 14)
	x.Set("fresh", vals(now, "f1"), 15)

	s, d, ok := x.Diff(11)
	// Only what differs: "a" stays on the secondary, nothing is deleted
	// that it lacks or added that it has.
	want := map[string]string{"keep": "[] [new]", "gone": "[a] []", "fresh": "[] [f1]"}
	if !ok || s != 15 || fmt.Sprint(diffMap(d)) != fmt.Sprint(want) {
		t.Fatalf("Diff(11) = %d %v %v; want 15 %v", s, diffMap(d), ok, want)
	}
	s, d, ok = x.Diff(13)
	want = map[string]string{"fresh": "[] [f1]"}
	if !ok || s != 15 || fmt.Sprint(diffMap(d)) != fmt.Sprint(want) {
		t.Fatalf("Diff(13) = %d %v %v; want 15 %v", s, diffMap(d), ok, want)
	}
	for _, from := range []uint32{10, 0, 12345, 16} { // before the journal, none, never seen, ahead
		if _, _, ok := x.Diff(from); ok {
			t.Fatalf("Diff(%d) claims to cover it", from)
		}
	}

	// Aging alone does not change what is published (the serial does not
	// move), nor does a prune another node did first (its change comes by
	// notification); a prune that deletes values moves the serial and
	// takes them off the published view, so secondaries drop them.
	x.Set("busy", []storage.TXTRecord{{Value: "v3", UpdatedAt: now}, {Value: "v2", UpdatedAt: now.Add(-time.Minute)}, {Value: "v1", UpdatedAt: now.Add(-2 * time.Minute)}}, 16)
	now = now.Add(time.Hour)
	if v, _ := x.TXT(nil, "busy"); len(v) != 2 {
		t.Fatalf("served after aging: %v", v)
	}
	pruneAll(x, 0, 0)
	if _, zone := walkAll(x); fmt.Sprint(zone["busy"]) != "[v3 v2 v1]" {
		t.Fatalf("published after another node's prune: %v", zone["busy"])
	}
	if _, d, ok := x.Diff(16); !ok || len(d) != 0 {
		t.Fatalf("another node's prune made a diff: %v %v", diffMap(d), ok)
	}
	old := now.Add(-time.Hour)
	x.Set("busy2", []storage.TXTRecord{{Value: "v3", UpdatedAt: old}, {Value: "v2", UpdatedAt: old.Add(-time.Minute)}, {Value: "v1", UpdatedAt: old.Add(-2 * time.Minute)}}, 17)
	pruneAll(x, 1, 18)
	if _, zone := walkAll(x); fmt.Sprint(zone["busy2"]) != "[v3 v2]" || x.Serial() != 18 {
		t.Fatalf("published after the prune: %v at serial %d, want [v3 v2] at 18", zone["busy2"], x.Serial())
	}
	if _, d, ok := x.Diff(17); !ok || fmt.Sprint(diffMap(d)) != fmt.Sprint(map[string]string{"busy2": "[v1] []"}) {
		t.Fatalf("Diff(17) after the prune: %v %v", diffMap(d), ok)
	}
	x.Set("busy2", []storage.TXTRecord{{Value: "v4", UpdatedAt: now}, {Value: "v3", UpdatedAt: old}}, 19)
	_, d, ok = x.Diff(17)
	if !ok || fmt.Sprint(diffMap(d)) != fmt.Sprint(map[string]string{"busy2": "[v1 v2] [v4]"}) {
		t.Fatalf("after prune and change: %v %v", diffMap(d), ok)
	}

	// A forced write with a newer serial (a resync from the database) is
	// a change like any other.
	x.mu.Lock()
	x.put("keep", content{recs: vals(now, "resynced")}, 20, true)
	x.mu.Unlock()
	x.bumpSerial(20)
	if _, d, ok := x.Diff(19); !ok || fmt.Sprint(diffMap(d)) != fmt.Sprint(map[string]string{"keep": "[a new] [resynced]"}) {
		t.Fatalf("after a forced newer write: %v %v", diffMap(d), ok)
	}
}

// TestWalkDuringChanges: a walk returns the zone of its serial even when
// subdomains change, go and come while it runs.
func TestWalkDuringChanges(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	x := New(storage.DefaultTXTPolicy, func() time.Time { return now })
	for i := range 2*walkChunk + 10 {
		x.Set(fmt.Sprintf("n%d", i), vals(now, fmt.Sprint("v", i)), uint32(i+1))
	}
	x.EnableJournal(10000)
	_, want := walkAll(x)
	w := x.Walk()
	first, more := w.Next(nil)
	if !more {
		t.Fatal("one chunk")
	}
	serial := x.Serial()
	for i := range 2*walkChunk + 10 { // every name, walked or not
		x.Set(fmt.Sprintf("n%d", i), vals(now, "changed"), serial+uint32(3*i+1))
		if i%3 == 0 {
			x.Remove(fmt.Sprintf("n%d", i), serial+uint32(3*i+2))
		}
	}
	x.Set("newcomer", vals(now, "x"), serial+100000)
	got := map[string][]string{}
	all := first
	for more {
		all, more = w.Next(all)
	}
	if err := w.Err(); err != nil {
		t.Fatal(err)
	}
	for _, e := range all {
		got[e.Name] = e.Values
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("walk during changes differs from the zone at its serial (%d names vs %d)", len(got), len(want))
	}
}

// pruneAll prunes every subdomain that is due, as the zone writer does
// after the store deleted n values of each with the write serial.
func pruneAll(x *Index, n int, serial uint32) {
	now := x.now()
	for _, sub := range x.Due(now) {
		x.Pruned(sub, now, n, serial)
	}
}

func TestJournalBounded(t *testing.T) {
	x := New(storage.DefaultTXTPolicy, time.Now)
	x.Set("a", recs(time.Now(), 0), 1)
	x.EnableJournal(16)
	for i := uint32(2); i < 100; i++ {
		x.Set("a", vals(time.Now(), fmt.Sprint(i)), i)
	}
	if len(x.zone.j.recs) > 16 {
		t.Fatalf("journal holds %d records, max 16", len(x.zone.j.recs))
	}
	if _, _, ok := x.Diff(1); ok {
		t.Fatal("Diff from a serial whose changes were dropped")
	}
	if _, d, ok := x.Diff(95); !ok || fmt.Sprint(diffMap(d)) != "map[a:[95] [99]]" {
		t.Fatalf("Diff(95): %v %v", diffMap(d), ok)
	}
}

// TestPublishedSurvivesReload: a restarted broker publishes what the
// running one did (values aged out when the newest was set are not
// published), so its IXFR applies to what the secondaries hold.
func TestPublishedSurvivesReload(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	p := storage.TXTPolicy{Always: 2, Window: 10 * time.Minute, Max: 16}
	stored := []storage.TXTRecord{{Value: "v4", UpdatedAt: t0}, {Value: "v3", UpdatedAt: t0.Add(-time.Minute)},
		{Value: "v2", UpdatedAt: t0.Add(-2 * time.Minute)}, {Value: "v1", UpdatedAt: t0.Add(-20 * time.Minute)}}
	live := New(p, func() time.Time { return t0 })
	live.EnableJournal(10)
	live.Set("s", stored, 5)

	later := t0.Add(9 * time.Minute) // v2 has aged out too by now
	reloaded := New(p, func() time.Time { return later })
	reloaded.mu.Lock()
	reloaded.put("s", content{recs: stored}, 0, true) // as Load does
	reloaded.mu.Unlock()
	reloaded.bumpSerial(5)
	reloaded.EnableJournal(10)

	_, a := walkAll(live)
	_, b := walkAll(reloaded)
	if fmt.Sprint(a["s"]) != "[v4 v3 v2]" || fmt.Sprint(b["s"]) != fmt.Sprint(a["s"]) {
		t.Fatalf("published live %v, after reload %v; want both [v4 v3 v2]", a["s"], b["s"])
	}
}

// BenchmarkWalk walks an index of a million accounts (two values each) and
// reports how long the read lock is held at once: the name copy at the
// start and the longest chunk. Writers (and the queries queued behind a
// waiting writer) wait at most that long.
func BenchmarkWalk(b *testing.B) {
	const n = 1_000_000
	now := time.Now()
	x := New(storage.DefaultTXTPolicy, func() time.Time { return now })
	for i := range n {
		name := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		x.Set(name, []storage.TXTRecord{{Value: fmt.Sprintf("%043d", i), UpdatedAt: now}, {Value: fmt.Sprintf("%043d", i+1), UpdatedAt: now.Add(-time.Second)}}, uint32(i+1))
	}
	x.EnableJournal(16384)
	var snap, chunkMax, chunkSum time.Duration
	chunks := 0
	for b.Loop() {
		t0 := time.Now()
		w := x.Walk()
		snap = max(snap, time.Since(t0))
		var buf []dnsserver.ZoneEntry
		total := 0
		for more := true; more; {
			t1 := time.Now()
			buf, more = w.Next(buf[:0])
			d := time.Since(t1)
			chunkMax = max(chunkMax, d)
			chunkSum += d
			chunks++
			total += len(buf)
		}
		if total != n {
			b.Fatalf("walked %d of %d", total, n)
		}
	}
	b.ReportMetric(float64(snap.Microseconds()), "µs-name-copy")
	b.ReportMetric(float64(chunkMax.Microseconds()), "µs-max-chunk")
	b.ReportMetric(float64(chunkSum.Microseconds())/float64(chunks), "µs-mean-chunk")
}

// TestLateChange: two updates applied in the other order than their
// serials. The later-applied one joins the current version (the broker
// holds transfers while writes are in flight, so a secondary at that
// version has it).
func TestLateChange(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	x := New(storage.DefaultTXTPolicy, func() time.Time { return now })
	x.Set("a", vals(now, "a1"), 10)
	x.EnableJournal(100)
	x.Set("b", vals(now, "b1"), 12) // its 200 was first
	x.Set("c", vals(now, "c1"), 11) // committed before b, applied after
	if x.Serial() != 12 {
		t.Fatalf("serial %d", x.Serial())
	}
	x.Set("a", vals(now, "a2"), 13)
	for from, want := range map[uint32]map[string]string{
		10: {"a": "[a1] [a2]", "b": "[] [b1]", "c": "[] [c1]"},
		12: {"a": "[a1] [a2]"},
	} {
		_, d, ok := x.Diff(from)
		if !ok || fmt.Sprint(diffMap(d)) != fmt.Sprint(want) {
			t.Fatalf("Diff(%d) = %v %v; want %v", from, diffMap(d), ok, want)
		}
	}
}

// TestLateChangeAfterTransfer: a late change applied after its version was
// handed out to a secondary (the broker's wait for writes in flight ran
// out) is sent again from that version: never left out.
func TestLateChangeAfterTransfer(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	x := New(storage.DefaultTXTPolicy, func() time.Time { return now })
	x.Set("a", vals(now, "a1"), 10)
	x.EnableJournal(100)
	x.Set("b", vals(now, "b1"), 12)
	if s, _, ok := x.Diff(10); !ok || s != 12 { // a secondary takes 12
		t.Fatalf("Diff(10): %d %v", s, ok)
	}
	x.Set("c", vals(now, "c1"), 11) // applied after 12 was handed out
	x.Set("a", vals(now, "a2"), 13)
	_, d, ok := x.Diff(12)
	want := map[string]string{"a": "[a1] [a2]", "c": "[] [c1]"}
	if !ok || fmt.Sprint(diffMap(d)) != fmt.Sprint(want) {
		t.Fatalf("Diff(12) = %v %v; want %v", diffMap(d), ok, want)
	}
}

// TestOwnNamesTransferred: the broker's own challenge values (own names,
// several labels deep) go out in full and incremental transfers like an
// account's, and their removal too.
func TestOwnNamesTransferred(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	x := New(storage.DefaultTXTPolicy, func() time.Time { return now })
	x.EnableJournal(100)
	x.Set("3f1c1d0e-0000-4000-8000-000000000000", recs(now, 0), 10)
	x.Set("_acme-challenge.api", vals(now, "own-1"), 11)
	x.Set("_acme-challenge", vals(now, "own-2", "own-3"), 12)
	serial, all := walkAll(x)
	if serial != 12 || !slices.Equal(all["_acme-challenge.api"], []string{"own-1"}) || len(all["_acme-challenge"]) != 2 {
		t.Fatalf("walk at %d: %v", serial, all)
	}
	x.Remove("_acme-challenge.api", 13)
	got, diffs, ok := x.Diff(11)
	if !ok || got != 13 {
		t.Fatalf("diff from 11: %d %v", got, ok)
	}
	want := map[string]string{"_acme-challenge.api": "[own-1] []", "_acme-challenge": "[] [own-2 own-3]"}
	if d := diffMap(diffs); fmt.Sprint(d) != fmt.Sprint(want) {
		t.Fatalf("diff from 11 = %v, want %v", d, want)
	}
}
