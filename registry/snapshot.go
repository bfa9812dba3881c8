package registry

import (
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// ErrInvalidRecord is returned (wrapped, with the field named) when a record
// fails validation.
var ErrInvalidRecord = errors.New("invalid record")

// ErrDuplicate is returned (wrapped) when a domain appears twice.
var ErrDuplicate = errors.New("duplicate domain")

// ErrInvalidOverride is returned (wrapped, with the field named) when an
// override fails validation.
var ErrInvalidOverride = errors.New("invalid override")

// Snapshot is an immutable view of the registry: every record keyed by its
// A-label registrable domain, and the overrides. It is built once (Builder,
// NewSnapshot) and never changed, so any number of goroutines may read it
// while a newer one is being built.
type Snapshot struct {
	// base holds the records as they were built, packed (packed.go).
	base *packed
	// delta overlays changes applied since the records were built (Apply):
	// a domain's record, or nil when it was deleted. It is small (Apply
	// compacts into a fresh base when it grows), so a lookup that checks it
	// first stays cheap.
	delta map[string]*Record
	n     int // live records: base minus deleted plus added
	// overrides groups the overrides by the registrable domain of their
	// host, so that a decision needs one lookup and a diff between
	// snapshots can compare one domain at a time.
	overrides map[string][]Override
	nov       int
	counts    [numStates + 1]int
	// rejected holds the rows of the source that failed validation, by
	// the registrable domain of their name (rejectedKey), so a decision
	// can say why a domain has no record. Only the PostgreSQL source sets
	// it (a registry file with a bad row is refused whole); like the rest
	// it is never changed once built.
	rejected  map[string][]RejectedRow
	nrejected int
	// gen identifies the records (not the overrides): Build and Apply give
	// each result a new one, WithOverrides keeps it. A source that keeps
	// its own index of what it loaded (FileSource) checks it to know that
	// nobody else changed the records since.
	gen uint64
}

// snapshotGen hands out Snapshot.gen values.
var snapshotGen atomic.Uint64

// emptySnapshot is the registry before anything was loaded.
var emptySnapshot = &Snapshot{base: emptyPacked}

// NewSnapshot validates records and overrides and builds a Snapshot. The
// first invalid entry is reported with its position.
func NewSnapshot(records []Record, overrides []Override) (*Snapshot, error) {
	b := NewBuilder(len(records))
	for i := range records {
		if err := b.Add(records[i]); err != nil {
			return nil, fmt.Errorf("record %d: %w", i+1, err)
		}
	}
	for i := range overrides {
		if err := b.AddOverride(overrides[i]); err != nil {
			return nil, fmt.Errorf("override %d: %w", i+1, err)
		}
	}
	return b.Build(), nil
}

// Lookup returns the record of a registrable domain (A-label, lower case),
// or nil. The record must not be modified. Each call may return a new
// Record (decoded from the packed base), so compare records with Equal,
// not by pointer.
func (s *Snapshot) Lookup(domain string) *Record {
	if s.delta != nil {
		if r, ok := s.delta[domain]; ok {
			return r
		}
	}
	var r Record
	if s.base.lookup(domain, &r) {
		return &r
	}
	return nil
}

// inBase reports whether domain has a record in the packed base (deleted
// by the overlay or not).
func (s *Snapshot) inBase(domain string) bool {
	if s.base.n == 0 {
		return false
	}
	_, ok := s.base.find(domain)
	return ok
}

// Len returns the number of records.
func (s *Snapshot) Len() int { return s.n }

// Count returns the number of records in state st.
func (s *Snapshot) Count(st State) int {
	if !st.Valid() {
		return 0
	}
	return s.counts[st]
}

// Counts returns the number of records by state, with an entry for every
// state (zero included) so gauges can be set without gaps.
func (s *Snapshot) Counts() map[State]int {
	m := make(map[State]int, numStates)
	for _, st := range States() {
		m[st] = s.counts[st]
	}
	return m
}

// Records iterates over every record, in no particular order. The records
// must not be modified, and a yielded *Record is valid only until the
// next iteration (records are decoded one at a time into the same
// Record): copy it (*r) to keep it.
func (s *Snapshot) Records() iter.Seq[*Record] {
	return func(yield func(*Record) bool) {
		stopped := false
		s.base.each(func(r *Record) bool {
			if s.delta != nil {
				if _, changed := s.delta[r.Domain]; changed {
					return true
				}
			}
			stopped = !yield(r)
			return !stopped
		})
		if stopped {
			return
		}
		for _, r := range s.delta {
			if r != nil && !yield(r) {
				return
			}
		}
	}
}

// Overrides returns a copy of every override.
func (s *Snapshot) Overrides() []Override {
	out := make([]Override, 0, s.nov)
	for _, ovs := range s.overrides {
		out = append(out, ovs...)
	}
	return out
}

// OverridesFor returns the overrides that concern a registrable domain:
// domain-scope entries for it and exact entries for names under it. The
// overrides must not be modified.
func (s *Snapshot) OverridesFor(domain string) []Override { return s.overrides[domain] }

// WithOverrides returns a snapshot with the records of s and the given
// overrides in place of s's, validated. The records are shared, not copied,
// so this is cheap whatever the registry's size: it is how overrides set by
// the control plane are combined with records loaded from a source.
func (s *Snapshot) WithOverrides(overrides []Override) (*Snapshot, error) {
	b := &Builder{}
	for i := range overrides {
		if err := b.AddOverride(overrides[i]); err != nil {
			return nil, fmt.Errorf("override %d: %w", i+1, err)
		}
	}
	n := *s
	n.overrides, n.nov = b.overrides, b.nov
	return &n, nil
}

// MaxRejectedRows is the most rejected rows a snapshot remembers
// (WithRejected keeps the first): enough for any real mistake, bounded
// against a bulk write of bad rows.
const MaxRejectedRows = 10000

// RejectedRow is a row of the filing database that failed validation. It
// gives its domain no record: the domain decides as if it had none (see
// PostgresSource), and the decision carries the row to say why.
type RejectedRow struct {
	// Domain is the row's domain as the database has it.
	Domain string
	// Field is the column at fault ("filing_number", "state", ...), ""
	// when no single column is.
	Field string
	// Value is that column's value.
	Value string
	// Reason says what is wrong, naming the field and value:
	// `filing_number "京ICP备123号": ...`.
	Reason string
}

// WithRejected returns a snapshot with the records and overrides of s and
// rows (at most MaxRejectedRows of them) as its rejected rows, in place of
// s's. Like WithOverrides it shares the records.
func (s *Snapshot) WithRejected(rows []RejectedRow) *Snapshot {
	n := *s
	n.rejected, n.nrejected = nil, 0
	rows = rows[:min(len(rows), MaxRejectedRows)]
	if len(rows) > 0 {
		n.rejected = make(map[string][]RejectedRow, len(rows))
		for _, r := range rows {
			k := rejectedKey(r.Domain)
			n.rejected[k] = append(n.rejected[k], r)
		}
		n.nrejected = len(rows)
	}
	return &n
}

// Rejected returns a copy of the rejected rows, sorted by domain.
func (s *Snapshot) Rejected() []RejectedRow {
	out := make([]RejectedRow, 0, s.nrejected)
	for _, rs := range s.rejected {
		out = append(out, rs...)
	}
	slices.SortFunc(out, func(a, b RejectedRow) int { return strings.Compare(a.Domain, b.Domain) })
	return out
}

// RejectedCount returns the number of rejected rows.
func (s *Snapshot) RejectedCount() int { return s.nrejected }

// rejectedKey is the registrable domain of a rejected row's name, which
// is what a decision looks up; the name as it is when it has none.
func rejectedKey(name string) string {
	n, kind, err := Normalize(name)
	if err != nil || kind != HostName {
		return name
	}
	if reg, err := RegistrableDomain(n); err == nil {
		return reg
	}
	return n
}

// Apply returns a snapshot with upserts added or replacing the records of
// their domains and the records of deletes removed; s is unchanged and the
// overrides are carried over. It costs in proportion to the changes, not to
// the registry: the changes are kept as an overlay over s's records, which
// is compacted into a fresh base (a full copy) only once it grows past
// 1/64 of the registry. This is the path for an incremental sync (a
// change sequence from the filing database); Registry.Swap of the result
// then invalidates exactly the changed domains. Each upsert is validated as
// Builder.Add does; a domain may appear only once across upserts and
// deletes; deleting an absent domain is not an error (syncs replay).
func (s *Snapshot) Apply(upserts []Record, deletes []string) (*Snapshot, error) {
	changes := make(map[string]*Record, len(upserts)+len(deletes))
	for i := range upserts {
		rec := upserts[i]
		if err := canonicalRecord(&rec); err != nil {
			return nil, fmt.Errorf("upsert %d: %w", i+1, err)
		}
		if _, dup := changes[rec.Domain]; dup {
			return nil, fmt.Errorf("upsert %d: %w: domain %s", i+1, ErrDuplicate, rec.Domain)
		}
		changes[rec.Domain] = &rec
	}
	for i, d := range deletes {
		dom, err := CanonicalDomain(d)
		if err != nil {
			return nil, fmt.Errorf("delete %d: %w", i+1, err)
		}
		if _, dup := changes[dom]; dup {
			return nil, fmt.Errorf("delete %d: %w: domain %s", i+1, ErrDuplicate, dom)
		}
		changes[dom] = nil
	}
	n := *s
	n.gen = snapshotGen.Add(1)
	n.delta = make(map[string]*Record, len(s.delta)+len(changes))
	for d, r := range s.delta {
		n.delta[d] = r
	}
	for d, r := range changes {
		if old := s.Lookup(d); old != nil {
			n.counts[old.State]--
			n.n--
		}
		if r != nil {
			n.counts[r.State]++
			n.n++
		}
		if r == nil && !s.inBase(d) {
			delete(n.delta, d) // nothing to hide
			continue
		}
		n.delta[d] = r
	}
	// Each Apply copies the overlay, a full compaction copies everything:
	// 1/64 of the registry keeps both small (10M records: an overlay of at
	// most 156k entries, a compaction every 156k changes).
	if len(n.delta) > max(4096, s.base.n/64) {
		if err := n.compact(); err != nil {
			return nil, err
		}
	}
	return &n, nil
}

// compact folds the overlay into a fresh base.
func (s *Snapshot) compact() error {
	pk := newPacker(s.n)
	for r := range s.Records() {
		if _, err := pk.add(r); err != nil {
			return err
		}
	}
	s.base, s.delta = pk.done(), nil
	return nil
}

// sameDomain reports whether domain decides the same in s and o: equal
// records and equal overrides.
func (s *Snapshot) sameDomain(o *Snapshot, domain string) bool {
	r1, r2 := s.Lookup(domain), o.Lookup(domain)
	if (r1 == nil) != (r2 == nil) || (r1 != nil && r1 != r2 && !r1.Equal(r2)) {
		return false
	}
	if !slices.Equal(s.rejected[domain], o.rejected[domain]) {
		return false
	}
	ov1, ov2 := s.overrides[domain], o.overrides[domain]
	if len(ov1) != len(ov2) {
		return false
	}
	for i := range ov1 {
		if !ov1[i].Equal(&ov2[i]) {
			return false
		}
	}
	return true
}

// Builder validates records and overrides one at a time and builds a
// Snapshot. Records are packed as they come (packed.go): the values that
// repeat across records (subject type, province, upstream) are stored
// once. A Builder is not safe for concurrent use.
type Builder struct {
	pk        *packer
	last      string // domain of the last record added
	overrides map[string][]Override
	nov       int
	counts    [numStates + 1]int
}

// NewBuilder returns a Builder sized for about n records.
func NewBuilder(n int) *Builder {
	return &Builder{pk: newPacker(max(n, 0))}
}

// Len returns the number of records added so far.
func (b *Builder) Len() int {
	if b.pk == nil {
		return 0
	}
	return b.pk.p.n
}

// Add validates rec and adds it. The domain may be given in Unicode
// (例子.中国) and is stored as an A-label; otherwise it must already be in
// normal form. Errors wrap ErrInvalidRecord (naming the field) or
// ErrDuplicate. Add keeps none of rec's strings (it copies what it
// stores), so they may point into a buffer the caller reuses.
func (b *Builder) Add(rec Record) error {
	if b.pk == nil {
		b.pk = newPacker(0)
	}
	if err := canonicalRecord(&rec); err != nil {
		return err
	}
	ref, err := b.pk.add(&rec)
	if err != nil {
		return err
	}
	b.last = b.pk.p.domainAt(ref) // the arena's copy: rec's may be borrowed
	b.counts[rec.State]++
	return nil
}

// canonicalRecord puts rec's domain in A-label form and validates the
// rest; times become UTC (no *Location to keep alive; the same instant).
func canonicalRecord(rec *Record) error {
	dom, err := CanonicalDomain(rec.Domain)
	if err != nil {
		return err
	}
	rec.Domain = dom
	if err := validateRecord(rec); err != nil {
		return err
	}
	rec.RectifyDeadline, rec.UpdatedAt = utc(rec.RectifyDeadline), utc(rec.UpdatedAt)
	return nil
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// CanonicalDomain returns the A-label form of a record's registrable domain.
// It accepts a domain already in normal form, or a Unicode domain converted
// to A-labels; anything else (upper case, a trailing dot, a port, a
// subdomain, a public suffix) is rejected with the form it should have.
func CanonicalDomain(d string) (string, error) {
	if d == "" {
		return "", fmt.Errorf("%w: domain: required", ErrInvalidRecord)
	}
	n, kind, err := Normalize(d)
	if err != nil {
		return "", fmt.Errorf("%w: domain %q: %w", ErrInvalidRecord, d, err)
	}
	if kind != HostName {
		return "", fmt.Errorf("%w: domain %q: not a domain name", ErrInvalidRecord, d)
	}
	if n != d && (isASCII(d) || strings.ContainsAny(d, ":/") || strings.HasSuffix(d, ".")) {
		return "", fmt.Errorf("%w: domain %q: not in normal form (write %q)", ErrInvalidRecord, d, n)
	}
	reg, err := RegistrableDomain(n)
	if err != nil {
		return "", fmt.Errorf("%w: domain %q: %w", ErrInvalidRecord, d, err)
	}
	if reg != n {
		return "", fmt.Errorf("%w: domain %q: not a registrable domain (its registrable domain is %s)", ErrInvalidRecord, d, reg)
	}
	return n, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// validateRecord checks everything but the domain.
func validateRecord(r *Record) error {
	if !r.State.Valid() {
		return fmt.Errorf("%w: state: %w: %d", ErrInvalidRecord, ErrUnknownState, uint8(r.State))
	}
	if r.FilingNumber != "" {
		if _, err := ParseFilingNumber(r.FilingNumber); err != nil {
			return fmt.Errorf("%w: filing_number %q: %w", ErrInvalidRecord, r.FilingNumber, err)
		}
	} else if r.State.NeedsFilingNumber() {
		return fmt.Errorf("%w: filing_number: required for state %s", ErrInvalidRecord, r.State)
	}
	if r.State == StateRectifying && r.RectifyDeadline.IsZero() {
		return fmt.Errorf("%w: rectify_deadline: required for state rectifying", ErrInvalidRecord)
	}
	for _, f := range [...]struct{ name, v string }{
		{"subject", r.Subject}, {"subject_type", r.SubjectType},
		{"province", r.Province}, {"upstream", r.Upstream},
	} {
		if !utf8.ValidString(f.v) || strings.ContainsFunc(f.v, isControl) {
			return fmt.Errorf("%w: %s %q: invalid characters", ErrInvalidRecord, f.name, f.v)
		}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// AddOverride validates o and adds it. Host must be a normalised name that
// has a registrable domain (never a public suffix or an IP); a domain-scope
// override must name the registrable domain itself; an allow must expire.
func (b *Builder) AddOverride(o Override) error {
	if o.Action != ActionAllow && o.Action != ActionDeny {
		return fmt.Errorf("%w: action: must be allow or deny", ErrInvalidOverride)
	}
	if o.Scope != ScopeExact && o.Scope != ScopeDomain {
		return fmt.Errorf("%w: scope: must be exact or domain", ErrInvalidOverride)
	}
	n, kind, err := Normalize(o.Host)
	if err != nil || kind != HostName {
		return fmt.Errorf("%w: host %q: not a host name", ErrInvalidOverride, o.Host)
	}
	dom, err := RegistrableDomain(n)
	if err != nil {
		return fmt.Errorf("%w: host %q: %w", ErrInvalidOverride, o.Host, err)
	}
	if o.Scope == ScopeDomain && dom != n {
		return fmt.Errorf("%w: host %q: a domain-scope override must name the registrable domain %s", ErrInvalidOverride, o.Host, dom)
	}
	if o.Action == ActionAllow && o.Expires.IsZero() {
		return fmt.Errorf("%w: expires: required for an allow", ErrInvalidOverride)
	}
	o.Host = n
	if b.overrides == nil {
		b.overrides = make(map[string][]Override)
	}
	b.overrides[dom] = append(b.overrides[dom], o)
	b.nov++
	return nil
}

// Build returns the Snapshot. The Builder must not be used afterwards.
func (b *Builder) Build() *Snapshot {
	if b.pk == nil {
		b.pk = newPacker(0)
	}
	n := b.pk.p.n
	s := &Snapshot{
		n:         n,
		base:      b.pk.done(),
		overrides: b.overrides,
		nov:       b.nov,
		counts:    b.counts,
		gen:       snapshotGen.Add(1),
	}
	for d, ovs := range s.overrides {
		// A stable order makes equal override sets compare equal in diffs.
		sortOverrides(ovs)
		s.overrides[d] = ovs
	}
	*b = Builder{}
	return s
}

func sortOverrides(ovs []Override) {
	// Insertion sort: a domain has a handful of overrides.
	for i := 1; i < len(ovs); i++ {
		for j := i; j > 0 && overrideLess(&ovs[j], &ovs[j-1]); j-- {
			ovs[j], ovs[j-1] = ovs[j-1], ovs[j]
		}
	}
}

func overrideLess(a, b *Override) bool {
	if a.Host != b.Host {
		return a.Host < b.Host
	}
	if a.Scope != b.Scope {
		return a.Scope < b.Scope
	}
	if a.Action != b.Action {
		return a.Action < b.Action
	}
	if !a.Expires.Equal(b.Expires) {
		return a.Expires.Before(b.Expires)
	}
	return a.ID < b.ID
}
