package registry

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestNewSnapshotRejects(t *testing.T) {
	good := Record{Domain: "ok.cn", State: StateFiled, FilingNumber: "京ICP备10206937号-1"}
	with := func(f func(r *Record)) []Record {
		r := good
		f(&r)
		return []Record{r}
	}
	tests := []struct {
		name  string
		recs  []Record
		is    error
		field string // text the error must contain
	}{
		{"empty domain", with(func(r *Record) { r.Domain = "" }), ErrInvalidRecord, "domain"},
		{"subdomain", with(func(r *Record) { r.Domain = "www.ok.cn" }), ErrInvalidRecord, "not a registrable domain"},
		{"public suffix", with(func(r *Record) { r.Domain = "com.cn" }), ErrInvalidRecord, "domain"},
		{"upper case", with(func(r *Record) { r.Domain = "OK.cn" }), ErrInvalidRecord, "normal form"},
		{"trailing dot", with(func(r *Record) { r.Domain = "ok.cn." }), ErrInvalidRecord, "normal form"},
		{"port", with(func(r *Record) { r.Domain = "ok.cn:443" }), ErrInvalidRecord, "domain"},
		{"ip", with(func(r *Record) { r.Domain = "192.0.2.1" }), ErrInvalidRecord, "domain"},
		{"invalid name", with(func(r *Record) { r.Domain = "o k.cn" }), ErrInvalidRecord, "domain"},
		{"zero state", with(func(r *Record) { r.State = 0 }), ErrInvalidRecord, "state"},
		{"unknown state", with(func(r *Record) { r.State = 99 }), ErrInvalidRecord, "state"},
		{"filed without filing number", with(func(r *Record) { r.FilingNumber = "" }), ErrInvalidRecord, "filing_number: required for state filed"},
		{"changing without filing number", with(func(r *Record) { r.State, r.FilingNumber = StateChanging, "" }), ErrInvalidRecord, "filing_number"},
		{"access_pending without filing number", with(func(r *Record) { r.State, r.FilingNumber = StateAccessPending, "" }), ErrInvalidRecord, "filing_number"},
		{"rectifying without filing number", with(func(r *Record) {
			r.State, r.FilingNumber, r.RectifyDeadline = StateRectifying, "", deadline
		}), ErrInvalidRecord, "filing_number"},
		{"fake province", with(func(r *Record) { r.FilingNumber = "萌ICP备20210001号-1" }), ErrInvalidRecord, "filing_number"},
		{"garbage filing number", with(func(r *Record) { r.FilingNumber = "ICP-12345" }), ErrInvalidRecord, "filing_number"},
		{"rectifying without deadline", with(func(r *Record) { r.State = StateRectifying }), ErrInvalidRecord, "rectify_deadline"},
		{"control byte in subject", with(func(r *Record) { r.Subject = "a\nb" }), ErrInvalidRecord, "subject"},
		{"duplicate", []Record{good, good}, ErrDuplicate, "ok.cn"},
		{"duplicate unicode and a-label", []Record{
			{Domain: "例子.中国", State: StateCancelled},
			{Domain: "xn--fsqu00a.xn--fiqs8s", State: StateCancelled},
		}, ErrDuplicate, "xn--fsqu00a.xn--fiqs8s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSnapshot(tt.recs, nil)
			if !errors.Is(err, tt.is) {
				t.Fatalf("got %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %q", err, tt.field)
			}
		})
	}
}

