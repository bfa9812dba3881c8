package unfiled

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// fileVersion is the version of the file format Save writes.
const fileVersion = 1

// savedFile is the JSON document Save writes and Load reads.
type savedFile struct {
	Version int `json:"version"`
	// SavedAt is when it was written; informational.
	SavedAt time.Time `json:"saved_at"`
	// Observed is N, the blocks counted since the report began.
	Observed uint64 `json:"observed"`
	// Domains are the rows, hits descending.
	Domains []savedRow `json:"domains"`
}

// savedRow is one domain in the file: a ReportRow plus what the API does
// not show.
type savedRow struct {
	Domain       string    `json:"domain"`
	Reason       string    `json:"reason"`
	Hits         uint64    `json:"hits"`
	HitsError    uint64    `json:"hits_error"`
	FirstSeen    time.Time `json:"first_seen"`
	LastSeen     time.Time `json:"last_seen"`
	Destinations []string  `json:"destinations"`
	// OtherDestinationHits counts hits at destinations beyond the kept
	// ones.
	OtherDestinationHits uint64 `json:"other_destination_hits,omitempty"`
}

// Times outside what Unix nanoseconds can hold are refused on load.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Save writes the report to Options.File atomically (a temporary file in
// the same directory, synced, renamed over the old one, mode 0640), so a
// crash leaves the old file or the new one, never half of one. It does
// nothing without a file. The error names the file.
func (r *Report) Save() error {
	if r.file == "" {
		return nil
	}
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	rs, observed := r.rows("", true)
	f := savedFile{Version: fileVersion, SavedAt: r.now().UTC(), Observed: observed, Domains: make([]savedRow, len(rs))}
	for i, x := range rs {
		d := make([]string, len(x.dests))
		for j, a := range x.dests {
			d[j] = a.String()
		}
		f.Domains[i] = savedRow{
			Domain: x.domain, Reason: x.reason, Hits: x.hits, HitsError: x.hitsErr,
			FirstSeen: time.Unix(0, x.first).UTC(), LastSeen: time.Unix(0, x.last).UTC(),
			Destinations: d, OtherDestinationHits: x.otherDests,
		}
	}
	data, err := json.MarshalIndent(&f, "", " ")
	if err == nil {
		data = append(data, '\n')
		err = writeAtomic(r.file, data, 0o640)
	}
	if err != nil {
		r.mu.Lock()
		r.changed = true // try again at the next interval
		r.mu.Unlock()
		return fmt.Errorf("saving unfiled report %s: %w", r.file, err)
	}
	return nil
}

// writeAtomic replaces path by data: temporary file, fsync, rename, fsync
// of the directory.
func writeAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	// The rename is durable once the directory is synced; a failure here
	// leaves a complete file, so it is not an error.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Load replaces the report by the one saved in Options.File. A missing
// file is not an error (a first start): the report stays as it is. A file
// that cannot be read or parsed leaves the report as it is (empty at
// start), is moved aside to FILE.corrupt so the next Save does not
// destroy it, and returns an error naming the file and the bad field.
// Rows beyond Capacity (a smaller Capacity than when saved) are dropped
// from the bottom, which keeps the sketch's guarantees; destinations
// beyond MaxDestinations are dropped.
func (r *Report) Load() error {
	if r.file == "" {
		return nil
	}
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	f, err := os.Open(r.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading unfiled report %s: %w", r.file, err)
	}
	limit := r.maxFileBytes()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	f.Close()
	if err != nil {
		return fmt.Errorf("loading unfiled report %s: %w", r.file, err)
	}
	if int64(len(data)) > limit {
		err = fmt.Errorf("larger than %d bytes", limit)
	} else {
		err = r.load(data)
	}
	if err != nil {
		aside := r.file + ".corrupt"
		if rerr := os.Rename(r.file, aside); rerr != nil {
			return fmt.Errorf("loading unfiled report %s: %w (not moved aside: %v)", r.file, err, rerr)
		}
		return fmt.Errorf("loading unfiled report %s: %w (moved aside to %s)", r.file, err, aside)
	}
	return nil
}

// maxFileBytes bounds the file Load reads: generous for a report of
// Capacity domains with MaxDestinations each, small enough that a wrong
// path cannot exhaust memory.
func (r *Report) maxFileBytes() int64 {
	return 1<<20 + int64(r.capacity)*int64(1024+64*r.maxDests)
}

