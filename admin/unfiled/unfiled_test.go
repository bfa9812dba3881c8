package unfiled

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/icpgate/icpgate/admin"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	dstA = netip.MustParseAddrPort("203.0.113.10:443")
	dstB = netip.MustParseAddrPort("203.0.113.11:80")
	dstC = netip.MustParseAddrPort("[2001:db8::1]:443")
)

// checkInvariants checks the sketch's internal structure: index, heap and
// positions agree, the heap is ordered, and the size is bounded.
func checkInvariants(t testing.TB, r *Report) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.entries) > r.capacity || len(r.heap) != len(r.entries) || len(r.index) != len(r.entries) {
		t.Fatalf("sizes: %d entries, %d in heap, %d indexed, capacity %d", len(r.entries), len(r.heap), len(r.index), r.capacity)
	}
	for p, i := range r.heap {
		e := &r.entries[i]
		if int(e.pos) != p {
			t.Fatalf("entry %d (%s) at heap %d says %d", i, e.domain, p, e.pos)
		}
		if j, ok := r.index[e.domain]; !ok || j != i {
			t.Fatalf("index[%q] = %d, %v; want %d", e.domain, j, ok, i)
		}
		if p > 0 && r.entries[r.heap[(p-1)/2]].hits > e.hits {
			t.Fatalf("heap order broken at %d", p)
		}
		if e.hitsErr >= e.hits || len(e.dests) > r.maxDests {
			t.Fatalf("entry %s: hits %d error %d, %d destinations", e.domain, e.hits, e.hitsErr, len(e.dests))
		}
	}
}

// TestObserveRows observes a short script and checks every field of the
// rows it produces.
func TestObserveRows(t *testing.T) {
	c := newClock()
	r := New(Options{MaxDestinations: 2, Now: c.Now})
	t0 := c.Now()
	mapped := netip.AddrPortFrom(netip.AddrFrom16(dstA.Addr().As16()), dstA.Port()) // ::ffff:203.0.113.10
	r.Observe("unfiled", "unfiled.cn", mapped)
	c.advance(time.Minute)
	r.Observe("unfiled", "unfiled.cn", dstA) // same destination once unmapped
	r.Observe("unfiled", "unfiled.cn", dstB)
	r.Observe("unfiled", "unfiled.cn", dstC) // over MaxDestinations: counted only
	r.Observe("unfiled", "unfiled.cn", netip.AddrPort{})
	r.Observe("cancelled", "gone.cn", dstC)
	c.advance(time.Minute)
	r.Observe("no_access", "gone.cn", dstC) // the last reason wins
	r.Observe("unfiled", "", dstA)          // no domain: ignored
	r.Observe("unfiled", strings.Repeat("a", 254), dstA)

	want := []admin.ReportRow{
		{Domain: "unfiled.cn", Reason: "unfiled", FirstSeen: t0, LastSeen: t0.Add(time.Minute), Hits: 5,
			Destinations: []string{"203.0.113.10:443", "203.0.113.11:80"}},
		{Domain: "gone.cn", Reason: "no_access", FirstSeen: t0.Add(time.Minute), LastSeen: t0.Add(2 * time.Minute), Hits: 2,
			Destinations: []string{"[2001:db8::1]:443"}},
	}
	if got := r.Top(0, ""); !reflect.DeepEqual(got, want) {
		t.Errorf("Top(0, \"\"):\n got %+v\nwant %+v", got, want)
	}
	if got := r.Top(1, ""); !reflect.DeepEqual(got, want[:1]) {
		t.Errorf("Top(1, \"\"): got %+v, want %+v", got, want[:1])
	}
	if got := r.Top(10, "no_access"); !reflect.DeepEqual(got, want[1:]) {
		t.Errorf("Top(10, no_access): got %+v, want %+v", got, want[1:])
	}
	if got := r.Top(10, "blacklisted"); len(got) != 0 {
		t.Errorf("Top(10, blacklisted): got %+v, want none", got)
	}
	if r.Len() != 2 || r.Observed() != 7 {
		t.Errorf("got Len %d Observed %d, want 2 and 7", r.Len(), r.Observed())
	}
	r.mu.Lock()
	other := r.entries[r.index["unfiled.cn"]].otherDests
	r.mu.Unlock()
	if other != 1 {
		t.Errorf("hits at other destinations: got %d, want 1", other)
	}
	checkInvariants(t, r)
}

