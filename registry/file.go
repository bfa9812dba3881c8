package registry

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// ErrBadFile is matched by the error returned when a registry file cannot
// be used (a *FileError listing its bad lines as "path:line: reason"). One
// bad row rejects the whole file: the previous registry keeps serving.
var ErrBadFile = errors.New("bad registry file")

// ErrShrink is returned (wrapped) when a reload would remove more of the
// registry than FileSource.MaxDeleteFraction allows.
var ErrShrink = errors.New("reload would remove too many records")

// maxLine bounds one line of a registry file; a record is a few hundred
// bytes.
const maxLine = 64 << 10

// maxListed is how many bad lines (and, separately, warnings) one read of a
// registry file lists; the rest are counted. Ops fix a file from the list,
// and a file that is wrong on every line should not make a megabyte error.
const maxListed = 20

// fileRow is one row of the registry file. The names are a fixed interface
// (docs/configuration.md, "Registry file"); CSV uses them as header columns.
type fileRow struct {
	Domain          string `json:"domain"`
	State           string `json:"state"`
	FilingNumber    string `json:"filing_number"`
	Subject         string `json:"subject"`
	SubjectType     string `json:"subject_type"`
	Province        string `json:"province"`
	Upstream        string `json:"upstream"`
	RectifyDeadline string `json:"rectify_deadline"`
	UpdatedAt       string `json:"updated_at"`
}

// columns are the CSV header names, in fileRow order.
var columns = []string{"domain", "state", "filing_number", "subject", "subject_type",
	"province", "upstream", "rectify_deadline", "updated_at"}

func (fr *fileRow) set(col int, v string) {
	switch col {
	case 0:
		fr.Domain = v
	case 1:
		fr.State = v
	case 2:
		fr.FilingNumber = v
	case 3:
		fr.Subject = v
	case 4:
		fr.SubjectType = v
	case 5:
		fr.Province = v
	case 6:
		fr.Upstream = v
	case 7:
		fr.RectifyDeadline = v
	case 8:
		fr.UpdatedAt = v
	}
}

// record converts a row to a Record, naming the field at fault. Validation
// that needs the whole record happens in Builder.Add.
func (fr *fileRow) record() (Record, error) {
	rec := Record{
		Domain:       fr.Domain,
		FilingNumber: fr.FilingNumber,
		Subject:      fr.Subject,
		SubjectType:  fr.SubjectType,
		Province:     fr.Province,
		Upstream:     fr.Upstream,
	}
	if fr.State == "" {
		return rec, fmt.Errorf("%w: state: required", ErrInvalidRecord)
	}
	st, err := ParseState(fr.State)
	if err != nil {
		return rec, fmt.Errorf("%w: state: %w (want one of %s)", ErrInvalidRecord, err, stateList)
	}
	rec.State = st
	if rec.RectifyDeadline, err = parseTime("rectify_deadline", fr.RectifyDeadline); err != nil {
		return rec, err
	}
	if rec.UpdatedAt, err = parseTime("updated_at", fr.UpdatedAt); err != nil {
		return rec, err
	}
	return rec, nil
}

// fileRecord is record for a row of a registry file, which may write its
// domain in upper case or with a trailing dot: the domain is normalised
// (lower case, no trailing dot, A-labels) and warn says what was read, so
// a file exported from a spreadsheet or a DNS tool is not refused for it.
// Anything else that is not the registrable domain is still an error.
func (fr *fileRow) fileRecord() (rec Record, warn string, err error) {
	if rec, err = fr.record(); err != nil {
		return rec, "", err
	}
	d := rec.Domain
	if f := strings.ToLower(strings.TrimSuffix(d, ".")); f != d && f != "" {
		// When the fixed name is still wrong its error names the fixed
		// name; the line number leads back to what was written.
		if rec.Domain, err = CanonicalDomain(f); err != nil {
			return rec, "", err
		}
		warn = fmt.Sprintf("domain %q read as %s (write domains in lower case, without a trailing dot)", d, rec.Domain)
	}
	return rec, warn, nil
}

// stateList names the states, for messages that say what is wanted.
var stateList = func() string {
	var names []string
	for _, st := range States() {
		names = append(names, st.String())
	}
	return strings.Join(names, ", ")
}()

