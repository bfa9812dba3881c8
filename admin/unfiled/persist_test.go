package unfiled

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/icpgate/icpgate/internal/syncbuf"
)

// filledReport returns a report with a few domains, reasons and
// destinations, saving to file.
func filledReport(t testing.TB, file string, capacity int) (*Report, *clock) {
	t.Helper()
	c := newClock()
	r := New(Options{File: file, Capacity: capacity, MaxDestinations: 2, Now: c.Now})
	for i, d := range []string{"a.cn", "a.cn", "b.cn", "c.cn", "a.cn", "d.cn", "b.cn", "e.cn"} {
		c.advance(time.Second)
		dst := dstA
		if i%3 == 1 {
			dst = dstC
		}
		switch i {
		case 7:
			dst = dstB
		case 2:
			r.ObserveUpstream("unfiled", d, "origin.example:8443")
			continue
		}
		r.Observe("unfiled", d, dst)
	}
	r.Observe("blacklisted", "b.cn", dstB)
	r.Observe("blacklisted", "b.cn", dstA) // third destination: counted
	return r, c
}

// TestSaveLoad saves a report, checks the file (mode 0640, valid JSON, no
// temporary file left) and loads it into a new report: the rows, the
// observed count and the sketch's state are the same, and the loaded
// report keeps counting where the saved one stopped.
func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "unfiled.json")
	r, c := filledReport(t, file, 4) // e.cn replaced the least counted
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode: got %v, want 0640", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d files, want only the report (no temporary left)", len(ents))
	}
	data, _ := os.ReadFile(file)
	var f savedFile
	if err := json.Unmarshal(data, &f); err != nil || f.Version != 1 || len(f.Domains) != 4 {
		t.Fatalf("saved file: %v, version %d, %d domains; want version 1 and 4 domains:\n%s", err, f.Version, len(f.Domains), data)
	}

	l := New(Options{File: file, Capacity: 4, MaxDestinations: 2, Now: c.Now})
	if err := l.Load(); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, l)
	if got, want := l.Top(0, ""), r.Top(0, ""); !reflect.DeepEqual(got, want) {
		t.Errorf("loaded rows:\n got %+v\nwant %+v", got, want)
	}
	if l.Observed() != r.Observed() {
		t.Errorf("observed: got %d, want %d", l.Observed(), r.Observed())
	}
	gotRaw, wantRaw := l.rawRows(), r.rawRows()
	if !reflect.DeepEqual(gotRaw, wantRaw) {
		t.Errorf("loaded state:\n got %+v\nwant %+v", gotRaw, wantRaw)
	}
	// Both go on identically.
	for _, x := range []*Report{r, l} {
		x.Observe("unfiled", "f.cn", dstA)
		x.Observe("unfiled", "a.cn", dstA)
	}
	if got, want := l.Top(0, ""), r.Top(0, ""); !reflect.DeepEqual(got, want) {
		t.Errorf("after more blocks:\n got %+v\nwant %+v", got, want)
	}
}

// rawRows returns every row with the fields the API does not show.
func (r *Report) rawRows() []*row {
	rs, _ := r.rows("", false)
	return rs
}

// TestLoadMissing: no file yet is a first start, not an error.
func TestLoadMissing(t *testing.T) {
	r := New(Options{File: filepath.Join(t.TempDir(), "none.json")})
	if err := r.Load(); err != nil {
		t.Errorf("got %v, want nil", err)
	}
	if r.Len() != 0 {
		t.Errorf("got %d rows, want 0", r.Len())
	}
	m := New(Options{}) // memory only
	if err := m.Load(); err != nil {
		t.Errorf("memory only Load: got %v", err)
	}
	if err := m.Save(); err != nil {
		t.Errorf("memory only Save: got %v", err)
	}
}

