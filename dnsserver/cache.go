package dnsserver

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
)

// answerCache holds packed answers by the bytes of the query that produced
// them (everything but the ID). It is laid out like a ring buffer per
// shard: entries are appended to a fixed byte array and found through a
// map from a 64-bit hash to their position; when the ring comes round,
// the oldest entries are overwritten. Memory is bounded by the ring sizes,
// nothing in it holds a pointer (the garbage collector has nothing to
// trace however many entries there are), and eviction costs nothing.
//
// An entry is: its length (4 bytes), the length of the key (2), of the
// meta data (2), of the answer (2); then the key, the meta data and the
// answer. What the meta data means is the fast path's business.
type answerCache struct {
	seed   maphash.Seed
	shards []cacheShard
	mask   uint64
}

type cacheShard struct {
	mu    sync.Mutex
	index map[uint64]uint64 // key hash → absolute position in the ring
	ring  []byte
	pos   uint64 // absolute write position: ring[pos%len(ring)]
	laps  uint64 // pos / len(ring) at the last clean-up
	_     [64]byte
}

const (
	cacheShards     = 32
	entryHeaderSize = 10
	// minShardBytes keeps the smallest cache useful: an entry may take up
	// to a quarter of its shard.
	minShardBytes = 16 << 10
)

// newAnswerCache returns a cache of about size bytes in all.
func newAnswerCache(size int) *answerCache {
	per := max(size/cacheShards, minShardBytes)
	c := &answerCache{seed: maphash.MakeSeed(), shards: make([]cacheShard, cacheShards), mask: cacheShards - 1}
	// Pages of the rings are touched only as they fill: an idle server's
	// resident memory does not grow by the cache's size.
	rings := newRings(c, cacheShards, per) // arena_unix.go
	for i := range c.shards {
		c.shards[i].index = make(map[uint64]uint64)
		c.shards[i].ring = rings[i]

	}
	return c
}

func (c *answerCache) hash(key []byte) uint64 { return maphash.Bytes(c.seed, key) }

func (c *answerCache) shard(h uint64) *cacheShard { return &c.shards[h>>58&c.mask] }

// get copies the meta data and answer of the entry for key (hash h) into
// meta and ans, and returns their lengths; ok is false if there is none
// (or the buffers are too small).
func (c *answerCache) get(h uint64, key, meta, ans []byte) (nm, na int, ok bool) {
	s := c.shard(h)
	s.mu.Lock()
	p, found := s.index[h]
	if !found {
		s.mu.Unlock()
		return 0, 0, false
	}
	size := uint64(len(s.ring))
	if p+size < s.pos { // overwritten since
		delete(s.index, h)
		s.mu.Unlock()
		return 0, 0, false
	}
	e := s.ring[p%size:]
	kl := int(binary.LittleEndian.Uint16(e[4:]))
	ml := int(binary.LittleEndian.Uint16(e[6:]))
	al := int(binary.LittleEndian.Uint16(e[8:]))
	e = e[entryHeaderSize:]
	if kl != len(key) || string(e[:kl]) != string(key) || ml > len(meta) || al > len(ans) {
		s.mu.Unlock()
		return 0, 0, false
	}
	copy(meta, e[kl:kl+ml])
	copy(ans, e[kl+ml:kl+ml+al])
	s.mu.Unlock()
	return ml, al, true
}

// put stores an entry for key (hash h), replacing any there was. An entry
// too large for its shard is not stored.
func (c *answerCache) put(h uint64, key, meta, ans []byte) {
	n := entryHeaderSize + len(key) + len(meta) + len(ans)
	s := c.shard(h)
	size := uint64(len(s.ring))
	if n > len(s.ring)/4 || len(key) > 0xffff || len(meta) > 0xffff || len(ans) > 0xffff {
		return
	}
	s.mu.Lock()
	off := s.pos % size
	if off+uint64(n) > size { // does not fit before the end: start again at 0
		s.pos += size - off
		off = 0
	}
	e := s.ring[off : off+uint64(n)]
	binary.LittleEndian.PutUint32(e, uint32(n))
	binary.LittleEndian.PutUint16(e[4:], uint16(len(key)))
	binary.LittleEndian.PutUint16(e[6:], uint16(len(meta)))
	binary.LittleEndian.PutUint16(e[8:], uint16(len(ans)))
	copy(e[entryHeaderSize:], key)
	copy(e[entryHeaderSize+len(key):], meta)
	copy(e[entryHeaderSize+len(key)+len(meta):], ans)
	s.index[h] = s.pos
	s.pos += uint64(n)
	// Once per lap of the ring, forget the entries overwritten in it, so
	// the map holds no more than the ring does.
	if lap := s.pos / size; lap != s.laps {
		s.laps = lap
		for k, p := range s.index {
			if p+size < s.pos {
				delete(s.index, k)
			}
		}
	}
	s.mu.Unlock()
}
