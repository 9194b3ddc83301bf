package dnssec

import (
	"hash/maphash"
	"sync"

	"github.com/miekg/dns"
)

// sigCache keeps the signatures of recently answered RRsets, keyed by
// the RRset's name, class, type and TTL. One entry per RRset: a changed
// RRset replaces its entry. When a shard is full an arbitrary entry makes
// room (a flood of random names evicts signatures that are cheap to make
// again, and memory stays bounded).
type sigCache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

const cacheShards = 64

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]*sigEntry
}

// sigEntry is immutable once stored.
type sigEntry struct {
	gen     uint64   // of the key set that made sigs
	fp      []byte   // fingerprint of the RRset signed
	sigs    []dns.RR // *dns.RRSIG, shared by every answer
	refresh int64    // Unix seconds: re-sign from then on
}

func newSigCache(size int) *sigCache {
	c := &sigCache{seed: maphash.MakeSeed(), perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*sigEntry)
	}
	return c
}

func (c *sigCache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

func (c *sigCache) get(key []byte) *sigEntry {
	sh := c.shard(key)
	sh.mu.RLock()
	e := sh.m[string(key)]
	sh.mu.RUnlock()
	return e
}

func (c *sigCache) put(key []byte, e *sigEntry) {
	sh := c.shard(key)
	sh.mu.Lock()
	if _, ok := sh.m[string(key)]; !ok && len(sh.m) >= c.perShard {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
	sh.m[string(key)] = e
	sh.mu.Unlock()
}

// len is the number of RRsets cached.
func (c *sigCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
