package registry

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// The decision cache.
//
// Variant: 2Q. Names seen once live in a "recent" queue of a quarter of the
// capacity; a second access promotes a name to the "frequent" queue, and a
// name evicted from recent is remembered for a while in a "ghost" list so a
// quick return also promotes it. A flood of random one-hit names (a scan of
// random subdomains of an unfiled domain, every SNI a fresh name) therefore
// only churns the recent queue: the hot set of filed hosts that clients hit
// over and over stays in the frequent queue. A plain LRU would be flushed by
// the first capacity-sized flood. ARC adapts its split and would also resist
// a flood, but it keeps four lists and re-balances on every miss; 2Q with
// fixed ratios is cheaper per miss and its behaviour under a flood is easy
// to state: at least three quarters of the capacity stays for names seen
// twice.
//
// The ghost list is a direct-mapped table of key hashes rather than a
// third LRU of strings: membership is one memory access with no string
// compare and no allocation, and forgetting a ghost early (two names
// sharing a slot) only costs one promotion.
//
// Why not lru.TwoQueueCache directly: invalidation must be precise (drop
// exactly the cached hosts whose registrable domain changed), which needs a
// domain -> cached hosts index kept in step with every eviction, and
// TwoQueueCache reports no evictions and hides its lock. So each shard is
// the same 2Q algorithm built from golang-lru's simplelru queues, with the
// index maintained at the two places where entries leave (eviction and
// removal), all under the shard's own mutex. The same mutex makes "insert
// only if the snapshot it was computed from is still current" atomic with
// respect to Swap's invalidation pass, so a decision computed against an
// old snapshot can never be cached after that snapshot's invalidation.
//
// Index vs. per-entry generation check: checking a per-domain generation on
// every hit would add a map lookup (a hash of the domain) to the hot path;
// the index costs two pointers per entry and one map entry per cached
// domain, and Swap walks only the cached domains (at most the cache size)
// rather than the whole registry, so a swap of a 10M-record registry costs
// the same as a swap of a 1k one. Measured (BenchmarkSwapFullCache, 100k
// cached hosts, loaded 2-core machine): about 0.5 µs per cached domain, so
// ~50 ms of CPU per swap, with the shard mutexes held only in short chunks
// (see invalidate).
//
// Sharding: the cache is split into power-of-two shards by a hash of the
// host, so parallel lookups on different cores rarely share a mutex.

// entry is one cached decision. key, hash and validUntil are written before
// the entry is published and never again; d is read and written (Swap
// re-points its Record and Override) only under the shard mutex; list,
// prev and next link the entries of one domain, also under the mutex.
type entry struct {
	key        string
	d          Decision // Input is empty: every caller gets its own
	validUntil int64    // UnixNano after which d is stale; 0: never
	hash       uint64   // maphash of key (shard and ghost slot)
	list       *domainList
	prev, next *entry
}

// domainList heads the cached entries of one registrable domain; entries
// point at it so unlinking one needs no map operation.
type domainList struct {
	domain string
	head   *entry
}

type shard struct {
	mu         sync.Mutex // guards everything below except the counters
	recent     *simplelru.LRU[string, *entry]
	frequent   *simplelru.LRU[string, *entry]
	ghost      []uint64 // hashes of names recently evicted from recent
	size       int
	recentSize int
	byDomain   map[string]*domainList
	adds       uint64 // entries added, to skip re-checking a key that get just missed

	hits, misses, evictions, invalidations atomic.Uint64
	_                                      [64]byte // keep shards' hot words on separate cache lines
}

type cache struct {
	seed   maphash.Seed
	mask   uint64
	shards []shard
}

const (
	recentRatio = 0.25 // share of a shard for names seen once
	ghostRatio  = 0.50 // share of a shard remembered after eviction from recent
	maxShards   = 16
	minPerShard = 256
)

func newCache(size int) *cache {
	n := 1
	for n < maxShards && size/(n*2) >= minPerShard {
		n *= 2
	}
	per := (size + n - 1) / n
	c := &cache{seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]shard, n)}
	for i := range c.shards {
		s := &c.shards[i]
		s.size = per
		s.recentSize = max(1, int(float64(per)*recentRatio))
		// The queues never evict on their own: ensureSpace makes room first.
		s.recent, _ = simplelru.NewLRU[string, *entry](per+1, nil)
		s.frequent, _ = simplelru.NewLRU[string, *entry](per+1, nil)
		g := 1
		for g < int(float64(per)*ghostRatio)*2 {
			g *= 2
		}
		s.ghost = make([]uint64, g)
		s.byDomain = make(map[string]*domainList)
	}
	return c
}

// shard returns key's shard and hash.
func (c *cache) shard(key string) (*shard, uint64) {
	h := maphash.String(c.seed, key)
	return &c.shards[h&c.mask], h
}

// get copies the cached decision of key into d, promoting the entry per
// 2Q, and returns its expiry (UnixNano, 0: never), whether it was found,
// and the shard's add count for a following add. The copy is made under
// the mutex because Swap re-points the Record and Override of entries it
// keeps.
func (s *shard) get(key string, d *Decision) (validUntil int64, found bool, adds uint64) {
	s.mu.Lock()
	e, ok := s.frequent.Get(key)
	if !ok {
		if e, ok = s.recent.Peek(key); ok {
			s.recent.Remove(key)
			s.frequent.Add(key, e)
		}
	}
	if ok {
		*d = e.d
		validUntil = e.validUntil
	}
	adds = s.adds
	s.mu.Unlock()
	return validUntil, ok, adds
}

