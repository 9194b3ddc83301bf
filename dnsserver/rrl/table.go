package rrl

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// category is the kind of response a bucket counts. Each source prefix
// has one bucket per category, so a flood of NXDOMAIN answers cannot use up
// the allowance of the challenge TXT answers a resolver in the same prefix
// needs.
type category uint8

const (
	catNormal   category = iota // answers of at most LargeSize bytes
	catNegative                 // NXDOMAIN, and NODATA (no answer, SOA only)
	catError                    // any other rcode: REFUSED, FORMERR, SERVFAIL, NOTIMP...
	catLarge                    // answers over LargeSize bytes, or truncated (TC) ones
	numCategories
)

var categoryNames = [numCategories]string{"normal", "negative", "error", "large"}

func (c category) String() string { return categoryNames[c] }

// verdict is what happens to one response.
type verdict uint8

const (
	send verdict = iota
	drop
	slip // a tiny truncated answer instead (the client retries over TCP)
)

// bucketKey is a source prefix (the masked address in 16-byte form, with the
// family) and a category.
type bucketKey struct {
	addr [16]byte
	v4   bool
	cat  category
}

// entry is a token bucket in the style of BIND's RRL: the balance gains
// rate per second up to rate (a one-second burst), loses one per response,
// sent or not, and may fall to -window*rate. A source that keeps flooding
// stays below zero and gets nothing but slips; one that stops is answered
// again about window after its last query.
type entry struct {
	key        bucketKey
	balance    float64
	last       int64 // ns since the table's epoch, of the last refill
	slips      uint32
	limited    bool  // the previous response was not sent (for logging episodes)
	prev, next int32 // LRU list, most recent at head; -1 ends
}

// shard is one lock's worth of the table: a map into a fixed array of
// entries kept in LRU order. When full, the least recently used entry is
// reused, so memory never grows past the configured size.
type shard struct {
	mu         sync.Mutex
	index      map[bucketKey]int32
	entries    []entry
	head, tail int32
	evicted    uint64 // entries reused while they may still be limiting
}

const (
	shardBits = 4
	numShards = 1 << shardBits
)

// table holds the buckets of every recently seen source prefix.
type table struct {
	shards [numShards]shard
	window float64 // seconds a flooding source stays limited after it stops
	slip   uint32
}

func newTable(size int, window time.Duration, slip int) *table {
	per := max(size/numShards, 1)
	t := &table{window: window.Seconds(), slip: uint32(slip)}
	for i := range t.shards {
		s := &t.shards[i]
		s.index = make(map[bucketKey]int32, per)
		s.entries = make([]entry, 0, per)
		s.head, s.tail = -1, -1
	}
	return t
}

// shardOf spreads keys over the shards: one multiply of the folded
// prefix (Fibonacci hashing), the top bits picking the shard.
func (t *table) shardOf(k *bucketKey) *shard {
	h := binary.LittleEndian.Uint64(k.addr[:8]) ^ binary.LittleEndian.Uint64(k.addr[8:]) ^ uint64(k.cat)
	return &t.shards[(h*0x9E3779B97F4A7C15)>>(64-shardBits)]
}

// account counts one response for k under a limit of rate per second and
// says what to do with it. started reports that k has just become limited
// (a new episode, worth one log line). now (ns) is read only when needed:
// a bucket with a token to spare spends it without looking at the clock,
// and the refill is worked out the next time it runs dry. Reading the
// clock is the dearest part of an answer that is not limited, so this
// keeps RRL cheap on the hot path; the cost is that a source quiet for a
// while can get up to two bursts before it is limited.
func (t *table) account(k bucketKey, rate float64, now func() int64) (v verdict, started bool) {
	s := t.shardOf(&k)
	s.mu.Lock()
	e := s.get(k, rate, now, t.window)
	if e.balance < 1 {
		if ts := now(); ts > e.last {
			e.balance = min(rate, e.balance+float64(ts-e.last)/1e9*rate)
			e.last = ts
		}
	}
	if e.balance >= 1 {
		e.balance--
		e.limited = false
		s.mu.Unlock()
		return send, false
	}
	e.balance = max(e.balance-1, -t.window*rate)
	started = !e.limited
	e.limited = true
	e.slips++
	v = drop
	if t.slip > 0 && e.slips%t.slip == 0 {
		v = slip
	}
	s.mu.Unlock()
	return v, started
}

// get returns k's entry, moved to the head of the LRU list, creating it
// (full bucket) in a free or the least recently used slot. Reusing a slot
// whose bucket was last refilled within window (+1 s) of now is counted:
// it may still have been limiting its source.
func (s *shard) get(k bucketKey, rate float64, now func() int64, window float64) *entry {
	if i, ok := s.index[k]; ok {
		s.touch(i)
		return &s.entries[i]
	}
	ts := now()
	var i int32
	if len(s.entries) < cap(s.entries) {
		i = int32(len(s.entries))
		s.entries = append(s.entries, entry{})
	} else {
		i = s.tail
		old := &s.entries[i]
		if old.limited || old.last > ts-int64((window+1)*1e9) {
			s.evicted++
		}
		delete(s.index, old.key)
		s.unlink(i)
	}
	s.entries[i] = entry{key: k, balance: rate, last: ts, prev: -1, next: -1}
	s.index[k] = i
	s.pushHead(i)
	return &s.entries[i]
}

func (s *shard) touch(i int32) {
	if s.head == i {
		return
	}
	s.unlink(i)
	s.pushHead(i)
}

func (s *shard) unlink(i int32) {
	e := &s.entries[i]
	if e.prev >= 0 {
		s.entries[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.entries[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (s *shard) pushHead(i int32) {
	e := &s.entries[i]
	e.prev, e.next = -1, s.head
	if s.head >= 0 {
		s.entries[s.head].prev = i
	}
	s.head = i
	if s.tail < 0 {
		s.tail = i
	}
}

// len is the number of entries held (for tests and stats).
func (t *table) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.index)
		s.mu.Unlock()
	}
	return n
}

func (t *table) evictedActive() uint64 {
	var n uint64
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += s.evicted
		s.mu.Unlock()
	}
	return n
}

// prefixKey masks addr to its family's prefix length. IPv4-mapped IPv6
// addresses (a dual-stack socket) count as IPv4.
func prefixKey(addr netip.Addr, bits4, bits6 int, cat category) bucketKey {
	k := bucketKey{addr: addr.As16(), cat: cat}
	bits := bits6
	if addr.Is4() || addr.Is4In6() {
		k.v4 = true
		bits = 96 + bits4
		k.addr[10], k.addr[11] = 0xff, 0xff
	}
	// Clear every bit after the prefix.
	for i := bits / 8; i < 16; i++ {
		if i == bits/8 {
			k.addr[i] &= ^byte(0xff >> (bits % 8))
		} else {
			k.addr[i] = 0
		}
	}
	return k
}