// TestEviction checks the Space-Saving replacement step by hand.
func TestEviction(t *testing.T) {
	r := New(Options{Capacity: 2})
	// a: 4. b: 1. c replaces b (the least): 2 hits, error 1; then 3.
	// d replaces c (3 < 4): 4 hits, error 3.
	for _, d := range []string{"a.cn", "a.cn", "a.cn", "a.cn", "b.cn", "c.cn", "c.cn", "d.cn"} {
		r.Observe("unfiled", d, dstA)
	}
	got := r.Top(0, "")
	type hc struct {
		domain    string
		hits, err uint64
	}
	var gotHC []hc
	for _, x := range got {
		gotHC = append(gotHC, hc{x.Domain, x.Hits, x.HitsError})
	}
	want := []hc{{"a.cn", 4, 0}, {"d.cn", 4, 3}}
	if !reflect.DeepEqual(gotHC, want) {
		t.Errorf("got %v, want %v", gotHC, want)
	}
	checkInvariants(t, r)
}

// TestSketchGuarantees feeds a capacity-100 report 100 times as many
// random domains as it can hold, with a heavy hitter and a Zipf-skewed
// middle class mixed in, and checks the Space-Saving guarantees against
// exact counts: the size stays at capacity, the counts sum to N, every
// domain over N/m is present, every row's true count is within
// [hits-hits_error, hits], and the heavy hitter is on top.
func TestSketchGuarantees(t *testing.T) {
	const capacity = 100
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, 1.2, 1, 999)
	r := New(Options{Capacity: capacity})
	truth := map[string]uint64{}
	var n uint64
	observe := func(d string) {
		r.Observe("unfiled", d, dstA)
		truth[d]++
		n++
	}
	for i := 0; i < 100*capacity; i++ {
		observe(fmt.Sprintf("rand-%016x.cn", rng.Uint64()))
		if i%5 == 0 {
			observe("heavy.cn")
		}
		if i%3 == 0 {
			observe(fmt.Sprintf("zipf-%d.cn", zipf.Uint64()))
		}
	}
	checkInvariants(t, r)
	if r.Len() != capacity {
		t.Fatalf("size: got %d, want %d", r.Len(), capacity)
	}
	if r.Observed() != n {
		t.Errorf("observed: got %d, want %d", r.Observed(), n)
	}
	rows := r.Top(0, "")
	var sum uint64
	present := map[string]bool{}
	for _, x := range rows {
		sum += x.Hits
		present[x.Domain] = true
		if tr := truth[x.Domain]; tr > x.Hits || tr < x.Hits-x.HitsError {
			t.Errorf("%s: true count %d outside [%d, %d]", x.Domain, tr, x.Hits-x.HitsError, x.Hits)
		}
	}
	if sum != n {
		t.Errorf("counts sum to %d, want N = %d", sum, n)
	}
	frequent := 0
	for d, c := range truth {
		if c > n/capacity {
			frequent++
			if !present[d] {
				t.Errorf("%s: %d hits > N/m = %d but not in the report", d, c, n/capacity)
			}
		}
	}
	if frequent < 2 {
		t.Errorf("only %d domains above N/m: the test input is not skewed enough to test anything", frequent)
	}
	if rows[0].Domain != "heavy.cn" {
		t.Errorf("top: got %s, want heavy.cn", rows[0].Domain)
	}
}

// TestConcurrentObserve observes from many goroutines while reading and
// saving; the race detector checks the locking and the counts add up.
func TestConcurrentObserve(t *testing.T) {
	r := New(Options{Capacity: 50, File: t.TempDir() + "/unfiled.json"})
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r.Observe("unfiled", fmt.Sprintf("d%d.cn", (i*7+w)%120), dstA)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			r.Top(10, "unfiled")
			if err := r.Save(); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	checkInvariants(t, r)
	var sum uint64
	for _, x := range r.Top(0, "") {
		sum += x.Hits
	}
	if sum != workers*each || r.Observed() != workers*each {
		t.Errorf("got sum %d observed %d, want %d", sum, r.Observed(), workers*each)
	}
}

