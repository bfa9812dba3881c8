package admin_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/icpgate/icpgate/admin"
	"github.com/icpgate/icpgate/registry"
)

// searchEnv is an API env over testdata/search_registry.jsonl: one subject
// with three websites, others by number, subject and province form.
func searchEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, nil)
	snap, err := registry.LoadSnapshot("testdata/search_registry.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	e.reg.Swap(snap)
	return e
}

func (e *env) search(query url.Values) (admin.SearchAnswer, resp) {
	e.t.Helper()
	r := e.do(req{method: "GET", path: "/v1/records?" + query.Encode(), token: e.secret["viewer"]})
	var a admin.SearchAnswer
	if r.status == http.StatusOK {
		if err := json.Unmarshal([]byte(r.body), &a); err != nil {
			e.t.Fatal(err)
		}
	}
	return a, r
}

func TestSearchRecords(t *testing.T) {
	e := searchEnv(t)
	for _, tc := range []struct {
		name, param, value string
		want               []string // domain verdict/reason
		wantNumber         string
	}{
		{"subject number", "filing_number", "京ICP备10206937号",
			[]string{"filed-two.cn pass/filed", "filed.cn pass/filed", "noaccess.cn block/no_access"}, "京ICP备10206937号"},
		{"website number, full-width", "filing_number", "京ＩＣＰ备１０２０６９３７号－２",
			[]string{"filed-two.cn pass/filed"}, "京ICP备10206937号-2"},
		{"second province form", "filing_number", "川ICP备2026007879号", []string{"chengdu.cn pass/filed"}, "川ICP备2026007879号"},
		{"no match", "filing_number", "沪ICP备10206937号", nil, "沪ICP备10206937号"},
		{"subject", "subject", "北京测试", []string{"filed-two.cn pass/filed", "filed.cn pass/filed", "noaccess.cn block/no_access"}, ""},
		{"subject, case", "subject", "example software", []string{"other.cn pass/filed"}, ""},
		{"subject without filing number", "subject", "杭州测试", []string{"pending.cn block/filing_pending"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, r := e.search(url.Values{tc.param: {tc.value}})
			if r.status != http.StatusOK {
				t.Fatalf("got %d %s", r.status, r.body)
			}
			var got []string
			for _, rec := range a.Records {
				got = append(got, rec.Domain+" "+rec.Verdict+"/"+rec.Reason)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("records: got %q, want %q", got, tc.want)
			}
			if a.FilingNumber != tc.wantNumber {
				t.Errorf("filing_number: got %q, want %q", a.FilingNumber, tc.wantNumber)
			}
			if a.More || a.Incomplete || a.Scanned != 7 {
				t.Errorf("more %v, incomplete %v, scanned %d; want false, false, 7", a.More, a.Incomplete, a.Scanned)
			}
			if a.Records == nil {
				t.Error("records: null, want a list")
			}
		})
	}
}

func TestSearchRecordsLimit(t *testing.T) {
	e := searchEnv(t)
	a, r := e.search(url.Values{"subject": {"有限公司"}, "limit": {"2"}})
	if r.status != http.StatusOK {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	if len(a.Records) != 2 || !a.More {
		t.Errorf("limit 2: got %d records, more %v; want 2, true", len(a.Records), a.More)
	}
}

func TestSearchRecordsErrors(t *testing.T) {
	e := searchEnv(t)
	for _, tc := range []struct {
		query          string
		field, problem string
	}{
		{"", "", "search_empty"},
		{"filing_number=10206937", "filing_number", "filing_number"},
		{"filing_number=%E6%B8%AFICP%E5%A4%8710206937%E5%8F%B7", "filing_number", "filing_number"}, // 港ICP备10206937号
		{"subject=%E4%BA%AC", "subject", "subject_short"},
		{"limit=101&subject=ab", "limit", "limit_bad"},
		{"host=filed.cn", "host", "unknown_param"},
	} {
		r := e.do(req{method: "GET", path: "/v1/records?" + tc.query, token: e.secret["viewer"]})
		m := wantError(t, r, http.StatusBadRequest, "invalid", tc.field)
		if got, _ := m["problem"].(string); got != tc.problem {
			t.Errorf("%s: problem: got %q, want %q", tc.query, got, tc.problem)
		}
	}
	r := e.do(req{method: "GET", path: "/v1/records?subject=ab"})
	wantError(t, r, http.StatusUnauthorized, "unauthenticated", "")
	r = e.do(req{method: "POST", path: "/v1/records?subject=ab", token: e.secret["admin"]})
	wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed", "")
}
