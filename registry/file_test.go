package registry

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

func sortedRecords(recs []Record) []Record {
	out := slices.Clone(recs)
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.Domain, b.Domain) })
	return out
}

func TestLoadFileGood(t *testing.T) {
	jl, err := LoadFile("testdata/good.jsonl")
	if err != nil {
		t.Fatalf("jsonl: %v", err)
	}
	cs, err := LoadFile("testdata/good.csv")
	if err != nil {
		t.Fatalf("csv: %v", err)
	}
	if len(jl) != 5 || len(cs) != 5 {
		t.Fatalf("got %d and %d records, want 5 and 5", len(jl), len(cs))
	}
	jl, cs = sortedRecords(jl), sortedRecords(cs)
	for i := range jl {
		if !jl[i].Equal(&cs[i]) {
			t.Errorf("jsonl and csv differ:\n%+v\n%+v", jl[i], cs[i])
		}
	}
	s, err := LoadSnapshot("testdata/good.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		domain string
		state  State
		check  func(r *Record) bool
	}{
		{"filed.cn", StateFiled, func(r *Record) bool {
			return r.Upstream == "10.0.0.5:443" && r.Subject == "某某科技有限公司" && r.UpdatedAt.Equal(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC))
		}},
		{"xn--fsqu00a.xn--fiqs8s", StateChanging, func(r *Record) bool { return r.Province == "京" }},
		{"rectifying.com.cn", StateRectifying, func(r *Record) bool { return r.RectifyDeadline.Equal(deadline) }},
		{"no-access.cn", StateNoAccess, func(r *Record) bool { return r.FilingNumber == "" }},
		{"blacklisted.cn", StateBlacklisted, func(r *Record) bool { return r.Subject == "黑名单主体, with a comma" }},
	}
	for _, tt := range tests {
		r := s.Lookup(tt.domain)
		if r == nil {
			t.Errorf("%s: missing", tt.domain)
			continue
		}
		if r.State != tt.state || !tt.check(r) {
			t.Errorf("%s: got %+v, want state %s", tt.domain, *r, tt.state)
		}
	}
}

func TestLoadFileFormats(t *testing.T) {
	tests := []struct {
		path  string
		state State
	}{
		{"testdata/bom-reordered.csv", StateCancelled}, // BOM, columns in another order
		{"testdata/sniffed.txt", StateCancelled},       // no extension: sniffed as JSON
	}
	for _, tt := range tests {
		recs, err := LoadFile(tt.path)
		if err != nil {
			t.Errorf("%s: %v", tt.path, err)
			continue
		}
		if len(recs) != 1 || recs[0].Domain != "filed.cn" || recs[0].State != tt.state {
			t.Errorf("%s: got %+v", tt.path, recs)
		}
	}
	if _, err := LoadFile("testdata/does-not-exist.jsonl"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v, want %v", err, os.ErrNotExist)
	}
}

