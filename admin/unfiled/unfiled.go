// Package unfiled keeps the unfiled-site report for the filing team: for
// each registrable domain the gateway blocked, when it was first and last
// seen, how many times, for which reason, and where the visitors' traffic
// would have gone: the upstream (host:port) the gateway would have passed
// it to, or in transparent mode the original destination address.
// Regulators ask providers for this list.
//
// Blocked names are chosen by whoever sends traffic: a scan or an attack
// can send millions of random ones. The report therefore keeps a fixed
// number of domains (Options.Capacity) in a Space-Saving heavy-hitter
// sketch (Metwally, Agrawal and El Abbadi, "Efficient Computation of
// Frequent and Top-k Elements in Data Streams", ICDT 2005): each tracked
// domain has a counter; a block of a tracked domain increments it; a block
// of a new domain when every counter is taken replaces the domain with the
// smallest count, and the newcomer starts from that count plus one,
// recording the inherited count as its error (HitsError). With N blocks
// observed and m = Capacity counters:
//
//   - every domain blocked more than N/m times is in the report;
//   - a row's Hits never understate the true count and overstate it by
//     at most HitsError (true count is in [Hits-HitsError, Hits]);
//     HitsError is 0 for a domain tracked since its first block;
//   - the counts add up to N exactly (less the rows a Load into a smaller
//     Capacity dropped), and the smallest is at most N/m.
//
// FirstSeen is when the domain entered the sketch (it may have been seen,
// and evicted, before). Destinations are the first MaxDestinations
// distinct ones; further ones are counted, not kept. Memory is
// bounded by Capacity whatever the input.
//
// Usage (cmd wires it; the report never imports the data plane):
//
//	r := unfiled.New(unfiled.Options{File: "data/unfiled.json", Log: log})
//	if err := r.Load(); err != nil {
//		log.Error("unfiled report not restored, starting empty", "error", err)
//	}
//	srv.SetBlockObserver(observer{r}) // calls r.ObserveUpstream or r.Observe on every block
//	go r.Run(ctx)                     // saves every 30 s when changed, and at exit
//	rows := r.Top(100, "unfiled")
package unfiled

import (
	"cmp"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/icpgate/icpgate/admin"
)

// Defaults and limits of Options.
const (
	// DefaultCapacity is the number of domains tracked by default.
	DefaultCapacity = 10000
	// DefaultMaxDestinations is the number of destinations kept per
	// domain by default.
	DefaultMaxDestinations = 8
	// DefaultSaveInterval is how often Run saves a changed report.
	DefaultSaveInterval = 30 * time.Second

	// MaxCapacity caps Options.Capacity (the sketch indexes counters with
	// 32-bit integers; 16 Mi domains is far beyond any sensible report).
	MaxCapacity = 1 << 24
	// MaxMaxDestinations caps Options.MaxDestinations.
	MaxMaxDestinations = 1024

	maxDomainLen  = 253 // a DNS name's longest text form
	maxDestLen    = 261 // [253-byte name]:65535, an upstream's longest text form
	maxReasonLen  = 64  // reason codes are short snake_case words
	maxReasons    = 64  // distinct reason strings interned; the set is closed (~12)
	initialHint   = 1024
	initialDestsN = 2 // most blocked domains are asked for at one address
)

// Options configure a Report. Zero values mean the documented defaults.
type Options struct {
	// Capacity is how many domains the sketch tracks. Default 10000
	// (DefaultCapacity); at most MaxCapacity. Memory is about 420 bytes
	// per domain with one destination (4.2 MB at the default, measured
	// under a flood of 6 million random names).
	Capacity int
	// MaxDestinations is how many distinct destination addresses are kept
	// per domain; hits at other addresses are only counted. Default 8; at
	// most MaxMaxDestinations.
	MaxDestinations int
	// File is where Save writes the report and Load reads it (JSON). ""
	// keeps the report in memory only: Save, Load and Run's saves do
	// nothing.
	File string
	// SaveInterval is how often Run saves the report when it changed.
	// Default 30 s.
	SaveInterval time.Duration
	// Log receives Run's save errors; nil discards them.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Location is the time zone of WriteCSV's times (written with their
	// offset). nil means UTC.
	Location *time.Location
}

