package registry

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// fakeClock is an injected clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func newTestRegistry(t testing.TB, size int, clk *fakeClock) *Registry {
	t.Helper()
	r := New(Options{Clock: clk.Now, CacheSize: size})
	r.Swap(mustSnapshot(t, tableRecords(), nil))
	return r
}

func TestRegistryDecideMatchesPure(t *testing.T) {
	clk := newFakeClock(t0)
	r := newTestRegistry(t, 1000, clk)
	hosts := []string{"filed.cn", "www.filed.cn", "WWW.FILED.CN", "unfiled.cn", "com.cn", "", "192.0.2.1",
		"bad host", "blacklisted.cn", "www.例子.中国", "rectifying.cn"}
	for round := 0; round < 3; round++ { // miss, then hits (recent, frequent)
		for _, h := range hosts {
			got := r.Decide(h)
			want := Decide(h, r.Snapshot(), clk.Now(), Policy{})
			if got.Verdict != want.Verdict || got.Reason != want.Reason || got.Host != want.Host ||
				got.Domain != want.Domain || !sameRecord(got.Record, want.Record) || got.Input != h {
				t.Errorf("round %d Decide(%q): got %+v, want %+v", round, h, got, want)
			}
		}
	}
	st := r.CacheStats()
	if got, want := st.Misses, uint64(len(hosts)); got != want {
		t.Errorf("misses: got %d, want %d", got, want)
	}
	if got, want := st.Hits, uint64(2*len(hosts)); got != want {
		t.Errorf("hits: got %d, want %d", got, want)
	}
	if got, want := st.Len, len(hosts); got != want {
		t.Errorf("len: got %d, want %d", got, want)
	}
}

func TestRegistryBeforeLoad(t *testing.T) {
	r := New(Options{})
	if r.Loaded() {
		t.Errorf("Loaded before Swap")
	}
	if d := r.Decide("filed.cn"); d.Reason != ReasonUnfiled {
		t.Errorf("got %s, want %s (fail closed)", d.Reason, ReasonUnfiled)
	}
	r.Swap(mustSnapshot(t, tableRecords(), nil))
	if !r.Loaded() {
		t.Errorf("not Loaded after Swap")
	}
	if d := r.Decide("filed.cn"); d.Reason != ReasonFiled {
		t.Errorf("after Swap: got %s, want %s", d.Reason, ReasonFiled)
	}
}

func TestRegistryPolicy(t *testing.T) {
	r := New(Options{Policy: Policy{IPAccess: Block}})
	if d := r.Decide("192.0.2.1"); d.Verdict != Block {
		t.Errorf("got %s, want block", d.Verdict)
	}
}

func TestRegistryNoCache(t *testing.T) {
	r := New(Options{CacheSize: -1})
	r.Swap(mustSnapshot(t, tableRecords(), nil))
	for range 2 {
		if d := r.Decide("www.filed.cn"); d.Reason != ReasonFiled {
			t.Errorf("got %s, want %s", d.Reason, ReasonFiled)
		}
	}
	if st := r.CacheStats(); st != (CacheStats{}) {
		t.Errorf("stats without cache: got %+v", st)
	}
}

// TestCachedHitAllocs asserts the cached path allocates nothing.
func TestCachedHitAllocs(t *testing.T) {
	clk := newFakeClock(t0)
	r := newTestRegistry(t, 1000, clk)
	for _, h := range []string{"www.filed.cn", "rectifying.cn", "unfiled.cn"} {
		r.Decide(h)
		r.Decide(h) // promoted to frequent
		var d Decision
		allocs := testing.AllocsPerRun(1000, func() { d = r.Decide(h) })
		if allocs != 0 {
			t.Errorf("Decide(%q) cached: got %v allocs, want 0", h, allocs)
		}
		if d.Input != h {
			t.Errorf("got %q, want %q", d.Input, h)
		}
	}
}