func TestLoadFileBad(t *testing.T) {
	tests := []struct {
		file   string
		line   int
		reason string // must appear in the error
		is     error
	}{
		{"bad_state.jsonl", 3, `state: unknown state "revoked"`, ErrInvalidRecord},
		{"missing_filing_number.jsonl", 2, "filing_number: required for state access_pending", ErrInvalidRecord},
		{"bad_filing_number.jsonl", 2, `filing_number "萌ICP备20210001号-1"`, ErrInvalidRecord},
		{"bad_deadline.jsonl", 3, `rectify_deadline "2026-12-31"`, ErrInvalidRecord},
		{"missing_deadline.jsonl", 2, "rectify_deadline: required", ErrInvalidRecord},
		{"bad_updated_at.jsonl", 2, `updated_at "yesterday"`, ErrInvalidRecord},
		{"duplicate_domain.jsonl", 4, "duplicate domain: domain ok1.cn is also on line 1", ErrDuplicate},
		{"non_registrable.jsonl", 2, `domain "www.x.cn": not a registrable domain`, ErrInvalidRecord},
		{"public_suffix.jsonl", 2, `domain "com.cn"`, ErrInvalidRecord},
		{"missing_domain.jsonl", 2, "domain: required", ErrInvalidRecord},
		{"unknown_field.jsonl", 2, `unknown field "filing_no"`, ErrInvalidRecord},
		{"bad_json.jsonl", 2, "bad JSON", ErrInvalidRecord},
		{"not_string.jsonl", 2, "state: must be a string", ErrInvalidRecord},
		{"two_values.jsonl", 2, "bad JSON", ErrInvalidRecord},
		{"unknown_column.csv", 1, `unknown column "filing_no"`, ErrInvalidRecord},
		{"missing_column.csv", 1, `missing column "state"`, ErrInvalidRecord},
		{"duplicate_column.csv", 1, `duplicate column "domain"`, ErrInvalidRecord},
		{"bad_state.csv", 3, `state: unknown state "bogus"`, ErrInvalidRecord},
		{"wrong_field_count.csv", 3, "wrong number of fields", ErrInvalidRecord},
		// OK1.cn is read as ok1.cn, which line 2 has already.
		{"not_normal_form.csv", 4, "duplicate domain: domain ok1.cn is also on line 2", ErrDuplicate},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", tt.file)
			recs, err := LoadFile(path)
			if err == nil {
				t.Fatalf("got %d records and no error", len(recs))
			}
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("got %T %v, want *LineError", err, err)
			}
			if le.Line != tt.line {
				t.Errorf("line: got %d, want %d (%v)", le.Line, tt.line, err)
			}
			prefix := path + ":" + strconv.Itoa(tt.line) + ": "
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("got %q, want prefix %q", err, prefix)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("got %q, want it to contain %q", err, tt.reason)
			}
			if !errors.Is(err, ErrBadFile) || !errors.Is(err, tt.is) {
				t.Errorf("got %v, want it to match %v and %v", err, ErrBadFile, tt.is)
			}
		})
	}
}

