package admin

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// limiterSetSize bounds each limiter set. A key pushed out by a flood of
// others starts again with a full bucket: the most it gives an attacker who
// controls more than this many addresses is what each address already
// gets, while memory stays bounded whatever arrives.
const limiterSetSize = 10000

// limiterSet is a token bucket per key (client network, token), in a
// bounded LRU so a flood of new keys cannot grow memory without bound.
// Times are passed in, so the server's clock (Config.Now) drives refills.
type limiterSet[K comparable] struct {
	limit rate.Limit
	burst int

	mu  sync.Mutex // guards lru (the limiters lock themselves)
	lru *simplelru.LRU[K, *rate.Limiter]
}

// newLimiterSet returns a set of buckets refilling perMinute tokens a
// minute and holding at most burst, for at most size keys.
func newLimiterSet[K comparable](size, perMinute, burst int) *limiterSet[K] {
	lru, err := simplelru.NewLRU[K, *rate.Limiter](size, nil)
	if err != nil {
		panic(err) // size is a positive constant
	}
	return &limiterSet[K]{limit: rate.Limit(float64(perMinute) / 60), burst: burst, lru: lru}
}

// take takes a token from k's bucket at now. When the bucket is empty it
// takes nothing and returns false with how long until a token is back.
func (l *limiterSet[K]) take(k K, now time.Time) (ok bool, wait time.Duration) {
	l.mu.Lock()
	lim, found := l.lru.Get(k)
	if !found {
		lim = rate.NewLimiter(l.limit, l.burst)
		l.lru.Add(k, lim)
	}
	l.mu.Unlock()
	if lim.AllowN(now, 1) {
		return true, 0
	}
	return false, l.waitFor(lim, now)
}

// empty reports how long until k's bucket holds a token again: 0 when it
// holds one now (or k has none yet). It takes nothing.
func (l *limiterSet[K]) empty(k K, now time.Time) time.Duration {
	l.mu.Lock()
	lim, found := l.lru.Peek(k)
	l.mu.Unlock()
	if !found {
		return 0
	}
	return l.waitFor(lim, now)
}

// waitFor returns how long until lim holds one token at the set's rate.
func (l *limiterSet[K]) waitFor(lim *rate.Limiter, now time.Time) time.Duration {
	tokens := lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration(math.Ceil((1 - tokens) / float64(l.limit) * float64(time.Second)))
}

// len returns the number of keys held.
func (l *limiterSet[K]) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// clientKey is the failed-authentication bucket of a remote address: the
// IP, or for IPv6 its /64, since one client routinely holds a whole /64.
// An address that does not parse is its own key.
func clientKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.WithZone("").Prefix(64)
		return p.String()
	}
	return a.String()
}

// retryAfter is the Retry-After value for a wait: whole seconds, at least 1.
func retryAfter(wait time.Duration) int {
	s := int(math.Ceil(wait.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}