func parseTime(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s %q: want RFC 3339 like 2026-12-31T00:00:00+08:00", ErrInvalidRecord, field, v)
	}
	return t, nil
}

// ParseRow parses one JSON Lines row into a validated Record (domain in
// A-label form). Unknown fields are errors.
func ParseRow(line []byte) (Record, error) {
	var fr fileRow
	if err := decodeJSONRow(line, &fr, false); err != nil {
		return Record{}, err
	}
	rec, err := fr.record()
	if err != nil {
		return Record{}, err
	}
	if rec.Domain, err = CanonicalDomain(rec.Domain); err != nil {
		return Record{}, err
	}
	if err := validateRecord(&rec); err != nil {
		return Record{}, err
	}
	return rec, nil
}

// decodeJSONRow parses one JSON Lines row: a flat object whose values are
// strings (or null, meaning absent). It is a small strict parser rather
// than encoding/json because it is most of the cost of loading a large
// file (reflection and a decoder per line cost several times more); it is
// fuzzed against encoding/json (FuzzJSONRow). It is stricter in two ways:
// a duplicate key and invalid UTF-8 are errors, not "last wins" and
// U+FFFD.
//
// With borrow, a value without escapes is not copied: its string points
// into line, so fr is valid only as long as line is unchanged (the bulk
// load, whose Builder.Add copies what it keeps).
func decodeJSONRow(line []byte, fr *fileRow, borrow bool) error {
	p := jsonParser{b: line}
	p.ws()
	if !p.eat('{') {
		return p.fail("bad JSON: want an object")
	}
	var seen uint16
	p.ws()
	if !p.eat('}') {
		for {
			p.ws()
			key, ok := p.str()
			if !ok {
				return p.fail("bad JSON: want a field name")
			}
			col := -1
			for j, c := range columns {
				if c == string(key) {
					col = j
				}
			}
			if col < 0 {
				return fmt.Errorf("%w: unknown field %q (the fields are %s)", ErrInvalidRecord, key, strings.Join(columns, ", "))
			}
			if seen&(1<<col) != 0 {
				return fmt.Errorf("%w: %s: given twice", ErrInvalidRecord, columns[col])
			}
			seen |= 1 << col
			p.ws()
			if !p.eat(':') {
				return p.fail("bad JSON: want ':'")
			}
			p.ws()
			switch {
			case p.lit("null"):
			case p.peek() == '"':
				v, ok := p.str()
				if !ok {
					return p.fail("bad JSON: bad string")
				}
				if borrow && !p.inBuf && len(v) > 0 {
					fr.set(col, unsafe.String(&v[0], len(v)))
				} else {
					fr.set(col, string(v))
				}
			default:
				return fmt.Errorf("%w: %s: must be a string", ErrInvalidRecord, columns[col])
			}
			p.ws()
			if p.eat('}') {
				break
			}
			if !p.eat(',') {
				return p.fail("bad JSON: want ',' or '}'")
			}
		}
	}
	p.ws()
	if p.i != len(p.b) {
		return p.fail("bad JSON: trailing data after the record")
	}
	return nil
}

type jsonParser struct {
	b     []byte
	i     int
	buf   []byte
	inBuf bool // the last str result is in buf (it had escapes), not a slice of b
}

func (p *jsonParser) fail(msg string) error {
	return fmt.Errorf("%w: %s at column %d", ErrInvalidRecord, msg, p.i+1)
}

func (p *jsonParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *jsonParser) eat(c byte) bool {
	if p.peek() == c {
		p.i++
		return true
	}
	return false
}

func (p *jsonParser) lit(s string) bool {
	if bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		p.i += len(s)
		return true
	}
	return false
}