// TestObserveAllocs: a tracked domain at a known destination costs no
// allocation; a new domain costs only its copy.
func TestObserveAllocs(t *testing.T) {
	r := New(Options{Capacity: 4})
	domain := []byte("hit.cn")
	r.Observe("unfiled", string(domain), dstA)
	r.Observe("unfiled", "other.cn", dstB)
	if a := testing.AllocsPerRun(1000, func() { r.Observe("unfiled", "hit.cn", dstA) }); a != 0 {
		t.Errorf("hit: got %v allocations, want 0", a)
	}
	if a := testing.AllocsPerRun(1000, func() { r.Observe("cancelled", "hit.cn", dstA) }); a != 0 {
		t.Errorf("hit with another reason: got %v allocations, want 0", a)
	}
	for i := 0; i < 4; i++ {
		r.Observe("unfiled", fmt.Sprintf("fill%d.cn", i), dstA)
	}
	names := make([]string, 1001)
	for i := range names {
		names[i] = fmt.Sprintf("new%d.cn", i)
	}
	i := 0
	a := testing.AllocsPerRun(1000, func() {
		r.Observe("unfiled", names[i], dstA)
		i++
	})
	if a > 1 {
		t.Errorf("miss with a full sketch: got %v allocations, want at most 1 (the domain's copy)", a)
	}
}

// TestObserveUpstream: a block is reported at the upstream it would have
// gone to; an upstream and an address with the same text are one
// destination, and an upstream that cannot be a host:port is not kept.
func TestObserveUpstream(t *testing.T) {
	r := New(Options{MaxDestinations: 3})
	r.ObserveUpstream("unfiled", "a.cn", "origin.example:8443")
	r.ObserveUpstream("unfiled", "a.cn", "origin.example:8443")
	r.ObserveUpstream("unfiled", "a.cn", "10.0.0.5:443")
	r.Observe("unfiled", "a.cn", netip.MustParseAddrPort("10.0.0.5:443")) // same text: same destination
	r.ObserveUpstream("unfiled", "a.cn", "")                              // no upstream: counted, no destination
	r.ObserveUpstream("unfiled", "a.cn", "bad host:80")                   // not printable ASCII: not kept
	r.ObserveUpstream("unfiled", "a.cn", strings.Repeat("a", 300)+":80")  // too long: not kept
	got := r.Top(0, "")
	want := []string{"origin.example:8443", "10.0.0.5:443"}
	if len(got) != 1 || got[0].Hits != 7 || !reflect.DeepEqual(got[0].Destinations, want) {
		t.Fatalf("got %+v, want a.cn with 7 hits at %q", got, want)
	}
	checkInvariants(t, r)
	if a := testing.AllocsPerRun(1000, func() { r.ObserveUpstream("unfiled", "a.cn", "origin.example:8443") }); a != 0 {
		t.Errorf("known upstream: got %v allocations, want 0", a)
	}
	if a := testing.AllocsPerRun(1000, func() { r.Observe("unfiled", "a.cn", netip.MustParseAddrPort("10.0.0.5:443")) }); a != 0 {
		t.Errorf("address known as an upstream's text: got %v allocations, want 0", a)
	}
}

// TestObserveCopiesDomain passes a domain that aliases a buffer which is
// then overwritten, as the data plane's pooled buffers are.
func TestObserveCopiesDomain(t *testing.T) {
	r := New(Options{})
	buf := []byte("alias.cn")
	r.Observe("unfiled", unsafeString(buf), dstA)
	copy(buf, "XXXXXXXX")
	if got := r.Top(1, ""); len(got) != 1 || got[0].Domain != "alias.cn" {
		t.Errorf("got %+v, want alias.cn", got)
	}
	r.Observe("unfiled", "alias.cn", dstA)
	if got := r.Top(1, ""); got[0].Hits != 2 {
		t.Errorf("got %d hits, want 2 (found by the copied key)", got[0].Hits)
	}
}

