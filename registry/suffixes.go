package registry

import (
	"bufio"
	"bytes"
	_ "embed" // for go:embed
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// ErrInvalidSuffixList is returned (wrapped, with the line number) by
// LoadSuffixes for a malformed list of fileable suffixes.
var ErrInvalidSuffixList = errors.New("invalid suffix list")

// miitSuffixes is the maintained copy of MIIT's list of fileable suffixes;
// configs/miit-suffixes.txt is the operator-facing copy of the same bytes.
//
//go:embed miit_suffixes.txt
var miitSuffixes []byte

// defaultSuffixes is parsed from miitSuffixes once, at package
// initialisation: the embedded file is tested, so a failure here is a
// build defect and panics.
var defaultSuffixes = mustLoadSuffixes(miitSuffixes)

func mustLoadSuffixes(b []byte) *Suffixes {
	s, err := LoadSuffixes(bytes.NewReader(b))
	if err != nil {
		panic("registry: embedded miit_suffixes.txt: " + err.Error())
	}
	return s
}

// Suffixes is an immutable set of domain suffixes that can be filed with
// MIIT. The zero value and nil hold no suffix of their own and defer to
// DefaultSuffixes, so a nil *Suffixes in a config means "the built-in
// list". It is safe for concurrent use.
type Suffixes struct {
	set map[string]struct{}
}

// DefaultSuffixes returns the built-in list, the maintained copy of MIIT's
// published suffixes embedded from miit_suffixes.txt (identical to
// configs/miit-suffixes.txt).
func DefaultSuffixes() *Suffixes { return defaultSuffixes }

// maxSuffixLine bounds a line of a suffix file; a longer line is an error,
// not a silent truncation.
const maxSuffixLine = 4096

// LoadSuffixes reads a list of fileable suffixes in the format of
// configs/miit-suffixes.txt: one suffix per line, "#" to the end of a line
// is a comment, blank lines are ignored, a UTF-8 byte order mark at the
// start is skipped. A suffix may be written in Unicode or A-labels and is
// normalised ("中国" and "xn--fiqs8s" are the same entry); it must be a public
// suffix in the ICANN section of the Public Suffix List, or a single label
// (a top-level domain newer than the compiled list), because a listed
// suffix is compared with the public suffix of a registrable domain.
// Errors wrap ErrInvalidSuffixList and name the line: an invalid name, a
// name that is not a public suffix, a duplicate, or a list with no
// suffixes.
func LoadSuffixes(r io.Reader) (*Suffixes, error) {
	s := &Suffixes{set: make(map[string]struct{})}
	lineOf := make(map[string]int)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxSuffixLine)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if n == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.ContainsAny(line, " \t") {
			return nil, fmt.Errorf("%w: line %d: %q: more than one field (one suffix per line)", ErrInvalidSuffixList, n, line)
		}
		if strings.HasPrefix(line, ".") {
			return nil, fmt.Errorf("%w: line %d: %q: write the suffix without a leading dot", ErrInvalidSuffixList, n, line)
		}
		name, kind, err := Normalize(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %q: %w", ErrInvalidSuffixList, n, line, err)
		}
		if kind != HostName {
			return nil, fmt.Errorf("%w: line %d: %q: not a domain suffix", ErrInvalidSuffixList, n, line)
		}
		if dom, err := RegistrableDomain(name); err == nil {
			return nil, fmt.Errorf("%w: line %d: %q: not a public suffix (it is the registrable domain %s)", ErrInvalidSuffixList, n, line, dom)
		} else if !errors.Is(err, ErrPublicSuffix) {
			return nil, fmt.Errorf("%w: line %d: %q: %w", ErrInvalidSuffixList, n, line, err)
		}
		if first, dup := lineOf[name]; dup {
			return nil, fmt.Errorf("%w: line %d: %q: duplicate of line %d", ErrInvalidSuffixList, n, line, first)
		}
		lineOf[name] = n
		s.set[strings.Clone(name)] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: line %d: longer than %d bytes", ErrInvalidSuffixList, n+1, maxSuffixLine)
		}
		return nil, fmt.Errorf("reading suffix list: %w", err)
	}
	if len(s.set) == 0 {
		return nil, fmt.Errorf("%w: no suffixes", ErrInvalidSuffixList)
	}
	return s, nil
}

// Fileable reports whether domain, a registrable domain as returned by
// RegistrableDomain, is under a suffix on the list: some proper suffix of
// it (everything after its first label, then after its second, ...) is
// listed. "example.com.cn" is fileable because "cn" is listed;
// "example.io" is not. A nil or zero s uses DefaultSuffixes. It does not
// allocate.
func (s *Suffixes) Fileable(domain string) bool {
	if s == nil || s.set == nil {
		s = defaultSuffixes
	}
	for {
		dot := strings.IndexByte(domain, '.')
		if dot < 0 {
			return false
		}
		domain = domain[dot+1:]
		if _, ok := s.set[domain]; ok {
			return true
		}
	}
}

// Len returns the number of suffixes on the list.
func (s *Suffixes) Len() int {
	if s == nil || s.set == nil {
		s = defaultSuffixes
	}
	return len(s.set)
}

// List returns the suffixes in A-label form, sorted.
func (s *Suffixes) List() []string {
	if s == nil || s.set == nil {
		s = defaultSuffixes
	}
	out := make([]string, 0, len(s.set))
	for k := range s.set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Fileable reports whether the public suffix of a registrable domain is on
// the built-in MIIT list of suffixes that can be filed
// (DefaultSuffixes().Fileable(domain)).
func Fileable(domain string) bool { return defaultSuffixes.Fileable(domain) }
