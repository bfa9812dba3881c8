package registry

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCacheSize is the number of per-host decisions cached when
// Options.CacheSize is zero.
const DefaultCacheSize = 100000

// Options configure a Registry. The zero value is usable.
type Options struct {
	// Clock returns the current time; default time.Now. Tests inject one.
	Clock func() time.Time
	// CacheSize is the number of per-host decisions cached. Zero means
	// DefaultCacheSize; negative disables the cache.
	CacheSize int
	// Policy holds the non-data decision settings (ip_access).
	Policy Policy
	// Logger receives snapshot swaps (Info) and nothing per decision.
	// Default: discard.
	Logger *slog.Logger
}

// Registry answers decisions from the current Snapshot through a per-host
// cache. All methods are safe for concurrent use.
type Registry struct {
	clock  func() time.Time
	policy Policy
	log    *slog.Logger
	cache  *cache // nil when disabled

	snap   atomic.Pointer[Snapshot]
	loaded atomic.Bool
	swapMu sync.Mutex // serialises Swap and Update
}

// New returns a Registry serving an empty snapshot: until the first Swap,
// every name is unfiled (fail closed; readiness should wait for Loaded).
func New(opts Options) *Registry {
	r := &Registry{clock: opts.Clock, policy: opts.Policy, log: opts.Logger}
	if r.clock == nil {
		r.clock = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r.log = r.log.With("component", "registry")
	size := opts.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	if size > 0 {
		r.cache = newCache(size)
	}
	r.snap.Store(emptySnapshot)
	return r
}

// Policy returns the decision policy.
func (r *Registry) Policy() Policy { return r.policy }

// Snapshot returns the snapshot now serving (never nil).
func (r *Registry) Snapshot() *Snapshot { return r.snap.Load() }

// Loaded reports whether a snapshot has been installed with Swap or Update.
func (r *Registry) Loaded() bool { return r.loaded.Load() }

// Decide returns the decision for host, from the cache when it holds a
// fresh one. host may alias a buffer the caller reuses: it is never
// retained (the cache keeps its own copy), and the returned Decision's
// strings other than Input do not alias it. A cached hit does not allocate.
func (r *Registry) Decide(host string) (d Decision) {
	c := r.cache
	if c == nil {
		e := newEntry(host, Decide(host, r.snap.Load(), r.clock(), r.policy))
		e.d.Input = host
		return e.d
	}
	s, h := c.shard(host)
	// get copies straight into the result: one copy on the hot path.
	validUntil, found, adds := s.get(host, &d)
	if found && (validUntil == 0 || r.clock().UnixNano() < validUntil) {
		s.hits.Add(1)
		d.Input = host
		return d
	}
	s.misses.Add(1)
	snap := r.snap.Load()
	e := newEntry(host, Decide(host, snap, r.clock(), r.policy))
	e.hash = h
	d = e.d // before add publishes e: Swap may re-point it afterwards
	s.add(e, h, !found, adds, &r.snap, snap)
	d.Input = host
	return d
}

// newEntry copies the strings of d that may alias host so the entry
// retains nothing of the caller's.
func newEntry(host string, d Decision) *entry {
	e := &entry{d: d}
	e.d.Input = ""
	key := strings.Clone(host)
	e.key = key
	h := d.Host
	switch {
	case h == "":
	case h == host:
		h = key
	default:
		h = strings.Clone(h)
	}
	e.d.Host = h
	// The registrable domain is a suffix of the host: share its bytes.
	if dom := d.Domain; dom != "" {
		if strings.HasSuffix(h, dom) {
			e.d.Domain = h[len(h)-len(dom):]
		} else {
			e.d.Domain = strings.Clone(dom)
		}
	}
	if d.Err != nil {
		// An error may hold a slice of the input (IDNA errors name the
		// label), so keep its text, rendered now, and its sentinel.
		e.d.Err = frozenError{msg: d.Err.Error(), sentinel: sentinelOf(d.Err)}
	}
	if !d.ValidUntil.IsZero() {
		e.validUntil = d.ValidUntil.UnixNano()
	}
	return e
}

// frozenError is a copy of a decision's error that shares no memory with
// the input.
type frozenError struct {
	msg      string
	sentinel error
}

func (e frozenError) Error() string { return e.msg }
func (e frozenError) Unwrap() error { return e.sentinel }

func sentinelOf(err error) error {
	for _, s := range [...]error{ErrPublicSuffix, ErrInvalidHost} {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}

// Swap installs s as the serving snapshot and drops exactly the cached
// decisions whose registrable domain's record or overrides differ between
// the old and the new snapshot. A nil s is ignored.
func (r *Registry) Swap(s *Snapshot) {
	if s == nil {
		return
	}
	r.swapMu.Lock()
	defer r.swapMu.Unlock()
	r.swapLocked(s)
}

// Update builds a snapshot from the serving one and installs it, with no
// other Swap or Update in between (so an override change and a file reload
// cannot lose each other's work). When f fails, nothing changes and its
// error is returned.
func (r *Registry) Update(f func(old *Snapshot) (*Snapshot, error)) error {
	r.swapMu.Lock()
	defer r.swapMu.Unlock()
	s, err := f(r.snap.Load())
	if err != nil {
		return err
	}
	if s != nil {
		r.swapLocked(s)
	}
	return nil
}

func (r *Registry) swapLocked(s *Snapshot) {
	start := time.Now()
	old := r.snap.Swap(s)
	r.loaded.Store(true)
	if old == s {
		return
	}
	n := 0
	if r.cache != nil {
		// After the pointer is stored, no decision computed from old can
		// enter a shard (add checks the pointer under the shard mutex), and
		// each shard's pass drops what old left there.
		for i := range r.cache.shards {
			n += r.cache.shards[i].invalidate(old, s)
		}
	}
	r.log.Info("registry snapshot installed", "records", s.Len(), "overrides", s.nov,
		"invalidated", n, "duration_seconds", time.Since(start).Seconds())
}

// CacheStats returns the cache counters (all zero when the cache is
// disabled). The metrics layer exports them as counters.
func (r *Registry) CacheStats() CacheStats {
	if r.cache == nil {
		return CacheStats{}
	}
	return r.cache.stats()
}
