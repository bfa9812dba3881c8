package registry

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"io"
	"math/bits"
	"os"
	"slices"
)

// A registry file changes by a few rows at a time (a filing approved, an
// access cancelled), but parsing and validating a million JSON rows takes
// seconds. A FileSource therefore remembers a hash of every row it loaded
// and, on the next change, parses only the rows whose bytes are new: an
// unchanged row stands for the record it produced last time. The changes
// go to Snapshot.Apply, whose cost follows the number of changes, so a
// one-row edit of a 1M-row file takes effect in a fraction of a second
// instead of a full reload.
//
// The hashes are 64-bit maphash values under a per-process seed: two
// different rows colliding in one file is about a one-in-30-billion event
// at 1M rows, and a different seed in every process keeps anyone from
// crafting a collision. CSV files are always loaded in full.

// rowSeed seeds the row hashes of this process.
var rowSeed = maphash.MakeSeed()

// rowIndex maps the hashes of a JSON Lines file's rows to the domains they
// hold, for the records of one Snapshot generation.
type rowIndex struct {
	gen    uint64   // Snapshot.gen of the records the rows produced
	hashes []uint64 // sorted
	doms   []string // doms[i] is the domain of the row hashing to hashes[i]
	// starts[b] is the first i whose hash has b as its top shift bits:
	// hashes are uniform, so a lookup binary-searches a bucket of about 16
	// (a cache line or two) instead of the whole array.
	starts []int32
	shift  uint
}

// rowPair is one row while a rowIndex is being built.
type rowPair struct {
	h   uint64
	dom string
}

// buildRowIndex sorts pairs into a rowIndex for generation gen: a
// counting sort into the buckets of their top bits, then an insertion sort
// of each bucket (about 16 uniform hashes). At 1M rows that is several
// times faster than a comparison sort of the whole, and it runs before a
// fresh gateway serves.
func buildRowIndex(pairs []rowPair, gen uint64) *rowIndex {
	ix := &rowIndex{gen: gen, hashes: make([]uint64, len(pairs)), doms: make([]string, len(pairs))}
	nb := rowBucketBits(len(pairs))
	ix.shift = 64 - uint(nb)
	ix.starts = make([]int32, 1<<nb+1)
	for _, p := range pairs {
		ix.starts[ix.bucketOf(p.h)+1]++
	}
	for b := range 1 << nb {
		ix.starts[b+1] += ix.starts[b]
	}
	next := slices.Clone(ix.starts[:1<<nb])
	for _, p := range pairs {
		b := ix.bucketOf(p.h)
		i := next[b]
		next[b]++
		ix.hashes[i], ix.doms[i] = p.h, p.dom
	}
	for b := range 1 << nb {
		lo, hi := int(ix.starts[b]), int(ix.starts[b+1])
		for i := lo + 1; i < hi; i++ {
			for j := i; j > lo && ix.hashes[j] < ix.hashes[j-1]; j-- {
				ix.hashes[j], ix.hashes[j-1] = ix.hashes[j-1], ix.hashes[j]
				ix.doms[j], ix.doms[j-1] = ix.doms[j-1], ix.doms[j]
			}
		}
	}
	return ix
}

// rowBucketBits is the number of top hash bits that pick a bucket of an
// index of n rows: about 16 rows a bucket.
func rowBucketBits(n int) int { return bits.Len(uint(n / 16)) }

// bucketOf returns the bucket of hash h.
func (ix *rowIndex) bucketOf(h uint64) uint64 {
	if ix.shift == 64 { // one bucket
		return 0
	}
	return h >> ix.shift
}

func sortPairs(pairs []rowPair) {
	slices.SortFunc(pairs, func(a, b rowPair) int { return cmp.Compare(a.h, b.h) })
}

// bucket fills starts and shift from hashes.
func (ix *rowIndex) bucket() {
	nb := rowBucketBits(len(ix.hashes))
	ix.shift = 64 - uint(nb)
	ix.starts = make([]int32, 1<<nb+1)
	i := 0
	for b := range 1 << nb {
		ix.starts[b] = int32(i)
		for i < len(ix.hashes) && ix.hashes[i]>>ix.shift == uint64(b) {
			i++
		}
	}
	ix.starts[1<<nb] = int32(len(ix.hashes))
}

// find returns the position of h in hashes.
func (ix *rowIndex) find(h uint64) (int, bool) {
	b := ix.bucketOf(h)
	lo, hi := int(ix.starts[b]), int(ix.starts[b+1])
	i, ok := slices.BinarySearch(ix.hashes[lo:hi], h)
	return lo + i, ok
}