// str parses a JSON string. The result aliases the input or p.buf and is
// valid until the next call.
func (p *jsonParser) str() ([]byte, bool) {
	if !p.eat('"') {
		return nil, false
	}
	start := p.i
	p.inBuf = false
	// Fast path: no escapes.
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := p.b[start:p.i]
			p.i++
			return s, utf8.Valid(s)
		}
		if c == '\\' || c < 0x20 {
			break
		}
		p.i++
	}
	p.buf = append(p.buf[:0], p.b[start:p.i]...)
	p.inBuf = true
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return p.buf, utf8.Valid(p.buf)
		case c < 0x20:
			return nil, false
		case c != '\\':
			p.buf = append(p.buf, c)
			p.i++
			continue
		}
		p.i++
		if p.i >= len(p.b) {
			return nil, false
		}
		e := p.b[p.i]
		p.i++
		switch e {
		case '"', '\\', '/':
			p.buf = append(p.buf, e)
		case 'b':
			p.buf = append(p.buf, '\b')
		case 'f':
			p.buf = append(p.buf, '\f')
		case 'n':
			p.buf = append(p.buf, '\n')
		case 'r':
			p.buf = append(p.buf, '\r')
		case 't':
			p.buf = append(p.buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, false
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if p.lit("\\u") {
					if r2, ok = p.hex4(); !ok {
						return nil, false
					}
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					// A lone surrogate: encoding/json substitutes U+FFFD;
					// a registry row has no use for one.
					return nil, false
				}
			}
			p.buf = utf8.AppendRune(p.buf, r)
		default:
			return nil, false
		}
	}
	return nil, false
}

func (p *jsonParser) hex4() (rune, bool) {
	if p.i+4 > len(p.b) {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}

// LoadFile reads and validates a registry file (JSON Lines or CSV, chosen by
// the extension .jsonl/.json/.ndjson/.csv, else sniffed from the first
// byte) and returns its records, domains in A-label form. A file with bad
// rows fails whole, with a *FileError listing them ("path:line: reason").
func LoadFile(path string) ([]Record, error) {
	s, err := loadSnapshot(path)
	if err != nil {
		return nil, err
	}
	recs := make([]Record, 0, s.Len())
	for r := range s.Records() {
		recs = append(recs, *r)
	}
	return recs, nil
}

// LoadSnapshot is LoadFile returning a Snapshot (without overrides).
func LoadSnapshot(path string) (*Snapshot, error) { return loadSnapshot(path) }

// LoadSnapshotWarnings is LoadSnapshot that also returns the warnings:
// rows accepted after their domain was normalised (upper case, a trailing
// dot). They are returned with the error too, when the file is refused.
func LoadSnapshotWarnings(path string) (*Snapshot, Warnings, error) {
	res, err := loadSnapshotRows(path, false)
	return res.snap, res.warns, err
}

func loadSnapshot(path string) (*Snapshot, error) {
	res, err := loadSnapshotRows(path, false)
	return res.snap, err
}

// readResult is what one read of a registry file produced.
type readResult struct {
	snap  *Snapshot
	warns Warnings
	// pairs are the hash and domain of every row of a JSON Lines file
	// (see fileindex.go), when asked for; nil for CSV.
	pairs []rowPair
}

// loadSnapshotRows reads the file at path; with rows, a JSON Lines file's
// row pairs too.
func loadSnapshotRows(path string, rows bool) (readResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return readResult{}, fmt.Errorf("opening registry file: %w", err)
	}
	defer f.Close()
	hint := 0
	if fi, err := f.Stat(); err == nil {
		hint = int(fi.Size() / 200) // about 200 bytes a row
	}
	return readSnapshot(f, path, hint, rows)
}

// ReadSnapshot parses a registry file's contents from r, as LoadFile does;
// name picks the format by its extension and prefixes errors
// ("name:line: reason"). It serves embedded data such as the sample
// registry.
func ReadSnapshot(r io.Reader, name string) (*Snapshot, error) {
	res, err := readSnapshot(r, name, 0, false)
	return res.snap, err
}

// readSnapshot parses a registry; for JSON Lines, with rows, it also
// collects each row's hash and domain.
func readSnapshot(r io.Reader, name string, hint int, rows bool) (readResult, error) {
	fr := &fileReader{path: name, b: NewBuilder(hint), rows: rows}
	if rows {
		fr.pairs = make([]rowPair, 0, hint)
	}
	br := newLineBuffer(r)
	isCSV := false
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jsonl", ".json", ".ndjson":
	case ".csv":
		isCSV = true
	default:
		isCSV = !sniffJSON(br)
	}
	var err error
	if isCSV {
		fr.rows, fr.pairs = false, nil
		err = fr.readCSV(br)
	} else {
		err = fr.readJSONL(br)
	}
	res := readResult{warns: fr.warns}
	if err == nil {
		err = fr.err()
	}
	if err != nil {
		return res, err
	}
	res.snap, res.pairs = fr.b.Build(), fr.pairs
	return res, nil
}