// Report is the unfiled-site report: a Space-Saving sketch of blocked
// registrable domains. It is safe for concurrent use. Create it with New.
type Report struct {
	capacity int
	maxDests int
	file     string
	interval time.Duration
	log      *slog.Logger
	now      func() time.Time
	loc      *time.Location

	saveMu sync.Mutex // serialises Save and Load's file access

	mu       sync.Mutex       // guards the fields below
	index    map[string]int32 // domain -> index into entries
	entries  []entry          // at most capacity; never shrinks
	heap     []int32          // indexes into entries, a min-heap by hits
	reasons  map[string]string
	observed uint64 // N: blocks counted since the report began
	changed  bool   // since the last snapshot taken for Save
}

// entry is one counter of the sketch.
type entry struct {
	domain      string // owned copy
	reason      string // interned
	hits        uint64
	hitsErr     uint64
	first, last int64  // Unix nanoseconds
	dests       []dest // first maxDests distinct; backing array reused on eviction
	otherDests  uint64 // hits at a destination not in dests
	pos         int32  // index in heap
}

// New returns an empty report. Call Load to restore a saved one.
func New(opts Options) *Report {
	r := &Report{
		capacity: opts.Capacity,
		maxDests: opts.MaxDestinations,
		file:     opts.File,
		interval: opts.SaveInterval,
		log:      opts.Log,
		now:      opts.Now,
		loc:      opts.Location,
	}
	if r.capacity <= 0 {
		r.capacity = DefaultCapacity
	}
	r.capacity = min(r.capacity, MaxCapacity)
	if r.maxDests <= 0 {
		r.maxDests = DefaultMaxDestinations
	}
	r.maxDests = min(r.maxDests, MaxMaxDestinations)
	if r.interval <= 0 {
		r.interval = DefaultSaveInterval
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("component", "unfiled")
	if r.now == nil {
		r.now = time.Now
	}
	if r.loc == nil {
		r.loc = time.UTC
	}
	r.reset()
	return r
}

// reset empties the sketch. r.mu must be held (or r unshared).
func (r *Report) reset() {
	r.index = make(map[string]int32, min(r.capacity, initialHint))
	r.entries = nil
	r.heap = nil
	r.reasons = make(map[string]string)
	r.observed = 0
}

// dest is one destination of a domain: an upstream as the gateway names
// it (host:port), or an address (transparent mode's original
// destination; also what a saved IP:port upstream loads as). Two dests
// are the same when their text is.
type dest struct {
	addr netip.AddrPort // when name is ""
	name string         // immutable: configuration, registry or an owned copy
}

// appendTo appends d's text form to b.
func (d dest) appendTo(b []byte) []byte {
	if d.name != "" {
		return append(b, d.name...)
	}
	return d.addr.AppendTo(b)
}

func (d dest) String() string {
	if d.name != "" {
		return d.name
	}
	return d.addr.String()
}

// same reports whether d and o have the same text, without allocating.
func (d dest) same(o dest) bool {
	switch {
	case d.name == "" && o.name == "":
		return d.addr == o.addr
	case d.name != "" && o.name != "":
		return d.name == o.name
	}
	var buf [64]byte // an AddrPort's text is at most 51 bytes
	if d.name == "" {
		return string(d.addr.AppendTo(buf[:0])) == o.name
	}
	return string(o.addr.AppendTo(buf[:0])) == d.name
}

// valid reports whether d names a destination.
func (d dest) valid() bool { return d.name != "" || d.addr.IsValid() }

// Observe counts one block of domain (a registrable domain) for reason,
// at destination address dst: in transparent mode the original
// destination (the zero AddrPort when unknown). It has the method set of
// the data plane's BlockObserver: it is fast (a mutex, a map lookup and
// O(log Capacity) heap maintenance), never blocks on I/O, and allocates
// nothing for a domain already tracked at a known destination. domain is
// copied only when it enters the sketch, so it may alias a buffer the
// caller reuses. An empty domain, or one longer than a DNS name can be, or
// with bytes other than printable ASCII (a registrable domain is an
// A-label), is ignored.
func (r *Report) Observe(reason, domain string, dst netip.AddrPort) {
	if dst.IsValid() {
		dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	}
	r.observe(reason, domain, dest{addr: dst})
}

// ObserveUpstream is Observe for a block whose traffic would have gone to
// upstream (host:port, as the listener or the registry names it; ""
// when unknown). upstream is kept without copying, so it must not alias a
// reused buffer; one longer than a host:port can be, or with bytes other
// than printable ASCII, is not kept.
func (r *Report) ObserveUpstream(reason, domain, upstream string) {
	var d dest
	if len(upstream) <= maxDestLen && printable(upstream) {
		d.name = upstream
	}
	r.observe(reason, domain, d)
}

func (r *Report) observe(reason, domain string, dst dest) {
	if domain == "" || len(domain) > maxDomainLen {
		return
	}
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	now := r.now().UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	var e *entry
	if i, ok := r.index[domain]; ok {
		e = &r.entries[i]
		e.hits++
		r.down(int(e.pos))
	} else if printable(domain) {
		e = r.insert(domain, now)
	} else {
		return
	}
	r.observed++
	r.changed = true
	e.last = max(e.last, now)
	if e.reason != reason {
		e.reason = r.intern(reason)
	}
	r.addDest(e, dst)
}

// insert starts counting a domain not in the sketch: in a free counter
// while there is one, else in place of the domain with the fewest hits,
// inheriting its count as error. r.mu must be held.
func (r *Report) insert(domain string, now int64) *entry {
	if len(r.entries) < r.capacity {
		i := int32(len(r.entries))
		r.entries = append(r.entries, entry{domain: strings.Clone(domain), hits: 1, first: now, last: now, pos: int32(len(r.heap))})
		r.heap = append(r.heap, i)
		r.index[r.entries[i].domain] = i
		r.up(len(r.heap) - 1)
		return &r.entries[i]
	}
	i := r.heap[0]
	e := &r.entries[i]
	delete(r.index, e.domain)
	least := e.hits
	*e = entry{
		domain:  strings.Clone(domain),
		hits:    least + 1,
		hitsErr: least,
		first:   now,
		last:    now,
		dests:   e.dests[:0],
		pos:     0,
	}
	r.index[e.domain] = i
	r.down(0)
	return e
}

// intern returns reason as a string the report owns, shared by every
// entry with that reason. r.mu must be held.
func (r *Report) intern(reason string) string {
	if s, ok := r.reasons[reason]; ok {
		return s
	}
	if !printable(reason) {
		reason = invalidReason
		if s, ok := r.reasons[reason]; ok {
			return s
		}
	}
	s := strings.Clone(reason)
	if len(r.reasons) < maxReasons {
		r.reasons[s] = s
	}
	return s
}

// invalidReason replaces a reason with bytes other than printable ASCII.
const invalidReason = "invalid_reason"

// printable reports whether s is printable ASCII (0x21 to 0x7e): what
// domains and reasons are made of, and what the JSON file and CSV carry
// unchanged.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// addDest records dst for e: kept while e has fewer than maxDests
// distinct ones, else counted. r.mu must be held.
func (r *Report) addDest(e *entry, dst dest) {
	if !dst.valid() {
		return
	}
	for _, d := range e.dests {
		if d.same(dst) {
			return
		}
	}
	if len(e.dests) >= r.maxDests {
		e.otherDests++
		return
	}
	if e.dests == nil {
		e.dests = make([]dest, 0, min(initialDestsN, r.maxDests))
	}
	e.dests = append(e.dests, dst)
}

// The heap: r.heap holds entry indexes ordered as a binary min-heap by
// hits; entries[i].pos is i's position in it. A hit only grows a count, so
// it sifts down; a new entry (hits 1) sifts up. r.mu must be held.

func (r *Report) less(a, b int) bool {
	return r.entries[r.heap[a]].hits < r.entries[r.heap[b]].hits
}

func (r *Report) swap(a, b int) {
	h := r.heap
	h[a], h[b] = h[b], h[a]
	r.entries[h[a]].pos = int32(a)
	r.entries[h[b]].pos = int32(b)
}

func (r *Report) down(p int) {
	n := len(r.heap)
	for {
		c := 2*p + 1
		if c >= n {
			return
		}
		if c2 := c + 1; c2 < n && r.less(c2, c) {
			c = c2
		}
		if !r.less(c, p) {
			return
		}
		r.swap(p, c)
		p = c
	}
}

func (r *Report) up(p int) {
	for p > 0 {
		parent := (p - 1) / 2
		if !r.less(p, parent) {
			return
		}
		r.swap(p, parent)
		p = parent
	}
}

// Len returns the number of domains in the report (at most Capacity).
func (r *Report) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}

