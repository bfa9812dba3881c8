package registry

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// genRow returns the JSON Lines row of test record i in the given state.
func genRow(i int, state string) string {
	num := ""
	if state == "filed" || state == "changing" {
		num = fmt.Sprintf(`,"filing_number":"京ICP备%08d号-1"`, 10000000+i)
	}
	return fmt.Sprintf(`{"domain":"site%d.cn","state":%q%s}`, i, state, num)
}

// domOf returns the number of the test record in row.
func domOf(t testing.TB, row string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscanf(strings.TrimSpace(row), `{"domain":"site%d.cn"`, &n); err != nil {
		t.Fatalf("row %q: %v", row, err)
	}
	return n
}

// writeRows writes rows as a JSON Lines file.
func writeRows(t testing.TB, path string, rows []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(rows, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sameRecords reports whether a and b hold equal records.
func sameRecords(a, b *Snapshot) error {
	if a.Len() != b.Len() {
		return fmt.Errorf("%d records, want %d", a.Len(), b.Len())
	}
	for r := range b.Records() {
		got := a.Lookup(r.Domain)
		if got == nil {
			return fmt.Errorf("%s missing", r.Domain)
		}
		if !got.Equal(r) {
			return fmt.Errorf("%s: %+v, want %+v", r.Domain, *got, *r)
		}
	}
	return nil
}

// TestFileSourceIncremental applies random edits to a registry file and
// checks after every reload that the serving records are exactly what a
// full load of the file gives (or, for a bad file, that both refuse it and
// the serving snapshot is unchanged), and that good edits took the
// incremental path.
func TestFileSourceIncremental(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "registry.jsonl")
	states := []string{"filed", "changing", "cancelled", "no_access", "blacklisted"}
	var rows []string
	for i := range 500 {
		rows = append(rows, genRow(i, states[i%len(states)]))
	}
	writeRows(t, path, rows)
	reg := New(Options{})
	src := NewFileSource(path, reg, nil)
	if err := src.Load(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	next := len(rows)
	for step := range 200 {
		edit := rows
		var what string
		bad := false
		switch k := rng.IntN(10); {
		case k < 3: // change a row's state
			i := rng.IntN(len(edit))
			edit = slices.Clone(edit)
			edit[i] = genRow(next, "filed") // a new domain in place of the old
			next++
			what = "replace row"
		case k < 5: // change a record in place
			i := rng.IntN(len(edit))
			dom := domOf(t, edit[i])
			edit = slices.Clone(edit)
			edit[i] = genRow(dom, states[rng.IntN(len(states))])
			what = "edit row"
		case k < 6: // add rows
			edit = slices.Clone(edit)
			for range 1 + rng.IntN(5) {
				edit = append(edit, genRow(next, "filed"))
				next++
			}
			what = "add rows"
		case k < 7: // delete a row
			i := rng.IntN(len(edit))
			edit = slices.Delete(slices.Clone(edit), i, i+1)
			what = "delete row"
		case k < 8: // reorder, blank lines, spaces
			edit = slices.Clone(edit)
			rng.Shuffle(len(edit), func(i, j int) { edit[i], edit[j] = edit[j], edit[i] })
			edit[0] = "  " + strings.TrimSpace(edit[0]) + " \t\n"
			what = "reorder"
		case k < 9: // a duplicate of an existing row, or a new row for an existing domain
			i := rng.IntN(len(edit))
			dup := edit[i]
			if rng.IntN(2) == 0 {
				dom := domOf(t, edit[i])
				dup = genRow(dom, "cancelled")
				if dup == edit[i] {
					dup = genRow(dom, "blacklisted")
				}
			}
			edit = append(slices.Clone(edit), dup)
			what, bad = "duplicate", true
		default: // a bad row
			edit = append(slices.Clone(edit), `{"domain":"bad.cn","state":"filed"}`)
			what, bad = "bad row", true
		}
		writeRows(t, path, edit)
		before := reg.Snapshot()
		incBefore := src.incrementals.Load()
		err := src.Load()
		want, werr := LoadSnapshot(path)
		if bad {
			if err == nil || werr == nil {
				t.Fatalf("step %d (%s): reload err %v, full load err %v; want both to fail", step, what, err, werr)
			}
			if err.Error() != werr.Error() {
				t.Errorf("step %d (%s): reload says %q, full load %q", step, what, err, werr)
			}
			if reg.Snapshot() != before {
				t.Fatalf("step %d (%s): a bad file changed the serving snapshot", step, what)
			}
			writeRows(t, path, rows) // back to the last good file
			if err := src.Load(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err != nil || werr != nil {
			t.Fatalf("step %d (%s): reload err %v, full load err %v", step, what, err, werr)
		}
		if err := sameRecords(reg.Snapshot(), want); err != nil {
			t.Fatalf("step %d (%s): %v", step, what, err)
		}
		if src.incrementals.Load() != incBefore+1 {
			t.Errorf("step %d (%s): reload was not incremental", step, what)
		}
		rows = edit
	}
}

// TestFileSourceIncrementalGuards: the shrink guards hold on the
// incremental path too, and overrides survive it.
func TestFileSourceIncrementalGuards(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "registry.jsonl")
	var rows []string
	for i := range 100 {
		rows = append(rows, genRow(i, "filed"))
	}
	writeRows(t, path, rows)
	reg := New(Options{})
	src := NewFileSource(path, reg, nil)
	src.MaxDeleteFraction = 0.1
	if err := src.Load(); err != nil {
		t.Fatal(err)
	}
	ov := Override{ID: "1", Host: "site1.cn", Scope: ScopeDomain, Action: ActionDeny, Reason: "test"}
	if err := reg.Update(func(old *Snapshot) (*Snapshot, error) { return old.WithOverrides([]Override{ov}) }); err != nil {
		t.Fatal(err)
	}
	writeRows(t, path, rows[:80]) // 20% gone
	if err := src.Load(); !errors.Is(err, ErrShrink) {
		t.Fatalf("removing 20%%: err %v, want ErrShrink", err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := src.Load(); !errors.Is(err, ErrShrink) {
		t.Fatalf("empty file: err %v, want ErrShrink", err)
	}
	writeRows(t, path, append(slices.Clone(rows[:95]), genRow(1000, "cancelled")))
	inc := src.incrementals.Load()
	if err := src.Load(); err != nil {
		t.Fatal(err)
	}
	if src.incrementals.Load() != inc+1 {
		t.Error("reload was not incremental")
	}
	if d := reg.Decide("www.site1.cn"); d.Reason != ReasonOverrideDeny {
		t.Errorf("override lost across an incremental reload: %s", d.Reason)
	}
	if d := reg.Decide("site99.cn"); d.Reason != ReasonUnfiled {
		t.Errorf("deleted site99.cn decides %s, want unfiled", d.Reason)
	}
	if d := reg.Decide("site1000.cn"); d.Reason != ReasonCancelled {
		t.Errorf("added site1000.cn decides %s, want cancelled", d.Reason)
	}
	// Someone else swapping the records (not the file source) sends the
	// next reload down the full path, which still gives the file's records.
	s, err := reg.Snapshot().Apply([]Record{{Domain: "other.cn", State: StateCancelled}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg.Swap(s)
	writeRows(t, path, rows[:95])
	inc = src.incrementals.Load()
	if err := src.Load(); err != nil {
		t.Fatal(err)
	}
	if src.incrementals.Load() != inc {
		t.Error("reload over foreign records was incremental")
	}
	want, _ := LoadSnapshot(path)
	if err := sameRecords(reg.Snapshot(), want); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkFileReloadOneRow measures a one-row change to a 100k-row file.
func BenchmarkFileReloadOneRow(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "registry.jsonl")
	var rows []string
	for i := range 100_000 {
		rows = append(rows, genRow(i, "filed"))
	}
	writeRows(b, path, rows)
	reg := New(Options{})
	src := NewFileSource(path, reg, nil)
	if err := src.Load(); err != nil {
		b.Fatal(err)
	}
	states := []string{"cancelled", "filed"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		rows[7] = genRow(7, states[i%2])
		writeRows(b, path, rows)
		b.StartTimer()
		if err := src.Load(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBuildRowIndex checks the bucketed counting sort against a comparison
// sort and bucket(), at sizes around the bucket boundaries, with every
// hash found at its domain.
func TestBuildRowIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 15, 16, 17, 31, 32, 33, 1000, 100_000} {
		pairs := make([]rowPair, n)
		for i := range pairs {
			pairs[i] = rowPair{rng.Uint64(), "d" + strconv.Itoa(i) + ".cn"}
		}
		if n > 2 {
			pairs[1].h = pairs[0].h >> 60 << 60 // a hash at a bucket's very start
		}
		ref := slices.Clone(pairs)
		sortPairs(ref)
		want := &rowIndex{hashes: make([]uint64, n), doms: make([]string, n)}
		for i, p := range ref {
			want.hashes[i], want.doms[i] = p.h, p.dom
		}
		want.bucket()
		got := buildRowIndex(slices.Clone(pairs), 7)
		if got.gen != 7 || got.shift != want.shift || !slices.Equal(got.starts, want.starts) ||
			!slices.Equal(got.hashes, want.hashes) || !slices.Equal(got.doms, want.doms) {
			t.Fatalf("n=%d: the index differs from a sorted one", n)
		}
		for _, p := range pairs {
			if i, ok := got.find(p.h); !ok || got.doms[i] != p.dom {
				t.Fatalf("n=%d: hash of %s not found", n, p.dom)
			}
		}
	}
}

// BenchmarkBuildRowIndex builds the row index of 1M rows, as a fresh
// gateway does after its first load of a 1M-row file.
func BenchmarkBuildRowIndex(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	pairs := make([]rowPair, 1_000_000)
	for i := range pairs {
		pairs[i] = rowPair{rng.Uint64(), "d.cn"}
	}
	work := make([]rowPair, len(pairs))
	b.ReportAllocs()
	for b.Loop() {
		copy(work, pairs)
		buildRowIndex(work, 1)
	}
}