// next returns the index of the file that kept the rows of ix marked in
// seen and added the rows in added, for generation gen: a merge of two
// sorted lists, no full sort.
func (ix *rowIndex) next(seen []bool, added []rowPair, gen uint64) *rowIndex {
	sortPairs(added)
	n := len(added)
	for _, s := range seen {
		if s {
			n++
		}
	}
	nx := &rowIndex{gen: gen, hashes: make([]uint64, 0, n), doms: make([]string, 0, n)}
	j := 0
	for i, h := range ix.hashes {
		if !seen[i] {
			continue
		}
		for j < len(added) && added[j].h < h {
			nx.hashes, nx.doms = append(nx.hashes, added[j].h), append(nx.doms, added[j].dom)
			j++
		}
		nx.hashes, nx.doms = append(nx.hashes, h), append(nx.doms, ix.doms[i])
	}
	for ; j < len(added); j++ {
		nx.hashes, nx.doms = append(nx.hashes, added[j].h), append(nx.doms, added[j].dom)
	}
	nx.bucket()
	return nx
}

// rowHash hashes one row's bytes (trimmed of surrounding space).
func rowHash(p []byte) uint64 { return maphash.Bytes(rowSeed, p) }

// fileChanges is what a changed file does to the records of ix.
type fileChanges struct {
	upserts []Record  // new or changed rows, validated and canonical
	deletes []string  // domains whose rows are gone
	rows    int       // rows in the file
	seen    []bool    // seen[i]: the row of ix.hashes[i] is still there
	added   []rowPair // rows not in ix
	warns   Warnings  // rows among added whose domain was normalised
}

// readChanges reads the JSON Lines file at path and compares it with ix,
// the rows that produced old's records: only rows not in ix are parsed.
// Errors are as a full load reports them (path:line: reason) for the rows
// it parses; the caller falls back to a full load on any error, which
// also gives the authoritative message.
func readChanges(path string, ix *rowIndex, old *Snapshot) (*fileChanges, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening registry file: %w", err)
	}
	defer f.Close()
	return diffRows(f, path, ix, old)
}

func diffRows(r io.Reader, path string, ix *rowIndex, old *Snapshot) (*fileChanges, error) {
	lr := lineReader{br: newLineBuffer(r)}
	ch := &fileChanges{}
	seen := make([]bool, len(ix.hashes))
	var lines []int            // lines[i]: the line of upserts[i]
	added := map[string]bool{} // domains of the new and changed rows
	// Warnings go through a fileReader so they are capped as a full
	// load's are.
	notes := fileReader{path: path}
	for {
		p, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, lineError(path, lr.line, err)
		}
		if len(p) == 0 {
			continue
		}
		ch.rows++
		h := rowHash(p)
		if i, ok := ix.find(h); ok {
			if seen[i] {
				return nil, lineError(path, lr.line, fmt.Errorf("%w: domain %s", ErrDuplicate, ix.doms[i]))
			}
			seen[i] = true
			continue
		}
		var fr fileRow
		if err := decodeJSONRow(p, &fr, false); err != nil {
			return nil, lineError(path, lr.line, err)
		}
		rec, warn, err := fr.fileRecord()
		if err == nil {
			err = canonicalRecord(&rec)
		}
		if err == nil && added[rec.Domain] {
			err = fmt.Errorf("%w: domain %s", ErrDuplicate, rec.Domain)
		}
		if err != nil {
			return nil, lineError(path, lr.line, err)
		}
		if warn != "" {
			notes.warn(lr.line, warn)
		}
		added[rec.Domain] = true
		ch.upserts = append(ch.upserts, rec)
		lines = append(lines, lr.line)
		ch.added = append(ch.added, rowPair{h, rec.Domain})
	}
	ch.warns = notes.warns
	// Rows that are gone: their domains are deleted unless a new row
	// holds them (an edited row). A new row for a domain whose old row is
	// still there is a duplicate, as a full load would say.
	gone := make(map[string]bool)
	for i, s := range seen {
		if !s {
			gone[ix.doms[i]] = true
		}
	}
	for i := range ch.upserts {
		d := ch.upserts[i].Domain
		if old.Lookup(d) != nil && !gone[d] {
			return nil, lineError(path, lines[i], fmt.Errorf("%w: domain %s", ErrDuplicate, d))
		}
	}
	for d := range gone {
		if !added[d] {
			ch.deletes = append(ch.deletes, d)
		}
	}
	slices.Sort(ch.deletes)
	ch.seen = seen
	return ch, nil
}