// newLineBuffer buffers a registry file for reading by lines (a line of
// maxLine bytes and its CR LF fit), past a UTF-8 byte order mark, which
// spreadsheets write first.
func newLineBuffer(r io.Reader) *bufio.Reader {
	br := bufio.NewReaderSize(r, maxLine+2)
	if p, _ := br.Peek(3); bytes.Equal(p, []byte("\xef\xbb\xbf")) {
		br.Discard(3)
	}
	return br
}

// sniffJSON reports whether the first non-space byte opens a JSON object.
func sniffJSON(br *bufio.Reader) bool {
	for n := 1; n <= 512; n++ {
		p, err := br.Peek(n)
		if len(p) < n {
			return err == nil
		}
		switch p[n-1] {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return true
		}
		return false
	}
	return false
}

// LineError locates a bad row: its Error is "path:line: reason", the
// reason naming the field. It matches ErrBadFile and unwraps to the
// reason (ErrInvalidRecord, ErrDuplicate, ...).
type LineError struct {
	Path string
	Line int
	Err  error
}

// Error returns "path:line: reason".
func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err) }

// Unwrap returns the reason.
func (e *LineError) Unwrap() error { return e.Err }

// Is reports whether target is ErrBadFile.
func (e *LineError) Is(target error) bool { return target == ErrBadFile }

func lineError(path string, line int, err error) error {
	return &LineError{Path: path, Line: line, Err: err}
}

// FileError is a registry file refused for its bad lines: every one of
// them up to 20, in file order, and the count of the rest. Its Error is
// one "path:line: reason" line for each, then "path: and N more bad lines
// (M in all)"; a file with one bad line reads as that line's LineError.
// It matches ErrBadFile, and errors.As finds the first LineError.
type FileError struct {
	Path  string
	Lines []*LineError
	More  int // bad lines not listed
}

// Error lists the bad lines, one a line.
func (e *FileError) Error() string {
	var b strings.Builder
	for i, le := range e.Lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(le.Error())
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "\n%s: and %d more bad lines (%d in all)", e.Path, e.More, len(e.Lines)+e.More)
	}
	return b.String()
}

// Unwrap returns the listed line errors.
func (e *FileError) Unwrap() []error {
	errs := make([]error, len(e.Lines))
	for i, le := range e.Lines {
		errs[i] = le
	}
	return errs
}

// Is reports whether target is ErrBadFile.
func (e *FileError) Is(target error) bool { return target == ErrBadFile }

// Count returns the number of bad lines, listed or not.
func (e *FileError) Count() int { return len(e.Lines) + e.More }

// Warning is a row of a registry file that was accepted after a fix (its
// domain normalised), with what was read.
type Warning struct {
	Path string
	Line int
	Msg  string
}

// String returns "path:line: message".
func (w Warning) String() string { return fmt.Sprintf("%s:%d: %s", w.Path, w.Line, w.Msg) }

// Warnings are the warnings of one read of a registry file: the first 20,
// in file order, and the count of the rest.
type Warnings struct {
	List []Warning
	More int
}

// Lines returns the warnings as text, one a line, and a last line counting
// those not listed.
func (ws Warnings) Lines() []string {
	out := make([]string, 0, len(ws.List)+1)
	for _, w := range ws.List {
		out = append(out, w.String())
	}
	if ws.More > 0 && len(ws.List) > 0 {
		out = append(out, fmt.Sprintf("%s: and %d more rows normalised the same way", ws.List[0].Path, ws.More))
	}
	return out
}

// errLineTooLong is the reason of a line longer than maxLine.
var errLineTooLong = fmt.Errorf("longer than %d bytes; a record is one line of at most %d bytes", maxLine, maxLine)

// dupError is a duplicate domain with the line of its first row, which is
// filled in once the read is over (fileReader.err).
type dupError struct {
	domain string
	first  int
}

func (e *dupError) Error() string {
	if e.first == 0 {
		return fmt.Sprintf("%v: domain %s", ErrDuplicate, e.domain)
	}
	return fmt.Sprintf("%v: domain %s is also on line %d", ErrDuplicate, e.domain, e.first)
}