func TestNewSnapshotAccepts(t *testing.T) {
	recs := []Record{
		{Domain: "例子.中国", State: StateFiled, FilingNumber: "京ICP备09051301号-2", Province: "京", SubjectType: "enterprise"},
		{Domain: "ok.cn", State: StateNoAccess, Province: "京", SubjectType: "enterprise"}, // filing number optional
		{Domain: "x.com.cn", State: StateRectifying, FilingNumber: "沪ICP备2026012345号-1", RectifyDeadline: deadline},
		{Domain: "y.cn", State: StateBlacklisted},
	}
	s := mustSnapshot(t, recs, nil)
	if got := s.Lookup("xn--fsqu00a.xn--fiqs8s"); got == nil || got.Domain != "xn--fsqu00a.xn--fiqs8s" {
		t.Errorf("Unicode domain not stored as A-label: got %+v", got)
	}
	if s.Lookup("例子.中国") != nil {
		t.Errorf("Unicode key must not be stored")
	}
	if got, want := s.Len(), 4; got != want {
		t.Errorf("Len: got %d, want %d", got, want)
	}
	counts := s.Counts()
	wantCounts := map[State]int{StateFiled: 1, StateNoAccess: 1, StateRectifying: 1, StateBlacklisted: 1}
	for _, st := range States() {
		if counts[st] != wantCounts[st] || s.Count(st) != wantCounts[st] {
			t.Errorf("count %s: got %d/%d, want %d", st, counts[st], s.Count(st), wantCounts[st])
		}
	}
	if len(counts) != len(States()) {
		t.Errorf("Counts: got %d entries, want one per state", len(counts))
	}
	// Interning: equal strings share storage.
	a, b := s.Lookup("xn--fsqu00a.xn--fiqs8s"), s.Lookup("ok.cn")
	if unsafeData(a.Province) != unsafeData(b.Province) || unsafeData(a.SubjectType) != unsafeData(b.SubjectType) {
		t.Errorf("province/subject_type not interned")
	}
	// Times are kept as instants.
	if got := s.Lookup("x.com.cn").RectifyDeadline; !got.Equal(deadline) {
		t.Errorf("deadline: got %v, want %v", got, deadline)
	}
	n := 0
	for range s.Records() {
		n++
	}
	if n != 4 {
		t.Errorf("Records(): got %d, want 4", n)
	}
}

func TestOverrideValidation(t *testing.T) {
	exp := t0.Add(time.Hour)
	tests := []struct {
		name  string
		o     Override
		field string
	}{
		{"public suffix", Override{Host: "com.cn", Scope: ScopeDomain, Action: ActionAllow, Expires: exp}, "host"},
		{"public suffix exact", Override{Host: "com.cn", Scope: ScopeExact, Action: ActionAllow, Expires: exp}, "host"},
		{"tld", Override{Host: "cn", Scope: ScopeDomain, Action: ActionDeny}, "host"},
		{"wildcard", Override{Host: "*.example.cn", Scope: ScopeExact, Action: ActionAllow, Expires: exp}, "host"},
		{"ip", Override{Host: "192.0.2.1", Scope: ScopeExact, Action: ActionDeny}, "host"},
		{"domain scope on subdomain", Override{Host: "www.example.cn", Scope: ScopeDomain, Action: ActionAllow, Expires: exp}, "registrable domain"},
		{"allow without expiry", Override{Host: "example.cn", Scope: ScopeDomain, Action: ActionAllow}, "expires"},
		{"no action", Override{Host: "example.cn", Scope: ScopeDomain, Expires: exp}, "action"},
		{"no scope", Override{Host: "example.cn", Action: ActionDeny}, "scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSnapshot(nil, []Override{tt.o})
			if !errors.Is(err, ErrInvalidOverride) {
				t.Fatalf("got %v, want %v", err, ErrInvalidOverride)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %q", err, tt.field)
			}
		})
	}
}

func TestWithOverrides(t *testing.T) {
	s := mustSnapshot(t, tableRecords(), nil)
	ov := Override{ID: "1", Host: "WWW.Unfiled.CN", Scope: ScopeExact, Action: ActionAllow, Expires: t0.Add(time.Hour)}
	s2, err := s.WithOverrides([]Override{ov})
	if err != nil {
		t.Fatal(err)
	}
	if s2.base != s.base {
		t.Errorf("records not shared")
	}
	got := s2.Overrides()
	if len(got) != 1 || got[0].Host != "www.unfiled.cn" {
		t.Errorf("Overrides(): got %+v, want one normalised to www.unfiled.cn", got)
	}
	if len(s.Overrides()) != 0 {
		t.Errorf("original snapshot changed")
	}
	if d := Decide("www.unfiled.cn", s2, t0, Policy{}); d.Reason != ReasonOverrideAllow {
		t.Errorf("got %s, want %s", d.Reason, ReasonOverrideAllow)
	}
	if _, err := s.WithOverrides([]Override{{Host: "com.cn", Scope: ScopeDomain, Action: ActionDeny}}); err == nil {
		t.Errorf("invalid override accepted")
	}
}

func TestSameDomain(t *testing.T) {
	base := tableRecords()
	a := mustSnapshot(t, base, nil)
	changed := tableRecords()
	changed[0].Subject = "new subject"
	b := mustSnapshot(t, changed, []Override{{Host: "x.cancelled.cn", Scope: ScopeExact, Action: ActionDeny}})
	tests := []struct {
		domain string
		same   bool
	}{
		{"filed.cn", false},     // record changed
		{"cancelled.cn", false}, // override added
		{"changing.cn", true},
		{"unfiled.cn", true},
	}
	for _, tt := range tests {
		if got := a.sameDomain(b, tt.domain); got != tt.same {
			t.Errorf("sameDomain(%q): got %v, want %v", tt.domain, got, tt.same)
		}
	}
	c := mustSnapshot(t, base[1:], nil)
	if a.sameDomain(c, "filed.cn") {
		t.Errorf("removed record reported same")
	}
}