// Observed returns the number of blocks counted since the report began
// (N in the package guarantees), across restarts when persisted.
func (r *Report) Observed() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.observed
}

// row is a copy of an entry, taken under r.mu and used after it is
// released. domain and reason are immutable strings the report owns;
// dests is a copy.
type row struct {
	domain, reason string
	hits, hitsErr  uint64
	first, last    int64
	dests          []dest
	otherDests     uint64
}

// rows copies the entries with reason (every entry when reason is ""),
// and returns them hits descending then domain ascending, with the
// observed count. Only the copy holds r.mu: the data plane waits on it.
// When forSave is set it also clears the changed flag.
func (r *Report) rows(reason string, forSave bool) ([]*row, uint64) {
	r.mu.Lock()
	rs := make([]row, 0, len(r.entries))
	var nd int
	for i := range r.entries {
		if e := &r.entries[i]; reason == "" || e.reason == reason {
			nd += len(e.dests)
		}
	}
	flat := make([]dest, 0, nd)
	for i := range r.entries {
		e := &r.entries[i]
		if reason != "" && e.reason != reason {
			continue
		}
		k := len(flat)
		flat = append(flat, e.dests...)
		rs = append(rs, row{domain: e.domain, reason: e.reason, hits: e.hits, hitsErr: e.hitsErr,
			first: e.first, last: e.last, dests: flat[k:len(flat):len(flat)], otherDests: e.otherDests})
	}
	observed := r.observed
	if forSave {
		r.changed = false
	}
	r.mu.Unlock()
	ps := make([]*row, len(rs))
	for i := range rs {
		ps[i] = &rs[i]
	}
	slices.SortFunc(ps, func(a, b *row) int {
		if c := cmp.Compare(b.hits, a.hits); c != 0 {
			return c
		}
		return strings.Compare(a.domain, b.domain)
	})
	return ps, observed
}

