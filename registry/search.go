package registry

import (
	"context"
	"errors"
	"slices"
	"strings"
	"unicode/utf8"
)

// The registry is keyed by domain; support staff also get a filing number
// (备案号) or a subject name (主体) from customers. Search answers those by
// a linear scan of the snapshot: no index is kept, because one would cost
// memory on every gateway (a 10-million-record registry already takes
// most of its budget, packed.go) for a query support makes a few times an
// hour. The scan reads an immutable snapshot and holds no lock, so the
// data plane never waits for it; it stops at Query.Limit matches plus one
// (to say there are more) and when its context is done, so a caller
// bounds it with a deadline and says the answer is incomplete.

// ErrEmptyQuery is returned by Search when the query names nothing to
// match, or a subject shorter than MinSubjectQuery characters.
var ErrEmptyQuery = errors.New("empty search")

// Search limits.
const (
	// MaxSearchResults caps Query.Limit.
	MaxSearchResults = 1000
	// MinSubjectQuery is the fewest characters a subject query may have
	// (a single character would match a good part of any registry).
	MinSubjectQuery = 2
	// scanCheckEvery is how many records the scan reads between looks at
	// its context.
	scanCheckEvery = 4096
)

// Query is what Search looks for. Set exactly one of FilingNumber and
// Subject (both: a record must match both).
type Query struct {
	// FilingNumber is a filing number as a customer gives it, normalised
	// by NormalizeFilingNumber. A subject number (京ICP备10206937号)
	// matches every website under it (-1, -2, ...); a website number
	// (京ICP备10206937号-1) matches that website only. Both forms of a
	// province with two (川/蜀, 贵/黔, 云/滇, 甘/陇) match each other.
	FilingNumber string
	// Subject matches records whose subject contains it, after folding
	// both with FoldText (full-width to half-width, ASCII case, spaces).
	Subject string
	// Limit caps the records returned: 0 means 100, at most
	// MaxSearchResults.
	Limit int
}

// SearchResult is Search's answer.
type SearchResult struct {
	// Records match, sorted by domain; at most Query.Limit of them.
	Records []Record
	// More is set when more records match than Records holds.
	More bool
	// Incomplete is set when the context ended before the whole snapshot
	// was read: Records holds what matched in the part read.
	Incomplete bool
	// Scanned is how many records were read.
	Scanned int
}

// Search returns the records of s matching q. It reads s without locks
// (a snapshot never changes) and checks ctx every few thousand records:
// when ctx ends first, the answer so far comes back with Incomplete set
// and a nil error. A filing number that does not parse is an error
// wrapping ErrInvalidFilingNumber; a query with nothing to match,
// ErrEmptyQuery.
func (s *Snapshot) Search(ctx context.Context, q Query) (SearchResult, error) {
	m, err := newMatcher(q)
	if err != nil {
		return SearchResult{}, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxSearchResults)
	var res SearchResult
	for r := range s.Records() {
		if res.Scanned%scanCheckEvery == 0 && ctx.Err() != nil {
			res.Incomplete = true
			break
		}
		res.Scanned++
		if !m.match(r) {
			continue
		}
		if len(res.Records) == limit {
			res.More = true
			break
		}
		res.Records = append(res.Records, *r) // r is reused by the iterator
	}
	slices.SortFunc(res.Records, func(a, b Record) int { return strings.Compare(a.Domain, b.Domain) })
	return res, nil
}

// matcher is a Query prepared for the scan.
type matcher struct {
	// number: the number without its province ("ICP备10206937号"), the
	// canonical province, and whether a website number must match whole.
	number, province string
	site             bool
	subject          string // folded; "" matches any
}

func newMatcher(q Query) (matcher, error) {
	var m matcher
	if q.FilingNumber == "" && strings.TrimSpace(q.Subject) == "" {
		return m, ErrEmptyQuery
	}
	if q.FilingNumber != "" {
		f, err := ParseFilingNumber(NormalizeFilingNumber(q.FilingNumber))
		if err != nil {
			return m, err
		}
		s := f.String()
		m.number, m.province = s[len(f.Province):], f.ProvinceCanonical()
		m.site = f.Kind == FilingWebsite
	}
	if q.Subject != "" {
		m.subject = FoldText(q.Subject)
		if utf8.RuneCountInString(m.subject) < MinSubjectQuery {
			return m, ErrEmptyQuery
		}
	}
	return m, nil
}

func (m *matcher) match(r *Record) bool {
	if m.number != "" && !m.matchNumber(r.FilingNumber) {
		return false
	}
	return m.subject == "" || strings.Contains(FoldText(r.Subject), m.subject)
}

// matchNumber compares a stored (canonical, validated) filing number.
func (m *matcher) matchNumber(stored string) bool {
	_, size := utf8.DecodeRuneInString(stored)
	rest := stored[size:]
	if !strings.HasPrefix(rest, m.number) {
		return false
	}
	tail := rest[len(m.number):]
	if tail != "" && (m.site || tail[0] != '-') {
		return false // another site, or a longer serial
	}
	return provinces[stored[:size]] == m.province
}

// NormalizeFilingNumber turns a filing number as people type or paste it
// into the form MIIT writes, for ParseFilingNumber: full-width letters,
// digits and hyphens become half-width (京ＩＣＰ备１０２０６９３７号－１),
// dashes of every kind become "-", ASCII letters upper case ("icp"), and
// spaces anywhere go, as does a "备案号：" label before the number. It
// does not validate.
func NormalizeFilingNumber(s string) string {
	s = strings.TrimSpace(s)
	for _, label := range []string{"ICP备案号", "网站备案号", "备案号", "ICP备案", "ICP"} {
		rest, ok := strings.CutPrefix(s, label)
		if !ok {
			continue
		}
		rest = strings.TrimLeft(rest, " :：\u3000")
		if rest != "" && !strings.HasPrefix(rest, "备") && !strings.HasPrefix(rest, "证") {
			s = rest // a label, not the "ICP备" inside a number
		}
		break
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		r = foldRune(r)
		switch {
		case r == ' ' || r == '\t':
			continue
		case r >= 0x2010 && r <= 0x2015, r == 0x2212:
			r = '-'
		case r >= 'a' && r <= 'z':
			r -= 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// FoldText folds s for a substring search: full-width forms become
// half-width (Ａ to A, U+3000 to a space), ASCII letters lower case, and
// white space is dropped, so "某某科技 （北京）" finds "某某科技(北京)".
func FoldText(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ('A' <= c && c <= 'Z') || c == ' ' || c == '\t' || c >= utf8.RuneSelf && (c == 0xef || c == 0xe3) {
			clean = false // a full-width form starts with 0xEF, U+3000 with 0xE3
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		r = foldRune(r)
		switch {
		case r == ' ' || r == '\t':
			continue
		case r >= 'A' && r <= 'Z':
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// foldRune maps a full-width form (U+FF01-U+FF5E) to its ASCII character
// and the ideographic space to a space.
func foldRune(r rune) rune {
	switch {
	case r >= 0xff01 && r <= 0xff5e:
		return r - 0xfee0
	case r == 0x3000:
		return ' '
	}
	return r
}
