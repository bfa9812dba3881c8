package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/icpgate/icpgate/internal/syncbuf"
)

// row returns a JSON Lines row of a cancelled record of domain.
func row(domain string) string { return `{"domain":"` + domain + `","state":"cancelled"}` }

// TestReadSnapshotErrors checks the whole message of a refused file: every
// bad line up to the cap, both lines of a duplicate, an over-long line
// named by its number (never "bufio.Scanner: token too long").
func TestReadSnapshotErrors(t *testing.T) {
	long := `{"domain":"long.cn","state":"cancelled","subject":"` + strings.Repeat("长", maxLine/3+1) + `"}`
	var many, manyCSV strings.Builder
	manyCSV.WriteString("domain,state\n")
	for i := range 25 {
		fmt.Fprintf(&many, `{"domain":"d%d.cn","state":"revoked"}`+"\n", i)
		fmt.Fprintf(&manyCSV, "d%d.cn,revoked\n", i)
	}
	manyWant := func(name string, first int) string {
		var b strings.Builder
		for i := range maxListed {
			fmt.Fprintf(&b, "%s:%d: invalid record: state: unknown state \"revoked\"", name, first+i)
			b.WriteString(` (want one of filed, changing, access_pending, rectifying, no_access, filing_pending, cancelled, access_revoked, blacklisted)` + "\n")
		}
		fmt.Fprintf(&b, "%s: and 5 more bad lines (25 in all)", name)
		return b.String()
	}
	tests := []struct {
		name, in string
		want     string // the whole error
		count    int    // FileError.Count
	}{
		{"long.jsonl", row("a.cn") + "\n" + long + "\n" + row("b.cn") + "\n",
			"long.jsonl:2: longer than 65536 bytes; a record is one line of at most 65536 bytes", 1},
		// The last line, without a newline.
		{"long-last.jsonl", row("a.cn") + "\n" + long,
			"long-last.jsonl:2: longer than 65536 bytes; a record is one line of at most 65536 bytes", 1},
		{"long.csv", "domain,state,subject\na.cn,cancelled," + strings.Repeat("x", maxLine) + "\nb.cn,cancelled,x\n",
			"long.csv:2: longer than 65536 bytes; a record is one line of at most 65536 bytes", 1},
		// Lines after a bad one are still checked.
		{"several.jsonl", row("a.cn") + "\n" + long + "\n\n" + `{"domain":"b.cn","state":"filed"}` + "\n" + row("www.c.cn") + "\n" + row("a.cn") + "\n",
			"several.jsonl:2: longer than 65536 bytes; a record is one line of at most 65536 bytes\n" +
				"several.jsonl:4: invalid record: filing_number: required for state filed\n" +
				`several.jsonl:5: invalid record: domain "www.c.cn": not a registrable domain (its registrable domain is c.cn)` + "\n" +
				"several.jsonl:6: duplicate domain: domain a.cn is also on line 1", 4},
		{"cap.jsonl", many.String(), manyWant("cap.jsonl", 1), 25},
		{"cap.csv", manyCSV.String(), manyWant("cap.csv", 2), 25},
		// A duplicate after normalisation, after blank and bad lines, and
		// in a CSV whose records span lines: the first line is exact.
		{"dup.jsonl", "\n" + row("a.cn") + "\n\n" + row("b.cn") + "\n" + `{"domain":"x.cn"}` + "\n" + row("c.cn") + "\n" + row("B.CN.") + "\n" + row("c.cn") + "\n",
			"dup.jsonl:5: invalid record: state: required\n" +
				"dup.jsonl:7: duplicate domain: domain b.cn is also on line 4\n" +
				"dup.jsonl:8: duplicate domain: domain c.cn is also on line 6", 3},
		{"dup.csv", "domain,state,subject\na.cn,cancelled,\"\nlines\"\nb.cn,cancelled,\nA.cn,cancelled,\nb.cn.,cancelled,\n",
			"dup.csv:5: duplicate domain: domain a.cn is also on line 2\n" +
				"dup.csv:6: duplicate domain: domain b.cn is also on line 4", 2},
		{"unicode-dup.jsonl", row("例子.中国") + "\n" + row("xn--fsqu00a.xn--fiqs8s") + "\n",
			"unicode-dup.jsonl:2: duplicate domain: domain xn--fsqu00a.xn--fiqs8s is also on line 1", 1},
		{"header.csv", "domain,status,domain\n",
			`header.csv:1: invalid record: unknown column "status" (the columns are domain, state, filing_number, subject, subject_type, province, upstream, rectify_deadline, updated_at)` + "\n" +
				`header.csv:1: invalid record: duplicate column "domain"` + "\n" +
				`header.csv:1: invalid record: missing column "state"`, 3},
		{"quote.csv", "domain,state\na.cn,cancel\"led\nb.cn,filed\n",
			"quote.csv:2: invalid record: bad CSV: bare \" in non-quoted-field\n" +
				"quote.csv:3: invalid record: filing_number: required for state filed", 2},
		// A fixed name that is still wrong is named as fixed.
		{"fixed-still-bad.jsonl", row("WWW.A.CN") + "\n",
			`fixed-still-bad.jsonl:1: invalid record: domain "www.a.cn": not a registrable domain (its registrable domain is a.cn)`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ReadSnapshot(strings.NewReader(tt.in), tt.name)
			if err == nil {
				t.Fatalf("got %d records and no error", s.Len())
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
			var fe *FileError
			if !errors.As(err, &fe) || fe.Count() != tt.count {
				t.Errorf("got %T (count %d), want a *FileError of %d bad lines", err, fe.Count(), tt.count)
			}
			if !errors.Is(err, ErrBadFile) {
				t.Errorf("%v does not match ErrBadFile", err)
			}
			if strings.Contains(err.Error(), "bufio") || strings.Contains(err.Error(), "token too long") {
				t.Errorf("Go's words in %q", err)
			}
		})
	}
}