// load parses a saved report and, when it is valid, installs it. The
// error names the first bad field.
func (r *Report) load(data []byte) error {
	var f savedFile
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("not a saved report: %w", err)
	}
	if f.Version != fileVersion {
		return fmt.Errorf("version: %d is not %d", f.Version, fileVersion)
	}
	// Validate every row first, so a bad file changes nothing.
	type parsed struct {
		row  *savedRow
		dsts []dest
	}
	rows := make([]parsed, 0, min(len(f.Domains), r.capacity))
	seen := make(map[string]bool, len(f.Domains))
	var sum uint64
	for i := range f.Domains {
		x := &f.Domains[i]
		field := func(name string) string { return "domains[" + strconv.Itoa(i) + "]." + name }
		switch {
		case x.Domain == "" || len(x.Domain) > maxDomainLen || !printable(x.Domain):
			return fmt.Errorf("%s: %q: want 1 to %d printable ASCII bytes", field("domain"), x.Domain, maxDomainLen)
		case seen[x.Domain]:
			return fmt.Errorf("%s: %q appears twice", field("domain"), x.Domain)
		case len(x.Reason) > maxReasonLen || !printable(x.Reason):
			return fmt.Errorf("%s: %q: want at most %d printable ASCII bytes", field("reason"), x.Reason, maxReasonLen)
		case x.Hits == 0:
			return fmt.Errorf("%s: must be at least 1", field("hits"))
		case x.HitsError >= x.Hits:
			return fmt.Errorf("%s: %d: must be less than hits (%d)", field("hits_error"), x.HitsError, x.Hits)
		case x.FirstSeen.Before(minTime) || x.FirstSeen.After(maxTime):
			return fmt.Errorf("%s: %v: out of range", field("first_seen"), x.FirstSeen)
		case x.LastSeen.Before(x.FirstSeen) || x.LastSeen.After(maxTime):
			return fmt.Errorf("%s: %v: before first_seen or out of range", field("last_seen"), x.LastSeen)
		}
		seen[x.Domain] = true
		if sum += x.Hits; sum < x.Hits {
			return fmt.Errorf("%s: the counts overflow", field("hits"))
		}
		p := parsed{row: x}
		for j, s := range x.Destinations {
			d, err := parseDest(s)
			if err != nil {
				return fmt.Errorf("%s[%d]: %v", field("destinations"), j, err)
			}
			if len(p.dsts) < r.maxDests && !slices.ContainsFunc(p.dsts, d.same) {
				p.dsts = append(p.dsts, d)
			}
		}
		rows = append(rows, p)
	}
	if f.Observed < sum {
		// The counts add up to N; a file that says otherwise was edited.
		// Trust the rows: N is only informational.
		f.Observed = sum
	}
	// Keep the Capacity largest; the dropped ones had counts no larger
	// than any kept one, so the smallest kept count still bounds every
	// untracked domain.
	slices.SortStableFunc(rows, func(a, b parsed) int {
		switch {
		case a.row.Hits > b.row.Hits:
			return -1
		case a.row.Hits < b.row.Hits:
			return 1
		}
		return 0
	})
	rows = rows[:min(len(rows), r.capacity)]

	r.mu.Lock()
	defer r.mu.Unlock()
	r.reset()
	r.observed = f.Observed
	for _, p := range rows {
		x := p.row
		i := int32(len(r.entries))
		e := entry{
			domain:     x.Domain,
			reason:     r.intern(x.Reason),
			hits:       x.Hits,
			hitsErr:    x.HitsError,
			first:      x.FirstSeen.UnixNano(),
			last:       x.LastSeen.UnixNano(),
			dests:      p.dsts,
			otherDests: x.OtherDestinationHits,
			pos:        int32(len(r.heap)),
		}
		r.entries = append(r.entries, e)
		r.heap = append(r.heap, i)
		r.index[e.domain] = i
		r.up(len(r.heap) - 1)
	}
	r.changed = false
	return nil
}

// parseDest parses a saved destination: an address (IP:port), or an
// upstream as the gateway names it (host:port, printable ASCII).
func parseDest(s string) (dest, error) {
	if a, err := netip.ParseAddrPort(s); err == nil {
		return dest{addr: netip.AddrPortFrom(a.Addr().Unmap(), a.Port())}, nil
	}
	if len(s) > maxDestLen || !printable(s) {
		return dest{}, fmt.Errorf("%q: want IP:port or host:port, at most %d printable ASCII bytes", s, maxDestLen)
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return dest{}, fmt.Errorf("%q: want IP:port or host:port: %v", s, err)
	}
	return dest{name: s}, nil
}

// Run saves the report every SaveInterval when it changed, and once more
// when ctx is done, then returns. Save errors are logged and retried at
// the next interval. Without a file it just waits for ctx.
func (r *Report) Run(ctx context.Context) {
	if r.file == "" {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.saveIfChanged()
			return
		case <-t.C:
			r.saveIfChanged()
		}
	}
}

// saveIfChanged saves when something was observed since the last save.
func (r *Report) saveIfChanged() {
	r.mu.Lock()
	changed := r.changed
	r.mu.Unlock()
	if !changed {
		return
	}
	if err := r.Save(); err != nil {
		r.log.Error("unfiled report not saved", "error", err)
	}
}