func (e *dupError) Unwrap() error { return ErrDuplicate }

// fileReader reads the rows of one registry file into a Builder, going on
// past bad rows so that all of them are reported at once.
type fileReader struct {
	path  string
	b     *Builder
	rows  bool      // collect pairs (JSON Lines)
	pairs []rowPair // hash and domain of each row, when rows

	bad   []*LineError // the first maxListed bad lines
	more  int          // bad lines past those
	dups  []*dupError  // listed duplicates, their first line unknown yet
	warns Warnings

	// lines maps the records added (by their index in the Builder) to
	// their line, to name the first line of a duplicate: an entry where a
	// record is not on the line after the previous record's (blank or bad
	// lines between, a CSV record over several lines), so it stays a few
	// entries for a file without gaps.
	lines []lineJump
}

// lineJump says that record idx and those after it, up to the next jump,
// are on consecutive lines from line.
type lineJump struct{ idx, line int }

func (fr *fileReader) fail(line int, err error) {
	if len(fr.bad) >= maxListed {
		fr.more++
		return
	}
	fr.bad = append(fr.bad, &LineError{Path: fr.path, Line: line, Err: err})
}

func (fr *fileReader) warn(line int, msg string) {
	if len(fr.warns.List) >= maxListed {
		fr.warns.More++
		return
	}
	fr.warns.List = append(fr.warns.List, Warning{Path: fr.path, Line: line, Msg: msg})
}

// add validates a row read at line and adds it to the Builder, or records
// why not.
func (fr *fileReader) add(line int, row *fileRow, raw []byte) {
	rec, warn, err := row.fileRecord()
	if err == nil {
		err = fr.b.Add(rec)
	}
	if errors.Is(err, ErrDuplicate) {
		dom, _ := CanonicalDomain(rec.Domain) // as Add found it
		d := &dupError{domain: strings.Clone(dom)}
		if len(fr.bad) < maxListed {
			fr.dups = append(fr.dups, d)
		}
		err = d
	}
	if err != nil {
		fr.fail(line, err)
		return
	}
	if warn != "" {
		fr.warn(line, warn)
	}
	idx := fr.b.Len() - 1
	if n := len(fr.lines); n == 0 || fr.lines[n-1].line+idx-fr.lines[n-1].idx != line {
		fr.lines = append(fr.lines, lineJump{idx, line})
	}
	if fr.rows {
		fr.pairs = append(fr.pairs, rowPair{rowHash(raw), fr.b.last})
	}
}

// lineOf returns the line of the record added idx-th.
func (fr *fileReader) lineOf(idx int) int {
	i, _ := slices.BinarySearchFunc(fr.lines, idx, func(j lineJump, idx int) int { return cmp.Compare(j.idx, idx) })
	if i == len(fr.lines) || fr.lines[i].idx > idx {
		i--
	}
	return fr.lines[i].line + idx - fr.lines[i].idx
}

// err returns the FileError of the bad lines, nil when there are none,
// after finding the first line of each listed duplicate: one pass over the
// records, made only when a file has duplicates.
func (fr *fileReader) err() error {
	if len(fr.bad) == 0 {
		return nil
	}
	if len(fr.dups) > 0 && fr.b.pk != nil {
		want := make(map[string][]*dupError, len(fr.dups))
		for _, d := range fr.dups {
			want[d.domain] = append(want[d.domain], d)
		}
		idx := 0
		fr.b.pk.p.each(func(r *Record) bool {
			if ds, ok := want[r.Domain]; ok {
				for _, d := range ds {
					d.first = fr.lineOf(idx)
				}
				delete(want, r.Domain)
			}
			idx++
			return len(want) > 0
		})
	}
	return &FileError{Path: fr.path, Lines: fr.bad, More: fr.more}
}

// lineReader reads a file line by line like bufio.Scanner, but a line
// longer than maxLine is skipped and reported rather than ending the read
// with "token too long", so the lines after it are checked too.
type lineReader struct {
	br   *bufio.Reader // of at least maxLine+2 bytes (newLineBuffer)
	line int
}