// TestReadSnapshotNormalises checks that a domain in upper case or with a
// trailing dot is read as its normal form, with a warning naming the line,
// and that warnings are capped as errors are.
func TestReadSnapshotNormalises(t *testing.T) {
	var many strings.Builder
	for i := range 25 {
		many.WriteString(row(fmt.Sprintf("D%d.CN", i)) + "\n")
	}
	tests := []struct {
		name, in string
		domains  []string
		warnings []string
	}{
		{"case.jsonl", row("EXAMPLE.CN") + "\n" + row("b.cn") + "\n" + row("Shop.Com.Cn.") + "\n" + row("例子.中国") + "\n",
			[]string{"example.cn", "b.cn", "shop.com.cn", "xn--fsqu00a.xn--fiqs8s"},
			[]string{
				`case.jsonl:1: domain "EXAMPLE.CN" read as example.cn (write domains in lower case, without a trailing dot)`,
				`case.jsonl:3: domain "Shop.Com.Cn." read as shop.com.cn (write domains in lower case, without a trailing dot)`,
			}},
		{"dot.csv", "domain,state\nexample.cn.,cancelled\n例子.中国.,cancelled\n",
			[]string{"example.cn", "xn--fsqu00a.xn--fiqs8s"},
			[]string{
				`dot.csv:2: domain "example.cn." read as example.cn (write domains in lower case, without a trailing dot)`,
				`dot.csv:3: domain "例子.中国." read as xn--fsqu00a.xn--fiqs8s (write domains in lower case, without a trailing dot)`,
			}},
		{"many.jsonl", many.String(), []string{"d0.cn", "d24.cn"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tt.name)
			writeFile(t, path, tt.in)
			s, ws, err := LoadSnapshotWarnings(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range tt.domains {
				if s.Lookup(d) == nil {
					t.Errorf("%s: missing", d)
				}
			}
			got := ws.Lines()
			for i := range got {
				got[i] = strings.TrimPrefix(got[i], filepath.Dir(path)+"/")
			}
			if tt.warnings == nil { // the cap
				if len(ws.List) != maxListed || ws.More != 5 || got[maxListed] != "many.jsonl: and 5 more rows normalised the same way" {
					t.Errorf("got %d listed, %d more: %q", len(ws.List), ws.More, got)
				}
				return
			}
			if strings.Join(got, "\n") != strings.Join(tt.warnings, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.warnings, "\n"))
			}
		})
	}
}