// TestSampleRegistry loads configs/registry.sample.jsonl and checks it
// covers every state and decides the README demo names as documented.
func TestSampleRegistry(t *testing.T) {
	s, err := LoadSnapshot("../configs/registry.sample.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range States() {
		if s.Count(st) == 0 {
			t.Errorf("sample has no %s record", st)
		}
	}
	if s.Len() < 20 || s.Len() > 30 {
		t.Errorf("sample has %d records, want 20-30", s.Len())
	}
	now := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	tests := []struct {
		host    string
		verdict Verdict
		reason  Reason
	}{
		{"filed-demo.cn", Pass, ReasonFiled},
		{"www.filed-demo.cn", Pass, ReasonFiled},
		{"changing-demo.cn", Pass, ReasonFiled},
		{"access-pending-demo.cn", Pass, ReasonAccessPending},
		{"rectifying-demo.cn", Pass, ReasonRectifying},
		{"overdue-demo.cn", Block, ReasonRectificationOverdue},
		{"no-access-demo.cn", Block, ReasonNoAccess},
		{"filing-pending-demo.cn", Block, ReasonFilingPending},
		{"cancelled-demo.cn", Block, ReasonCancelled},
		{"access-revoked-demo.cn", Block, ReasonAccessRevoked},
		{"blacklisted-demo.cn", Block, ReasonBlacklisted},
		{"www.例子.中国", Pass, ReasonFiled},
		{"shop-demo.com.cn", Pass, ReasonFiled},
		{"unfiled-demo.cn", Block, ReasonUnfiled},
	}
	for _, tt := range tests {
		d := Decide(tt.host, s, now, Policy{})
		if d.Verdict != tt.verdict || d.Reason != tt.reason {
			t.Errorf("Decide(%q): got %s %s, want %s %s", tt.host, d.Verdict, d.Reason, tt.verdict, tt.reason)
		}
	}
	// The embedded copy is read through ReadSnapshot.
	b, err := os.ReadFile("../configs/registry.sample.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := ReadSnapshot(bytes.NewReader(b), "registry.sample.jsonl")
	if err != nil || s2.Len() != s.Len() {
		t.Errorf("ReadSnapshot: got %v records, %v; want %d", s2.Len(), err, s.Len())
	}
}

// writeFile replaces path atomically (write a temporary file, rename), as
// most editors and config managers do.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// writeInPlace truncates and rewrites path, keeping its inode.
func writeInPlace(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 5*time.Second {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
	return 0
}

func TestFileSourceReload(t *testing.T) {
	type files struct{ v1, v2, v3, bad string }
	formats := map[string]files{
		"reload.jsonl": {
			v1:  `{"domain":"a.cn","state":"filed","filing_number":"京ICP备10206937号-1"}` + "\n" + `{"domain":"b.cn","state":"cancelled"}` + "\n",
			v2:  `{"domain":"a.cn","state":"cancelled"}` + "\n" + `{"domain":"b.cn","state":"cancelled"}` + "\n",
			v3:  `{"domain":"a.cn","state":"no_access"}` + "\n" + `{"domain":"b.cn","state":"cancelled"}` + "\n",
			bad: `{"domain":"a.cn","state":"filed"}` + "\n",
		},
		"reload.csv": {
			v1:  "domain,state,filing_number\na.cn,filed,京ICP备10206937号-1\nb.cn,cancelled,\n",
			v2:  "domain,state\na.cn,cancelled\nb.cn,cancelled\n",
			v3:  "domain,state\na.cn,no_access\nb.cn,cancelled\n",
			bad: "domain,state\na.cn,filed\n",
		},
	}
	for name, f := range formats {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), name)
			writeFile(t, path, f.v1)
			r := New(Options{})
			fs := NewFileSource(path, r, nil)
			fs.Interval = 20 * time.Millisecond
			var reloads atomic.Int32
			fs.OnReload = func(*Snapshot, error) { reloads.Add(1) }
			if err := fs.Load(); err != nil {
				t.Fatal(err)
			}
			if d := r.Decide("www.a.cn"); d.Reason != ReasonFiled {
				t.Fatalf("v1: got %s, want %s", d.Reason, ReasonFiled)
			}
			// An override set by the control plane survives reloads.
			err := r.Update(func(old *Snapshot) (*Snapshot, error) {
				return old.WithOverrides([]Override{{ID: "o", Host: "c.cn", Scope: ScopeDomain, Action: ActionAllow, Expires: time.Now().Add(time.Hour)}})
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- fs.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: got %v, want nil", err)
				}
			}()

			writeFile(t, path, f.v2) // rename-replace
			took := waitFor(t, "v2", func() bool { return r.Decide("www.a.cn").Reason == ReasonCancelled })
			t.Logf("rename-replace took effect in %v", took)
			if d := r.Decide("x.c.cn"); d.Reason != ReasonOverrideAllow {
				t.Errorf("override after reload: got %s, want %s", d.Reason, ReasonOverrideAllow)
			}

			failures := fs.Stats().Failures
			writeInPlace(t, path, f.bad)
			waitFor(t, "the bad file to be rejected", func() bool { return fs.Stats().Failures > failures })
			st := fs.Stats()
			if st.LastError == nil || !strings.Contains(st.LastError.Error(), path+":") || !strings.Contains(st.LastError.Error(), "filing_number") {
				t.Errorf("LastError: got %v, want %s:LINE naming filing_number", st.LastError, path)
			}
			if d := r.Decide("www.a.cn"); d.Reason != ReasonCancelled {
				t.Errorf("after bad file: got %s, want %s (old snapshot keeps serving)", d.Reason, ReasonCancelled)
			}

			writeInPlace(t, path, f.v3) // in place, same inode
			took = waitFor(t, "v3", func() bool { return r.Decide("a.cn").Reason == ReasonNoAccess })
			t.Logf("in-place write took effect in %v", took)
			// The stats and OnReload follow the swap of the snapshot, an
			// instant later.
			waitFor(t, "the reload's stats", func() bool {
				st := fs.Stats()
				return st.LastError == nil && st.Successes >= 3 && reloads.Load() >= 4
			})
			st = fs.Stats()
			if st.LastError != nil || st.Successes < 3 || st.LastSuccess.IsZero() {
				t.Errorf("stats: got %+v", st)
			}
			if reloads.Load() < 4 {
				t.Errorf("OnReload calls: got %d, want at least 4", reloads.Load())
			}
		})
	}
}