// next returns the next line trimmed of surrounding space (valid until the
// next call), or errLineTooLong for a line longer than maxLine, or io.EOF
// at the end, or the read error.
func (lr *lineReader) next() ([]byte, error) {
	lr.line++
	p, err := lr.br.ReadSlice('\n')
	long := false
	for err == bufio.ErrBufferFull {
		long = true
		_, err = lr.br.ReadSlice('\n')
	}
	switch {
	case err == io.EOF && (long || len(p) > 0):
	case err != nil:
		return nil, err
	}
	if long || len(bytes.TrimRight(p, "\r\n")) > maxLine {
		return nil, errLineTooLong
	}
	return bytes.TrimSpace(p), nil
}

func (fr *fileReader) readJSONL(br *bufio.Reader) error {
	lr := lineReader{br: br}
	for {
		p, err := lr.next()
		if err == io.EOF {
			return nil
		}
		if err == errLineTooLong {
			fr.fail(lr.line, err)
			continue
		}
		if err != nil {
			return lineError(fr.path, lr.line, fmt.Errorf("reading: %w", err))
		}
		if len(p) == 0 {
			continue
		}
		var row fileRow
		// Borrowed strings: Add copies the record into the snapshot's
		// arena and keeps none of them.
		if err := decodeJSONRow(p, &row, true); err != nil {
			fr.fail(lr.line, err)
			continue
		}
		fr.add(lr.line, &row, p)
	}
}

func (fr *fileReader) readCSV(br *bufio.Reader) error {
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = 0 // every row as wide as the header
	header, err := cr.Read()
	if err == io.EOF {
		return nil // an empty file is an empty registry
	}
	if err != nil {
		var pe *csv.ParseError
		if !errors.As(err, &pe) {
			return lineError(fr.path, 1, fmt.Errorf("reading: %w", err))
		}
		fr.fail(pe.StartLine, fmt.Errorf("%w: bad CSV: %w", ErrInvalidRecord, pe.Err))
		return nil
	}
	// Every problem of the header is listed; the rows cannot be read
	// without it.
	cols := make([]int, len(header))
	seen := map[int]bool{}
	for i, h := range header {
		name := strings.TrimSpace(h)
		idx := slices.Index(columns, name)
		switch {
		case idx < 0:
			fr.fail(1, fmt.Errorf("%w: unknown column %q (the columns are %s)", ErrInvalidRecord, name, strings.Join(columns, ", ")))
		case seen[idx]:
			fr.fail(1, fmt.Errorf("%w: duplicate column %q", ErrInvalidRecord, name))
		}
		seen[idx] = true
		cols[i] = idx
	}
	for _, req := range []int{0, 1} {
		if !seen[req] {
			fr.fail(1, fmt.Errorf("%w: missing column %q", ErrInvalidRecord, columns[req]))
		}
	}
	if len(fr.bad) > 0 {
		return nil
	}
	for {
		row, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			// Not FieldPos: after some parse errors the record has no
			// field, and FieldPos panics.
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return fmt.Errorf("reading %s: %w", fr.path, err)
			}
			fr.fail(pe.StartLine, fmt.Errorf("%w: bad CSV: %w", ErrInvalidRecord, pe.Err))
			continue
		}
		line, _ := cr.FieldPos(0)
		size := 0
		for _, v := range row {
			size += len(v) + 1
		}
		if size-1 > maxLine {
			fr.fail(line, errLineTooLong)
			continue
		}
		var r fileRow
		for i, v := range row {
			// Clone: the reader reuses its buffer and records keep strings.
			r.set(cols[i], strings.Clone(strings.TrimSpace(v)))
		}
		fr.add(line, &r, nil)
	}
}

// fileID identifies a version of a file well enough to notice a change:
// an in-place write changes size or mtime, a rename-replace the inode.
type fileID struct {
	ino, dev uint64
	size     int64
	mtime    int64
}