// TestHostNotRetained passes a host that aliases a buffer and then
// overwrites the buffer, as an SNI parser reusing its buffer does.
func TestHostNotRetained(t *testing.T) {
	clk := newFakeClock(t0)
	r := newTestRegistry(t, 1000, clk)
	buf := []byte("www.filed.cn")
	h := unsafe.String(&buf[0], len(buf))
	d := r.Decide(h)
	copy(buf, "xxx.evil.com")
	if d.Host != "www.filed.cn" || d.Domain != "filed.cn" {
		t.Errorf("returned decision aliases the buffer: Host %q Domain %q", d.Host, d.Domain)
	}
	got := r.Decide("www.filed.cn")
	if got.Reason != ReasonFiled || got.Host != "www.filed.cn" || got.Domain != "filed.cn" {
		t.Errorf("cache retained the buffer: got %+v", got)
	}
	if st := r.CacheStats(); st.Hits != 1 {
		t.Errorf("hits: got %d, want 1", st.Hits)
	}
	// An invalid name's error must not alias the buffer either.
	bad := []byte("xn--a.cn")
	d = r.Decide(unsafe.String(&bad[0], len(bad)))
	msg := d.Err.Error()
	copy(bad, "zzzzzzzz")
	if d.Reason != ReasonInvalidHost || d.Err.Error() != msg || !errors.Is(d.Err, ErrInvalidHost) {
		t.Errorf("invalid host error: got %q (%v), want %q wrapping %v", d.Err, d.Reason, msg, ErrInvalidHost)
	}
	if d := r.Decide("com.cn"); !errors.Is(d.Err, ErrPublicSuffix) {
		t.Errorf("cached public suffix error: got %v, want %v", d.Err, ErrPublicSuffix)
	}
	if got := r.Decide("xxx.evil.com"); got.Reason != ReasonUnfiled {
		t.Errorf("xxx.evil.com: got %s, want %s", got.Reason, ReasonUnfiled)
	}
}