// TestFileSourceListsErrorsAndWarns checks the file source with a
// refused file (every bad line in the error and the log, the last good
// snapshot serving) and a normalised row (a warning logged with its line,
// on a full and on an incremental load).
func TestFileSourceListsErrorsAndWarns(t *testing.T) {
	var logs syncbuf.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	mark := 0 // the log from here on is the step's
	logged := func() string { return logs.String()[mark:] }
	step := func() { mark = len(logs.String()) }
	path := filepath.Join(t.TempDir(), "r.jsonl")
	writeFile(t, path, row("a.cn")+"\n"+row("B.CN")+"\n")
	r := New(Options{})
	fs := NewFileSource(path, r, log)
	if err := fs.Load(); err != nil {
		t.Fatal(err)
	}
	if r.Snapshot().Lookup("b.cn") == nil {
		t.Fatal("B.CN was not read as b.cn")
	}
	wantLog := func(what string, subs ...string) {
		t.Helper()
		for _, sub := range subs {
			if !strings.Contains(logged(), sub) {
				t.Errorf("%s: log lacks %s:\n%s", what, sub, logged())
			}
		}
	}
	wantLog("full load", `"msg":"registry file row normalised","component":"registry_file","path":"`+path+`","line":2,"warning":"domain \"B.CN\" read as b.cn`)

	// A changed row, loaded incrementally, warns with its line too.
	step()
	writeFile(t, path, row("a.cn")+"\n"+row("B.CN")+"\n"+row("c.cn.")+"\n")
	if err := fs.Load(); err != nil {
		t.Fatal(err)
	}
	wantLog("incremental load", `"incremental":true`, `"line":3,"warning":"domain \"c.cn.\" read as c.cn`)
	if strings.Contains(logged(), `"line":2`) {
		t.Errorf("an unchanged row warned again:\n%s", logged())
	}

	// A file with three bad lines is refused whole, all three named; the
	// last good snapshot serves.
	writeFile(t, path, row("a.cn")+"\n"+`{"domain":"b.cn","state":"filed"}`+"\n"+row("A.CN")+"\n"+row("c.cn")+"\n"+row("www.d.cn")+"\n")
	err := fs.Load()
	var fe *FileError
	if !errors.As(err, &fe) || fe.Count() != 3 {
		t.Fatalf("got %v, want 3 bad lines", err)
	}
	want := path + ":2: invalid record: filing_number: required for state filed\n" +
		path + ":3: duplicate domain: domain a.cn is also on line 1\n" +
		path + `:5: invalid record: domain "www.d.cn": not a registrable domain (its registrable domain is d.cn)`
	if err.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", err, want)
	}
	if fs.Stats().LastError == nil || r.Snapshot().Len() != 3 || r.Decide("b.cn").Reason != ReasonCancelled {
		t.Errorf("after the refused file: %d records, b.cn %s, last error %v; want the 3 records of the last good file",
			r.Snapshot().Len(), r.Decide("b.cn").Reason, fs.Stats().LastError)
	}

	// Run logs the refusal once, with the count.
	step()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	fs.Interval = 5e6
	go func() { done <- fs.Run(ctx) }()
	writeInPlace(t, path, row("a.cn")+"\n"+`{"domain":"b.cn","state":"filed"}`+"\n")
	failures := fs.Stats().Failures
	waitFor(t, "the refusal", func() bool { return fs.Stats().Failures > failures })
	cancel()
	<-done
	wantLog("run", `"msg":"registry file rejected, previous snapshot keeps serving"`, `"bad_lines":1`)
}