func TestFileSourceMissingFileKeepsServing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.jsonl")
	writeFile(t, path, `{"domain":"a.cn","state":"cancelled"}`+"\n")
	r := New(Options{})
	fs := NewFileSource(path, r, nil)
	fs.Interval = 10 * time.Millisecond
	if err := fs.Load(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fs.Run(ctx) }()
	os.Remove(path)
	time.Sleep(50 * time.Millisecond)
	if d := r.Decide("a.cn"); d.Reason != ReasonCancelled {
		t.Errorf("got %s, want %s", d.Reason, ReasonCancelled)
	}
	writeFile(t, path, `{"domain":"a.cn","state":"blacklisted"}`+"\n")
	waitFor(t, "the file to come back", func() bool { return r.Decide("a.cn").Reason == ReasonBlacklisted })
	cancel()
	<-done
}

func TestFileSourceShrinkGuard(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.jsonl")
	var b strings.Builder
	for _, d := range []string{"a", "b", "c", "d"} {
		b.WriteString(`{"domain":"` + d + `.cn","state":"cancelled"}` + "\n")
	}
	writeFile(t, path, b.String())
	r := New(Options{})
	fs := NewFileSource(path, r, nil)
	fs.MaxDeleteFraction = 0.5
	if err := fs.Load(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, `{"domain":"a.cn","state":"cancelled"}`+"\n")
	if err := fs.Load(); !errors.Is(err, ErrShrink) {
		t.Fatalf("got %v, want %v", err, ErrShrink)
	}
	if got := r.Snapshot().Len(); got != 4 {
		t.Errorf("records after refused reload: got %d, want 4", got)
	}
	writeFile(t, path, `{"domain":"a.cn","state":"cancelled"}`+"\n"+`{"domain":"b.cn","state":"cancelled"}`+"\n")
	if err := fs.Load(); err != nil {
		t.Errorf("removing half: got %v, want nil", err)
	}
	// An empty file is refused even without the fraction guard.
	fs.MaxDeleteFraction = 0
	writeFile(t, path, "")
	if err := fs.Load(); !errors.Is(err, ErrShrink) {
		t.Errorf("empty file: got %v, want %v", err, ErrShrink)
	}
	if got := r.Snapshot().Len(); got != 2 {
		t.Errorf("records after refused empty file: got %d, want 2", got)
	}
}

// FuzzParseRow checks the row parser never panics and only accepts rows
// that a snapshot accepts, in canonical form.
func FuzzParseRow(f *testing.F) {
	for _, name := range []string{"testdata/good.jsonl", "../configs/registry.sample.jsonl"} {
		if b, err := os.ReadFile(name); err == nil {
			sc := bufio.NewScanner(bytes.NewReader(b))
			for sc.Scan() {
				f.Add(slices.Clone(sc.Bytes()))
			}
		}
	}
	bad, _ := filepath.Glob("testdata/bad/*.jsonl")
	for _, name := range bad {
		b, _ := os.ReadFile(name)
		for _, line := range bytes.Split(b, []byte("\n")) {
			f.Add(line)
		}
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, err := ParseRow(line)
		if err != nil {
			if !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("error does not wrap ErrInvalidRecord: %v", err)
			}
			return
		}
		if d, err := CanonicalDomain(rec.Domain); err != nil || d != rec.Domain {
			t.Fatalf("accepted domain %q is not canonical: %q, %v", rec.Domain, d, err)
		}
		if !rec.State.Valid() {
			t.Fatalf("accepted invalid state %d", rec.State)
		}
		if _, err := NewSnapshot([]Record{rec}, nil); err != nil {
			t.Fatalf("ParseRow accepted %q but NewSnapshot rejects it: %v", line, err)
		}
	})
}

