package registry

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestPackedRoundTrip packs random records — every field, long and
// repeated values, zero, fractional and far-off times, more distinct
// values than the intern table takes — and checks that each comes back
// equal by Lookup and by Records, and that absent domains are absent.
func TestPackedRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	times := []time.Time{{}, time.Date(2026, 11, 1, 8, 0, 0, 123456789, time.UTC),
		time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Unix(-1, 5).UTC()}
	pick := func(vals ...string) string { return vals[rng.IntN(len(vals))] }
	n := 20000
	want := make(map[string]Record, n)
	b := NewBuilder(0) // no hint: the table grows
	for i := range n {
		r := Record{
			Domain:          fmt.Sprintf("d%d.cn", i),
			State:           StateFiled,
			FilingNumber:    fmt.Sprintf("京ICP备%08d号-%d", 10000000+i, 1+i%9),
			Subject:         pick("", "某某科技有限公司", strings.Repeat("长", 300)),
			SubjectType:     pick("", "enterprise", "personal", fmt.Sprintf("type-%d", i)), // unique ones overflow the intern table
			Province:        pick("", "京", "粤"),
			Upstream:        pick("", "10.0.0.5:443", fmt.Sprintf("10.%d.%d.1:443", i>>8&255, i&255), strings.Repeat("u", 300)+":1"),
			RectifyDeadline: times[rng.IntN(len(times))],
			UpdatedAt:       times[rng.IntN(len(times))],
		}
		if i%7 == 0 {
			r.State, r.FilingNumber = StateCancelled, ""
		}
		if err := b.Add(r); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		want[r.Domain] = r
	}
	if err := b.Add(Record{Domain: "d5.cn", State: StateCancelled}); err == nil {
		t.Fatal("duplicate accepted")
	}
	s := b.Build()
	if s.Len() != n {
		t.Fatalf("Len %d, want %d", s.Len(), n)
	}
	for d, w := range want {
		got := s.Lookup(d)
		if got == nil || !got.Equal(&w) {
			t.Fatalf("Lookup(%s) = %+v, want %+v", d, got, w)
		}
	}
	seen := 0
	for r := range s.Records() {
		w, ok := want[r.Domain]
		if !ok || !r.Equal(&w) {
			t.Fatalf("Records yielded %+v, want %+v", *r, w)
		}
		seen++
	}
	if seen != n {
		t.Fatalf("Records yielded %d, want %d", seen, n)
	}
	for _, d := range []string{"d20000.cn", "x.cn", "", "d1.cn.", "D1.cn"} {
		if r := s.Lookup(d); r != nil {
			t.Errorf("Lookup(%q) = %+v, want nil", d, r)
		}
	}
}

// BenchmarkSnapshotLookup measures a lookup in a 100k-record snapshot (the
// uncached decision's cost of finding the record).
func BenchmarkSnapshotLookup(b *testing.B) {
	bl := NewBuilder(100_000)
	for i := range 100_000 {
		if err := bl.Add(Record{Domain: fmt.Sprintf("site%d.cn", i), State: StateFiled,
			FilingNumber: fmt.Sprintf("京ICP备%08d号-1", 10000000+i), Subject: "某某科技有限公司",
			SubjectType: "enterprise", Province: "京", UpdatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	s := bl.Build()
	doms := make([]string, 1024)
	for i := range doms {
		doms[i] = fmt.Sprintf("site%d.cn", i*97)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if s.Lookup(doms[i&1023]) == nil {
			b.Fatal("missing")
		}
	}
}