// TestOptionsDefaults checks defaults and caps.
func TestOptionsDefaults(t *testing.T) {
	for _, tt := range []struct {
		in                   Options
		capacity, dests      int
		interval             time.Duration
		wantLog, wantNowFunc bool
	}{
		{Options{}, DefaultCapacity, DefaultMaxDestinations, DefaultSaveInterval, true, true},
		{Options{Capacity: -1, MaxDestinations: -5, SaveInterval: -1}, DefaultCapacity, DefaultMaxDestinations, DefaultSaveInterval, true, true},
		{Options{Capacity: MaxCapacity + 1, MaxDestinations: MaxMaxDestinations + 1, SaveInterval: time.Second}, MaxCapacity, MaxMaxDestinations, time.Second, true, true},
		{Options{Capacity: 3, MaxDestinations: 1}, 3, 1, DefaultSaveInterval, true, true},
	} {
		r := New(tt.in)
		if r.capacity != tt.capacity || r.maxDests != tt.dests || r.interval != tt.interval || r.log == nil || r.now == nil {
			t.Errorf("New(%+v): got capacity %d dests %d interval %v, want %d %d %v", tt.in, r.capacity, r.maxDests, r.interval, tt.capacity, tt.dests, tt.interval)
		}
	}
}

// TestWriteCSV checks the header, the order, the formats, the reason
// filter and that what is written parses back as CSV.
func TestWriteCSV(t *testing.T) {
	c := newClock()
	r := New(Options{Now: c.Now})
	r.Observe("unfiled", "b.cn", dstA)
	r.Observe("unfiled", "b.cn", dstB)
	c.advance(90 * time.Second)
	r.Observe("unfiled", "a.cn", dstC)
	r.Observe("unfiled", "a.cn", dstC)
	r.Observe("blacklisted", "c.cn", netip.AddrPort{})
	r.Observe("unfiled", "=cmd|'/C!calc'!A0", dstA) // never a real domain: defence in depth
	for _, tt := range []struct {
		reason, want string
	}{
		{"unfiled", `domain,reason,hits,hits_error,first_seen,last_seen,destinations
a.cn,unfiled,2,0,2026-03-01T08:01:30Z,2026-03-01T08:01:30Z,[2001:db8::1]:443
b.cn,unfiled,2,0,2026-03-01T08:00:00Z,2026-03-01T08:00:00Z,203.0.113.10:443 203.0.113.11:80
'=cmd|'/C!calc'!A0,unfiled,1,0,2026-03-01T08:01:30Z,2026-03-01T08:01:30Z,203.0.113.10:443
`},
		{"blacklisted", `domain,reason,hits,hits_error,first_seen,last_seen,destinations
c.cn,blacklisted,1,0,2026-03-01T08:01:30Z,2026-03-01T08:01:30Z,
`},
		{"filed", "domain,reason,hits,hits_error,first_seen,last_seen,destinations\n"},
	} {
		t.Run(tt.reason, func(t *testing.T) {
			var b bytes.Buffer
			if err := r.WriteCSV(&b, tt.reason); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tt.want)
			}
			recs, err := csv.NewReader(&b).ReadAll()
			if err != nil {
				t.Fatalf("reading back: %v", err)
			}
			for _, rec := range recs {
				if len(rec) != len(CSVHeader) {
					t.Errorf("record %q: %d fields, want %d", rec, len(rec), len(CSVHeader))
				}
			}
		})
	}
	if err := r.WriteCSV(failingWriter{}, ""); err == nil || !strings.Contains(err.Error(), "csv") {
		t.Errorf("failing writer: got %v, want an error", err)
	}
}

// unsafeString returns a string sharing b's bytes, as a pooled buffer's
// view would.
func unsafeString(b []byte) string { return unsafe.String(&b[0], len(b)) }

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, fmt.Errorf("disk full") }