// TestScanResistance: a hot set accessed repeatedly survives a flood of
// ten times the cache size of random one-hit names.
func TestScanResistance(t *testing.T) {
	const size = 4096
	clk := newFakeClock(t0)
	r := newTestRegistry(t, size, clk)
	hot := make([]string, size/8)
	for i := range hot {
		hot[i] = fmt.Sprintf("h%d.filed.cn", i)
	}
	for range 3 {
		for _, h := range hot {
			r.Decide(h)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10 * size {
		r.Decide(strconv.FormatUint(rng.Uint64(), 36) + ".unfiled-flood.cn")
	}
	before := r.CacheStats()
	if before.Evictions < 9*size {
		t.Fatalf("flood did not churn the cache: %d evictions", before.Evictions)
	}
	for _, h := range hot {
		if d := r.Decide(h); d.Reason != ReasonFiled {
			t.Fatalf("Decide(%q): got %s, want %s", h, d.Reason, ReasonFiled)
		}
	}
	after := r.CacheStats()
	if got, want := after.Hits-before.Hits, uint64(len(hot)); got != want {
		t.Errorf("hot set hits after flood: got %d, want %d (misses %d)", got, want, after.Misses-before.Misses)
	}
}

// TestSwapInvalidatesPrecisely: only hosts of changed domains are dropped.
func TestSwapInvalidatesPrecisely(t *testing.T) {
	clk := newFakeClock(t0)
	r := newTestRegistry(t, 1000, clk)
	hosts := []string{"filed.cn", "www.filed.cn", "api.filed.cn", "changing.cn", "www.changing.cn",
		"unfiled.cn", "x.unfiled.cn", "cancelled.cn", "192.0.2.1", "com.cn"}
	for _, h := range hosts {
		r.Decide(h)
	}
	// New snapshot: filed.cn's record changes state, unfiled.cn gets an
	// allow, cancelled.cn is unchanged but rebuilt (new pointers).
	recs := tableRecords()
	recs[0].State = StateAccessRevoked
	ovs := []Override{{ID: "1", Host: "x.unfiled.cn", Scope: ScopeExact, Action: ActionAllow, Expires: t0.Add(time.Hour)}}
	old := r.Snapshot()
	r.Swap(mustSnapshot(t, recs, ovs))
	st := r.CacheStats()
	if got, want := st.Invalidations, uint64(5); got != want {
		t.Errorf("invalidations: got %d, want %d", got, want)
	}
	want := map[string]Reason{
		"filed.cn": ReasonAccessRevoked, "www.filed.cn": ReasonAccessRevoked, "api.filed.cn": ReasonAccessRevoked,
		"changing.cn": ReasonFiled, "www.changing.cn": ReasonFiled,
		"unfiled.cn": ReasonUnfiled, "x.unfiled.cn": ReasonOverrideAllow,
		"cancelled.cn": ReasonCancelled, "192.0.2.1": ReasonIPAccess, "com.cn": ReasonInvalidHost,
	}
	for _, h := range hosts {
		if d := r.Decide(h); d.Reason != want[h] {
			t.Errorf("after swap Decide(%q): got %s, want %s", h, d.Reason, want[h])
		}
	}
	after := r.CacheStats()
	if got, want := after.Hits-st.Hits, uint64(5); got != want {
		t.Errorf("hits for unchanged domains: got %d, want %d", got, want)
	}
	// Kept entries point at the new snapshot's record, not the old one's:
	// equal, with strings in the new snapshot's arena.
	if got, want := r.Decide("cancelled.cn").Record, r.Snapshot().Lookup("cancelled.cn"); !sameRecord(got, want) ||
		!inArena(r.Snapshot(), got.Domain) || inArena(old, got.Domain) {
		t.Errorf("kept entry's Record %+v is not the new snapshot's", got)
	}
	// A rebuilt, equal snapshot keeps every entry and re-points overrides.
	ovSnap := r.Snapshot()
	r.Decide("x.unfiled.cn")
	same := mustSnapshot(t, recs, ovs)
	inv := r.CacheStats().Invalidations
	r.Swap(same)
	if got := r.CacheStats().Invalidations; got != inv {
		t.Errorf("equal snapshot invalidated %d entries", got-inv)
	}
	if d := r.Decide("x.unfiled.cn"); d.Override != &same.OverridesFor("unfiled.cn")[0] {
		t.Errorf("kept entry's Override not re-pointed (old snapshot %p)", ovSnap)
	}
	// Removing a record invalidates too.
	r.Swap(mustSnapshot(t, tableRecords()[1:], ovs))
	if d := r.Decide("www.filed.cn"); d.Reason != ReasonUnfiled {
		t.Errorf("after removal: got %s, want %s", d.Reason, ReasonUnfiled)
	}
}

// TestCachedDecisionExpires: override expiry and rectification deadlines
// take effect at their instant even for cached hosts.
func TestCachedDecisionExpires(t *testing.T) {
	clk := newFakeClock(t0)
	r := newTestRegistry(t, 1000, clk)
	exp := t0.Add(time.Minute)
	s, err := r.Snapshot().WithOverrides([]Override{
		{ID: "allow", Host: "unfiled.cn", Scope: ScopeDomain, Action: ActionAllow, Expires: exp},
		{ID: "deny", Host: "www.filed.cn", Scope: ScopeExact, Action: ActionDeny, Expires: exp},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Swap(s)
	tests := []struct {
		host          string
		at            time.Time
		before, after Reason
	}{
		{"www.unfiled.cn", exp, ReasonOverrideAllow, ReasonUnfiled},
		{"www.filed.cn", exp, ReasonOverrideDeny, ReasonFiled},
		{"rectifying.cn", deadline, ReasonRectifying, ReasonRectificationOverdue},
	}
	for _, tt := range tests {
		clk.Set(tt.at.Add(-time.Nanosecond))
		for range 3 {
			if d := r.Decide(tt.host); d.Reason != tt.before {
				t.Errorf("Decide(%q) before: got %s, want %s", tt.host, d.Reason, tt.before)
			}
		}
		clk.Set(tt.at)
		if d := r.Decide(tt.host); d.Reason != tt.after {
			t.Errorf("Decide(%q) at %v: got %s, want %s", tt.host, tt.at, d.Reason, tt.after)
		}
		clk.Set(t0)
	}
}

// TestConcurrentSwap races decisions against swaps; afterwards every
// answer must reflect the last snapshot (no stale entry survives).
func TestConcurrentSwap(t *testing.T) {
	clk := newFakeClock(t0)
	r := New(Options{Clock: clk.Now, CacheSize: 512})
	filed := mustSnapshot(t, []Record{{Domain: "flip.cn", State: StateFiled, FilingNumber: "京ICP备10206937号-1"}}, nil)
	cancelled := mustSnapshot(t, []Record{{Domain: "flip.cn", State: StateCancelled}}, nil)
	r.Swap(filed)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r.Decide("h" + strconv.Itoa((i+g)%64) + ".flip.cn")
			}
		}()
	}
	for i := range 200 {
		if i%2 == 0 {
			r.Swap(cancelled)
		} else {
			r.Swap(filed)
		}
	}
	r.Swap(cancelled)
	close(stop)
	wg.Wait()
	for i := range 64 {
		h := "h" + strconv.Itoa(i) + ".flip.cn"
		if d := r.Decide(h); d.Reason != ReasonCancelled {
			t.Errorf("Decide(%q) after last swap: got %s, want %s", h, d.Reason, ReasonCancelled)
		}
	}
}

func TestUpdate(t *testing.T) {
	r := New(Options{})
	r.Swap(mustSnapshot(t, tableRecords(), nil))
	err := r.Update(func(old *Snapshot) (*Snapshot, error) {
		return nil, fmt.Errorf("no")
	})
	if err == nil || r.Snapshot().Len() != len(tableRecords()) {
		t.Errorf("failed Update changed state: err %v", err)
	}
	err = r.Update(func(old *Snapshot) (*Snapshot, error) {
		return old.WithOverrides([]Override{{Host: "filed.cn", Scope: ScopeDomain, Action: ActionDeny}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := r.Decide("filed.cn"); d.Reason != ReasonOverrideDeny {
		t.Errorf("got %s, want %s", d.Reason, ReasonOverrideDeny)
	}
}

func benchRegistry(b *testing.B) *Registry {
	r := New(Options{})
	r.Swap(mustSnapshot(b, append(tableRecords(), genRecords(100000)...), nil))
	return r
}

func BenchmarkDecideCached(b *testing.B) {
	r := benchRegistry(b)
	h := "www.filed.cn"
	r.Decide(h)
	r.Decide(h)
	b.ReportAllocs()
	for b.Loop() {
		if r.Decide(h).Verdict != Pass {
			b.Fatal("not pass")
		}
	}
}

func BenchmarkDecideCachedParallel(b *testing.B) {
	r := benchRegistry(b)
	hosts := make([]string, 1024)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("www.site%07d.cn", i)
		r.Decide(hosts[i])
		r.Decide(hosts[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(len(hosts))
		for pb.Next() {
			r.Decide(hosts[i&1023])
			i++
		}
	})
}

func BenchmarkDecideUncached(b *testing.B) {
	r := benchRegistry(b)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// A new subdomain each time, in a reused buffer as an SNI parser
		// would pass it.
		buf = strconv.AppendInt(append(buf[:0], 'n'), int64(i), 10)
		buf = append(buf, ".site0001234.cn"...)
		r.Decide(unsafe.String(&buf[0], len(buf)))
		i++
	}
	if st := r.CacheStats(); st.Hits != 0 {
		b.Fatalf("benchmark hit the cache: %+v", st)
	}
}

func BenchmarkDecidePure(b *testing.B) {
	s := benchRegistry(b).Snapshot()
	b.ReportAllocs()
	for b.Loop() {
		Decide("www.site0001234.cn", s, t0, Policy{})
	}
}

// BenchmarkSwapFullCache measures a swap with a full 100k cache: the
// invalidation pass walks the cached domains.
func BenchmarkSwapFullCache(b *testing.B) {
	r := New(Options{})
	recs := genRecords(100000)
	s1 := mustSnapshot(b, recs, nil)
	recs[7].State = StateCancelled
	s2 := mustSnapshot(b, recs, nil)
	r.Swap(s1)
	for i := range 100000 {
		r.Decide(fmt.Sprintf("www.site%07d.cn", i))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			r.Swap(s2)
		} else {
			r.Swap(s1)
		}
		i++
	}
}

// TestSwapApplied: an incremental change invalidates only its domain.
func TestSwapApplied(t *testing.T) {
	clk := newFakeClock(t0)
	r := newTestRegistry(t, 1000, clk)
	for _, h := range []string{"www.filed.cn", "www.changing.cn", "www.unfiled.cn"} {
		r.Decide(h)
	}
	s, err := r.Snapshot().Apply([]Record{{Domain: "unfiled.cn", State: StateFiled, FilingNumber: "京ICP备10206937号-7"}}, []string{"filed.cn"})
	if err != nil {
		t.Fatal(err)
	}
	r.Swap(s)
	if got := r.CacheStats().Invalidations; got != 2 {
		t.Errorf("invalidations: got %d, want 2", got)
	}
	want := map[string]Reason{"www.filed.cn": ReasonUnfiled, "www.changing.cn": ReasonFiled, "www.unfiled.cn": ReasonFiled}
	for h, reason := range want {
		if d := r.Decide(h); d.Reason != reason {
			t.Errorf("Decide(%q): got %s, want %s", h, d.Reason, reason)
		}
	}
}

// TestGhostPromotes: a name evicted from the recent queue and asked for
// again soon goes to the frequent queue, where a flood cannot reach it.
func TestGhostPromotes(t *testing.T) {
	clk := newFakeClock(t0)
	r := newTestRegistry(t, 256, clk) // one shard of 256
	if n := len(r.cache.shards); n != 1 {
		t.Fatalf("shards: got %d, want 1", n)
	}
	r.Decide("x.filed.cn")
	for i := range 256 { // the 256th evicts x.filed.cn into the ghost table
		r.Decide("once" + strconv.Itoa(i) + ".unfiled.cn")
	}
	before := r.CacheStats()
	r.Decide("x.filed.cn")
	if got := r.CacheStats().Misses - before.Misses; got != 1 {
		t.Fatalf("x.filed.cn after eviction: got %d misses, want 1", got)
	}
	for i := range 2000 {
		r.Decide("flood" + strconv.Itoa(i) + ".unfiled.cn")
	}
	before = r.CacheStats()
	r.Decide("x.filed.cn")
	if got := r.CacheStats().Hits - before.Hits; got != 1 {
		t.Errorf("x.filed.cn after the flood: got %d hits, want 1 (promoted via the ghost table)", got)
	}
}

// sameRecord reports whether a and b are both nil or equal records.
func sameRecord(a, b *Record) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Equal(b))
}

// inArena reports whether str's bytes lie in the packed base of s.
func inArena(s *Snapshot, str string) bool {
	p := uintptr(unsafe.Pointer(unsafe.StringData(str)))
	for _, c := range s.base.chunks {
		if len(c) > 0 {
			lo := uintptr(unsafe.Pointer(&c[0]))
			if p >= lo && p < lo+uintptr(len(c)) {
				return true
			}
		}
	}
	return false
}