// BenchmarkLoadFile parses and validates a 100k-row JSON Lines file.
func BenchmarkLoadFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "r.jsonl")
	var buf bytes.Buffer
	for i := range 100000 {
		buf.WriteString(`{"domain":"site` + strconv.Itoa(1000000+i) + `.cn","state":"filed","filing_number":"京ICP备` +
			strconv.Itoa(10000000+i) + `号-1","subject":"示例科技有限公司","subject_type":"enterprise","province":"京","updated_at":"2026-11-01T08:00:00Z"}` + "\n")
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(buf.Len()))
	for b.Loop() {
		s, err := LoadSnapshot(path)
		if err != nil || s.Len() != 100000 {
			b.Fatal(s.Len(), err)
		}
	}
}

// FuzzJSONRow checks the row parser against encoding/json: whatever it
// accepts, encoding/json (unknown fields disallowed) accepts with the same
// values; whatever encoding/json accepts, it accepts too, except for the
// inputs it is documented to be stricter on (duplicate keys, invalid
// UTF-8, lone surrogates, keys in another case).
func FuzzJSONRow(f *testing.F) {
	for _, s := range []string{
		`{"domain":"a.cn","state":"filed"}`,
		` { "domain" : "a.cn" , "state" : null } `,
		`{"subject":"\u4f8b\"\\\/\b\f\n\r\t","domain":"x"}`,
		`{"subject":"\ud83d\ude00"}`,
		`{"subject":"\ud83d"}`,
		`{"domain":"a","domain":"b"}`,
		`{"domain":1}`,
		`{}`,
		`{"x":"y"}`,
		`{"domain":"a"} x`,
		"{\"subject\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var got fileRow
		err := decodeJSONRow(line, &got, false)
		var want fileRow
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		refErr := dec.Decode(&want)
		if refErr == nil {
			if _, e := dec.Token(); e != io.EOF {
				refErr = errors.New("trailing data")
			}
		}
		// Borrowing (the bulk load) decides and decodes alike.
		var borrowed fileRow
		if berr := decodeJSONRow(line, &borrowed, true); (berr == nil) != (err == nil) || borrowed != got {
			t.Fatalf("%q: borrowing: got %+v, %v; copying: %+v, %v", line, borrowed, berr, got, err)
		}
		if err == nil {
			if refErr != nil {
				t.Fatalf("accepted %q; encoding/json: %v", line, refErr)
			}
			if got != want {
				t.Fatalf("%q: got %+v, want %+v", line, got, want)
			}
			return
		}
		if refErr == nil && utf8.Valid(line) && !bytes.Contains(line, []byte(`\u`)) && !hasDuplicateKey(line) && !hasFoldedKey(line) {
			t.Fatalf("rejected %q (%v); encoding/json accepts it as %+v", line, err, want)
		}
	})
}

// hasFoldedKey reports whether a key differs from its field name only in
// case, which encoding/json accepts and the fixed format does not.
func hasFoldedKey(line []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(line, &m) != nil {
		return false
	}
	for k := range m {
		if !slices.Contains(columns, k) {
			return true
		}
	}
	return false
}

// hasDuplicateKey reports whether a JSON object repeats a key, using
// encoding/json's tokenizer.
func hasDuplicateKey(line []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return false
		}
		ks, _ := k.(string)
		if seen[ks] {
			return true
		}
		seen[ks] = true
		var v any
		if err := dec.Decode(&v); err != nil {
			return false
		}
	}
	return false
}