// TestWriteCSVLocation: with a Location, CSV times are in that zone with
// its offset, the instant unchanged.
func TestWriteCSVLocation(t *testing.T) {
	// Asia/Shanghai's offset, without needing the zone database.
	shanghai := time.FixedZone("CST", 8*60*60)
	c := newClock() // 2026-03-01T08:00:00Z, 16:00 in Shanghai
	r := New(Options{Now: c.Now, Location: shanghai})
	r.ObserveUpstream("unfiled", "a.cn", "origin.example:443")
	var b bytes.Buffer
	if err := r.WriteCSV(&b, ""); err != nil {
		t.Fatal(err)
	}
	want := "domain,reason,hits,hits_error,first_seen,last_seen,destinations\n" +
		"a.cn,unfiled,1,0,2026-03-01T16:00:00+08:00,2026-03-01T16:00:00+08:00,origin.example:443\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestCSVSafe(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"example.cn", "example.cn"},
		{"", ""},
		{"=1+1", "'=1+1"},
		{"+1", "'+1"},
		{"-1", "'-1"},
		{"@SUM(A1)", "'@SUM(A1)"},
		{"\tx", "'\tx"},
		{"\rx", "'\rx"},
		{"a=b", "a=b"},
		{"[2001:db8::1]:443", "[2001:db8::1]:443"},
	} {
		if got := csvSafe(tt.in); got != tt.want {
			t.Errorf("csvSafe(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

// benchNames returns n distinct domain names, made before the timer.
func benchNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("bench-%d.example.cn", i)
	}
	return names
}

// BenchmarkObserveHit: a tracked domain at a known destination, in a full
// sketch of the default size.
func BenchmarkObserveHit(b *testing.B) {
	r := New(Options{})
	names := benchNames(DefaultCapacity)
	for _, n := range names {
		r.Observe("unfiled", n, dstA)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Observe("unfiled", names[i&1023], dstA)
		i++
	}
}

// BenchmarkObserveHitParallel: the same from every CPU (lock contention).
func BenchmarkObserveHitParallel(b *testing.B) {
	r := New(Options{})
	names := benchNames(DefaultCapacity)
	for _, n := range names {
		r.Observe("unfiled", n, dstA)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Observe("unfiled", names[i&1023], dstA)
			i++
		}
	})
}

// BenchmarkObserveMiss: a new domain every time in a full sketch (a flood
// of random names), each replacing the least counted.
func BenchmarkObserveMiss(b *testing.B) {
	r := New(Options{})
	for _, n := range benchNames(DefaultCapacity) {
		r.Observe("unfiled", n, dstA)
	}
	names := make([]string, 1<<16)
	for i := range names {
		names[i] = fmt.Sprintf("flood-%d.example.cn", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Observe("unfiled", names[i&(len(names)-1)], dstB)
		i++
	}
}

// BenchmarkTop: the API's default query on a full sketch.
func BenchmarkTop(b *testing.B) {
	r := New(Options{})
	for _, n := range benchNames(DefaultCapacity) {
		r.Observe("unfiled", n, dstA)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Top(100, "unfiled")
	}
}

// TestObserveRejectsNonNames: bytes a registrable domain never has are
// refused (they would not survive the JSON file unchanged); a reason with
// such bytes is replaced.
func TestObserveRejectsNonNames(t *testing.T) {
	r := New(Options{})
	for _, d := range []string{"a b.cn", "a\x00.cn", "\xff.cn", "例子.cn", "tab\t.cn"} {
		r.Observe("unfiled", d, dstA)
	}
	if r.Len() != 0 || r.Observed() != 0 {
		t.Errorf("got %d rows, %d observed; want none", r.Len(), r.Observed())
	}
	r.Observe("un\xfffiled", "a.cn", dstA)
	if got := r.Top(1, ""); len(got) != 1 || got[0].Reason != invalidReason {
		t.Errorf("got %+v, want reason %s", got, invalidReason)
	}
}

// BenchmarkMutexMapBaseline is the floor Observe is measured against: a
// mutex and a map increment, nothing else.
func BenchmarkMutexMapBaseline(b *testing.B) {
	var mu sync.Mutex
	m := map[string]uint64{}
	names := benchNames(DefaultCapacity)
	for _, n := range names {
		m[n] = 1
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		mu.Lock()
		m[names[i&1023]]++
		mu.Unlock()
		i++
	}
}