// add inserts e (whose key hashes to h) unless the snapshot it was
// computed from (snap) is no longer current. When get missed the key
// (missed) and the shard's add count is still the adds get returned,
// nothing can have inserted the key since, and the two lookups that handle
// a concurrent insert are skipped: an absent-key probe is the costly kind
// in a map churned like a FIFO.
func (s *shard) add(e *entry, h uint64, missed bool, adds uint64, cur *atomic.Pointer[Snapshot], snap *Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur.Load() != snap {
		return
	}
	key := e.key
	absent := missed && adds == s.adds
	s.adds++
	if !absent {
		if old, ok := s.frequent.Peek(key); ok {
			s.unlink(old)
			s.frequent.Add(key, e)
			s.link(e)
			return
		}
		if old, ok := s.recent.Peek(key); ok {
			s.unlink(old)
			s.recent.Remove(key)
			s.frequent.Add(key, e)
			s.link(e)
			return
		}
	}
	if g := &s.ghost[(h>>16)&uint64(len(s.ghost)-1)]; *g == h|1 {
		s.ensureSpace(true)
		*g = 0
		s.frequent.Add(key, e)
	} else {
		s.ensureSpace(false)
		s.recent.Add(key, e)
	}
	s.link(e)
}

// ensureSpace evicts one entry when the shard is full: from recent while it
// is over its share, else from frequent (golang-lru's 2Q rule).
func (s *shard) ensureSpace(fromGhost bool) {
	rl, fl := s.recent.Len(), s.frequent.Len()
	if rl+fl < s.size {
		return
	}
	if rl > 0 && (rl > s.recentSize || (rl == s.recentSize && !fromGhost)) {
		_, e, _ := s.recent.RemoveOldest()
		s.ghost[(e.hash>>16)&uint64(len(s.ghost)-1)] = e.hash | 1
		s.unlink(e)
	} else {
		_, e, ok := s.frequent.RemoveOldest()
		if !ok {
			return
		}
		s.unlink(e)
	}
	s.evictions.Add(1)
}

func (s *shard) link(e *entry) {
	l := s.byDomain[e.d.Domain]
	if l == nil {
		l = &domainList{domain: e.d.Domain}
		s.byDomain[e.d.Domain] = l
	}
	e.list, e.prev, e.next = l, nil, l.head
	if l.head != nil {
		l.head.prev = e
	}
	l.head = e
}

func (s *shard) unlink(e *entry) {
	l := e.list
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	}
	if l.head == nil {
		delete(s.byDomain, l.domain)
	}
	e.list, e.prev, e.next = nil, nil, nil
}

// invalidate drops every entry whose domain decides differently in new than
// in old. Entries without a domain (IP literals, invalid names) depend on
// neither and stay. The entries it keeps are re-pointed at new's equal
// record and overrides, so a cached decision never keeps an old snapshot's
// record array (the size of the registry) alive.
//
// The comparison runs without the shard mutex and the changes are applied
// in chunks, so lookups never wait for more than a chunk (tens of µs)
// however large the cache. That is safe because new is already serving:
// an entry added meanwhile was computed from new (add checks), so whether
// it is dropped (its domain changed) or re-pointed (a no-op) it is right.
func (s *shard) invalidate(old, new *Snapshot) int {
	s.mu.Lock()
	doms := make([]string, 0, len(s.byDomain))
	for dom := range s.byDomain {
		if dom != "" {
			doms = append(doms, dom)
		}
	}
	s.mu.Unlock()

	type verdict struct {
		dom  string
		keep bool
		rec  *Record
	}
	const chunk = 256
	n := 0
	batch := make([]verdict, 0, chunk)
	flush := func() {
		s.mu.Lock()
		for _, v := range batch {
			l := s.byDomain[v.dom]
			if l == nil {
				continue // evicted meanwhile
			}
			if v.keep {
				oldOvs, newOvs := old.overrides[v.dom], new.overrides[v.dom]
				for e := l.head; e != nil; e = e.next {
					if e.d.Record != nil {
						e.d.Record = v.rec
					}
					e.d.Override = repoint(e.d.Override, oldOvs, newOvs)
					e.d.Ignored = repoint(e.d.Ignored, oldOvs, newOvs)
				}
				continue
			}
			for e := l.head; e != nil; {
				next := e.next
				if !s.frequent.Remove(e.key) {
					s.recent.Remove(e.key)
				}
				e.list, e.prev, e.next = nil, nil, nil
				e = next
				n++
			}
			delete(s.byDomain, v.dom)
		}
		s.mu.Unlock()
		batch = batch[:0]
	}
	for _, dom := range doms {
		keep := old.sameDomain(new, dom)
		var rec *Record
		if keep {
			rec = new.Lookup(dom)
		}
		batch = append(batch, verdict{dom, keep, rec})
		if len(batch) == chunk {
			flush()
		}
	}
	flush()
	s.invalidations.Add(uint64(n))
	return n
}

// repoint returns the element of to at o's index in from (equal lists).
func repoint(o *Override, from, to []Override) *Override {
	if o == nil {
		return nil
	}
	for i := range from {
		if &from[i] == o {
			return &to[i]
		}
	}
	return o
}

func (s *shard) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recent.Len() + s.frequent.Len()
}

// CacheStats are the decision cache's counters since New.
type CacheStats struct {
	Hits          uint64 // lookups answered from the cache
	Misses        uint64 // lookups decided afresh (absent or stale entry)
	Evictions     uint64 // entries evicted for space
	Invalidations uint64 // entries dropped because their domain changed
	Len           int    // entries now cached
}

func (c *cache) stats() CacheStats {
	var st CacheStats
	for i := range c.shards {
		s := &c.shards[i]
		st.Hits += s.hits.Load()
		st.Misses += s.misses.Load()
		st.Evictions += s.evictions.Load()
		st.Invalidations += s.invalidations.Load()
		st.Len += s.len()
	}
	return st
}
