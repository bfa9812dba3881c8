package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func searchSnapshot(t *testing.T) *Snapshot {
	t.Helper()
	recs := []Record{
		{Domain: "a.cn", State: StateFiled, FilingNumber: "京ICP备10206937号-1", Subject: "北京测试科技有限公司"},
		{Domain: "b.cn", State: StateFiled, FilingNumber: "京ICP备10206937号-2", Subject: "北京测试科技有限公司"},
		{Domain: "c.cn", State: StateFiled, FilingNumber: "京ICP备2020693712号-1", Subject: "Example Software (Beijing) Co."},
		{Domain: "d.cn", State: StateFiled, FilingNumber: "蜀ICP备2026007879号-1", Subject: "成都样例网络有限公司"},
		{Domain: "e.cn", State: StateFiled, FilingNumber: "京ICP证030173号", Subject: "某某信息（北京）有限公司"},
		{Domain: "f.cn", State: StateFilingPending, Subject: "杭州测试有限公司"},
	}
	s, err := NewSnapshot(recs, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func domains(res SearchResult) []string {
	var d []string
	for _, r := range res.Records {
		d = append(d, r.Domain)
	}
	return d
}

func TestSearch(t *testing.T) {
	s := searchSnapshot(t)
	for _, tc := range []struct {
		name string
		q    Query
		want []string
	}{
		{"subject number finds every site", Query{FilingNumber: "京ICP备10206937号"}, []string{"a.cn", "b.cn"}},
		{"website number finds its site", Query{FilingNumber: "京ICP备10206937号-2"}, []string{"b.cn"}},
		{"full-width and lower case", Query{FilingNumber: " 京icp备１０２０６９３７号－１ "}, []string{"a.cn"}},
		{"label and spaces", Query{FilingNumber: "备案号：京ICP备 10206937号"}, []string{"a.cn", "b.cn"}},
		{"another serial", Query{FilingNumber: "京ICP备2020693712号"}, []string{"c.cn"}},
		{"second province form", Query{FilingNumber: "川ICP备2026007879号"}, []string{"d.cn"}},
		{"licence", Query{FilingNumber: "京ICP证030173号"}, []string{"e.cn"}},
		{"unknown number", Query{FilingNumber: "沪ICP备10206937号"}, nil},
		{"subject substring", Query{Subject: "测试科技"}, []string{"a.cn", "b.cn"}},
		{"subject case and width", Query{Subject: "ＥＸＡＭＰＬＥ software"}, []string{"c.cn"}},
		{"subject full-width brackets", Query{Subject: "信息(北京)"}, []string{"e.cn"}},
		{"subject without filing", Query{Subject: "杭州"}, []string{"f.cn"}},
		{"both", Query{FilingNumber: "京ICP备10206937号", Subject: "北京"}, []string{"a.cn", "b.cn"}},
		{"both, subject disagrees", Query{FilingNumber: "京ICP备10206937号", Subject: "杭州"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.Search(context.Background(), tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := domains(res); !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if res.More || res.Incomplete || res.Scanned != s.Len() {
				t.Errorf("more %v, incomplete %v, scanned %d of %d", res.More, res.Incomplete, res.Scanned, s.Len())
			}
		})
	}
}

func TestSearchErrors(t *testing.T) {
	s := searchSnapshot(t)
	for _, tc := range []struct {
		q    Query
		want error
	}{
		{Query{}, ErrEmptyQuery},
		{Query{Subject: "  "}, ErrEmptyQuery},
		{Query{Subject: "京"}, ErrEmptyQuery},
		{Query{FilingNumber: "10206937"}, ErrInvalidFilingNumber},
		{Query{FilingNumber: "港ICP备10206937号"}, ErrInvalidFilingNumber},
	} {
		if _, err := s.Search(context.Background(), tc.q); !errors.Is(err, tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.q, err, tc.want)
		}
	}
}

// TestSearchBounds checks the result cap and that a done context stops
// the scan with what was found so far.
func TestSearchBounds(t *testing.T) {
	const n = 3*scanCheckEvery + 10
	b := NewBuilder(n)
	for i := range n {
		if err := b.Add(Record{Domain: fmt.Sprintf("d%05d.cn", i), State: StateFiled,
			FilingNumber: fmt.Sprintf("京ICP备10206937号-%d", i%9999+1), Subject: "同一主体"}); err != nil {
			t.Fatal(err)
		}
	}
	s := b.Build()
	res, err := s.Search(context.Background(), Query{Subject: "同一主体", Limit: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 7 || !res.More || res.Incomplete {
		t.Errorf("limit 7: got %d records, more %v, incomplete %v", len(res.Records), res.More, res.Incomplete)
	}
	if !slices.IsSortedFunc(res.Records, func(a, b Record) int { return strings.Compare(a.Domain, b.Domain) }) {
		t.Errorf("records not sorted by domain: %q", domains(res))
	}
	res, err = s.Search(context.Background(), Query{Subject: "同一主体", Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != MaxSearchResults || !res.More {
		t.Errorf("limit over the cap: got %d records, more %v; want %d, true", len(res.Records), res.More, MaxSearchResults)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err = s.Search(ctx, Query{Subject: "没有"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Incomplete || res.Scanned != 0 {
		t.Errorf("done context: incomplete %v, scanned %d; want true, 0", res.Incomplete, res.Scanned)
	}
}

// benchSnapshot is 100,000 records, each with its own number and subject.
func benchSnapshot(b *testing.B) *Snapshot {
	const n = 100000
	bl := NewBuilder(n)
	for i := range n {
		if err := bl.Add(Record{Domain: fmt.Sprintf("d%06d.cn", i), State: StateFiled,
			FilingNumber: fmt.Sprintf("京ICP备%08d号-1", 10000000+i), Subject: fmt.Sprintf("北京第%d科技有限公司", i)}); err != nil {
			b.Fatal(err)
		}
	}
	return bl.Build()
}

func BenchmarkSearchSubject(b *testing.B) {
	s := benchSnapshot(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Search(context.Background(), Query{Subject: "不存在的主体"}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSearchFilingNumber(b *testing.B) {
	s := benchSnapshot(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Search(context.Background(), Query{FilingNumber: "京ICP备10000001号"}); err != nil {
			b.Fatal(err)
		}
	}
}