// TestLineLimit checks the edge: a line of maxLine bytes (before its LF or
// CR LF) is read, one more byte is refused.
func TestLineLimit(t *testing.T) {
	pad := func(n int) string {
		r := `{"domain":"a.cn","state":"cancelled","subject":""}`
		return strings.Replace(r, `""`, `"`+strings.Repeat("x", n-len(r))+`"`, 1)
	}
	for _, eol := range []string{"\n", "\r\n", ""} {
		if _, err := ReadSnapshot(strings.NewReader(pad(maxLine)+eol), "r.jsonl"); err != nil {
			t.Errorf("%q: a line of %d bytes: %v", eol, maxLine, err)
		}
		_, err := ReadSnapshot(strings.NewReader(pad(maxLine+1)+eol), "r.jsonl")
		if !errors.Is(err, errLineTooLong) {
			t.Errorf("%q: a line of %d bytes: got %v, want %v", eol, maxLine+1, err, errLineTooLong)
		}
	}
}

// FuzzReadSnapshot checks the file reader never panics, refuses only with
// a FileError of at most maxListed lines in Go-free words, and that what
// it accepts comes back the same when written out as JSON Lines and read
// again.
func FuzzReadSnapshot(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.*")
	bad, _ := filepath.Glob("testdata/bad/*")
	for _, name := range append(files, bad...) {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b, strings.HasSuffix(name, ".csv"))
		}
	}
	for _, s := range []string{
		row("EXAMPLE.CN") + "\n" + row("example.cn.") + "\n",
		"\n" + row("a.cn") + "\n\n" + row("A.CN") + "\n",
		row("例子.中国.") + "\r\n" + row("xn--fsqu00a.xn--fiqs8s"),
		`{"domain":"a.cn","state":"cancelled","subject":"` + strings.Repeat("x", maxLine) + `"}` + "\n" + row("b.cn"),
	} {
		f.Add([]byte(s), false)
	}
	for _, s := range []string{
		"domain,state\nEXAMPLE.CN,cancelled\nexample.cn.,cancelled\n",
		"domain,state,subject\na.cn,cancelled,\"\nx\"\nA.cn,cancelled,\n",
		"domain,status,domain\n",
		"domain,state\na.cn,cancel\"led\n",
	} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, isCSV bool) {
		name := "f.jsonl"
		if isCSV {
			name = "f.csv"
		}
		s, err := ReadSnapshot(bytes.NewReader(data), name)
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) || !errors.Is(err, ErrBadFile) || len(fe.Lines) > maxListed || len(fe.Lines) == 0 {
				t.Fatalf("got %T %v, want a FileError", err, err)
			}
			if strings.Contains(err.Error(), "bufio") {
				t.Fatalf("Go's words in %q", err)
			}
			return
		}
		var out bytes.Buffer
		enc := json.NewEncoder(&out)
		for r := range s.Records() {
			fr := fileRow{Domain: r.Domain, State: r.State.String(), FilingNumber: r.FilingNumber,
				Subject: r.Subject, SubjectType: r.SubjectType, Province: r.Province, Upstream: r.Upstream}
			if !r.RectifyDeadline.IsZero() {
				fr.RectifyDeadline = r.RectifyDeadline.Format(time.RFC3339Nano)
			}
			if !r.UpdatedAt.IsZero() {
				fr.UpdatedAt = r.UpdatedAt.Format(time.RFC3339Nano)
			}
			if err := enc.Encode(&fr); err != nil {
				t.Fatal(err)
			}
		}
		s2, ws, err := readSnapshotWarnings(out.Bytes())
		if err != nil || len(ws.List) > 0 {
			t.Fatalf("written out, read back: %v, warnings %q\n%s", err, ws.Lines(), out.Bytes())
		}
		if s2.Len() != s.Len() {
			t.Fatalf("read back %d records, want %d", s2.Len(), s.Len())
		}
		for r := range s.Records() {
			if r2 := s2.Lookup(r.Domain); r2 == nil || !r2.Equal(r) {
				t.Fatalf("%s: read back %+v, want %+v", r.Domain, r2, *r)
			}
		}
	})
}

func readSnapshotWarnings(b []byte) (*Snapshot, Warnings, error) {
	res, err := readSnapshot(bytes.NewReader(b), "out.jsonl", 0, false)
	return res.snap, res.warns, err
}