// Top returns up to n rows by hits descending (ties by domain), only
// those whose last block reason is reason unless reason is "". n <= 0
// returns every row. It implements admin.Reporter.
func (r *Report) Top(n int, reason string) []admin.ReportRow {
	rs, _ := r.rows(reason, false)
	if n > 0 && len(rs) > n {
		rs = rs[:n]
	}
	out := make([]admin.ReportRow, len(rs))
	for i, x := range rs {
		out[i] = x.reportRow()
	}
	return out
}

func (w *row) reportRow() admin.ReportRow {
	d := make([]string, len(w.dests))
	for i, a := range w.dests {
		d[i] = a.String()
	}
	return admin.ReportRow{
		Domain:       w.domain,
		Reason:       w.reason,
		FirstSeen:    time.Unix(0, w.first).UTC(),
		LastSeen:     time.Unix(0, w.last).UTC(),
		Hits:         w.hits,
		HitsError:    w.hitsErr,
		Destinations: d,
	}
}

// CSVHeader is the header line of WriteCSV, as docs/admin-api.md fixes it.
var CSVHeader = []string{"domain", "reason", "hits", "hits_error", "first_seen", "last_seen", "destinations"}

// WriteCSV writes every row (only those with reason unless it is ""),
// hits descending, after the header line CSVHeader. Times are RFC 3339 in
// Options.Location with its offset (2026-01-31T08:00:00+08:00; Z in
// UTC), destinations are separated by spaces. A cell that a spreadsheet
// would take for a formula is prefixed with a quote. It implements
// admin.Reporter.
func (r *Report) WriteCSV(w io.Writer, reason string) error {
	rs, _ := r.rows(reason, false)
	var rec [7]string
	var dests []byte
	return writeCSV(w, CSVHeader, len(rs), func(i int) []string {
		x := rs[i]
		dests = dests[:0]
		for j, a := range x.dests {
			if j > 0 {
				dests = append(dests, ' ')
			}
			dests = a.appendTo(dests)
		}
		rec = [7]string{
			csvSafe(x.domain),
			csvSafe(x.reason),
			strconv.FormatUint(x.hits, 10),
			strconv.FormatUint(x.hitsErr, 10),
			time.Unix(0, x.first).In(r.loc).Format(time.RFC3339),
			time.Unix(0, x.last).In(r.loc).Format(time.RFC3339),
			csvSafe(string(dests)),
		}
		return rec[:]
	})
}

// writeCSV writes header and then the n records record returns.
func writeCSV(w io.Writer, header []string, n int, record func(i int) []string) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("writing unfiled report csv: %w", err)
	}
	for i := range n {
		if err := cw.Write(record(i)); err != nil {
			return fmt.Errorf("writing unfiled report csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("writing unfiled report csv: %w", err)
	}
	return nil
}

// csvSafe defuses CSV injection (OWASP): a cell starting with = + - @, a
// tab or a carriage return is taken by spreadsheets for a formula, so it
// gets a leading quote. Domains, reasons and addresses never start so;
// this is defence in depth against a bug upstream.
func csvSafe(s string) string {
	if s != "" && strings.IndexByte("=+-@\t\r", s[0]) >= 0 {
		return "'" + s
	}
	return s
}

var _ admin.Reporter = (*Report)(nil)
