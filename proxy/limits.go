package proxy

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Defaults for Limits fields the Server enforces.
const (
	defaultMaxConns      = 100000
	defaultMaxConnsPerIP = 1000
)

// Limit names, the label values of Metrics.LimitRejects.
const (
	limitGlobal = "global"
	limitPerIP  = "per_ip"
)

// connLimiter enforces the global and the per-client-IP caps on open client
// connections. Its counts survive a Reload; only the caps change, so a lower
// cap refuses new connections until enough old ones have closed and never
// closes an open one.
//
// The global count is one atomic; the per-IP counts live in sharded maps so
// that accepts from different clients rarely contend on a lock. An entry is
// deleted when its count returns to zero, so a scan from many addresses
// costs memory only while those connections are open.
type connLimiter struct {
	maxConns atomic.Int64
	maxPerIP atomic.Int64
	open     atomic.Int64
	seed     maphash.Seed
	shards   [limiterShards]limiterShard
}

const limiterShards = 64

type limiterShard struct {
	mu    sync.Mutex
	perIP map[netip.Addr]int64 // guarded by mu; open connections per client IP
	_     [40]byte             // keep shards on separate cache lines
}

func newConnLimiter() *connLimiter {
	l := &connLimiter{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].perIP = make(map[netip.Addr]int64)
	}
	return l
}

// shard returns the shard that counts ip.
func (l *connLimiter) shard(ip netip.Addr) *limiterShard {
	a := ip.As16()
	return &l.shards[maphash.Bytes(l.seed, a[:])%limiterShards]
}

// setLimits applies the caps of lim (zero means the default) to connections
// admitted from now on.
func (l *connLimiter) setLimits(lim Limits) {
	maxConns, maxPerIP := lim.MaxConns, lim.MaxConnsPerIP
	if maxConns <= 0 {
		maxConns = defaultMaxConns
	}
	if maxPerIP <= 0 {
		maxPerIP = defaultMaxConnsPerIP
	}
	l.maxConns.Store(int64(maxConns))
	l.maxPerIP.Store(int64(maxPerIP))
}

// acquire admits one connection from ip. It returns "" when the connection
// is admitted (the caller must call release(ip) when it closes) or the name
// of the limit that refused it. ip must be unmapped (IPv4 as IPv4).
func (l *connLimiter) acquire(ip netip.Addr) string {
	if l.open.Add(1) > l.maxConns.Load() {
		l.open.Add(-1)
		return limitGlobal
	}
	s := l.shard(ip)
	max := l.maxPerIP.Load()
	s.mu.Lock()
	n := s.perIP[ip]
	if n >= max {
		s.mu.Unlock()
		l.open.Add(-1)
		return limitPerIP
	}
	s.perIP[ip] = n + 1
	s.mu.Unlock()
	return ""
}

// release returns the slot acquire gave ip.
func (l *connLimiter) release(ip netip.Addr) {
	s := l.shard(ip)
	s.mu.Lock()
	if n := s.perIP[ip]; n <= 1 {
		delete(s.perIP, ip)
	} else {
		s.perIP[ip] = n - 1
	}
	s.mu.Unlock()
	l.open.Add(-1)
}

// perIPCount reports the open connections of ip (tests and debugging).
func (l *connLimiter) perIPCount(ip netip.Addr) int64 {
	s := l.shard(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perIP[ip]
}
