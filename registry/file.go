package registry

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// ErrBadFile is returned (wrapped, as "path:line: reason") when a registry
// file cannot be used. One bad row rejects the whole file.
var ErrBadFile = errors.New("bad registry file")

// ErrShrink is returned (wrapped) when a reload would remove more of the
// registry than FileSource.MaxDeleteFraction allows.
var ErrShrink = errors.New("reload would remove too many records")

// maxLine bounds one JSON line; a record is a few hundred bytes.
const maxLine = 64 << 10

// fileRow is one row of the registry file. The names are a fixed interface
// (DESIGN.md "Registry file"); CSV uses them as header columns.
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
		return rec, fmt.Errorf("%w: state: %w", ErrInvalidRecord, err)
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
				return fmt.Errorf("%w: unknown field %q", ErrInvalidRecord, key)
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
// byte) and returns its records, domains in A-label form. The first bad row
// fails the whole file with "path:line: reason".
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

func loadSnapshot(path string) (*Snapshot, error) {
	s, _, err := loadSnapshotRows(path, false)
	return s, err
}

// loadSnapshotRows is loadSnapshot that, when rows is true and the file is
// JSON Lines, also returns the hash and domain of every row (see
// fileindex.go); nil for CSV.
func loadSnapshotRows(path string, rows bool) (*Snapshot, []rowPair, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("opening registry file: %w", err)
	}
	defer f.Close()
	hint := 0
	if fi, err := f.Stat(); err == nil {
		hint = int(fi.Size() / 200) // about 200 bytes a row
	}
	var pairs *[]rowPair
	if rows {
		pairs = new([]rowPair)
		*pairs = make([]rowPair, 0, hint)
	}
	s, err := readSnapshot(f, path, hint, pairs)
	if err != nil || pairs == nil {
		return s, nil, err
	}
	return s, *pairs, nil
}

// ReadSnapshot parses a registry file's contents from r, as LoadFile does;
// name picks the format by its extension and prefixes errors
// ("name:line: reason"). It serves embedded data such as the sample
// registry.
func ReadSnapshot(r io.Reader, name string) (*Snapshot, error) {
	return readSnapshot(r, name, 0, nil)
}

// readSnapshot parses a registry; for JSON Lines, when pairs is not nil,
// it also collects each row's hash and domain into *pairs (set to nil for
// CSV).
func readSnapshot(r io.Reader, name string, hint int, pairs *[]rowPair) (*Snapshot, error) {
	b := NewBuilder(hint)
	br := bufio.NewReaderSize(r, 64<<10)
	// Spreadsheets write a UTF-8 byte order mark first.
	if p, _ := br.Peek(3); bytes.Equal(p, []byte("\xef\xbb\xbf")) {
		br.Discard(3)
	}
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
		if pairs != nil {
			*pairs = nil
			pairs = nil
		}
		err = readCSV(br, name, b)
	} else {
		err = readJSONL(br, name, b, pairs)
	}
	if err != nil {
		return nil, err
	}
	return b.Build(), nil
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

func readJSONL(br *bufio.Reader, path string, b *Builder, pairs *[]rowPair) error {
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	line := 0
	for sc.Scan() {
		line++
		p := bytes.TrimSpace(sc.Bytes())
		if len(p) == 0 {
			continue
		}
		var fr fileRow
		// Borrowed strings: Add copies the record into the snapshot's
		// arena and keeps none of them.
		if err := decodeJSONRow(p, &fr, true); err != nil {
			return lineError(path, line, err)
		}
		if err := addRow(b, &fr); err != nil {
			return lineError(path, line, err)
		}
		if pairs != nil {
			*pairs = append(*pairs, rowPair{rowHash(p), b.last})
		}
	}
	if err := sc.Err(); err != nil {
		return lineError(path, line+1, fmt.Errorf("reading: %w", err))
	}
	return nil
}

func addRow(b *Builder, fr *fileRow) error {
	rec, err := fr.record()
	if err != nil {
		return err
	}
	return b.Add(rec)
}

func readCSV(br *bufio.Reader, path string, b *Builder) error {
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = 0 // every row as wide as the header
	header, err := cr.Read()
	if err == io.EOF {
		return nil // an empty file is an empty registry
	}
	if err != nil {
		return lineError(path, 1, fmt.Errorf("bad CSV: %w", err))
	}
	cols := make([]int, len(header))
	seen := map[int]bool{}
	for i, h := range header {
		name := strings.TrimSpace(h)
		idx := -1
		for j, c := range columns {
			if c == name {
				idx = j
			}
		}
		if idx < 0 {
			return lineError(path, 1, fmt.Errorf("%w: unknown column %q", ErrInvalidRecord, name))
		}
		if seen[idx] {
			return lineError(path, 1, fmt.Errorf("%w: duplicate column %q", ErrInvalidRecord, name))
		}
		seen[idx] = true
		cols[i] = idx
	}
	for _, req := range []int{0, 1} {
		if !seen[req] {
			return lineError(path, 1, fmt.Errorf("%w: missing column %q", ErrInvalidRecord, columns[req]))
		}
	}
	for {
		row, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.StartLine
			}
			return lineError(path, line, fmt.Errorf("%w: bad CSV: %w", ErrInvalidRecord, err))
		}
		var fr fileRow
		for i, v := range row {
			// Clone: the reader reuses its buffer and records keep strings.
			fr.set(cols[i], strings.Clone(strings.TrimSpace(v)))
		}
		if err := addRow(b, &fr); err != nil {
			return lineError(path, line, err)
		}
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
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino, id.dev = uint64(st.Ino), uint64(st.Dev)
	}
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
	installed, incremental, err := f.reload()
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
	}
	if f.OnReload != nil {
		f.OnReload(installed, err)
	}
	return err
}

// reload installs the file's records: from the rows that changed since
// the last load when it can (see fileindex.go), else from a full parse.
func (f *FileSource) reload() (installed *Snapshot, incremental bool, err error) {
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
					return installed, true, nil
				}
				if !errors.Is(err, errStaleRows) {
					return nil, true, err
				}
			}
			// A bad row: the full parse below reports it as a full load
			// would (and the serving snapshot stays).
		}
	}
	recs, pairs, err := loadSnapshotRows(f.path, true)
	if err != nil {
		return nil, false, err
	}
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
	if err == nil && pairs != nil {
		f.rows = buildRowIndex(pairs, installed.gen)
	}
	return installed, false, err
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
				f.log.Error("registry file rejected, previous snapshot keeps serving", "error", err.Error())
			}
		}
		prev = id
	}
}