func statID(path string) (fileID, error) {
	fi, err := os.Stat(path) // follows symlinks (ConfigMap-style swaps)
	if err != nil {
		return fileID{}, err
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	id.ino, id.dev = inodeOf(fi)
	return id, nil
}

// ReloadStats are a FileSource's counters.
type ReloadStats struct {
	Successes   uint64    // loads that installed a snapshot
	Failures    uint64    // loads rejected (bad row, unreadable, shrink guard)
	LastSuccess time.Time // zero before the first success
	LastError   error     // the last failure, nil after a success
}

// FileSource loads a registry file into a Registry and reloads it when it
// changes. Overrides in the serving snapshot (set by the control plane) are
// carried over to every reloaded snapshot.
type FileSource struct {
	path string
	reg  *Registry
	log  *slog.Logger

	// Interval is how often Run checks the file; default 100 ms. A change
	// is loaded once the file has looked the same for one interval (so a
	// file being written in place is not read half-way), so a change takes
	// effect within about two intervals plus the parse.
	Interval time.Duration
	// MaxDeleteFraction refuses a reload that would remove more than this
	// fraction of the serving records (a truncated or half-copied file);
	// 0 disables the guard (an empty file is refused regardless). Does not
	// apply to the first load.
	MaxDeleteFraction float64
	// OnReload, if set, is called after every load attempt with the
	// installed snapshot or the error.
	OnReload func(s *Snapshot, err error)

	successes, failures atomic.Uint64
	incrementals        atomic.Uint64 // loads that parsed only changed rows
	lastSuccess         atomic.Int64
	mu                  sync.Mutex // guards lastErr and loaded
	lastErr             error
	loaded              fileID
	loadMu              sync.Mutex // serialises loads; guards rows
	// rows indexes the rows of the last load (nil after a CSV load or
	// before the first).
	rows *rowIndex
}

// NewFileSource returns a FileSource for path feeding r. A nil log
// discards.
func NewFileSource(path string, r *Registry, log *slog.Logger) *FileSource {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &FileSource{path: path, reg: r, log: log.With("component", "registry_file", "path", path)}
}

// Path returns the file's path.
func (f *FileSource) Path() string { return f.path }

// Stats returns the reload counters.
func (f *FileSource) Stats() ReloadStats {
	st := ReloadStats{Successes: f.successes.Load(), Failures: f.failures.Load()}
	if ns := f.lastSuccess.Load(); ns != 0 {
		st.LastSuccess = time.Unix(0, ns)
	}
	f.mu.Lock()
	st.LastError = f.lastErr
	f.mu.Unlock()
	return st
}

// Load reads the file now and, when every row is valid, installs it. On
// error the serving snapshot is unchanged and the error is returned, not
// logged (the caller logs it once).
func (f *FileSource) Load() error {
	id, _ := statID(f.path)
	return f.load(id)
}

func (f *FileSource) load(id fileID) error {
	f.loadMu.Lock()
	defer f.loadMu.Unlock()
	start := time.Now()
	installed, incremental, warns, err := f.reload()
	f.mu.Lock()
	f.loaded = id
	f.lastErr = err
	f.mu.Unlock()
	if err != nil {
		f.failures.Add(1)
	} else {
		f.successes.Add(1)
		f.lastSuccess.Store(time.Now().UnixNano())
		f.log.Info("registry file loaded", "records", installed.Len(), "incremental", incremental,
			"duration_seconds", time.Since(start).Seconds())
		f.logWarnings(warns)
	}
	if f.OnReload != nil {
		f.OnReload(installed, err)
	}
	return err
}

// logWarnings logs the rows a load accepted after normalising them, each
// with its line (an incremental load: only the rows that changed).
func (f *FileSource) logWarnings(ws Warnings) {
	for _, w := range ws.List {
		f.log.Warn("registry file row normalised", "line", w.Line, "warning", w.Msg)
	}
	if ws.More > 0 {
		f.log.Warn("more registry file rows normalised, not logged one by one", "count", ws.More)
	}
}

// reload installs the file's records: from the rows that changed since
// the last load when it can (see fileindex.go), else from a full parse.
// warns are the rows it read that were normalised.
func (f *FileSource) reload() (installed *Snapshot, incremental bool, warns Warnings, err error) {
	if ix := f.rows; ix != nil && f.reg.Loaded() {
		base := f.reg.Snapshot()
		if base.gen == ix.gen {
			if ch, err := readChanges(f.path, ix, base); err == nil {
				installed, err = f.install(func(old *Snapshot) (*Snapshot, error) {
					if old.gen != ix.gen {
						return nil, errStaleRows
					}
					if err := f.guard(old, ch.rows, len(ch.deletes)); err != nil {
						return nil, err
					}
					return old.Apply(ch.upserts, ch.deletes)
				})
				if err == nil {
					f.rows = ix.next(ch.seen, ch.added, installed.gen)
					f.incrementals.Add(1)
					return installed, true, ch.warns, nil
				}
				if !errors.Is(err, errStaleRows) {
					return nil, true, Warnings{}, err
				}
			}
			// A bad row: the full parse below reports it as a full load
			// would (and the serving snapshot stays).
		}
	}
	res, err := loadSnapshotRows(f.path, true)
	if err != nil {
		return nil, false, res.warns, err
	}
	recs := res.snap
	installed, err = f.install(func(old *Snapshot) (*Snapshot, error) {
		if err := f.guard(old, recs.Len(), -1); err != nil {
			return nil, err
		}
		if f.MaxDeleteFraction > 0 && f.reg.Loaded() && old.Len() > 0 {
			removed := 0
			for r := range old.Records() {
				if recs.Lookup(r.Domain) == nil {
					removed++
				}
			}
			if err := f.guard(old, recs.Len(), removed); err != nil {
				return nil, err
			}
		}
		s, err := recs.WithOverrides(old.Overrides())
		if err != nil {
			return nil, fmt.Errorf("carrying overrides over: %w", err)
		}
		return s, nil
	})
	f.rows = nil
	if err == nil && res.pairs != nil {
		f.rows = buildRowIndex(res.pairs, installed.gen)
	}
	return installed, false, res.warns, err
}

// errStaleRows: the serving records changed under the row index (another
// writer); the change is loaded in full instead.
var errStaleRows = errors.New("row index is stale")

// install swaps in what build returns from the serving snapshot.
func (f *FileSource) install(build func(old *Snapshot) (*Snapshot, error)) (*Snapshot, error) {
	var installed *Snapshot
	err := f.reg.Update(func(old *Snapshot) (*Snapshot, error) {
		s, err := build(old)
		installed = s
		return s, err
	})
	if err != nil {
		return nil, err
	}
	return installed, nil
}

// guard refuses a load of rows records that removes removed of old's
// (removed < 0: not counted yet).
func (f *FileSource) guard(old *Snapshot, rows, removed int) error {
	// An empty file replacing a non-empty registry is almost always a
	// truncated write or a botched copy, and would block every site:
	// refuse it whatever MaxDeleteFraction says.
	if rows == 0 && old.Len() > 0 {
		return fmt.Errorf("%w: the file has no records (%d serving)", ErrShrink, old.Len())
	}
	if removed >= 0 && f.MaxDeleteFraction > 0 && f.reg.Loaded() && old.Len() > 0 &&
		float64(removed) > f.MaxDeleteFraction*float64(old.Len()) {
		return fmt.Errorf("%w: %d of %d records would go (limit %.0f%%)",
			ErrShrink, removed, old.Len(), 100*f.MaxDeleteFraction)
	}
	return nil
}

// Run watches the file and reloads it on every change until ctx is done,
// then returns nil. Call Load first, so start-up can fail on a bad file (or
// fall back to the local store, as the caller decides); without it, Run
// loads the file on its second poll. A file that failed to load is retried
// only when it changes. A missing file is logged once and waited for; the
// serving snapshot stays.
//
// Polling stat (size, mtime, inode, device) every Interval rather than
// inotify: it sees rename-replace by editors and symlink swaps by config
// managers without re-arming watches, costs one stat per interval, and
// still applies a change within about 250 ms at the default interval.
func (f *FileSource) Run(ctx context.Context) error {
	iv := f.Interval
	if iv <= 0 {
		iv = 100 * time.Millisecond
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	var prev fileID
	var prevErr error
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		id, err := statID(f.path)
		if err != nil {
			if prevErr == nil {
				f.log.Warn("registry file unreadable, previous snapshot keeps serving", "error", err.Error())
			}
			prevErr, prev = err, fileID{}
			continue
		}
		prevErr = nil
		f.mu.Lock()
		loaded := f.loaded
		f.mu.Unlock()
		// Load a changed file once it has been stable for one interval.
		if id != loaded && id == prev {
			if err := f.load(id); err != nil {
				args := []any{"error", err.Error()}
				var fe *FileError
				if errors.As(err, &fe) {
					args = append(args, "bad_lines", fe.Count())
				}
				f.log.Error("registry file rejected, previous snapshot keeps serving", args...)
			}
		}
		prev = id
	}
}