// TestLoadCorrupt: each bad file is refused with an error naming the file
// and the bad field, leaves the report empty, and is moved aside so the
// next Save does not destroy it.
func TestLoadCorrupt(t *testing.T) {
	// obj is a valid row with fields replaced by over (a later duplicate
	// key wins in encoding/json); row a file holding it.
	obj := func(over string) string {
		return `{"domain":"a.cn","reason":"unfiled","hits":3,"hits_error":1,"first_seen":"2026-01-01T00:00:00Z",` +
			`"last_seen":"2026-01-02T00:00:00Z","destinations":["192.0.2.1:443"]` + over + `}`
	}
	row := func(over string) string { return `{"version":1,"domains":[` + obj(over) + `]}` }
	for _, tt := range []struct {
		name, content, want string
	}{
		{"empty", "", "not a saved report"},
		{"truncated", row("")[:40], "not a saved report"},
		{"not json", "domain,reason\n", "not a saved report"},
		{"wrong type", `{"version":"1"}`, "not a saved report"},
		{"version", `{"version":2,"domains":[]}`, "version: 2"},
		{"no version", `{"domains":[]}`, "version: 0"},
		{"empty domain", row(`,"domain":""`), "domains[0].domain"},
		{"long domain", row(`,"domain":"` + strings.Repeat("a", 254) + `"`), "domains[0].domain"},
		{"long reason", row(`,"reason":"` + strings.Repeat("r", 65) + `"`), "domains[0].reason"},
		{"zero hits", row(`,"hits":0,"hits_error":0`), "domains[0].hits"},
		{"error too big", row(`,"hits_error":3`), "domains[0].hits_error"},
		{"negative hits", row(`,"hits":-1`), "not a saved report"},
		{"zero first seen", row(`,"first_seen":"0001-01-01T00:00:00Z"`), "domains[0].first_seen"},
		{"last before first", row(`,"last_seen":"2025-01-01T00:00:00Z"`), "domains[0].last_seen"},
		{"far future", row(`,"last_seen":"9999-01-01T00:00:00Z"`), "domains[0].last_seen"},
		{"bad destination", row(`,"destinations":["192.0.2.1"]`), "domains[0].destinations[0]"},
		{"destination with a space", row(`,"destinations":["origin example:443"]`), "domains[0].destinations[0]"},
		{"long destination", row(`,"destinations":["` + strings.Repeat("a", 300) + `:443"]`), "domains[0].destinations[0]"},
		{"control byte in domain", row(`,"domain":"a\u0000.cn"`), "domains[0].domain"},
		{"non-ASCII domain", row(`,"domain":"例子.cn"`), "domains[0].domain"},
		{"control byte in reason", row(`,"reason":"un\nfiled"`), "domains[0].reason"},
		{"duplicate", `{"version":1,"domains":[` + obj("") + `,` + obj("") + `]}`, "domains[1].domain"},
		{"overflow", `{"version":1,"domains":[{"domain":"a.cn","hits":18446744073709551615,"first_seen":"2026-01-01T00:00:00Z","last_seen":"2026-01-01T00:00:00Z"},` +
			`{"domain":"b.cn","hits":2,"first_seen":"2026-01-01T00:00:00Z","last_seen":"2026-01-01T00:00:00Z"}]}`, "domains[1].hits"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "unfiled.json")
			if err := os.WriteFile(file, []byte(tt.content), 0o640); err != nil {
				t.Fatal(err)
			}
			r := New(Options{File: file})
			err := r.Load()
			if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %s and %q", err, file, tt.want)
			}
			if r.Len() != 0 || r.Observed() != 0 {
				t.Errorf("got %d rows, %d observed; want an empty report", r.Len(), r.Observed())
			}
			kept, rerr := os.ReadFile(file + ".corrupt")
			if rerr != nil || string(kept) != tt.content {
				t.Errorf("moved aside: got %q, %v; want the original content", kept, rerr)
			}
			r.Observe("unfiled", "new.cn", dstA)
			if err := r.Save(); err != nil {
				t.Fatalf("Save after a corrupt load: %v", err)
			}
			if kept2, _ := os.ReadFile(file + ".corrupt"); !bytes.Equal(kept, kept2) {
				t.Error("Save touched the corrupt file")
			}
		})
	}
}

// TestLoadTooLarge: a file far larger than any report of the configured
// size is refused without being read whole.
func TestLoadTooLarge(t *testing.T) {
	file := filepath.Join(t.TempDir(), "unfiled.json")
	r := New(Options{File: file, Capacity: 1, MaxDestinations: 1})
	if err := os.WriteFile(file, bytes.Repeat([]byte(" "), int(r.maxFileBytes())+1), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := r.Load(); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("got %v, want a too large error", err)
	}
}

// TestLoadSmallerCapacity loads a report saved with a larger capacity: the
// most counted rows stay, within the new capacity, and the counts of the
// dropped ones are not above any kept one (the guarantee still holds).
func TestLoadSmallerCapacity(t *testing.T) {
	file := filepath.Join(t.TempDir(), "unfiled.json")
	r, _ := filledReport(t, file, 10)
	if err := r.Save(); err != nil {
		t.Fatal(err)
	}
	l := New(Options{File: file, Capacity: 2, MaxDestinations: 1})
	if err := l.Load(); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, l)
	got := l.Top(0, "")
	want := r.Top(2, "")
	if len(got) != 2 || got[0].Domain != want[0].Domain || got[1].Domain != want[1].Domain {
		t.Fatalf("got %+v, want the top 2 of %+v", got, want)
	}
	for _, x := range got {
		if len(x.Destinations) > 1 {
			t.Errorf("%s: %d destinations, want at most 1", x.Domain, len(x.Destinations))
		}
	}
}

