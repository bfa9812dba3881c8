package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/icpgate/icpgate/registry"
)

// TestGeneratedRegistryLoads checks that icpgate accepts every generated row
// (so filing numbers validate) and that the nginx and HAProxy maps list
// exactly the domains icpgate lets through.
func TestGeneratedRegistryLoads(t *testing.T) {
	dir := t.TempDir()
	const n = 1000
	if err := writeAll(dir, n); err != nil {
		t.Fatalf("writeAll: %v", err)
	}
	snap, err := registry.LoadSnapshot(filepath.Join(dir, "registry.jsonl"))
	if err != nil {
		t.Fatalf("LoadSnapshot: %v", err)
	}
	if got, want := snap.Len(), n; got != want {
		t.Errorf("records: got %d, want %d", got, want)
	}
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	pass := map[string]bool{}
	for i := range n {
		d := row(i).domain
		dec := registry.Decide("www."+d, snap, now, registry.Policy{})
		pass[d] = dec.Pass()
		if got, want := dec.Pass(), row(i).passing; got != want {
			t.Errorf("Decide(www.%s).Pass(): got %v, want %v (reason %q)", d, got, want, dec.Reason)
		}
	}
	for _, tc := range []struct{ file, prefix, suffix string }{
		{"nginx.map", ".", " 1;"},
		{"haproxy.map", "", " 1"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join(dir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			seen := 0
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				line := sc.Text()
				d, ok := strings.CutPrefix(line, tc.prefix)
				d, ok2 := strings.CutSuffix(d, tc.suffix)
				if !ok || !ok2 || !pass[d] {
					t.Errorf("line %q: got a domain icpgate does not pass", line)
				}
				seen++
			}
			want := 0
			for _, p := range pass {
				if p {
					want++
				}
			}
			if seen != want {
				t.Errorf("lines: got %d, want %d", seen, want)
			}
		})
	}
	env, err := os.ReadFile(filepath.Join(dir, "hosts.env"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(env)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		vars[k] = v
	}
	for _, tc := range []struct {
		host string
		want bool
	}{{vars["FILED_HOST"], true}, {vars["UNFILED_HOST"], false}} {
		dec := registry.Decide(tc.host, snap, now, registry.Policy{})
		if got := dec.Pass(); got != tc.want {
			t.Errorf("Decide(%q).Pass(): got %v, want %v", tc.host, got, tc.want)
		}
	}
}

// TestWriteAllRejectsBadCount checks the bound on -n.
func TestWriteAllRejectsBadCount(t *testing.T) {
	for _, n := range []int{0, -1, 10_000_001} {
		if err := writeAll(t.TempDir(), n); err == nil {
			t.Errorf("writeAll(n=%d): got nil error, want one", n)
		}
	}
}