// genRecords makes n valid records with realistic string sizes.
func genRecords(n int) []Record {
	provinces := []string{"京", "沪", "浙", "粤", "苏", "川"}
	types := []string{"enterprise", "personal", "government"}
	recs := make([]Record, n)
	upd := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	for i := range recs {
		p := provinces[i%len(provinces)]
		recs[i] = Record{
			Domain:       fmt.Sprintf("site%07d.cn", i),
			State:        StateFiled,
			FilingNumber: fmt.Sprintf("%sICP备%08d号-1", p, 10000000+i),
			Subject:      fmt.Sprintf("示例科技有限公司%d", i),
			SubjectType:  strings.Clone(types[i%len(types)]),
			Province:     strings.Clone(p),
			UpdatedAt:    upd,
		}
	}
	return recs
}

// BenchmarkBuild1M builds a 1M-record snapshot and reports the heap the
// snapshot retains per record, its strings included.
func BenchmarkBuild1M(b *testing.B) {
	b.ReportAllocs()
	const n = 1_000_000
	for b.Loop() {
		b.StopTimer()
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		recs := genRecords(n)
		b.StartTimer()
		s, err := NewSnapshot(recs, nil)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		recs = nil
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/n, "heapB/record")
		runtime.KeepAlive(s)
		b.StartTimer()
	}
}

func BenchmarkLookup(b *testing.B) {
	s := mustSnapshot(b, genRecords(100000), nil)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if s.Lookup("site0012345.cn") == nil {
			b.Fatal("missing")
		}
		i++
	}
}

func unsafeData(s string) *byte { return unsafe.StringData(s) }

func TestApply(t *testing.T) {
	base := mustSnapshot(t, tableRecords(), []Override{{Host: "filed.cn", Scope: ScopeDomain, Action: ActionDeny}})
	s, err := base.Apply([]Record{
		{Domain: "filed.cn", State: StateCancelled},                           // replace
		{Domain: "新.中国", State: StateFiled, FilingNumber: "京ICP备10206937号-9"}, // add (Unicode)
	}, []string{"blacklisted.cn", "never-there.cn"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		domain string
		state  State // 0: absent
	}{
		{"filed.cn", StateCancelled},
		{"xn--efv.xn--fiqs8s", StateFiled},
		{"blacklisted.cn", 0},
		{"never-there.cn", 0},
		{"changing.cn", StateChanging},
	}
	for _, tt := range tests {
		var got State
		if r := s.Lookup(tt.domain); r != nil {
			got = r.State
		}
		if got != tt.state {
			t.Errorf("Lookup(%q): got %v, want %v", tt.domain, got, tt.state)
		}
	}
	if got, want := s.Len(), base.Len(); got != want { // +1 -1
		t.Errorf("Len: got %d, want %d", got, want)
	}
	if got, want := s.Count(StateFiled), base.Count(StateFiled); got != want { // -1 +1
		t.Errorf("filed: got %d, want %d", got, want)
	}
	if s.Count(StateBlacklisted) != 0 || s.Count(StateCancelled) != 2 {
		t.Errorf("counts: got blacklisted %d cancelled %d, want 0 and 2", s.Count(StateBlacklisted), s.Count(StateCancelled))
	}
	n := 0
	for r := range s.Records() {
		if r.Domain == "blacklisted.cn" || (r.Domain == "filed.cn" && r.State != StateCancelled) {
			t.Errorf("Records() yields a stale record %+v", *r)
		}
		n++
	}
	if n != s.Len() {
		t.Errorf("Records(): got %d, want %d", n, s.Len())
	}
	if len(s.Overrides()) != 1 {
		t.Errorf("overrides not carried over")
	}
	// The original is untouched.
	if base.Lookup("filed.cn").State != StateFiled || base.Lookup("blacklisted.cn") == nil {
		t.Errorf("Apply changed its receiver")
	}
	// Re-adding a deleted domain, deleting an added one.
	s2, err := s.Apply([]Record{{Domain: "blacklisted.cn", State: StateBlacklisted}}, []string{"新.中国"})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Lookup("blacklisted.cn") == nil || s2.Lookup("xn--efv.xn--fiqs8s") != nil || s2.Len() != base.Len() {
		t.Errorf("second Apply: got len %d", s2.Len())
	}
}

func TestApplyRejects(t *testing.T) {
	base := mustSnapshot(t, tableRecords(), nil)
	tests := []struct {
		name    string
		upserts []Record
		deletes []string
		is      error
	}{
		{"invalid record", []Record{{Domain: "x.cn", State: StateFiled}}, nil, ErrInvalidRecord},
		{"subdomain", []Record{{Domain: "www.x.cn", State: StateCancelled}}, nil, ErrInvalidRecord},
		{"duplicate upsert", []Record{{Domain: "x.cn", State: StateCancelled}, {Domain: "x.cn", State: StateCancelled}}, nil, ErrDuplicate},
		{"upsert and delete", []Record{{Domain: "x.cn", State: StateCancelled}}, []string{"x.cn"}, ErrDuplicate},
		{"bad delete", nil, []string{"com.cn"}, ErrInvalidRecord},
	}
	for _, tt := range tests {
		if _, err := base.Apply(tt.upserts, tt.deletes); !errors.Is(err, tt.is) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.is)
		}
	}
}