// TestSaveErrors: a save into a missing directory fails naming the file
// and leaves the report marked changed, so Run retries.
func TestSaveErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "missing", "unfiled.json")
	r := New(Options{File: file})
	r.Observe("unfiled", "a.cn", dstA)
	err := r.Save()
	if err == nil || !strings.Contains(err.Error(), file) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want a not-exist error naming %s", err, file)
	}
	r.mu.Lock()
	changed := r.changed
	r.mu.Unlock()
	if !changed {
		t.Error("a failed save cleared the changed flag")
	}
}

// TestRun checks Run's saves: periodic while blocks arrive, none while
// nothing changed, and a final one when ctx is done.
func TestRun(t *testing.T) {
	file := filepath.Join(t.TempDir(), "unfiled.json")
	logs := &syncBuffer{}
	r := New(Options{File: file, SaveInterval: 10 * time.Millisecond, Log: slog.New(slog.NewTextHandler(logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	r.Observe("unfiled", "a.cn", dstA)
	waitFor(t, "the periodic save", func() bool { return savedDomains(t, file) == 1 })

	// Nothing changed: the file is not rewritten (its inode stays).
	before, _ := os.Stat(file)
	time.Sleep(50 * time.Millisecond) // several intervals; only used to give Run the chance to misbehave
	after, _ := os.Stat(file)
	if !os.SameFile(before, after) {
		t.Error("the file was rewritten although nothing changed")
	}

	r.Observe("unfiled", "b.cn", dstA)
	cancel()
	<-done
	if n := savedDomains(t, file); n != 2 {
		t.Errorf("after Run returned: %d domains saved, want 2", n)
	}
	if logs.String() != "" {
		t.Errorf("unexpected log: %s", logs.String())
	}

	// Without a file, Run only waits.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	New(Options{}).Run(ctx2)
}

// TestRunLogsSaveErrors: Run logs a failed save (once per attempt) and
// keeps going.
func TestRunLogsSaveErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "missing", "unfiled.json")
	logs := &syncBuffer{}
	r := New(Options{File: file, SaveInterval: time.Hour, Log: slog.New(slog.NewJSONHandler(logs, nil))})
	r.Observe("unfiled", "a.cn", dstA)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.Run(ctx) // the final save fails
	var line map[string]any
	if err := json.Unmarshal([]byte(logs.String()), &line); err != nil {
		t.Fatalf("log %q: %v", logs.String(), err)
	}
	if line["level"] != "ERROR" || line["component"] != "unfiled" || !strings.Contains(fmt.Sprint(line["error"]), file) {
		t.Errorf("got %v, want an ERROR line of component unfiled naming %s", line, file)
	}
}

func savedDomains(t *testing.T, file string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return -1
	}
	if err != nil {
		t.Fatal(err)
	}
	var f savedFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return len(f.Domains)
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer = syncbuf.Buffer

// FuzzLoad: Load's parser never panics; what it accepts leaves a
// well-formed sketch within capacity that survives a save and load.
func FuzzLoad(f *testing.F) {
	dir := f.TempDir()
	r, _ := filledReport(f, filepath.Join(dir, "seed.json"), 4)
	if err := r.Save(); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join(dir, "seed.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"version":1,"domains":[]}`))
	f.Add([]byte(`{"version":1,"observed":5,"domains":[{"domain":"a.cn","reason":"unfiled","hits":3,"hits_error":1,"first_seen":"2026-01-01T00:00:00Z","last_seen":"2026-01-02T00:00:00Z","destinations":["[::ffff:192.0.2.1]:443","192.0.2.1:443"]}]}`))
	f.Add([]byte(`{"version":1,"domains":[{"domain":"a.cn","hits":1,"first_seen":"1970-01-01T00:00:00Z","last_seen":"2261-12-31T23:59:59Z"}]}`))
	f.Add([]byte(`{"version":1,"domains":null}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := New(Options{Capacity: 3, MaxDestinations: 2})
		if err := r.load(data); err != nil {
			if r.Len() != 0 {
				t.Fatalf("refused input left %d rows", r.Len())
			}
			return
		}
		checkInvariants(t, r)
		// Round trip through the file format.
		file := filepath.Join(t.TempDir(), "r.json")
		r.file = file
		if err := r.Save(); err != nil {
			t.Fatal(err)
		}
		l := New(Options{File: file, Capacity: 3, MaxDestinations: 2})
		if err := l.Load(); err != nil {
			t.Fatalf("reloading what was saved: %v", err)
		}
		if got, want := l.Top(0, ""), r.Top(0, ""); !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
		r.Observe("unfiled", "x.cn", dstA)
		checkInvariants(t, r)
	})
}