func TestApplyCompacts(t *testing.T) {
	s := mustSnapshot(t, genRecords(100), nil)
	var ups []Record
	for i := range 4100 {
		ups = append(ups, Record{Domain: fmt.Sprintf("new%d.cn", i), State: StateCancelled})
	}
	s2, err := s.Apply(ups, []string{"site0000000.cn"})
	if err != nil {
		t.Fatal(err)
	}
	if s2.delta != nil {
		t.Errorf("overlay of %d changes not compacted", len(ups)+1)
	}
	if got, want := s2.Len(), 100+4100-1; got != want || s2.base.n != want {
		t.Errorf("Len: got %d (base %d), want %d", got, s2.base.n, want)
	}
	if s2.Lookup("site0000000.cn") != nil || s2.Lookup("new4099.cn") == nil || s2.Lookup("site0000099.cn") == nil {
		t.Errorf("compacted snapshot lost or kept the wrong records")
	}
}

// BenchmarkApply measures one incremental change to a 1M-record registry.
func BenchmarkApply(b *testing.B) {
	s := mustSnapshot(b, genRecords(1_000_000), nil)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		st := StateCancelled
		if i%2 == 0 {
			st = StateNoAccess
		}
		if _, err := s.Apply([]Record{{Domain: "site0004242.cn", State: st}}, nil); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// TestBuilderKeepsNoBorrowedStrings adds records whose strings point into
// one buffer (as the bulk file load's borrowed strings do), scribbles over
// the buffer after each Add, and checks that the snapshot still has every
// value, interned ones included, and that the row index's domain (last)
// is the arena's.
func TestBuilderKeepsNoBorrowedStrings(t *testing.T) {
	buf := make([]byte, 0, 256)
	borrow := func(s string) string {
		start := len(buf)
		buf = append(buf, s...)
		return unsafe.String(&buf[start], len(s))
	}
	b := NewBuilder(4)
	want := map[string]Record{}
	for i := range 4 {
		buf = buf[:0]
		dom := fmt.Sprintf("site%d.cn", i)
		rec := Record{
			Domain: borrow(dom), State: StateFiled,
			FilingNumber: borrow(fmt.Sprintf("京ICP备%08d号-1", i)),
			Subject:      borrow("示例科技有限公司"),
			SubjectType:  borrow("enterprise"),
			Province:     borrow("京"),
			Upstream:     borrow(fmt.Sprintf("10.0.0.%d:443", i)),
		}
		want[dom] = Record{Domain: dom, State: StateFiled, FilingNumber: strings.Clone(rec.FilingNumber),
			Subject: "示例科技有限公司", SubjectType: "enterprise", Province: "京", Upstream: strings.Clone(rec.Upstream)}
		if err := b.Add(rec); err != nil {
			t.Fatal(err)
		}
		if b.last != dom {
			t.Fatalf("last: got %q, want %q", b.last, dom)
		}
		for j := range buf {
			buf[j] = 'X'
		}
		if b.last != dom {
			t.Fatalf("last changed with the caller's buffer: %q", b.last)
		}
	}
	s := b.Build()
	for dom, w := range want {
		got := s.Lookup(dom)
		if got == nil || !got.Equal(&w) {
			t.Errorf("%s: got %+v, want %+v", dom, got, w)
		}
	}
}
